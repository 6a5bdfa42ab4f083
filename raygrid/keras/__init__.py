"""scikit-learn wrappers for Keras networks (TensorFlow backend), built for grid search.

``KerasClassifier()`` and ``KerasRegressor()`` work directly with a default network whose
width, depth, activation, dropout, optimizer and learning rate are searchable; a
``model`` callable builds any other network, its arguments searchable as
``model__<name>``.

- :mod:`~raygrid.keras.wrappers`: :class:`KerasClassifier` and :class:`KerasRegressor`,
  their parameters, fit, predict and score.
- :mod:`~raygrid.keras.network`: the default network, built from searchable parameters.
- :mod:`~raygrid.keras.training`: the compiled training loop (cached per process),
  ``model.fit`` for the rest, and inference.
- :mod:`~raygrid.keras.fused`: fused training, many small networks as one stack;
  :mod:`~raygrid.keras.capacity`: how many models one stack may hold.
- :mod:`~raygrid.keras.runtime`: TensorFlow process hygiene for long-lived workers.
"""

from raygrid.keras.runtime import configure_tensorflow
from raygrid.keras.training import clear_tensorflow_state
from raygrid.keras.wrappers import KerasClassifier, KerasRegressor

__all__ = [
    "KerasClassifier",
    "KerasRegressor",
    "clear_tensorflow_state",
    "configure_tensorflow",
]
