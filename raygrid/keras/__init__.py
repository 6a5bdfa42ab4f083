"""scikit-learn wrappers for Keras networks (TensorFlow backend), built for grid search.

``KerasClassifier()`` and ``KerasRegressor()`` work directly with a default network whose
width, depth, activation, dropout, optimizer and learning rate are searchable; a
``model`` callable builds any other network, its arguments searchable as
``model__<name>``.
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
