"""KerasClassifier / KerasRegressor: parameters, routing, labels, shapes, pickling, fit options."""

import pickle

import cloudpickle
import keras
import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, check_cv
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from raygrid.keras import KerasClassifier, KerasRegressor, trace_cache

X, y = make_classification(
    n_samples=120, n_features=6, n_informative=4, n_classes=3, random_state=0
)
X = StandardScaler().fit_transform(X)
Xb, yb = make_classification(n_samples=100, n_features=5, random_state=1)
Xr, yr = make_regression(n_samples=100, n_features=5, n_targets=2, noise=1.0, random_state=0)
Xr = StandardScaler().fit_transform(Xr)
yr = yr / yr.std(axis=0)

FAST = {"epochs": 3, "random_state": 0}


def build_mlp(hidden=8, n_features_in_=None, n_classes_=None):
    """A user network asking for fit-time facts by argument name."""
    return keras.Sequential(
        [
            keras.Input((n_features_in_,)),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(n_classes_, activation="softmax"),
        ]
    )


def build_functional(meta, width=4):
    inputs = keras.Input(meta["input_shape"])
    hidden = keras.layers.Dense(width, activation="tanh")(inputs)
    outputs = keras.layers.Dense(meta["n_outputs_"])(hidden)
    return keras.Model(inputs, outputs)


