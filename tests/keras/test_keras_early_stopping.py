"""When raygrid.keras stops training: the default epoch policy, early stopping in the
compiled loop (same epoch and weights as Keras' own callback), no leakage of a fold's test
part in a search, and user callbacks on the model.fit path."""

import os
import uuid
import warnings

import keras
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from raygrid import RayGridSearchCV
from raygrid.keras import KerasClassifier, KerasRegressor

X, y = make_classification(
    n_samples=200, n_features=8, n_informative=5, n_classes=3, random_state=0
)
X = StandardScaler().fit_transform(X)
Xr, yr = make_regression(n_samples=200, n_features=6, noise=20.0, random_state=0)
Xr = StandardScaler().fit_transform(Xr)
yr = (yr - yr.mean()) / yr.std()

# A configuration that overfits quickly, so that early stopping triggers within ~20 epochs.
QUICK = {"units": 64, "learning_rate": 0.05, "random_state": 0}


def expected_stop(curve, tol, patience):
    """Epochs run and best (1-based) epoch under Keras' EarlyStopping rule, in Python."""
    best, best_epoch, wait = None, 0, 0
    for epoch, value in enumerate(curve):
        wait += 1
        if best is None or np.float32(value + tol) < np.float32(best):
            best, best_epoch, wait = value, epoch, 0
        elif wait >= patience and epoch > 0:
            return epoch + 1, best_epoch + 1
    return len(curve), best_epoch + 1


# -- the default epoch policy -----------------------------------------------------------


def test_default_stops_on_a_training_loss_plateau_and_warns_at_max_iter():
    clf = KerasClassifier(learning_rate=0.05, random_state=0).fit(X, y)
    assert clf.fit_path_ == "fast"
    assert 10 < clf.n_iter_ < 200
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.best_epoch_ is None
    assert expected_stop(clf.loss_curve_, 1e-4, 10)[0] == clf.n_iter_
    assert not hasattr(clf, "validation_indices_")
    assert not hasattr(clf, "validation_loss_curve_")
    # same stopping on the model.fit path
    slow = KerasClassifier(learning_rate=0.05, random_state=0, fast_path=False).fit(X, y)
    assert (slow.fit_path_, slow.n_iter_) == ("keras", clf.n_iter_)
    np.testing.assert_array_equal(slow.predict_proba(X), clf.predict_proba(X))
    # a larger tol or a smaller patience stops sooner
    assert KerasClassifier(learning_rate=0.05, tol=0.05, random_state=0).fit(X, y).n_iter_ < (
        clf.n_iter_
    )
    with pytest.warns(ConvergenceWarning, match="max_iter=5"):
        short = KerasClassifier(max_iter=5, random_state=0).fit(X, y)
    assert short.n_iter_ == 5


def test_explicit_epochs_means_exactly_that_many():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = KerasClassifier(epochs=60, learning_rate=0.05, tol=0.5, random_state=0).fit(X, y)
    assert clf.n_iter_ == len(clf.loss_curve_) == 60
    assert clf.fit(X, y, epochs=3).n_iter_ == 3
    assert KerasRegressor(epochs=0, random_state=0).fit(Xr, yr).n_iter_ == 0
    # with early stopping, epochs replaces max_iter as the maximum
    capped = KerasClassifier(epochs=4, early_stopping=True, **QUICK).fit(X, y)
    assert capped.n_iter_ == 4


