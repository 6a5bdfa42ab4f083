"""scikit-learn's estimator checks on both wrappers, with their defaults.

Only ``random_state`` is set: the default epoch policy (up to ``max_iter`` epochs, stopping
when the training loss stops improving) must learn every check's problem. The default
network runs for both wrappers; a user ``model`` callable with a routed
``model__`` parameter runs for the classifier, so that routing survives clone, pickling
and ``set_params`` the way scikit-learn expects.
"""

import keras
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from raygrid.keras import KerasClassifier, KerasRegressor

# Like scikit-learn's MLP, the defaults warn when max_iter ends training before the loss
# settles, which happens on several of the checks' tiny problems; the checks still pass.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def build_classifier(hidden, n_features_in_, n_classes_):
    return keras.Sequential(
        [
            keras.Input((n_features_in_,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(n_classes_, activation="softmax"),
        ]
    )


_SGD_WEIGHTS = (
    "mini-batch SGD: a weight of 2 is not the same as a repeated sample (the batches, their "
    "composition and Keras' mean over each batch all change)"
)


def _expected_failed(estimator):
    return {"check_sample_weight_equivalence_on_dense_data": _SGD_WEIGHTS}


@parametrize_with_checks(
    [
        KerasClassifier(random_state=0),
        KerasClassifier(model=build_classifier, model__hidden=16, random_state=0),
        KerasRegressor(random_state=0),
    ],
    expected_failed_checks=_expected_failed,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
