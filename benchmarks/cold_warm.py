"""The seed grid, cold and warm, under every runner, side by side in one run.

Rows (the seed grid: 36 candidates x 3 folds = 108 Keras fits, unless said otherwise):

- scikit-learn ``GridSearchCV(n_jobs=-1)`` with the seed's own ``KerasClassifierWrapper``
  (one run; loky starts fresh worker processes, so it is cold);
- ``RayGridSearchCV`` with the seed's wrapper, in a fresh ``python`` process (one run:
  end to end, and its ``fit`` alone);
- ``RayGridSearchCV`` with ``raygrid.keras.KerasClassifier(random_state=0)``:

  * cold: a fresh ``python`` process (median of ``--cold-repeats``): end to end (from
    ``python`` starting to it exiting) and the first ``fit`` alone;
  * warm: the second and later ``fit`` in one process (median of ``--repeats``);
  * sharing: the grid with ``epochs`` in [5, 10, 20] against ``epochs`` = [20] alone,
    warm, and their ratio;
  * ``fuse=True``, warm; ``share_prefixes=False``, warm;

- the arithmetic floor: the grid's dense-layer multiply-adds x 2 FLOPs x 3 (forward and
  backward) over every epoch and training row, divided by this machine's float32 matmul
  FLOP/s measured with numpy (a large square product: the machine's best case), and
  every runner's distance from it (wall / floor).

The machine's load average is printed with every section: on a shared machine, compare
ratios measured in the same run rather than single numbers.

A benchmark, not a test: ``python benchmarks/cold_warm.py [--repeats 3] [--cold-repeats 3]
[--skip-seed-wrapper] [--out benchmarks/results/cold_warm-DATE.txt]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")
sys.path.insert(0, EXAMPLES)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_LINES: list[str] = []


def say(text: str = "") -> None:
    """Print a line and keep it for the results file."""
    print(text, flush=True)
    _LINES.append(text)


def load() -> str:
    """The machine's 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


# --------------------------------------------------------------------------- child runs


def child(kind: str) -> None:
    """A fresh process's search, as ``python train.py`` would run it; prints JSON.

    The ``keras`` script's driver imports no TensorFlow (``raygrid.keras`` needs it in
    the workers only), as a ``raygrid.keras`` user's script does not; the ``seed``
    script's driver imports it with the write-up's wrapper.
    """
    from raygrid import RayGridSearchCV

    if kind == "keras":
        from seed_setup import SEED_GRID, seed_data

        from raygrid.keras import KerasClassifier

        estimator = KerasClassifier(random_state=0)
    else:
        from seed_grid_search import SEED_GRID, KerasClassifierWrapper, seed_data

        estimator = KerasClassifierWrapper()
    X, _, y, _ = seed_data()
    start = time.perf_counter()
    search = RayGridSearchCV(estimator, SEED_GRID, cv=3, progress=False).fit(X, y)
    first_fit = time.perf_counter() - start
    print(
        "RESULT "
        + json.dumps(
            {
                "first_fit": first_fit,
                "best_score": float(search.best_score_),
                "best_params": search.best_params_,
            }
        ),
        flush=True,
    )


def run_child(kind: str) -> dict:
    """Time one fresh ``python`` process running :func:`child` from start to exit."""
    env = dict(os.environ)
    env.pop("RAYGRID_PARENT_RAY", None)  # a fresh process: its own Ray, not ours
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", kind],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    end_to_end = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"child {kind} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1].removeprefix("RESULT "))
    result["end_to_end"] = end_to_end
    return result


# --------------------------------------------------------------------------- the floor


def grid_flops(grid: dict, X, y, shared: bool) -> float:
    """Training FLOPs of the seed network over the grid: dense multiply-adds x 2 x 3.

    Per training row and epoch, the network 20 -> units -> n_classes does
    ``20 * units + units * n_classes`` multiply-adds forward; backward costs about twice
    forward. ``shared``: each (candidate without epochs, fold) trained once, to its
    largest ``epochs`` (what exact prefix sharing needs).
    """
    from sklearn.model_selection import ParameterGrid, StratifiedKFold

    n_features, n_classes = X.shape[1], len(set(y.tolist()))
    rows = [len(train) for train, _ in StratifiedKFold(3).split(X, y)]
    total = 0.0
    for params in ParameterGrid({k: v for k, v in grid.items() if k != "epochs"}):
        epochs = [max(grid["epochs"])] if shared else grid["epochs"]
        units = params["units"]
        macs = n_features * units + units * n_classes
        total += sum(macs * 2 * 3 * e * r for e in epochs for r in rows)
    return total


