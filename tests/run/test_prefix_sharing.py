"""Exact prefix sharing: fits that differ only in a training-length parameter train once.

Every search here is compared with scikit-learn's GridSearchCV on the same seeded
estimator: cv_results_ must be equal (times aside), and tasks_ must show which fits were
scored on the way through another's training (``trained_with``).
"""

import numpy as np
import pytest
from compare import assert_cv_results_equal
from estimators import StepRegressor
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from raygrid import RayGridSearchCV, RayHalvingGridSearchCV

Xc, yc = make_classification(n_samples=120, n_features=6, random_state=0)
Xr, yr = make_regression(n_samples=120, n_features=5, noise=3.0, random_state=0)


def both(estimator, grid, X, y, **kwargs):
    theirs = GridSearchCV(estimator, grid, cv=3, **kwargs).fit(X, y)
    ours = RayGridSearchCV(estimator, grid, cv=3, progress=False, **kwargs).fit(X, y)
    assert_cv_results_equal(ours.cv_results_, theirs.cv_results_)
    if kwargs.get("refit", True):
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    return ours


def trained_elsewhere(search):
    tasks = search.tasks_
    return int((tasks["trained_with"] != tasks["candidate"]).sum())


FAMILIES = {
    "random-forest": (
        RandomForestClassifier(random_state=0),
        {"n_estimators": [3, 7, 12], "max_depth": [2, 4]},
        Xc,
        yc,
    ),
    "extra-trees": (
        ExtraTreesRegressor(random_state=0),
        {"n_estimators": [4, 9], "min_samples_leaf": [1, 3]},
        Xr,
        yr,
    ),
    "gradient-boosting": (
        GradientBoostingRegressor(random_state=0, subsample=0.8),
        {"n_estimators": [10, 25, 40], "learning_rate": [0.1, 0.3]},
        Xr,
        yr,
    ),
    "gradient-boosting-classifier": (
        GradientBoostingClassifier(random_state=0),
        {"n_estimators": [5, 15]},
        Xc,
        yc,
    ),
    "pipeline": (
        make_pipeline(StandardScaler(), RandomForestClassifier(random_state=1)),
        {"randomforestclassifier__n_estimators": [2, 6, 10]},
        Xc,
        yc,
    ),
    "own-protocol": (StepRegressor(), {"n_steps": [5, 20, 60], "lr": [0.05, 0.2]}, Xr, yr),
}


@pytest.mark.parametrize("family", FAMILIES.values(), ids=FAMILIES.keys())
def test_shared_training_gives_scikit_learns_results(family):
    estimator, grid, X, y = family
    search = both(estimator, grid, X, y, return_train_score=True)
    values = [v for k, v in grid.items() if k.endswith(("n_estimators", "n_steps"))][0]
    # every value but the largest was scored on the largest one's training
    n_other = len(search.cv_results_["params"]) // len(values)
    assert trained_elsewhere(search) == (len(values) - 1) * n_other * 3


def test_each_record_keeps_the_time_to_reach_its_value():
    grid = {"n_estimators": [5, 50, 200]}
    search = RayGridSearchCV(RandomForestClassifier(random_state=0), grid, cv=3).fit(Xc, yc)
    fit_times = search.cv_results_["mean_fit_time"]
    assert fit_times[0] < fit_times[1] < fit_times[2]


@pytest.mark.parametrize(
    "estimator, grid",
    [
        # early stopping inside gradient boosting: more stages are not a continuation
        (
            GradientBoostingRegressor(random_state=0, n_iter_no_change=2),
            {"n_estimators": [10, 30]},
        ),
        # a step length sized from n_steps: the estimator declares nothing shareable
        (StepRegressor(schedule="decay"), {"n_steps": [5, 20]}),
        # warm_start set by the user: continuation is theirs, not ours to assume
        (RandomForestClassifier(random_state=0, warm_start=True), {"n_estimators": [3, 6]}),
    ],
    ids=["gb-early-stopping", "size-dependent-schedule", "user-warm-start"],
)
def test_not_exactly_shareable_runs_unshared(estimator, grid):
    X, y = (Xc, yc) if "Classifier" in type(estimator).__name__ else (Xr, yr)
    search = both(estimator, grid, X, y)
    assert trained_elsewhere(search) == 0


def test_sharing_can_be_turned_off():
    grid = {"n_steps": [5, 20]}
    search = RayGridSearchCV(StepRegressor(), grid, cv=3, share_prefixes=False).fit(Xr, yr)
    assert trained_elsewhere(search) == 0


@pytest.mark.parametrize("error_score", [np.nan, -1.0])
def test_a_shared_training_that_fails_fails_only_the_values_it_did_not_reach(error_score):
    grid = {"n_steps": [5, 10, 20]}
    estimator = StepRegressor(fail_after=12)
    with pytest.warns(Warning):
        search = both(estimator, grid, Xr, yr, error_score=error_score, refit=False)
    errors = search.tasks_.groupby("candidate")["error"].apply(lambda e: e.notna().all())
    assert errors.tolist() == [False, False, True]


HALVING = {
    "own-protocol": (
        StepRegressor(),
        {"lr": list(np.geomspace(0.005, 0.5, 9))},
        "n_steps",
        Xr,
        yr,
    ),
    "random-forest": (
        RandomForestClassifier(random_state=0),
        {"max_depth": [1, 2, 3, 5, 8], "min_samples_leaf": [1, 4]},
        "n_estimators",
        Xc,
        yc,
    ),
}


@pytest.mark.parametrize("case", HALVING.values(), ids=HALVING.keys())
def test_halving_continues_survivors_fits_with_retrained_results(case):
    estimator, grid, resource, X, y = case
    kwargs = dict(resource=resource, min_resources=4, max_resources=36, factor=3, cv=3)
    theirs = HalvingGridSearchCV(estimator, grid, random_state=0, **kwargs).fit(X, y)
    ours = RayHalvingGridSearchCV(estimator, grid, random_state=0, progress=False, **kwargs)
    ours.fit(X, y)
    assert ours.n_iterations_ == theirs.n_iterations_ >= 3
    assert ours.n_resources_ == theirs.n_resources_
    assert_cv_results_equal(ours.cv_results_, theirs.cv_results_)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    # every fit after the first iteration trained on from the previous iteration's state
    later = ours.tasks_[ours.tasks_["iter"] > 0]
    previous = {r: ours.n_resources_[i - 1] for i, r in enumerate(ours.n_resources_) if i}
    assert (later["continued_from"] == later["n_resources"].map(previous)).all()
    assert ours.tasks_[ours.tasks_["iter"] == 0]["continued_from"].isna().all()