# -- early stopping -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_fast_early_stopping_equals_keras_early_stopping_callback(kind):
    """Same split and seed: the compiled loop stops at the epoch Keras' callback stops at,
    keeps the same epoch's weights, and model.fit with the same parameters agrees too."""
    Estimator, data, target = (
        (KerasClassifier, X, y) if kind == "classifier" else (KerasRegressor, Xr, yr)
    )
    fast = Estimator(early_stopping=True, n_iter_no_change=5, **QUICK).fit(data, target)
    assert fast.fit_path_ == "fast"
    held = fast.validation_indices_
    kept = np.setdiff1d(np.arange(len(data)), held)

    callback = keras.callbacks.EarlyStopping(
        monitor="val_loss", min_delta=1e-4, patience=5, restore_best_weights=True
    )
    reference = Estimator(epochs=200, **QUICK).fit(  # fit's callbacks are used as given
        data[kept], target[kept], callbacks=[callback], validation_data=(data[held], target[held])
    )
    assert reference.fit_path_ == "keras"
    assert 0 < callback.stopped_epoch < 199  # it did stop early
    assert fast.n_iter_ == reference.n_iter_ == callback.stopped_epoch + 1
    assert fast.best_epoch_ == reference.best_epoch_ == callback.best_epoch + 1
    assert fast.best_epoch_ < fast.n_iter_
    for ours, theirs in zip(
        fast.model_.get_weights(), reference.model_.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(
        fast.validation_loss_curve_, reference.history_["val_loss"], rtol=1e-6
    )
    np.testing.assert_allclose(fast.loss_curve_, reference.history_["loss"], rtol=1e-6)

    slow = Estimator(early_stopping=True, n_iter_no_change=5, fast_path=False, **QUICK)
    slow.fit(data, target)
    assert (slow.fit_path_, slow.n_iter_, slow.best_epoch_) == (
        "keras",
        fast.n_iter_,
        fast.best_epoch_,
    )
    np.testing.assert_array_equal(slow.validation_indices_, held)
    np.testing.assert_array_equal(slow.predict(data), fast.predict(data))


def test_best_epoch_weights_are_kept_and_the_split_is_stratified_and_seeded():
    clf = KerasClassifier(early_stopping=True, validation_fraction=0.2, **QUICK).fit(X, y)
    held = clf.validation_indices_
    assert held.dtype.kind == "i" and len(held) == 40
    assert np.array_equal(held, np.unique(held)) and held.max() < len(X)
    assert np.abs(np.bincount(y[held]) - np.bincount(y) * 0.2).max() <= 1  # stratified
    curve = clf.validation_loss_curve_
    assert len(curve) == len(clf.loss_curve_) == clf.n_iter_
    assert (clf.n_iter_, clf.best_epoch_) == expected_stop(curve, 1e-4, 10)
    # the model holds the best epoch's weights: its loss on the held-out rows is that epoch's
    best_loss = log_loss(y[held], clf.predict_proba(X[held]), labels=clf.classes_)
    assert best_loss == pytest.approx(curve[clf.best_epoch_ - 1], rel=1e-5)
    assert best_loss < curve[-1]

    again = KerasClassifier(early_stopping=True, validation_fraction=0.2, **QUICK).fit(X, y)
    np.testing.assert_array_equal(again.validation_indices_, held)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    other = clone(clf).set_params(random_state=1).fit(X, y)
    assert not np.array_equal(other.validation_indices_, held)

    # indices refer to the X given to fit; turning early stopping off drops them
    sub = clone(clf).fit(X[50:150], y[50:150])
    assert len(sub.validation_indices_) == 20 and sub.validation_indices_.max() < 100
    sub.set_params(early_stopping=False, epochs=2).fit(X, y)
    assert not hasattr(sub, "validation_indices_") and sub.best_epoch_ is None


def test_early_stopping_with_sample_weight_and_regressor_curves():
    sw = np.linspace(0.5, 2.0, len(Xr))
    reg = KerasRegressor(early_stopping=True, **QUICK).fit(Xr, yr, sample_weight=sw)
    assert reg.fit_path_ == "fast" and reg.best_epoch_ <= reg.n_iter_
    held = reg.validation_indices_
    weighted_mse = np.sum(sw[held] * (reg.predict(Xr[held]) - yr[held]) ** 2) / len(held)
    assert weighted_mse == pytest.approx(reg.validation_loss_curve_[reg.best_epoch_ - 1], rel=1e-4)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"n_iter_no_change": 0}, "n_iter_no_change"),
        ({"validation_fraction": 1.0, "early_stopping": True}, "validation_fraction"),
        ({"early_stopping": "yes"}, "early_stopping"),
        ({"epochs": -1}, "epochs"),
        ({"early_stopping": True, "validation_split": 0.2}, "validation_split"),
    ],
)
def test_invalid_stopping_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        KerasClassifier(**params).fit(X, y)


def test_early_stopping_refuses_validation_data_and_too_small_a_split():
    with pytest.raises(ValueError, match="validation_data"):
        KerasClassifier(early_stopping=True).fit(X, y, validation_data=(X[:10], y[:10]))
    with pytest.raises(ValueError, match="cannot hold out"):
        KerasClassifier(early_stopping=True, validation_fraction=0.01).fit(X[:100], y[:100])


# -- user callbacks stay on model.fit ------------------------------------------------------


def test_user_callbacks_take_the_model_fit_path():
    reduce = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=1)
    clf = KerasClassifier(callbacks=[reduce], epochs=4, learning_rate=0.01, random_state=0)
    clf.fit(X, y)
    assert clf.fit_path_ == "keras" and clf.n_iter_ == 4
    rates = clf.history_["learning_rate"]
    assert rates[-1] < rates[0] == pytest.approx(0.01)

    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    clf = KerasClassifier(callbacks=[stop], validation_split=0.2, epochs=100, **QUICK).fit(X, y)
    assert clf.fit_path_ == "keras" and clf.n_iter_ < 100
    assert clf.best_epoch_ == int(np.argmin(clf.validation_loss_curve_)) + 1
    # the callbacks' own default epoch policy: up to max_iter, training-loss plateau
    auto = KerasClassifier(callbacks=[reduce], learning_rate=0.05, random_state=0).fit(X, y)
    assert auto.fit_path_ == "keras" and auto.n_iter_ < 200


