"""Prefix fits: one training run to the largest epoch count, scored at each smaller one,
bit for bit what independent fits give; configurations that cannot share are detected."""

import time

import keras
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler

from raygrid.keras import KerasClassifier, KerasRegressor, compiled_loop, trace_cache

X, y = make_classification(
    n_samples=160, n_features=8, n_informative=5, n_classes=3, random_state=0
)
X = StandardScaler().fit_transform(X).astype(np.float32)
Y_REG = np.column_stack([X[:, 0] - X[:, 1], X[:, 2]])
SAMPLE_WEIGHT = np.linspace(0.5, 2.0, len(X))
VALUES = [0, 2, 5, 9]


def build_user(hidden=8, n_features_in_=None, n_classes_=None):
    return keras.Sequential(
        [
            keras.Input((n_features_in_,)),
            keras.layers.Dense(hidden, activation="tanh"),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(n_classes_, activation="softmax"),
        ]
    )


def build_scheduled(n_features_in_=None, n_classes_=None):
    """A schedule of the step counter only (not sized from epochs): shareable."""
    model = build_user(6, n_features_in_, n_classes_)
    schedule = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=30)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy"
    )
    return model


def build_sized_from_epochs(epochs, n_features_in_=None, n_classes_=None):
    """A schedule that decays to zero at the last epoch: its shape depends on epochs."""
    model = build_user(6, n_features_in_, n_classes_)
    schedule = keras.optimizers.schedules.CosineDecay(0.05, decay_steps=epochs * 5 + 1)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy"
    )
    return model


# (estimator, target, fit keyword arguments)
SHAREABLE = {
    "default": (KerasClassifier(units=16, epochs=9, random_state=1), y, {}),
    "dropout-two-layers-batch-16": (
        KerasClassifier(
            units=12, n_layers=2, dropout_rate=0.3, batch_size=16, epochs=9, random_state=4
        ),
        y,
        {},
    ),
    "sgd-momentum-class-weight-no-shuffle": (
        KerasClassifier(
            optimizer="sgd",
            learning_rate=0.05,
            optimizer__momentum=0.9,
            class_weight="balanced",
            fit__shuffle=False,
            epochs=9,
            random_state=2,
        ),
        y,
        {},
    ),
    "regressor-sample-weight": (
        KerasRegressor(units=10, epochs=9, random_state=5),
        Y_REG,
        {"sample_weight": SAMPLE_WEIGHT},
    ),
    "user-model": (
        KerasClassifier(model=build_user, model__hidden=7, epochs=9, random_state=6),
        y,
        {},
    ),
    "user-model-step-schedule": (
        KerasClassifier(model=build_scheduled, epochs=9, random_state=7),
        y,
        {},
    ),
}


def outputs(estimator):
    if isinstance(estimator, KerasClassifier):
        return estimator.predict_proba(X), estimator.predict(X)
    return (estimator.predict(X),)


def assert_same_fit(shared, independent):
    for a, b in zip(outputs(shared), outputs(independent), strict=True):
        np.testing.assert_array_equal(a, b)
    assert shared.n_iter_ == independent.n_iter_
    assert shared.loss_curve_ == independent.loss_curve_
    assert shared.history_ == independent.history_
    assert shared.fit_path_ == independent.fit_path_
    assert shared.best_epoch_ == independent.best_epoch_
    assert shared.get_params()["epochs"] == independent.get_params()["epochs"]
    for a, b in zip(shared._weights, independent._weights, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(SHAREABLE))
def test_every_prefix_equals_an_independent_fit(name):
    template, target, fit_params = SHAREABLE[name]
    estimator = clone(template)
    assert estimator.prefix_fit_param() == "epochs"
    seen = []
    for value in estimator.prefix_fit(X, target, values=VALUES, **fit_params):
        seen.append(value)
        assert estimator.fit_path_ == "fast"
        independent = clone(template).set_params(epochs=value).fit(X, target, **fit_params)
        assert_same_fit(estimator, independent)
    assert seen == VALUES


def test_other_fits_between_the_yields_do_not_disturb_the_prefix_fit():
    """Fits and predictions of the same architecture reuse the cached model in between."""
    template = KerasClassifier(units=16, dropout_rate=0.2, epochs=9, random_state=1)
    estimator = clone(template)
    other = clone(template).set_params(random_state=99, epochs=3)
    for value in estimator.prefix_fit(X, y, values=VALUES):
        other.fit(X[:100], y[:100]).predict_proba(X)
        independent = clone(template).set_params(epochs=value).fit(X, y)
        assert_same_fit(estimator, independent)
        assert estimator._model_key == other._model_key  # truly the same cached model


