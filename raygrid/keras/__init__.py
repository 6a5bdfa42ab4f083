"""scikit-learn wrappers for Keras networks (TensorFlow backend), built for grid search.

``KerasClassifier()`` and ``KerasRegressor()`` work directly with a default network whose
width, depth, activation, dropout, optimizer and learning rate are searchable; a
``model`` callable builds any other network, its arguments searchable as
``model__<name>``.

A plugin: raygrid's core reaches it only through hooks on the estimator (``prefix_fit``,
see :mod:`raygrid.run.prefix`; ``fit_fused``, see :mod:`raygrid.run.fusion`).

- :mod:`~raygrid.keras.wrappers`: the two estimators; :mod:`~raygrid.keras.network`:
  the default network and its seeded initial values; :mod:`~raygrid.keras.runtime`:
  TensorFlow's threads, GPUs and seeding.
- :mod:`~raygrid.keras.training`: training and inference sessions (the compiled loop or
  ``model.fit``); :mod:`~raygrid.keras.compiled_loop`: the loop traced once per
  architecture; :mod:`~raygrid.keras.trace_cache`: the per-process cache of compiled
  models.
- :mod:`~raygrid.keras.fused`: many networks of one architecture trained as one stack;
  :mod:`~raygrid.keras.capacity`: how many fit in the memory a worker can spare.
- :mod:`~raygrid.keras.devices`: what TensorFlow sees (GPUs, their names and memory, the
  CUDA/cuDNN it was built for and loaded), for the device check and ``raygrid doctor``.
"""

from raygrid.keras.runtime import configure_tensorflow
from raygrid.keras.trace_cache import clear_tensorflow_state
from raygrid.keras.wrappers import KerasClassifier, KerasRegressor

__all__ = [
    "KerasClassifier",
    "KerasRegressor",
    "clear_tensorflow_state",
    "configure_tensorflow",
]
