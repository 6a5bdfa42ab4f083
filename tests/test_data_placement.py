"""The search's data goes into Ray's object store once, whatever the number of tasks."""

import numpy as np
import ray
from ray.actor import ActorMethod
from sklearn.dummy import DummyClassifier

from raygrid import RayGridSearchCV


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
    assert len(puts) == 1, f"{len(puts)} ray.put calls"
    assert puts[0].X is X or np.shares_memory(puts[0].X, X)
    # Task calls carry object references and small task tuples, never the data.
    assert sum(call_arrays) < 1e6
