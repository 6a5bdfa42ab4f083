"""Resident memory of one warm worker over 500 seed fits.

One slot (``n_jobs=1``) runs 500 fits of ``raygrid.keras.KerasClassifier`` on the seed
data and grid (the seed's 36 candidates with varied seeds, cv=3, ...). ``tasks_`` records
the worker's resident memory after every fit; this prints it after the first 20 fits and
after all 500, and their difference (the project's bound: < 50 MB).

A benchmark, not a test: ``python benchmarks/worker_memory.py``.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from seed_grid import GRID, seed_data  # noqa: E402

from raygrid import RayGridSearchCV  # noqa: E402
from raygrid.keras import KerasClassifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=500)
    args = parser.parse_args()
    X, y = seed_data()
    seeds = list(range(-(-args.fits // (36 * 3))))
    grid = {**GRID, "random_state": seeds}
    search = RayGridSearchCV(KerasClassifier(), grid, cv=3, n_jobs=1, progress=False)
    search.fit(X, y)
    tasks = search.tasks_.sort_values("end_time").head(args.fits)
    assert tasks["pid"].nunique() == 1, "expected one warm worker"
    rss = tasks["worker_rss"].to_numpy() / 2**20
    after_20, after_all = rss[19], rss[-1]
    print(f"worker pid {tasks['pid'].iloc[0]}: {len(tasks)} fits")
    for n in (1, 20, 50, 100, 200, 300, 400, len(tasks)):
        if n <= len(tasks):
            print(f"  after {n:4d} fits: {rss[n - 1]:8.1f} MiB")
    print(f"growth from fit 20 to fit {len(tasks)}: {after_all - after_20:+.1f} MiB (bound: < 50)")


if __name__ == "__main__":
    main()
