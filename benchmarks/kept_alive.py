"""The seed grid in a fresh ``python`` process: on a kept-alive cluster, and without one.

Each run is a new ``python`` process running the seed grid (36 candidates x 3 folds =
108 fits) with ``raygrid.keras.KerasClassifier(random_state=0)``, timed from ``python``
starting to it exiting, as ``python train.py`` is. Two such scripts:

- ``seed``: ``cold_warm.py``'s child, whose driver imports the grid and data from
  ``examples/seed_grid_search.py``, which imports TensorFlow in the driver too;
- ``lean``: the same search, with the grid and data built here, so the driver never
  imports TensorFlow (``raygrid.keras`` imports it only in the workers).

Rows, for each script: *cold*, no kept-alive cluster (the script starts its own Ray and
workers; median of ``--cold-repeats``); *first*, the first script after ``raygrid up``;
*kept*, the following scripts on the same cluster (median of ``--repeats``). The cluster
runs in a temporary state directory and is stopped at the end.

A benchmark, not a test: ``python benchmarks/kept_alive.py [--repeats 3]
[--cold-repeats 3] [--out benchmarks/results/kept_alive-DATE.txt]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from cold_warm import _LINES, load, say  # noqa: E402  (its results-file helpers)

SEED_GRID = {
    "units": [32, 64, 128],
    "learning_rate": [0.001, 0.01],
    "batch_size": [16, 32, 64],
    "epochs": [10, 20],
}


def lean_child() -> None:
    """The seed search with a driver that imports no TensorFlow; prints JSON."""
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from raygrid import RayGridSearchCV
    from raygrid.keras import KerasClassifier

    X, y = make_classification(
        n_samples=500, n_features=20, n_informative=10, n_classes=3, random_state=42
    )
    X, _, y, _ = train_test_split(X, y, test_size=0.2, random_state=42)
    X = StandardScaler().fit_transform(X)
    start = time.perf_counter()
    search = RayGridSearchCV(KerasClassifier(random_state=0), SEED_GRID, cv=3, progress=False)
    search.fit(X, y)
    result = {"first_fit": time.perf_counter() - start, "best_score": float(search.best_score_)}
    print("RESULT " + json.dumps(result), flush=True)


def run_script(kind: str, state_dir: str) -> dict:
    """Time one fresh ``python`` process running the ``kind`` script, start to exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYGRID_"))}
    env["RAYGRID_STATE_DIR"] = state_dir
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if kind == "seed":
        command = [sys.executable, os.path.join(HERE, "cold_warm.py"), "--child", "keras"]
    else:
        command = [sys.executable, os.path.abspath(__file__), "--child"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    end_to_end = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} script failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "end_to_end": end_to_end}


def raygrid_command(state_dir: str, *args: str) -> tuple[float, str]:
    """Run ``raygrid ARGS`` with this benchmark's state directory; its seconds and output."""
    env = dict(os.environ, RAYGRID_STATE_DIR=state_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "raygrid.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, done.stdout.strip()


def timed_runs(kind: str, label: str, state_dir: str, repeats: int) -> list[float]:
    """``repeats`` runs of the ``kind`` script; each printed; their end-to-end seconds."""
    walls = []
    for i in range(repeats):
        run = run_script(kind, state_dir)
        walls.append(run["end_to_end"])
        say(
            f"  {kind:4s} {label:5s} run {i + 1}: end to end {run['end_to_end']:6.2f} s, "
            f"fit {run['first_fit']:6.2f} s, best score {run['best_score']:.4f}"
        )
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="scripts on the kept cluster")
    parser.add_argument("--cold-repeats", type=int, default=3, help="scripts without it")
    parser.add_argument("--out", help="write the printed lines here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        lean_child()
        return
    say(f"kept_alive.py, {datetime.datetime.now().isoformat(timespec='seconds')}")
    say(f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}; {load()}")
    say("seed grid: 36 candidates x 3 folds = 108 fits; each run a fresh python, start to exit")
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="raygrid-bench-state-") as state_dir:
        say(f"\n[cold] no kept-alive cluster  ({load()})")
        for kind in ("seed", "lean"):
            rows[f"{kind} cold"] = timed_runs(kind, "cold", state_dir, args.cold_repeats)
        say(f"\n[kept] raygrid up  ({load()})")
        seconds, output = raygrid_command(state_dir, "up")
        say(f"  raygrid up returned in {seconds:.1f} s: {output.splitlines()[0]}")
        try:
            rows["seed first"] = timed_runs("seed", "first", state_dir, 1)
            rows["seed kept"] = timed_runs("seed", "kept", state_dir, args.repeats)
            rows["lean kept"] = timed_runs("lean", "kept", state_dir, args.repeats)
        finally:
            seconds, output = raygrid_command(state_dir, "down")
            say(f"  raygrid down returned in {seconds:.1f} s: {output}")
    say(f"\n[table] end to end, seconds (median of runs)  ({load()})")
    for name, walls in rows.items():
        runs = " ".join(f"{w:.2f}" for w in walls)
        say(f"  {name:12s} {statistics.median(walls):7.2f}   runs {runs}")
    for kind in ("seed", "lean"):
        ratio = statistics.median(rows[f"{kind} cold"]) / statistics.median(rows[f"{kind} kept"])
        say(f"  {kind}: cold / kept = {ratio:.1f}x")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    say(f"\nuptime: {uptime}")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(_LINES) + "\n")


if __name__ == "__main__":
    main()
