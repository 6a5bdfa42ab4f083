"""Bad input fails before any work is scheduled, with an error naming what was wrong."""

import threading

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.svm import SVC

from raygrid import RayGridSearchCV, execute

X, y = make_classification(n_samples=40, n_features=4, random_state=0)


class UnpicklableParam(LogisticRegression):
    def __init__(self, C=1.0, lock=None):
        super().__init__(C=C)
        self.lock = lock


@pytest.fixture
def no_scheduling(monkeypatch):
    """Fail the test if validation lets anything reach Ray."""

    def refuse(*args, **kwargs):
        raise AssertionError("work was scheduled before validation failed")

    monkeypatch.setattr(execute, "put_search_data", refuse)
    monkeypatch.setattr(execute.WorkerPool, "get", refuse)


BAD_CONSTRUCTOR = [
    ({"num_cpus_per_task": 0}, ValueError, "'num_cpus_per_task' parameter"),
    ({"num_cpus_per_task": -1}, ValueError, "'num_cpus_per_task' parameter"),
    ({"num_cpus_per_task": "two"}, TypeError, "'num_cpus_per_task' parameter"),
    ({"num_gpus_per_task": -0.5}, ValueError, "'num_gpus_per_task' parameter"),
    ({"num_gpus_per_task": 1.5}, ValueError, "num_gpus_per_task=1.5"),
    ({"num_cpus_per_task": 1.5}, ValueError, "num_cpus_per_task=1.5"),
    ({"max_retries": -1}, ValueError, "'max_retries' parameter"),
    ({"ray_address": 12}, TypeError, "'ray_address' parameter"),
    ({"error_score": "ignore"}, ValueError, "'error_score' parameter"),
    ({"n_jobs": 0}, ValueError, "n_jobs == 0"),
    ({"pre_dispatch": "lots"}, ValueError, "pre_dispatch='lots'"),
    ({"scoring": "not_a_metric"}, ValueError, "'scoring' parameter"),
    ({"cv": 1}, ValueError, "'cv' parameter"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_CONSTRUCTOR)
def test_bad_constructor_arguments(no_scheduling, kwargs, error, message):
    with pytest.raises(error, match=message):
        RayGridSearchCV(LogisticRegression(), {"C": [1.0]}, **kwargs).fit(X, y)


def grid_error(grid):
    """The error scikit-learn raises for this grid (raygrid must raise the same)."""
    with pytest.raises(Exception) as info:
        GridSearchCV(LogisticRegression(), grid).fit(X, y)
    return type(info.value), str(info.value)


@pytest.mark.parametrize(
    "grid",
    [
        {"C": []},
        {"C": 1.0},
        {"C": (c for c in [1.0, 2.0])},
        [{"C": [1.0]}, "C"],
        "C",
        [],
    ],
    ids=["empty-list", "scalar", "generator", "non-dict-in-list", "string", "empty-grid-list"],
)
def test_malformed_grid_same_error_as_scikit_learn(no_scheduling, grid):
    error, message = grid_error(grid)
    with pytest.raises(error) as info:
        RayGridSearchCV(LogisticRegression(), grid).fit(X, y)
    assert str(info.value) == message.replace("GridSearchCV", "RayGridSearchCV")


def test_unknown_parameter_is_named_with_valid_ones(no_scheduling):
    with pytest.raises(ValueError, match=r"'gamma' is not a parameter of LogisticRegression") as e:
        RayGridSearchCV(LogisticRegression(), {"C": [1.0], "gamma": [1]}).fit(X, y)
    assert "'max_iter'" in str(e.value)


def test_unknown_nested_parameter(no_scheduling):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(StandardScaler(), SVC())
    with pytest.raises(ValueError, match="'svc__gama' is not a parameter of Pipeline"):
        RayGridSearchCV(pipe, {"svc__gama": [1.0]}).fit(X, y)


def test_x_y_length_mismatch(no_scheduling):
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        RayGridSearchCV(LogisticRegression(), {"C": [1.0]}).fit(X, y[:-3])


def test_more_folds_than_samples(no_scheduling):
    with pytest.raises(ValueError, match="n_splits=5 greater than the number of samples"):
        RayGridSearchCV(LogisticRegression(), {"C": [1.0]}, cv=5).fit(X[:3], None)


def test_unpicklable_estimator_names_the_attribute(no_scheduling):
    estimator = UnpicklableParam(lock=threading.Lock())
    with pytest.raises(TypeError, match=r"estimator\.lock cannot be pickled"):
        RayGridSearchCV(estimator, {"C": [1.0]}).fit(X, y)


def test_resources_no_node_offers_fail_fast():
    search = RayGridSearchCV(LogisticRegression(), {"C": [1.0]}, num_gpus_per_task=8)
    with pytest.raises(ValueError, match="no node of the Ray cluster offers that much"):
        search.fit(X, y)
    search = RayGridSearchCV(LogisticRegression(), {"C": [1.0]}, num_cpus_per_task=64)
    with pytest.raises(ValueError, match="num_cpus_per_task=64"):
        search.fit(X, y)


def test_unreachable_ray_address_fails_fast():
    with pytest.raises(ConnectionError, match="ray_address='127.0.0.1:1'"):
        execute._check_reachable("127.0.0.1:1")


def test_bad_input_schedules_nothing_then_good_input_works():
    bad = RayGridSearchCV(LogisticRegression(), {"C": [1.0], "nope": [1]})
    with pytest.raises(ValueError):
        bad.fit(X, y)
    assert not hasattr(bad, "cv_results_")
    good = RayGridSearchCV(LogisticRegression(), {"C": [1.0, 2.0]}).fit(X, y)
    assert len(good.cv_results_["params"]) == 2
    assert np.all(np.isfinite(good.cv_results_["mean_test_score"]))
