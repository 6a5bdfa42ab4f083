"""Warnings raised in fits reach the user as scikit-learn shows them: same count, same kinds.

scikit-learn runs each fit under its own ``warnings.catch_warnings()``, so a warning that
every fit raises is shown once per fit. raygrid replays each fit's warnings on the driver
with a registry of that fit's own.
"""

import warnings
from collections import Counter

import pytest
from sklearn.datasets import make_classification
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
