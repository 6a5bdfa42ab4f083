"""The seed grid (108 Keras fits) under every runner, timed in one run on one machine.

Runners:

1. scikit-learn ``GridSearchCV``, ``n_jobs=1``, the seed's own wrapper;
2. scikit-learn ``GridSearchCV``, ``n_jobs=-1`` (loky), the seed's own wrapper;
3. scikit-learn with Ray's joblib backend, the seed's own wrapper;
4. ``RayGridSearchCV``, the seed's own wrapper, unchanged;
5. ``RayGridSearchCV`` with ``raygrid.keras.KerasClassifier(random_state=0)``, the same
   network (one hidden ReLU layer, softmax, Adam) and grid.

Prints the median wall time of ``--repeats`` runs of each, the ideal for (4) and (5)
(sum of their task times / slots), and the ratios the project tracks. It also runs (5)'s
scikit-learn twin (``GridSearchCV(n_jobs=1)`` on the same seeded estimator) once and
checks that both picked the same best parameters with the same scores; (4) is unseeded
(the seed's wrapper has no seed), so its best score is compared, not its parameters.

A benchmark, not a test: ``python benchmarks/seed_grid.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
from sklearn.model_selection import GridSearchCV

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from seed_grid_search import SEED_GRID as GRID  # noqa: E402
from seed_grid_search import KerasClassifierWrapper  # noqa: E402  (the seed's wrapper)
from seed_grid_search import seed_data as _seed_split  # noqa: E402

from raygrid import RayGridSearchCV  # noqa: E402
from raygrid.keras import KerasClassifier  # noqa: E402
from raygrid.local.connect import start_local  # noqa: E402


def seed_data():
    """The seed search's scaled training data (400 rows)."""
    X_train, _, y_train, _ = _seed_split()
    return X_train, y_train


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--runners", default="1,2,3,4,5", help="comma-separated runner numbers to time"
    )
    parser.add_argument("--json", help="also write the measurements to this file")
    return parser.parse_args()


def _runners(X, y) -> dict:
    """The five runners, by number: (name, a function that runs one search)."""

    def sklearn(n_jobs):
        def run():
            search = GridSearchCV(KerasClassifierWrapper(), GRID, cv=3, n_jobs=n_jobs)
            return search.fit(X, y)

        return run

    def sklearn_on_ray():
        from joblib import parallel_backend
        from ray.util.joblib import register_ray

        register_ray()
        with parallel_backend("ray"):
            return GridSearchCV(KerasClassifierWrapper(), GRID, cv=3, n_jobs=-1).fit(X, y)

    def raygrid_seed():
        return RayGridSearchCV(KerasClassifierWrapper(), GRID, cv=3, progress=False).fit(X, y)

    return {
        1: ("scikit-learn n_jobs=1", sklearn(1)),
        2: ("scikit-learn n_jobs=-1", sklearn(-1)),
        3: ("scikit-learn + Ray joblib", sklearn_on_ray),
        4: ("raygrid, seed wrapper", raygrid_seed),
        5: ("raygrid, raygrid.keras", lambda: _raygrid_keras(X, y)),
    }


def _raygrid_keras(X, y):
    return RayGridSearchCV(KerasClassifier(random_state=0), GRID, cv=3, progress=False).fit(X, y)


def _measure(number: int, name: str, run, repeats: int, slots: int) -> dict:
    """Time ``repeats`` runs of one runner; print each."""
    walls, ideals, best = [], [], []
    for repeat in range(repeats):
        start = time.perf_counter()
        search = run()
        walls.append(time.perf_counter() - start)
        best.append(float(search.best_score_))
        if hasattr(search, "tasks_"):
            busy = (search.tasks_["end_time"] - search.tasks_["start_time"]).dt.total_seconds()
            ideals.append(float(busy.sum()) / slots)
        print(
            f"({number}) {name:28s} run {repeat + 1}: {walls[-1]:7.1f} s"
            f"  best={best[-1]:.4f} {search.best_params_}",
            flush=True,
        )
    return {
        "name": name,
        "walls": walls,
        "median": statistics.median(walls),
        "ideal": statistics.median(ideals) if ideals else None,
        "best_scores": best,
        "best_params": search.best_params_,
    }


def _ratios(measured: dict) -> dict[str, float]:
    """The ratios the project tracks, for the runners measured."""
    ratios = {}
    if 4 in measured:
        ratios["(4) / ideal(4)"] = measured[4]["median"] / measured[4]["ideal"]
        if 3 in measured:
            ratios["(4) / (3)"] = measured[4]["median"] / measured[3]["median"]
    if 5 in measured and 2 in measured:
        ratios["(2) / (5)  speed-up"] = measured[2]["median"] / measured[5]["median"]
        ratios["best(5) - best(2)"] = statistics.median(
            measured[5]["best_scores"]
        ) - statistics.median(measured[2]["best_scores"])
    if 1 in measured and 5 in measured:
        ratios["(1) / (5)  speed-up"] = measured[1]["median"] / measured[5]["median"]
    return ratios


def _compare_with_twin(X, y) -> bool:
    """Run (5) and its scikit-learn twin once; print whether they agree."""
    twin = GridSearchCV(KerasClassifier(random_state=0), GRID, cv=3, n_jobs=1).fit(X, y)
    ours = _raygrid_keras(X, y)
    same = twin.best_params_ == ours.best_params_ and np.array_equal(
        twin.cv_results_["mean_test_score"], ours.cv_results_["mean_test_score"]
    )
    print(
        f"\n(5) vs its scikit-learn twin: best {ours.best_params_} vs {twin.best_params_};"
        f" identical mean_test_score for all 36 candidates: {same}"
    )
    return bool(same)


def main() -> None:
    args = _parse_args()
    chosen = {int(r) for r in args.runners.split(",")}

    X, y = seed_data()
    start_local()  # one local Ray for (3), (4) and (5); workers import what we import
    slots = int(__import__("ray").cluster_resources()["CPU"])
    measured: dict = {
        number: _measure(number, name, run, args.repeats, slots)
        for number, (name, run) in _runners(X, y).items()
        if number in chosen
    }

    print("\nmedians of", args.repeats, "runs (wall seconds):")
    for number, m in measured.items():
        ideal = f"   ideal {m['ideal']:6.1f} s" if m["ideal"] else ""
        print(f"  ({number}) {m['name']:28s} {m['median']:7.1f} s{ideal}")
    ratios = _ratios(measured)
    print("\nratios:")
    for key, value in ratios.items():
        print(f"  {key:24s} {value:8.3f}")

    if 5 in measured:
        measured["twin_identical"] = _compare_with_twin(X, y)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"measured": measured, "ratios": ratios}, f, indent=2, default=str)


if __name__ == "__main__":
    main()
