"""Exit time: how long a script that ran a small raygrid search takes to end after it.

Each run is ``python -c "<script>"``; the script prints the time right after its last
statement, and the time from there to the end of the process (its exit status, not the
end of its output, which Ray's processes could hold open) is the exit time. Modes,
interleaved in this one run:

* ``raygrid``: the search as a user runs it; raygrid started the local Ray, and its exit
  hook stops it;
* ``Ray's exit hook``: the same search, with raygrid's hook unregistered after the search,
  so Ray's own hook stops Ray (the behaviour before raygrid had its hook);
* ``imports only``: the same imports and no Ray at all: what the interpreter itself
  takes to exit with these modules loaded (part of every exit time above).

After each run, the Ray processes the script started (its child processes, listed by
the script) are checked: any still alive at the moment the script has exited is counted.
Prints medians of ``--repeats`` runs. A benchmark, not a test:
``python benchmarks/exit_time.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import psutil

SEARCH = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import psutil
    from sklearn.linear_model import Ridge
    from raygrid import RayGridSearchCV
    X = np.random.RandomState(0).rand(60, 3)
    RayGridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=3).fit(X, X.sum(1))
    """
)
RAYS_HOOK = textwrap.dedent(
    """
    import atexit
    import raygrid.local.teardown
    atexit.unregister(raygrid.local.teardown.shutdown_local)
    """
)
IMPORTS_ONLY = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import psutil
    import ray
    from sklearn.linear_model import Ridge
    from raygrid import RayGridSearchCV
    """
)
END = textwrap.dedent(
    """
    children = psutil.Process().children(recursive=True)
    print("CHILDREN", *[p.pid for p in children])
    print("DONE", time.time(), flush=True)
    """
)
MODES = {
    "raygrid": SEARCH + END,
    "Ray's exit hook": SEARCH + RAYS_HOOK + END,
    "imports only": IMPORTS_ONLY + END,
}


def run_once(code: str) -> tuple[float, float, int]:
    """Run ``code``; return (exit time, whole run, Ray processes alive after exit)."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    with tempfile.TemporaryFile("w+") as out:
        start = time.time()
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=out, env=env)
        proc.wait()
        exited = time.time()
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"the script failed:\n{text}")
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    done = float(lines["DONE"][0])
    left = 0
    for pid in map(int, lines["CHILDREN"]):
        with contextlib.suppress(psutil.NoSuchProcess):
            left += psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return exited - done, exited - start, left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    runs: dict[str, list[tuple[float, float, int]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode, code in MODES.items():
            runs[mode].append(run_once(code))

    print(f"python -c '<small raygrid search>', {args.repeats} runs of each mode, interleaved")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'':17} {'exit time (median)':>19} {'min':>6} {'max':>6} {'whole run':>10}  left")
    for mode, results in runs.items():
        exits = [r[0] for r in results]
        print(
            f"{mode:17} {statistics.median(exits):17.2f} s {min(exits):6.2f} {max(exits):6.2f}"
            f" {statistics.median(r[1] for r in results):8.1f} s  {sum(r[2] for r in results)}"
        )
    print("(exit time: from the script's last statement to its end; whole run: median wall")
    print(" time of the process; left: Ray processes alive when the script had exited, all runs)")
    print("exit times of each run:")
    for mode, results in runs.items():
        print(f"  {mode:17} " + " ".join(f"{r[0]:.2f}" for r in results))


if __name__ == "__main__":
    main()
