"""The seed grid in a fresh ``python`` process: on a kept-alive cluster, and without one.

Each run is a new ``python`` process running the seed grid (36 candidates x 3 folds =
108 fits) with ``raygrid.keras.KerasClassifier(random_state=0)``, timed from ``python``
starting to it exiting, as ``python train.py`` is: ``cold_warm.py``'s ``keras`` child,
whose driver imports no TensorFlow (``raygrid.keras`` imports it in the workers only).

Rows: *cold*, no kept-alive cluster (the script starts its own Ray and workers; median
of ``--cold-repeats``); *first*, the first script after ``raygrid up``; *kept*, the
following scripts on the same cluster (median of ``--repeats``). The cluster runs in a
temporary state directory and is stopped at the end.

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


def run_script(state_dir: str) -> dict:
    """Time one fresh ``python`` process running the seed search, start to exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "RAYGRID_"))}
    env["RAYGRID_STATE_DIR"] = state_dir
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = [sys.executable, os.path.join(HERE, "cold_warm.py"), "--child", "keras"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    end_to_end = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"seed script failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {**json.loads(lines[-1].removeprefix("RESULT ")), "end_to_end": end_to_end}


def raygrid_command(state_dir: str, *args: str) -> tuple[float, str]:
    """Run ``raygrid ARGS`` with this benchmark's state directory; its seconds and output."""
    env = dict(os.environ, RAYGRID_STATE_DIR=state_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "raygrid.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - start, done.stdout.strip()


def timed_runs(label: str, state_dir: str, repeats: int) -> list[float]:
    """``repeats`` runs of the seed script; each printed; their end-to-end seconds."""
    walls = []
    for i in range(repeats):
        run = run_script(state_dir)
        walls.append(run["end_to_end"])
        say(
            f"  {label:5s} run {i + 1}: end to end {run['end_to_end']:6.2f} s, "
            f"fit {run['first_fit']:6.2f} s, best score {run['best_score']:.4f}"
        )
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="scripts on the kept cluster")
    parser.add_argument("--cold-repeats", type=int, default=3, help="scripts without it")
    parser.add_argument("--out", help="write the printed lines here")
    args = parser.parse_args()
    say(f"kept_alive.py, {datetime.datetime.now().isoformat(timespec='seconds')}")
    say(f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}; {load()}")
    say("seed grid: 36 candidates x 3 folds = 108 fits; each run a fresh python, start to exit")
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="raygrid-bench-state-") as state_dir:
        say(f"\n[cold] no kept-alive cluster  ({load()})")
        rows["cold"] = timed_runs("cold", state_dir, args.cold_repeats)
        say(f"\n[kept] raygrid up  ({load()})")
        seconds, output = raygrid_command(state_dir, "up")
        say(f"  raygrid up returned in {seconds:.1f} s: {output.splitlines()[0]}")
        try:
            rows["first"] = timed_runs("first", state_dir, 1)
            rows["kept"] = timed_runs("kept", state_dir, args.repeats)
        finally:
            seconds, output = raygrid_command(state_dir, "down")
            say(f"  raygrid down returned in {seconds:.1f} s: {output}")
    say(f"\n[table] end to end, seconds (median of runs)  ({load()})")
    for name, walls in rows.items():
        runs = " ".join(f"{w:.2f}" for w in walls)
        say(f"  {name:12s} {statistics.median(walls):7.2f}   runs {runs}")
    ratio = statistics.median(rows["cold"]) / statistics.median(rows["kept"])
    say(f"  cold / kept = {ratio:.1f}x")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    say(f"\nuptime: {uptime}")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(_LINES) + "\n")


if __name__ == "__main__":
    main()