def matmul_flops_per_second(n: int = 2048, repeats: int = 5) -> float:
    """This machine's best float32 matmul rate (numpy, all its threads), FLOP/s."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm runs per row")
    parser.add_argument("--cold-repeats", type=int, default=3, help="fresh processes")
    parser.add_argument(
        "--skip-seed-wrapper",
        action="store_true",
        help="skip the minutes-long rows with the seed's wrapper",
    )
    parser.add_argument("--out", help="write the printed lines here (and a .json twin)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    from seed_grid_search import SEED_GRID, KerasClassifierWrapper, seed_data
    from sklearn.model_selection import GridSearchCV

    X, _, y, _ = seed_data()
    say(f"cold_warm.py, {datetime.datetime.now().isoformat(timespec='seconds')}")
    say(f"{os.cpu_count()} CPUs; python {sys.version.split()[0]}; {load()}")
    say("seed grid: 36 candidates x 3 folds = 108 fits, 400 training rows")
    m: dict[str, dict] = {}

    say(f"\n[cold] raygrid.keras, fresh python per run, {args.cold_repeats} runs  ({load()})")
    colds = []
    for i in range(args.cold_repeats):
        colds.append(run_child("keras"))
        c = colds[-1]
        say(
            f"  run {i + 1}: end to end {c['end_to_end']:6.2f} s, first fit {c['first_fit']:6.2f} s"
        )
    m["keras cold end to end"] = _row([c["end_to_end"] for c in colds], colds[0])
    m["keras cold first fit"] = _row([c["first_fit"] for c in colds], colds[0])

    if not args.skip_seed_wrapper:
        say(f"\n[cold] raygrid, seed wrapper, fresh python, one run  ({load()})")
        c = run_child("seed")
        say(f"  end to end {c['end_to_end']:6.1f} s, fit {c['first_fit']:6.1f} s")
        m["seed wrapper raygrid cold end to end"] = _row([c["end_to_end"]], c)
        m["seed wrapper raygrid cold fit"] = _row([c["first_fit"]], c)

        say(f"\n[cold] scikit-learn GridSearchCV(n_jobs=-1), seed wrapper, one run  ({load()})")
        start = time.perf_counter()
        s = GridSearchCV(KerasClassifierWrapper(), SEED_GRID, cv=3, n_jobs=-1).fit(X, y)
        wall = time.perf_counter() - start
        say(f"  fit {wall:6.1f} s")
        m["seed wrapper sklearn n_jobs=-1 fit"] = _row(
            [wall], {"best_score": float(s.best_score_), "best_params": s.best_params_}
        )

    from raygrid import RayGridSearchCV
    from raygrid.keras import KerasClassifier

    def keras_fit(grid=SEED_GRID, **options):
        search = RayGridSearchCV(
            KerasClassifier(random_state=0), grid, cv=3, progress=False, **options
        )
        start = time.perf_counter()
        search.fit(X, y)
        return time.perf_counter() - start, search

    def warm(name: str, grid=SEED_GRID, **options) -> None:
        first, _ = keras_fit(grid, **options)  # warms this configuration (traces)
        walls, search = [], None
        for _ in range(args.repeats):
            wall, search = keras_fit(grid, **options)
            walls.append(wall)
        extra = {"best_score": float(search.best_score_), "best_params": search.best_params_}
        m[name] = _row(walls, extra)
        say(
            f"  {name:34s} median {m[name]['median']:6.3f} s  runs "
            + " ".join(f"{w:.3f}" for w in walls)
            + f"  (untimed first: {first:.2f} s)"
        )

    say(f"\n[warm] raygrid.keras, one process, median of {args.repeats}  ({load()})")
    warm("keras warm")
    warm("keras warm fuse=True", fuse=True)
    warm("keras warm share_prefixes=False", share_prefixes=False)
    grid_520 = {**SEED_GRID, "epochs": [5, 10, 20]}
    grid_20 = {**SEED_GRID, "epochs": [20]}
    say(f"  sharing: epochs [5, 10, 20] vs [20] alone  ({load()})")
    warm("keras warm epochs [5,10,20]", grid_520)
    warm("keras warm epochs [20]", grid_20)
    warm("keras warm epochs [5,10,20] unshared", grid_520, share_prefixes=False)

    say(f"\n[floor] ({load()})")
    rate = matmul_flops_per_second()
    flops = grid_flops(SEED_GRID, X, y, shared=False)
    flops_shared = grid_flops(SEED_GRID, X, y, shared=True)
    floor, floor_shared = flops / rate, flops_shared / rate
    say(f"  numpy float32 2048x2048 matmul: {rate / 1e9:.1f} GFLOP/s")
    say(f"  seed grid training arithmetic: {flops / 1e9:.2f} GFLOP -> floor {floor * 1e3:.1f} ms")
    say(
        f"  with exact prefix sharing (each fit to 20 epochs only): {flops_shared / 1e9:.2f}"
        f" GFLOP -> floor {floor_shared * 1e3:.1f} ms"
    )

    say(f"\n[table] seed grid, wall seconds (median of runs), x floor = wall / {floor:.3f} s")
    say(f"  {'runner':52s} {'wall s':>8s} {'x floor':>9s}  best score")
    for name, row in m.items():
        best = row.get("best_score")
        best_text = f"{best:.4f}" if best is not None else ""
        label = f"{name} ({len(row['walls'])} run{'s' if len(row['walls']) > 1 else ''})"
        say(f"  {label:52s} {row['median']:8.3f} {row['median'] / floor:9.0f}  {best_text}")

    say("\n[ratios]")
    ratios: dict[str, float] = {}
    sk = m.get("seed wrapper sklearn n_jobs=-1 fit")
    if sk:
        for key in (
            "keras warm",
            "keras warm fuse=True",
            "keras cold first fit",
            "keras cold end to end",
        ):
            ratios[f"sklearn n_jobs=-1 / {key}"] = sk["median"] / m[key]["median"]
        ratios["best(keras warm) - best(sklearn n_jobs=-1)"] = (
            m["keras warm"]["best_score"] - sk["best_score"]
        )
        seed = m["seed wrapper raygrid cold fit"]
        ratios["sklearn n_jobs=-1 / raygrid seed wrapper (fit)"] = sk["median"] / seed["median"]
    ratios["sharing: epochs [5,10,20] / [20]"] = (
        m["keras warm epochs [5,10,20]"]["median"] / m["keras warm epochs [20]"]["median"]
    )
    ratios["no sharing: epochs [5,10,20] unshared / [20]"] = (
        m["keras warm epochs [5,10,20] unshared"]["median"] / m["keras warm epochs [20]"]["median"]
    )
    ratios["share_prefixes=False / default (seed grid)"] = (
        m["keras warm share_prefixes=False"]["median"] / m["keras warm"]["median"]
    )
    ratios["fuse=True / default (seed grid)"] = (
        m["keras warm fuse=True"]["median"] / m["keras warm"]["median"]
    )
    ratios["cold first fit / warm"] = (
        m["keras cold first fit"]["median"] / m["keras warm"]["median"]
    )
    for key, value in ratios.items():
        say(f"  {key:52s} {value:9.3f}")
    say(f"\n{load()}")

    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(_LINES) + "\n")
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump(
                {
                    "measured": m,
                    "ratios": ratios,
                    "floor_seconds": floor,
                    "floor_shared_seconds": floor_shared,
                    "matmul_flops_per_second": rate,
                    "grid_flops": flops,
                },
                f,
                indent=2,
                default=str,
            )


def _row(walls: list[float], extra: dict) -> dict:
    return {
        "walls": walls,
        "median": statistics.median(walls),
        "best_score": extra.get("best_score"),
        "best_params": extra.get("best_params"),
    }


if __name__ == "__main__":
    main()
