"""Warnings raised in fits reach the user as scikit-learn shows them: same count, same kinds.

scikit-learn runs each fit under its own ``warnings.catch_warnings()``, so a warning that
every fit raises is shown once per fit. raygrid replays each fit's warnings on the driver
with a registry of that fit's own.
"""

import warnings
from collections import Counter

import pytest
from estimators import ConfigProbeRidge
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

from raygrid import RayGridSearchCV, RayRandomizedSearchCV

X, y = make_classification(n_samples=80, n_features=5, random_state=0)


def shown(make_search):
    """The (category, first line of message) of every warning a user would see."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        make_search().fit(X, y)
    return Counter((w.category.__name__, str(w.message).splitlines()[0]) for w in caught)


@pytest.mark.parametrize(
    "theirs, ours, extra",
    [
        (GridSearchCV, RayGridSearchCV, {}),
        (RandomizedSearchCV, RayRandomizedSearchCV, {"n_iter": 4, "random_state": 0}),
    ],
)
def test_fit_warnings_shown_as_scikit_learn_shows_them(theirs, ours, extra):
    grid = {"C": [0.01, 0.1, 1.0, 10.0]}
    estimator = LogisticRegression(max_iter=2)  # every fit stops short: ConvergenceWarning
    expected = shown(lambda: theirs(estimator, grid, cv=3, **extra))
    got = shown(lambda: ours(estimator, grid, cv=3, progress=False, **extra))
    assert got == expected
    # one per fit (12 fold fits and the refit), not one per search
    assert sum(n for (kind, _), n in expected.items() if kind == "ConvergenceWarning") == 13


def failure_message(make_search):
    """What ``fit`` raises when every fit fails under an "error" filter: the text before
    the tracebacks, and each traceback's last line (the warning turned error)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ValueError, match="fits failed") as info:
            make_search().fit(X, y)
    text = str(info.value)
    head, _, rest = text.partition("Traceback")
    last_lines = [
        line for line in text.splitlines() if line.startswith(ConvergenceWarning.__module__)
    ]
    return head, sorted(set(last_lines)), rest != ""


@pytest.mark.parametrize(
    "theirs, ours, extra",
    [
        (GridSearchCV, RayGridSearchCV, {}),
        (RandomizedSearchCV, RayRandomizedSearchCV, {"n_iter": 2, "random_state": 0}),
    ],
)
def test_error_filters_fail_the_fits_as_in_scikit_learn(theirs, ours, extra):
    """scikit-learn's Parallel carries the caller's filters into its workers: so do we."""
    grid = {"C": [0.1, 1.0]}
    estimator = LogisticRegression(max_iter=1)  # every fit warns: ConvergenceWarning
    expected = failure_message(lambda: theirs(estimator, grid, cv=3, **extra))
    got = failure_message(lambda: ours(estimator, grid, cv=3, progress=False, **extra))
    assert expected[0].startswith("\nAll the 6 fits failed.")
    assert got == expected


def test_scikit_learns_config_applies_inside_every_fit():
    from sklearn import config_context

    grid = {"alpha": [0.1, 1.0]}
    with config_context(transform_output="pandas"):
        ours = RayGridSearchCV(
            ConfigProbeRidge(expect="pandas"), grid, cv=3, error_score="raise", progress=False
        ).fit(X, y)
        theirs = GridSearchCV(ConfigProbeRidge(expect="pandas"), grid, cv=3).fit(X, y)
    assert list(ours.cv_results_["mean_test_score"]) == list(theirs.cv_results_["mean_test_score"])