# -- no leakage of a fold's test part in a search -----------------------------------------


class RecordingClassifier(KerasClassifier):
    """KerasClassifier that saves, per fit, the feature rows it held out for early stopping."""

    def __init__(self, model=None, *, record_dir=None, **kwargs):
        super().__init__(model, **kwargs)
        self.record_dir = record_dir

    @classmethod
    def _get_param_names(cls):
        return sorted({*KerasClassifier._get_param_names(), "record_dir"})

    def fit(self, X, y, sample_weight=None, **fit_params):
        super().fit(X, y, sample_weight=sample_weight, **fit_params)
        if self.record_dir is not None:
            rows = np.asarray(X)[self.validation_indices_]
            np.save(os.path.join(self.record_dir, f"{uuid.uuid4().hex}.npy"), rows)
        return self


def flipped_folds():
    """Three folds whose test parts have flipped labels and never appear in a train part."""
    Xl, yl = make_classification(n_samples=240, n_features=10, n_informative=5, random_state=3)
    Xl = StandardScaler().fit_transform(Xl)
    yl[180:] = 1 - yl[180:]
    clean, flipped = np.arange(180), np.arange(180, 240)
    splits = [
        (np.setdiff1d(clean, part), test)
        for part, test in zip(np.array_split(clean, 3), np.array_split(flipped, 3), strict=True)
    ]
    return Xl, yl, splits


def test_search_with_early_stopping_never_sees_the_test_part(tmp_path):
    Xl, yl, splits = flipped_folds()
    grid = {"units": [16, 32]}
    base = RecordingClassifier(early_stopping=True, learning_rate=0.01, random_state=0)
    search = RayGridSearchCV(
        clone(base).set_params(record_dir=str(tmp_path)), grid, cv=splits, progress=False
    )
    search.fit(Xl, yl)

    leaked = []
    for i, params in enumerate(search.cv_results_["params"]):
        for k, (train, test) in enumerate(splits):
            # the same seeded estimator, fitted here on the fold's training part only
            alone = clone(base).set_params(**params).fit(Xl[train], yl[train])
            assert search.cv_results_[f"split{k}_test_score"][i] == alone.score(Xl[test], yl[test])
            # tasks_ holds each fold's stopping facts (cv_results_ stays scikit-learn's)
            row = search.tasks_.query(f"candidate == {i} and split == {k}").iloc[0]
            assert (row["n_iter"], row["best_epoch"]) == (alone.n_iter_, alone.best_epoch_)
            assert row["validation_loss_curve"] == pytest.approx(alone.validation_loss_curve_)
            # what the score would be had the test part been the early-stopping data
            stop = keras.callbacks.EarlyStopping(
                monitor="val_loss", min_delta=1e-4, patience=10, restore_best_weights=True
            )
            leaky = clone(base).set_params(epochs=200, early_stopping=False, callbacks=[stop])
            leaky.set_params(**params).fit(
                Xl[train], yl[train], validation_data=(Xl[test], yl[test])
            )
            leaked.append(leaky.score(Xl[test], yl[test]))
    assert not any(key.startswith(("param_n_iter", "best_epoch")) for key in search.cv_results_)
    # the flipped test parts are unlearnable; peeking at them would have shown
    assert np.mean(search.cv_results_["mean_test_score"]) + 0.1 < np.mean(leaked)

    # every fit's validation rows were rows of that fit's training part
    where = {row.tobytes(): index for index, row in enumerate(Xl)}
    records = [np.load(tmp_path / name) for name in sorted(os.listdir(tmp_path))]
    held = [np.array([where[row.tobytes()] for row in rows]) for rows in records]
    fold_fits = [rows for rows in held if len(rows) == 12]  # 10% of 120 training rows
    refits = [rows for rows in held if len(rows) == 24]  # 10% of all 240 rows
    assert len(fold_fits) == 6 and len(refits) == 1 and len(held) == 7
    for rows in fold_fits:
        assert sum(np.isin(rows, train).all() for train, _ in splits) >= 1
        assert not np.isin(rows, np.arange(180, 240)).any()
    assert search.best_estimator_.validation_indices_.tolist() == sorted(refits[0].tolist())
