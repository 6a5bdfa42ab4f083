"""Scale: 10^5 trivial fits with a journal, a large Parquet dataset, and the alternatives.

Measured in one run on this machine (print ``uptime`` with the figures: it is shared):

1. ``RayGridSearchCV`` over 10^5 trivial fits (``DummyClassifier``, 20,000 candidates x 5
   folds) with a ``results_dir``: fits/s, the driver's CPU time per fit, the journal's
   files when the search ends, and the time of a full resume (a second ``fit`` that
   reads every fit back).
2. 10^4 of the same fits through what a user would pick instead, with ``RayGridSearchCV``
   over the same 10^4 for the ratios: Ray Tune's grid search (a function trainable that
   fits and scores one fold) and scikit-learn's ``GridSearchCV`` on Ray's joblib backend.
3. ``raygrid run`` over a Parquet dataset of 2,000,000 rows x 100 float32 columns
   (``DummyClassifier`` grid, refit on): the driver process's peak RSS, polled.

Run ``python benchmarks/scale.py`` (``--skip-rss`` / ``--skip-tune`` to leave parts out,
``--fits`` and ``--alt-fits`` to scale down). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil
import ray
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from raygrid import RayGridSearchCV
from raygrid.store.journal import MANIFEST, Journal
from raygrid.store.location import Location

FOLDS = 5


def _grid(n_fits: int) -> dict:
    return {"strategy": ["prior"], "random_state": list(range(n_fits // FOLDS))}


def _journal_parts(where: str) -> int:
    import json

    key = json.loads(Location(where).read(MANIFEST))["search_key"]
    return len(Journal(where, key, {}).parts())


def raygrid_journaled(X, y, n_fits: int) -> dict:
    """10^5 fits with a journal, then a full resume."""
    where = tempfile.mkdtemp(prefix="raygrid-scale-journal-")
    search = RayGridSearchCV(
        DummyClassifier(), _grid(n_fits), cv=FOLDS, results_dir=where, progress=False
    )
    cpu, wall = time.process_time(), time.perf_counter()
    search.fit(X, y)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    parts = _journal_parts(where)
    again = RayGridSearchCV(
        DummyClassifier(), _grid(n_fits), cv=FOLDS, results_dir=where, progress=False
    )
    resume = time.perf_counter()
    again.fit(X, y)
    resume = time.perf_counter() - resume
    assert again.tasks_["resumed"].all()
    return {
        "fits": n_fits,
        "wall_s": wall,
        "fits_per_s": n_fits / wall,
        "driver_cpu_ms_per_fit": 1000 * cpu / n_fits,
        "journal_files": parts,
        "full_resume_s": resume,
    }


def raygrid_plain(X, y, n_fits: int) -> float:
    start = time.perf_counter()
    RayGridSearchCV(DummyClassifier(), _grid(n_fits), cv=FOLDS, progress=False).fit(X, y)
    return time.perf_counter() - start


def sklearn_on_ray_joblib(X, y, n_fits: int) -> float:
    from joblib import parallel_backend
    from ray.util.joblib import register_ray

    register_ray()
    start = time.perf_counter()
    with parallel_backend("ray"):
        GridSearchCV(DummyClassifier(), _grid(n_fits), cv=FOLDS, n_jobs=-1).fit(X, y)
    return time.perf_counter() - start


def ray_tune(X, y, n_fits: int) -> float:
    """Tune's grid search: one trial per (candidate, fold), a function trainable."""
    from ray import tune

    folds = list(StratifiedKFold(FOLDS).split(X, y))
    X_ref, y_ref = ray.put(X), ray.put(y)

    def trainable(config):
        Xs, ys = ray.get(X_ref), ray.get(y_ref)
        train, test = folds[config["fold"]]
        model = DummyClassifier(strategy="prior", random_state=config["random_state"])
        model.fit(Xs[train], ys[train])
        tune.report({"score": model.score(Xs[test], ys[test])})

    space = {
        "random_state": tune.grid_search(list(range(n_fits // FOLDS))),
        "fold": tune.grid_search(list(range(FOLDS))),
    }
    storage = tempfile.mkdtemp(prefix="raygrid-scale-tune-")
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    start = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - start
    assert len(results) == n_fits and not results.errors
    return elapsed


RUN_SPEC = """
[estimator]
class = "sklearn.dummy.DummyClassifier"

[search]
param_grid = {{ strategy = ["prior", "most_frequent", "stratified", "uniform"] }}
cv = 3
refit = true
verbose = 0

[data]
path = "{data}"
target = "label"

[output]
path = "{output}"
"""


def write_large_parquet(path: str, rows: int, columns: int) -> None:
    """``rows`` x ``columns`` float32 features and an int label, written in chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(columns)]
    writer = None
    for start in range(0, rows, 200_000):
        n = min(200_000, rows - start)
        block = rng.standard_normal((n, columns), dtype=np.float32)
        arrays = [pa.array(block[:, i]) for i in range(columns)]
        arrays.append(pa.array(rng.integers(0, 2, n)))
        table = pa.Table.from_arrays(arrays, names=[*names, "label"])
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def driver_peak_rss(rows: int, columns: int) -> dict:
    """Peak RSS of a ``raygrid run`` process over a large Parquet file, polled every 50 ms."""
    folder = tempfile.mkdtemp(prefix="raygrid-scale-rss-")
    data = os.path.join(folder, "large.parquet")
    write_large_parquet(data, rows, columns)
    spec = os.path.join(folder, "spec.toml")
    with open(spec, "w") as f:
        f.write(RUN_SPEC.format(data=data, output=os.path.join(folder, "out")))
    command = [sys.executable, "-m", "raygrid.cli.main", "run", spec]
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"raygrid run failed:\n{output}")
    return {
        "rows": rows,
        "columns": columns,
        "file_mb": os.path.getsize(data) / 2**20,
        "in_memory_mb": rows * columns * 4 / 2**20,
        "driver_peak_rss_mb": peak / 2**20,
        "wall_s": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=100_000)
    parser.add_argument("--alt-fits", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-tune", action="store_true")
    parser.add_argument("--skip-fits", action="store_true", help="only the RSS part")
    args = parser.parse_args()

    print(f"load before: {os.getloadavg()}", flush=True)
    if not args.skip_rss:
        rss = driver_peak_rss(args.rows, 100)
        print(
            f"raygrid run over {rss['rows']:,} x {rss['columns']} float32 "
            f"({rss['in_memory_mb']:.0f} MB of features, {rss['file_mb']:.0f} MB file): "
            f"driver peak RSS {rss['driver_peak_rss_mb']:.0f} MB (target < 700), "
            f"{rss['wall_s']:.1f} s",
            flush=True,
        )
    if args.skip_fits:
        return
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    ray.init(include_dashboard=False, log_to_driver=False)
    raygrid_plain(X, y, 1000)  # warm workers, as in a session
    big = raygrid_journaled(X, y, args.fits)
    print(
        f"raygrid {big['fits']:,} fits with a journal: {big['wall_s']:.1f} s, "
        f"{big['fits_per_s']:.0f} fits/s, driver CPU {big['driver_cpu_ms_per_fit']:.3f} "
        f"ms/fit (target <= 0.05), journal {big['journal_files']} files (target <= 64), "
        f"full resume {big['full_resume_s']:.2f} s (target <= 3)",
        flush=True,
    )
    times = {"raygrid": raygrid_plain(X, y, args.alt_fits)}
    times["scikit-learn GridSearchCV + Ray joblib"] = sklearn_on_ray_joblib(X, y, args.alt_fits)
    if not args.skip_tune:
        times["Ray Tune grid search"] = ray_tune(X, y, args.alt_fits)
    print(f"\n{args.alt_fits:,} fits, wall time (ratio to raygrid; higher = raygrid faster):")
    for name, seconds in times.items():
        print(
            f"  {name:40s} {seconds:8.1f} s  {args.alt_fits / seconds:7.0f} fits/s  "
            f"{seconds / times['raygrid']:6.1f}x",
            flush=True,
        )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
