"""The search's data goes into Ray's object store once, whatever the number of tasks."""

import numpy as np
import ray
from ray.actor import ActorMethod
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from raygrid import RayGridSearchCV, RayHalvingGridSearchCV


def _arrays_in(value):
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _arrays_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _arrays_in(item)


def test_x_is_put_once_for_a_100_task_search(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((25_000, 256))  # 51 MB of float64
    y = rng.integers(0, 2, size=len(X))
    assert X.nbytes > 50e6

    puts, call_arrays = [], []
    real_put, real_remote = ray.put, ActorMethod._remote

    def counting_put(value, *args, **kwargs):
        puts.append(value)
        return real_put(value, *args, **kwargs)

    def recording_remote(self, args=None, kwargs=None, **options):
        call_arrays.extend(a.nbytes for a in _arrays_in(list(args or ())))
        return real_remote(self, args=args, kwargs=kwargs, **options)

    monkeypatch.setattr(ray, "put", counting_put)
    monkeypatch.setattr(ActorMethod, "_remote", recording_remote)

    grid = {
        "strategy": ["prior", "stratified", "uniform", "most_frequent"],
        "random_state": list(range(5)),
    }
    search = RayGridSearchCV(DummyClassifier(), grid, cv=5).fit(X, y)

    assert len(search.cv_results_["params"]) * search.n_splits_ == 100
    # One put of the search's data, one of the wave's splits (row indices).
    assert [type(p).__name__ for p in puts] == ["SearchData", "WaveData"]
    assert puts[0].X is X or np.shares_memory(puts[0].X, X)
    # Task calls carry object references and small task tuples, never the data.
    assert sum(call_arrays) < 1e6


def test_halving_puts_x_once_and_ships_indices_per_iteration(monkeypatch):
    X, y = make_classification(n_samples=600, random_state=0)
    puts = []
    real_put = ray.put

    def counting_put(value, *args, **kwargs):
        puts.append(value)
        return real_put(value, *args, **kwargs)

    monkeypatch.setattr(ray, "put", counting_put)
    grid = {"C": [0.001, 0.01, 0.1, 1, 10, 100]}
    search = RayHalvingGridSearchCV(LogisticRegression(), grid, random_state=0).fit(X, y)

    kinds = [type(p).__name__ for p in puts]
    assert kinds.count("SearchData") == 1
    assert kinds.count("WaveData") == search.n_iterations_ > 1
    for wave, n_resources in zip(puts[1:], search.n_resources_, strict=True):
        for train, test in wave.splits:
            assert train.dtype.kind == "i" and len(train) + len(test) == n_resources
