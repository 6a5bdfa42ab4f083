"""The seed grid (108 fits) with MLflow tracking on vs off, timed in one run.

Starts a local ``mlflow server`` (SQLite backend, artifacts in a temporary directory),
then fits the seed grid alternately without tracking and with
``tracking=MLflowTracker(...)`` (parent run, 36 child runs, tables, figures and the best
model logged), ``--repeats`` times each, and prints the median wall time of each and the
overhead. Wall time is the whole ``fit``, including the wait for the tracker to finish.

Estimators: ``seed`` is the seed script's own Keras wrapper (a fit ≈ 1 s), ``keras`` is
``raygrid.keras.KerasClassifier`` (a warm fit ≈ 13 ms, so the fixed cost of logging at
the end of a search shows). One untimed warm-up fit without tracking comes first (``--warmup 0`` skips it).

A benchmark, not a test: ``python benchmarks/tracking_overhead.py --estimator seed``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from mlflow_server import MLflowServer  # noqa: E402
from seed_grid_search import SEED_GRID as GRID  # noqa: E402
from seed_grid_search import KerasClassifierWrapper, seed_data  # noqa: E402

from raygrid import RayGridSearchCV  # noqa: E402
from raygrid.keras import KerasClassifier  # noqa: E402
from raygrid.local.connect import start_local  # noqa: E402
from raygrid.tracking import MLflowTracker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--estimator", choices=["seed", "keras"], default="seed")
    parser.add_argument("--warmup", type=int, default=1, help="untimed fits first (0 or 1)")
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args()

    X, _, y, _ = seed_data()
    start_local()
    with tempfile.TemporaryDirectory(prefix="raygrid-bench-mlflow-") as root:
        server = MLflowServer(root)
        try:
            server.wait_ready()
            measured = _measure(args, X, y, server.uri)
        finally:
            server.stop()
    off, on = statistics.median(measured["off"]), statistics.median(measured["on"])
    overhead = on / off - 1
    print(f"\nmedians of {args.repeats} runs: off {off:.2f} s, on {on:.2f} s")
    print(f"MLflow tracking overhead: {overhead:+.1%} of wall time")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"estimator": args.estimator, "walls": measured, "overhead": overhead},
                f,
                indent=2,
            )


def _measure(args: argparse.Namespace, X, y, uri: str) -> dict[str, list[float]]:
    def estimator():
        return (
            KerasClassifierWrapper()
            if args.estimator == "seed"
            else KerasClassifier(random_state=0)
        )

    def run(mode: str) -> float:
        tracking = (
            MLflowTracker(uri, experiment=f"seed-{args.estimator}") if mode == "on" else None
        )
        search = RayGridSearchCV(estimator(), GRID, cv=3, progress=False, tracking=tracking)
        start = time.perf_counter()
        search.fit(X, y)
        wall = time.perf_counter() - start
        if mode == "on" and "mlflow" not in search.tracking_:
            raise RuntimeError("the tracked run did not log to MLflow")
        return wall

    if args.warmup:
        run("off")  # warm-up: worker start-up and TensorFlow imports
    walls: dict[str, list[float]] = {"off": [], "on": []}
    for repeat in range(args.repeats):
        for mode in ("off", "on"):
            walls[mode].append(run(mode))
            print(
                f"{args.estimator} tracking {mode:3s} run {repeat + 1}: {walls[mode][-1]:7.2f} s"
            )
    return walls


if __name__ == "__main__":
    main()