def build_compiled_binary(n_features_in_):
    model = keras.Sequential(
        [keras.Input((n_features_in_,)), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy")
    return model


# -- estimator type and parameters ---------------------------------------------------


def test_estimator_types_and_stratified_cv():
    assert is_classifier(KerasClassifier())
    assert is_regressor(KerasRegressor())
    assert not is_regressor(KerasClassifier())
    assert isinstance(check_cv(3, y, classifier=is_classifier(KerasClassifier())), StratifiedKFold)


def test_defaults_match_the_seed_and_mlp_epoch_policy():
    params = KerasClassifier().get_params()
    assert params["units"] == 32
    assert params["learning_rate"] == 0.001
    assert params["batch_size"] == 32
    # scikit-learn MLP's epoch policy instead of a fixed count
    assert params["epochs"] is None
    assert (params["max_iter"], params["tol"], params["n_iter_no_change"]) == (200, 1e-4, 10)
    assert (params["early_stopping"], params["validation_fraction"]) == (False, 0.1)
    assert params["optimizer"] == "adam"
    assert params["activation"] == "relu"
    assert params["verbose"] == 0


def test_routed_params_in_get_params_set_params_and_clone():
    clf = KerasClassifier(model=build_mlp, model__hidden=32, optimizer__beta_1=0.8)
    params = clf.get_params()
    assert params["model__hidden"] == 32
    assert params["optimizer__beta_1"] == 0.8
    clf.set_params(model__hidden=64, units=16)
    assert clf.get_params()["model__hidden"] == 64
    twin = clone(clf)
    assert twin.get_params()["model__hidden"] == 64
    assert twin.units == 16
    assert "model__hidden=64" in repr(twin)
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(unts=3)


def test_unknown_keyword_is_reported_by_fit():
    clf = KerasClassifier(unts=64)  # stored, as scikit-learn's __init__ contract asks
    with pytest.raises(ValueError, match="unknown parameter"):
        clf.fit(X, y)


def test_model_params_reach_the_callable_and_unused_ones_fail():
    clf = KerasClassifier(model=build_mlp, model__hidden=5, **FAST).fit(X, y)
    assert clf.model_.layers[0].units == 5
    with pytest.raises(ValueError, match="model__nope"):
        KerasClassifier(model=build_mlp, model__nope=1, **FAST).fit(X, y)
    with pytest.raises(TypeError, match="callable"):
        KerasClassifier(model=build_mlp(8, 6, 3), **FAST).fit(X, y)


def test_numpy_scalar_grid_values():
    clf = KerasClassifier(
        units=np.int64(8),
        n_layers=np.int32(2),
        epochs=np.int64(2),
        batch_size=np.int64(16),
        learning_rate=np.float32(0.01),
        dropout_rate=np.float64(0.1),
        random_state=np.int64(3),
    ).fit(X, y)
    assert [layer.units for layer in clf.model_.layers if hasattr(layer, "units")] == [8, 8, 3]
    clf = KerasClassifier(model=build_mlp, model__hidden=np.int64(7), **FAST).fit(X, y)
    assert clf.model_.layers[0].units == 7


def test_default_network_options():
    clf = KerasClassifier(
        hidden_layer_sizes=(8, 4), activation="tanh", dropout_rate=0.2, optimizer="sgd", **FAST
    ).fit(X, y)
    kinds = [type(layer).__name__ for layer in clf.model_.layers]
    assert kinds == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    assert clf.model_.layers[0].units == 8
    for optimizer in ("rmsprop", "adam", keras.optimizers.SGD):
        KerasClassifier(optimizer=optimizer, n_layers=0, **FAST).fit(X, y)
    clf = KerasClassifier(optimizer="sgd", optimizer__momentum=0.9, **FAST).fit(X, y)
    assert clf.model_.optimizer.get_config()["momentum"] == pytest.approx(0.9)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        KerasClassifier().predict(X)
    with pytest.raises(NotFittedError):
        KerasRegressor().predict(X)


# -- labels and shapes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [np.array(["cat", "dog", "emu"]), np.array([-3, 10, 42]), np.array([1.0, 2.0, 7.0])],
    ids=["strings", "non-contiguous-ints", "integral-floats"],
)
def test_any_labels(labels):
    y_labels = labels[y]
    clf = KerasClassifier(learning_rate=0.05, epochs=20, random_state=0).fit(X, y_labels)
    np.testing.assert_array_equal(clf.classes_, labels)
    pred = clf.predict(X)
    assert pred.dtype == y_labels.dtype
    assert set(pred) <= set(labels)
    assert clf.score(X, y_labels) > 0.6
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(labels[proba.argmax(axis=1)], pred)


def test_binary_predict_proba_shape():
    labels = np.array(["no", "yes"])[yb]
    clf = KerasClassifier(**FAST).fit(Xb, labels)
    assert clf.predict_proba(Xb).shape == (len(Xb), 2)
    # a one-unit sigmoid output (user-compiled) still gives two columns
    clf = KerasClassifier(model=build_compiled_binary, **FAST).fit(Xb, labels)
    proba = clf.predict_proba(Xb)
    assert proba.shape == (len(Xb), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(Xb)) <= {"no", "yes"}
    # binary cross-entropy on the default network gives a one-unit head
    clf = KerasClassifier(loss="binary_crossentropy", **FAST).fit(Xb, labels)
    assert clf.model_.layers[-1].units == 1
    assert clf.predict_proba(Xb).shape == (len(Xb), 2)


def test_one_hot_loss_and_logits():
    clf = KerasClassifier(loss="categorical_crossentropy", **FAST).fit(X, y)
    assert clf.predict_proba(X).shape == (len(X), 3)

    def logits(n_features_in_, n_classes_):
        return keras.Sequential([keras.Input((n_features_in_,)), keras.layers.Dense(n_classes_)])

    clf = KerasClassifier(
        model=logits,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **FAST,
    ).fit(X, y)
    proba = clf.predict_proba(X)
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_one_class_is_an_error():
    with pytest.raises(ValueError, match="one class"):
        KerasClassifier(**FAST).fit(X, np.zeros(len(X)))


def test_regressor_single_and_multi_output():
    reg = KerasRegressor(learning_rate=0.01, epochs=30, random_state=0).fit(Xr, yr)
    assert reg.n_outputs_ == 2
    pred = reg.predict(Xr)
    assert pred.shape == (len(Xr), 2)
    assert pred.dtype == np.float64
    assert reg.score(Xr, yr) > 0.5
    reg1 = KerasRegressor(**FAST).fit(Xr, yr[:, 0])
    assert reg1.predict(Xr).shape == (len(Xr),)
    reg2 = KerasRegressor(**FAST).fit(Xr, yr[:, :1])
    assert reg2.predict(Xr).shape == (len(Xr), 1)
    np.testing.assert_array_equal(reg1.predict(Xr), reg2.predict(Xr)[:, 0])


def test_user_functional_regressor_with_meta():
    reg = KerasRegressor(model=build_functional, model__width=6, **FAST).fit(Xr, yr)
    assert reg.predict(Xr).shape == (len(Xr), 2)
    assert reg.model_.layers[1].units == 6


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
def test_feature_names_and_n_features():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = KerasClassifier(**FAST).fit(frame, y)
    assert clf.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :3])


# -- pickling and cloning -------------------------------------------------------------


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_pickle_round_trip(dumps):
    for est, data in (
        (KerasClassifier(**FAST), (X, y)),
        (KerasClassifier(model=build_mlp, model__hidden=4, **FAST), (X, y)),
        (KerasRegressor(model=build_functional, **FAST), (Xr, yr)),
    ):
        est.fit(*data)
        _ = est.model_  # a live model view must not end up in the pickle
        expected = est.predict(data[0])
        blob = dumps(est)
        assert b"_model_view" not in blob
        again = pickle.loads(blob)
        trace_cache.clear_cache()  # as in another process: rebuilt from recipe and weights
        np.testing.assert_array_equal(again.predict(data[0]), expected)


def test_clone_of_fitted_is_unfitted():
    clf = KerasClassifier(**FAST).fit(X, y)
    twin = clone(clf)
    with pytest.raises(NotFittedError):
        twin.predict(X)
    assert not hasattr(twin, "classes_")


# -- fit options ------------------------------------------------------------------------