def test_a_loop_failure_midway_falls_back_to_independent_fits(monkeypatch):
    template = KerasClassifier(units=5, n_layers=2, epochs=9, random_state=3)
    real_fit_fast = compiled_loop.fit_fast

    def failing_after_the_first_segment(*args, start=0, **kwargs):
        if start > 0:
            raise RuntimeError("simulated loop failure")
        return real_fit_fast(*args, start=start, **kwargs)

    monkeypatch.setattr(compiled_loop, "fit_fast", failing_after_the_first_segment)
    estimator = clone(template)
    paths = []
    for value in estimator.prefix_fit(X, y, values=[3, 6, 9]):
        paths.append(estimator.fit_path_)
        independent = clone(template).set_params(epochs=value, fast_path=False).fit(X, y)
        np.testing.assert_array_equal(estimator.predict_proba(X), independent.predict_proba(X))
        assert estimator.loss_curve_ == pytest.approx(independent.loss_curve_, rel=1e-6)
    assert paths == ["fast", "keras", "keras"]
    trace_cache.clear_cache()  # the architecture was marked as failing the fast loop


NOT_SHAREABLE = {
    "tol-policy-epochs-none": KerasClassifier(epochs=None, random_state=0),
    "early-stopping": KerasClassifier(epochs=9, early_stopping=True, random_state=0),
    "callbacks": KerasClassifier(
        epochs=9, callbacks=[keras.callbacks.TerminateOnNaN()], random_state=0
    ),
    "fast-path-off": KerasClassifier(epochs=9, fast_path=False, random_state=0),
    "verbose": KerasClassifier(epochs=9, verbose=1, random_state=0),
    "validation-split": KerasClassifier(epochs=9, validation_split=0.2, random_state=0),
    "unseeded": KerasClassifier(epochs=9),
    "random-state-object": KerasClassifier(epochs=9, random_state=np.random.RandomState(0)),
    "fit-epochs-override": KerasClassifier(epochs=9, fit__epochs=4, random_state=0),
    "fit-model-fit-argument": KerasClassifier(
        epochs=9, fit__class_weight={0: 1.0, 1: 2.0, 2: 1.0}, random_state=0
    ),
    "schedule-sized-from-epochs": KerasClassifier(
        model=build_sized_from_epochs, epochs=9, random_state=0
    ),
}


@pytest.mark.parametrize("name", sorted(NOT_SHAREABLE))
def test_configurations_that_cannot_share_say_so(name):
    assert NOT_SHAREABLE[name].prefix_fit_param() is None


@pytest.mark.parametrize("name", ["callbacks", "schedule-sized-from-epochs"])
def test_unshareable_prefix_fits_still_equal_independent_fits(name):
    template = NOT_SHAREABLE[name]
    estimator = clone(template)
    for value in estimator.prefix_fit(X, y, values=[1, 3]):
        independent = clone(template).set_params(epochs=value).fit(X, y)
        np.testing.assert_array_equal(estimator.predict_proba(X), independent.predict_proba(X))
        assert estimator.n_iter_ == independent.n_iter_ == value


def test_epochs_given_to_fit_are_honoured_as_by_independent_fits():
    template = KerasClassifier(units=6, epochs=9, random_state=0)
    estimator = clone(template)
    for value in estimator.prefix_fit(X, y, values=[2, 5], epochs=3):
        independent = clone(template).set_params(epochs=value).fit(X, y, epochs=3)
        np.testing.assert_array_equal(estimator.predict_proba(X), independent.predict_proba(X))
        assert estimator.n_iter_ == 3


@pytest.mark.parametrize("values", [[], [3, 3], [5, 2], [-1, 2], [1.5], [True]])
def test_bad_values_are_refused(values):
    with pytest.raises(ValueError, match="values must be"):
        next(KerasClassifier(epochs=5, random_state=0).prefix_fit(X, y, values=values))


def test_a_prefix_fit_costs_about_one_fit_to_the_largest_value():
    """Median time of a prefix fit to [5, 10, 20] against one fit to 20, on the seed
    example's data (267 rows per fold), in one run on a noisy shared machine."""
    Xs, ys = make_classification(
        n_samples=267, n_features=20, n_informative=10, n_classes=3, random_state=42
    )
    template = KerasClassifier(units=64, batch_size=32, epochs=20, random_state=0)
    clone(template).fit(Xs, ys)  # trace once
    shared, single = [], []
    for _ in range(7):
        start = time.perf_counter()
        estimator = clone(template)
        for _value in estimator.prefix_fit(Xs, ys, values=[5, 10, 20]):
            pass
        shared.append(time.perf_counter() - start)
        start = time.perf_counter()
        clone(template).fit(Xs, ys)
        single.append(time.perf_counter() - start)
    ratio = np.median(shared) / np.median(single)
    print(f"prefix fit [5, 10, 20] / fit to 20: {ratio:.2f}")
    assert ratio < 1.5
