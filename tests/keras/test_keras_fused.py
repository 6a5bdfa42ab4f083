"""Fused training: the seed grid's fusable groups trained as stacked models pick the same
best parameters as unfused fits; what fuses and what does not."""

import itertools
import os
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid, StratifiedKFold

from raygrid.keras import KerasClassifier, KerasRegressor
from raygrid.keras import fused as fused_module
from raygrid.keras.fused import fit_fused, fusion_key, trace_counts

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from seed_grid_search import SEED_GRID, seed_data  # noqa: E402

X, _, y, _ = seed_data()
FOLDS = list(StratifiedKFold(3).split(X, y))


def test_fused_seed_grid_picks_the_same_best_parameters():
    base = KerasClassifier(random_state=0)
    candidates = list(ParameterGrid(SEED_GRID))
    unfused = np.zeros((len(candidates), len(FOLDS)))
    fused = np.zeros_like(unfused)
    for units, batch in itertools.product(SEED_GRID["units"], SEED_GRID["batch_size"]):
        chosen = [
            i for i, c in enumerate(candidates) if (c["units"], c["batch_size"]) == (units, batch)
        ]
        jobs = [(candidates[i], train) for i in chosen for train, _ in FOLDS]
        fitted = fit_fused(base, X, y, jobs)
        for k, estimator in enumerate(fitted):
            i, f = chosen[k // len(FOLDS)], k % len(FOLDS)
            train, test = FOLDS[f]
            assert estimator.fit_path_ == "fused"
            assert estimator.n_iter_ == len(estimator.loss_curve_) == candidates[i]["epochs"]
            fused[i, f] = estimator.score(X[test], y[test])
            alone = clone(base).set_params(**candidates[i]).fit(X[train], y[train])
            unfused[i, f] = alone.score(X[test], y[test])
            # last-bit differences grow over 20 epochs (measured up to 5.5e-3)
            np.testing.assert_allclose(
                estimator.predict_proba(X), alone.predict_proba(X), atol=0.02
            )
            np.testing.assert_allclose(estimator.loss_curve_, alone.loss_curve_, rtol=1e-2)
    assert np.argmax(fused.mean(axis=1)) == np.argmax(unfused.mean(axis=1))
    assert np.abs(fused - unfused).max() <= 0.02
    assert all(count == 1 for count in trace_counts().values())


def test_dropout_and_regression_fuse_and_learn():
    Y = np.column_stack([X[:, 0] - X[:, 1], X[:, 2]])
    base = KerasRegressor(units=16, epochs=30, random_state=0)
    jobs = [
        ({"dropout_rate": rate, "learning_rate": lr, "random_state": seed}, train)
        for (rate, lr, seed), (train, _) in zip(
            [(0.0, 0.01, 0), (0.3, 0.01, 1), (0.5, 0.003, 2)], FOLDS, strict=True
        )
    ]
    fitted = fit_fused(base, X, Y, jobs)
    for estimator, (params, train) in zip(fitted, jobs, strict=True):
        assert estimator.predict(X).shape == Y.shape
        assert estimator.loss_curve_[-1] < 0.5 * estimator.loss_curve_[0]
        alone = clone(base).set_params(**params).fit(X[train], Y[train])
        if params["dropout_rate"] == 0.0:
            np.testing.assert_allclose(estimator.predict(X), alone.predict(X), atol=1e-3)
        else:  # own dropout masks: a different draw, a similar fit
            assert estimator.score(X, Y) == pytest.approx(alone.score(X, Y), abs=0.1)


@pytest.mark.parametrize(
    "estimator",
    [
        KerasClassifier(epochs=5),  # unseeded
        KerasClassifier(epochs=None, random_state=0),
        KerasClassifier(epochs=5, optimizer="rmsprop", random_state=0),
        KerasClassifier(epochs=5, optimizer__beta_1=0.8, random_state=0),
        KerasClassifier(epochs=5, loss="categorical_crossentropy", random_state=0),
        KerasClassifier(model=lambda n_features_in_: None, epochs=5, random_state=0),
    ],
)
def test_what_cannot_fuse_has_no_key(estimator):
    assert fusion_key(estimator) is None


def test_keys_separate_architectures_and_batch_sizes_only():
    base = KerasClassifier(epochs=5, random_state=0)
    key = fusion_key(base)
    assert key is not None
    same = dict(learning_rate=0.1, dropout_rate=0.2, epochs=9, random_state=4)
    assert fusion_key(clone(base).set_params(**same)) == key
    assert fusion_key(clone(base).set_params(units=7)) != key
    assert fusion_key(clone(base).set_params(batch_size=7)) != key
    with pytest.raises(ValueError, match="fusion_key"):
        fit_fused(base, X, y, [({}, FOLDS[0][0]), ({"units": 7}, FOLDS[1][0])])


def test_fits_differing_only_in_epochs_share_one_stacked_model(monkeypatch):
    """A 5- and a 12-epoch fit of one (fold, seed, learning rate) train as one model of the
    stack, kept at epoch 5 on the way: the same result as stacking them separately."""
    stacked = []
    stack = fused_module._stacked_data
    monkeypatch.setattr(
        fused_module,
        "_stacked_data",
        lambda plans, enc: stacked.append(len(plans)) or stack(plans, enc),
    )
    base = KerasClassifier(units=16, batch_size=32, random_state=0)
    train = FOLDS[0][0]
    shared = fit_fused(base, X, y, [({"epochs": 5}, train), ({"epochs": 12}, train)])
    assert stacked == [1]
    separate = [
        fit_fused(base, X, y, [({"epochs": 5}, train), ({"epochs": 5}, FOLDS[1][0])])[0],
        fit_fused(base, X, y, [({"epochs": 12}, train), ({"epochs": 12}, FOLDS[1][0])])[0],
    ]
    for one, other in zip(shared, separate, strict=True):
        assert one.n_iter_ == other.n_iter_
        np.testing.assert_array_equal(one.loss_curve_, other.loss_curve_)
        np.testing.assert_array_equal(one.predict_proba(X), other.predict_proba(X))
    assert shared[0].n_iter_ == 5 and shared[1].n_iter_ == 12


def test_a_model_that_sits_steps_out_trains_as_it_would_alone():
    """Models whose epochs or rows run out before the others' skip those steps: each ends
    where it ends when stacked alone (the stack masks its updates, bit for bit)."""
    base = KerasClassifier(units=8, batch_size=32, random_state=0)
    jobs = [
        ({"learning_rate": 0.01, "epochs": 3}, FOLDS[0][0][:100]),  # 4 batches, 3 epochs
        ({"learning_rate": 0.003, "epochs": 6}, FOLDS[1][0][:130]),  # 5 batches, 6 epochs
    ]
    together = fit_fused(base, X, y, jobs)
    for estimator, job in zip(together, jobs, strict=True):
        alone = fit_fused(base, X, y, [job])[0]
        assert estimator.n_iter_ == alone.n_iter_ == job[0]["epochs"]
        np.testing.assert_array_equal(estimator.loss_curve_, alone.loss_curve_)
        np.testing.assert_array_equal(estimator.predict_proba(X), alone.predict_proba(X))
