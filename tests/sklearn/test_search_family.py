"""The search family on Ray: randomized and successive-halving searches equal scikit-learn's,
scikit-learn's estimator checks pass as they pass for scikit-learn's classes, and a user's
own BaseSearchCV subclass runs through the documented mixin."""

import numpy as np
import pytest
from compare import assert_cv_results_equal
from scipy.stats import loguniform, randint
from sklearn.datasets import make_classification
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    RandomizedSearchCV,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from raygrid import (
    RayGridSearchCV,
    RayHalvingGridSearchCV,
    RayHalvingRandomSearchCV,
    RayRandomizedSearchCV,
    RaySearchMixin,
)

X, y = make_classification(n_samples=300, n_features=8, n_informative=5, random_state=0)
TWINS = {
    RayGridSearchCV: GridSearchCV,
    RayRandomizedSearchCV: RandomizedSearchCV,
    RayHalvingGridSearchCV: HalvingGridSearchCV,
    RayHalvingRandomSearchCV: HalvingRandomSearchCV,
}
HALVING_ATTRIBUTES = (
    "n_resources_",
    "n_candidates_",
    "n_remaining_candidates_",
    "max_resources_",
    "min_resources_",
    "n_iterations_",
    "n_possible_iterations_",
    "n_required_iterations_",
)


def _compare(ours, theirs):
    assert_cv_results_equal(ours.cv_results_, theirs.cv_results_)
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_score_ == theirs.best_score_
    for name in HALVING_ATTRIBUTES:
        if hasattr(theirs, name):
            assert getattr(ours, name) == getattr(theirs, name), name


@pytest.mark.parametrize("random_state", [0, 7])
def test_randomized_search_samples_and_scores_as_scikit_learn(random_state):
    space = {"C": loguniform(1e-3, 1e2), "fit_intercept": [True, False]}
    kwargs = dict(n_iter=6, cv=3, random_state=random_state, return_train_score=True)
    theirs = RandomizedSearchCV(LogisticRegression(), space, **kwargs).fit(X, y)
    ours = RayRandomizedSearchCV(LogisticRegression(), space, progress=False, **kwargs).fit(X, y)
    _compare(ours, theirs)


@pytest.mark.parametrize("resource", ["n_samples", "max_depth"])
def test_halving_grid_search_as_scikit_learn(resource):
    grid = {"min_samples_split": [2, 4, 8, 16], "criterion": ["gini", "entropy"]}
    kwargs = dict(factor=2, resource=resource, random_state=0)
    if resource == "max_depth":
        kwargs.update(max_resources=8, min_resources=1)
    estimator = DecisionTreeClassifier(random_state=0)
    theirs = HalvingGridSearchCV(estimator, grid, **kwargs).fit(X, y)
    ours = RayHalvingGridSearchCV(estimator, grid, progress=False, **kwargs).fit(X, y)
    assert ours.n_iterations_ > 1
    _compare(ours, theirs)
    # tasks_ says which iteration each fit belonged to and on how many resources.
    by_candidate = ours.tasks_.groupby("candidate")[["iter", "n_resources"]].first()
    np.testing.assert_array_equal(by_candidate["iter"], ours.cv_results_["iter"])
    np.testing.assert_array_equal(by_candidate["n_resources"], ours.cv_results_["n_resources"])


def test_halving_random_search_as_scikit_learn():
    space = {"max_depth": randint(1, 12), "min_samples_leaf": randint(1, 20)}
    kwargs = dict(n_candidates=12, factor=3, random_state=3)
    estimator = DecisionTreeClassifier(random_state=0)
    theirs = HalvingRandomSearchCV(estimator, space, **kwargs).fit(X, y)
    ours = RayHalvingRandomSearchCV(estimator, space, progress=False, **kwargs).fit(X, y)
    _compare(ours, theirs)


class AdaptiveSearchCV(GridSearchCV):
    """A user's own search: a first wave, then a second one chosen from its results."""

    def _run_search(self, evaluate_candidates):
        results = evaluate_candidates([{"C": 0.01}, {"C": 1.0}])
        best = results["params"][int(np.argmax(results["mean_test_score"]))]["C"]
        evaluate_candidates([{"C": best * 10}, {"C": best / 10}])


class RayAdaptiveSearchCV(AdaptiveSearchCV, RaySearchMixin):
    pass


def test_user_search_class_runs_on_the_engine_through_the_mixin():
    theirs = AdaptiveSearchCV(LogisticRegression(), {}, cv=3).fit(X, y)
    ours = RayAdaptiveSearchCV(LogisticRegression(), {}, cv=3).fit(X, y)
    assert len(ours.cv_results_["params"]) == 4
    _compare(ours, theirs)
    assert len(ours.tasks_) == 12 and ours.tasks_["candidate"].max() == 3


# Base estimators and the parameter each search varies.
BASES = [
    (LogisticRegression(), "C"),
    (Ridge(), "alpha"),
    (make_pipeline(StandardScaler(), LogisticRegression()), "logisticregression__C"),
]


def _instances():
    out = []
    for ours, theirs in TWINS.items():
        for base, name in BASES:
            kwargs = {"cv": 2}
            if theirs in (RandomizedSearchCV, HalvingRandomSearchCV):
                kwargs["random_state"] = 0
            if theirs is RandomizedSearchCV:
                kwargs["n_iter"] = 2
            out.append(ours(base, {name: [0.1, 1.0]}, progress=False, **kwargs))
    return out


def _twin(search):
    """scikit-learn's class with the same parameters (raygrid's options left out)."""
    theirs = TWINS[type(search)]
    names = set(theirs._get_param_names())
    return theirs(**{k: v for k, v in search.get_params(deep=False).items() if k in names})


@parametrize_with_checks(_instances())
def test_estimator_checks_pass_where_they_pass_for_scikit_learn(estimator, check):
    try:
        check(_twin(estimator))
    except Exception as exc:
        pytest.skip(f"fails for scikit-learn's own class too: {type(exc).__name__}")
    check(estimator)


def test_halving_search_resumes_from_its_journal_and_reports(tmp_path, capsys):
    """results_dir, tasks_, save_results and raygrid report work for a halving search."""
    from raygrid.cli import main as cli

    grid = {"min_samples_split": [2, 4, 8, 16], "criterion": ["gini", "entropy"]}
    kwargs = dict(factor=2, random_state=0, results_dir=tmp_path / "journal", progress=False)
    estimator = DecisionTreeClassifier(random_state=0)
    first = RayHalvingGridSearchCV(estimator, grid, **kwargs).fit(X, y)
    assert not first.tasks_["resumed"].any()
    again = RayHalvingGridSearchCV(estimator, grid, **kwargs).fit(X, y)
    assert again.tasks_["resumed"].all()
    assert_cv_results_equal(again.cv_results_, first.cv_results_)

    again.save_results(tmp_path / "saved")
    argv = ["report", str(tmp_path / "saved"), "--out", str(tmp_path / "figures")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "min_samples_split" in out and len(list((tmp_path / "figures").glob("*.png"))) >= 2
