"""Trivial-task throughput: how many tiny fits per second each runner sustains.

2,000 fits of a near-instant estimator (400 candidates x 5 folds) measure what a runner
costs per task, not the estimator. Runners, all in this one run on this machine:

* scikit-learn ``GridSearchCV`` with ``n_jobs=1`` and ``n_jobs=-1`` (loky);
* scikit-learn with Ray's joblib backend (``joblib.parallel_backend("ray")``);
* ``RayGridSearchCV``.

Prints the median wall time of ``--repeats`` runs, fits per second, and ratios. This is
a benchmark, not a test: run ``python benchmarks/throughput.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import ray
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.tree import DecisionTreeClassifier

from raygrid import RayGridSearchCV


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=400)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    grid = {"max_depth": [1, 2], "random_state": list(range(args.candidates // 2))}
    n_fits = len(grid["random_state"]) * 2 * args.folds
    ray.init(include_dashboard=False, log_to_driver=False)

    def sklearn(n_jobs):
        return lambda: GridSearchCV(
            DecisionTreeClassifier(), grid, cv=args.folds, n_jobs=n_jobs
        ).fit(X, y)

    def sklearn_on_ray():
        from joblib import parallel_backend
        from ray.util.joblib import register_ray

        register_ray()
        with parallel_backend("ray"):
            GridSearchCV(DecisionTreeClassifier(), grid, cv=args.folds, n_jobs=-1).fit(X, y)

    def raygrid():
        RayGridSearchCV(DecisionTreeClassifier(), grid, cv=args.folds, progress=False).fit(X, y)

    runners = {
        "scikit-learn n_jobs=1": sklearn(1),
        "scikit-learn n_jobs=-1": sklearn(-1),
        "scikit-learn + Ray joblib": sklearn_on_ray,
        "raygrid": raygrid,
    }
    raygrid()  # warm: worker processes started and imports done, as in a session
    times = {}
    for name, run in runners.items():
        samples = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples)
        print(
            f"{name:28s} median {times[name]:7.2f} s  {n_fits / times[name]:8.0f} fits/s"
            f"  (runs: {', '.join(f'{s:.2f}' for s in samples)})",
            flush=True,
        )
    base = times["raygrid"]
    print(f"\n{n_fits} fits; ratios of wall time to raygrid's (higher = raygrid faster):")
    for name, value in times.items():
        print(f"  {name:28s} {value / base:6.2f}x")
    print(f"raygrid throughput: {n_fits / base:.0f} fits/s (target >= 500)")


if __name__ == "__main__":
    main()