def test_early_stopping_callback_survives_clone_and_is_not_mutated():
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    clf = KerasClassifier(callbacks=[stop], epochs=50, random_state=0)
    twin = clone(clf)
    assert isinstance(twin.callbacks[0], keras.callbacks.EarlyStopping)
    twin.fit(X, y)
    assert twin.fit_path_ == "keras"
    assert len(twin.history_["loss"]) < 50
    # the parameter objects themselves never trained (each fit uses a copy)
    assert twin.callbacks[0].stopped_epoch == 0
    assert stop.stopped_epoch == 0


def test_validation_split_and_fit_kwargs():
    clf = KerasClassifier(validation_split=0.2, **FAST).fit(X, y)
    assert "val_loss" in clf.history_
    assert clf.fit_path_ == "keras"
    clf = KerasClassifier(**FAST).fit(X, y, validation_data=(X[:20], y[:20]), epochs=2)
    assert len(clf.history_["val_loss"]) == 2
    clf = KerasClassifier(fit__shuffle=False, **FAST).fit(X, y)
    assert clf.fit_path_ == "fast"
    es = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1)
    clf = KerasClassifier(epochs=40, random_state=0).fit(
        X, y, callbacks=[es], validation_split=0.25
    )
    assert len(clf.history_["loss"]) <= 40


def test_sample_weight_and_class_weight():
    base = KerasClassifier(learning_rate=0.05, epochs=10, random_state=0).fit(X, y)
    ones = KerasClassifier(learning_rate=0.05, epochs=10, random_state=0).fit(
        X, y, sample_weight=np.ones(len(X))
    )
    np.testing.assert_array_equal(base.predict_proba(X), ones.predict_proba(X))
    # all weight on class 0: (almost) everything is predicted as 0
    weights = np.where(y == 0, 1.0, 1e-4)
    heavy = KerasClassifier(learning_rate=0.05, epochs=10, random_state=0)
    assert (heavy.fit(X, y, sample_weight=weights).predict(X) == 0).mean() > 0.8
    cw = KerasClassifier(
        class_weight={0: 1.0, 1: 1e-4, 2: 1e-4}, learning_rate=0.05, epochs=10, random_state=0
    ).fit(X, y)
    assert (cw.predict(X) == 0).mean() > 0.8
    assert clone(cw).class_weight == {0: 1.0, 1: 1e-4, 2: 1e-4}
    balanced = KerasClassifier(class_weight="balanced", **FAST).fit(X[:60], y[:60])
    assert balanced.predict(X).shape == (len(X),)
    # class_weight given to fit, by label
    labels = np.array(["a", "b", "c"])[y]
    by_label = KerasClassifier(learning_rate=0.05, epochs=10, random_state=0).fit(
        X, labels, class_weight={"a": 1.0, "b": 1e-4, "c": 1e-4}
    )
    assert (by_label.predict(X) == "a").mean() > 0.8


def test_seed_grid_runs_in_gridsearchcv():
    grid = {"units": [8, 16], "learning_rate": [0.001, 0.01], "batch_size": [16], "epochs": [2]}
    search = GridSearchCV(KerasClassifier(random_state=0), grid, cv=2).fit(X, y)
    assert set(search.best_params_) == set(grid)
    assert search.best_estimator_.predict(X).shape == (len(X),)


def test_learning_rate_schedule_through_optimizer_params():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=4, decay_rate=0.5)
    clf = KerasClassifier(learning_rate=None, optimizer__learning_rate=schedule, **FAST)
    clf.fit(X, y)  # used to fail: float() of the schedule
    assert clf.fit_path_ == "fast" and clf.n_iter_ == 3
    constant = KerasClassifier(learning_rate=0.05, **FAST).fit(X, y)
    # the schedule decayed the rate, so training took smaller steps than at a constant 0.05
    assert not np.allclose(clf.predict_proba(X), constant.predict_proba(X))


@pytest.mark.parametrize("Estimator", [KerasClassifier, KerasRegressor])
def test_parameter_constraints_cover_every_parameter(Estimator):
    # scikit-learn's own check: one constraint per constructor parameter, and an
    # InvalidParameterError naming the parameter for a value of a wrong type.
    check_param_validation(Estimator.__name__, Estimator(epochs=1))


@pytest.mark.parametrize(
    "fit_params, match",
    [
        ({"epochs": -1}, "'epochs' parameter of KerasClassifier.fit"),
        ({"batch_size": 0}, "'batch_size' parameter of KerasClassifier.fit"),
        ({"validation_split": 1.0}, "'validation_split' parameter of KerasClassifier.fit"),
    ],
)
def test_fit_time_options_follow_the_constructor_rules(fit_params, match):
    with pytest.raises(InvalidParameterError, match=match):
        KerasClassifier(epochs=1).fit(X, y, **fit_params)
