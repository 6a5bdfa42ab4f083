"""Fused vs unfused raygrid.keras training on the seed grid, in one process, warm.

The seed grid (units × learning_rate × batch_size × epochs, 3 stratified folds) has
nine fusable groups: one per (units, batch_size), each of 2 learning rates × 2 epoch
counts × 3 folds = 12 fits. For each group this times (median of ``--repeats`` runs,
after one warm-up run that traces) the 12 unfused fits (``KerasClassifier.fit``, the
compiled loop) and one :func:`raygrid.keras.fused.fit_fused` call, and compares the
test-fold accuracies, the best parameters and the predicted probabilities. Also times a
prefix fit to [5, 10, 20] against one fit to 20. Timings on a shared 2-core machine
are noisy. Usage: ``python benchmarks/keras_fused.py [--repeats 3] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid, StratifiedKFold

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from seed_grid_search import SEED_GRID, seed_data  # noqa: E402

from raygrid.keras import KerasClassifier  # noqa: E402
from raygrid.keras.fused import fit_fused  # noqa: E402


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    X, _, y, _ = seed_data()
    folds = list(StratifiedKFold(3).split(X, y))
    base = KerasClassifier(random_state=0)
    candidates = list(ParameterGrid(SEED_GRID))
    lines = [f"seed grid: {len(candidates)} candidates x 3 folds; repeats={args.repeats}"]
    lines.append("group (units, batch)  unfused s  fused s  speed-up  max |proba diff|")
    unfused_scores = np.zeros((len(candidates), 3))
    fused_scores = np.zeros_like(unfused_scores)
    totals = [0.0, 0.0]
    for units, batch in itertools.product(SEED_GRID["units"], SEED_GRID["batch_size"]):
        chosen = [
            i for i, c in enumerate(candidates) if (c["units"], c["batch_size"]) == (units, batch)
        ]
        jobs = [(candidates[i], train) for i in chosen for train, _ in folds]

        def unfused(jobs=jobs):
            return [clone(base).set_params(**p).fit(X[t], y[t]) for p, t in jobs]

        def fused(jobs=jobs):
            return fit_fused(base, X, y, jobs)

        unfused(), fused()  # warm-up: traces
        t_unfused = statistics.median(timed(unfused)[0] for _ in range(args.repeats))
        t_fused = statistics.median(timed(fused)[0] for _ in range(args.repeats))
        totals[0] += t_unfused
        totals[1] += t_fused
        pairs = zip(unfused(), fused(), strict=True)
        worst = 0.0
        for k, (a, b) in enumerate(pairs):
            i, f = chosen[k // 3], k % 3
            test = folds[f][1]
            unfused_scores[i, f] = a.score(X[test], y[test])
            fused_scores[i, f] = b.score(X[test], y[test])
            worst = max(worst, float(np.abs(a.predict_proba(X) - b.predict_proba(X)).max()))
        lines.append(
            f"({units:3d}, {batch:2d})            {t_unfused:8.3f}  {t_fused:7.3f}"
            f"  {t_unfused / t_fused:7.2f}x  {worst:.2e}"
        )
    lines.append(
        f"all groups: unfused {totals[0]:.3f} s, fused {totals[1]:.3f} s, "
        f"speed-up {totals[0] / totals[1]:.2f}x"
    )
    best_u = candidates[int(np.argmax(unfused_scores.mean(axis=1)))]
    best_f = candidates[int(np.argmax(fused_scores.mean(axis=1)))]
    lines.append(f"best unfused {best_u} mean {unfused_scores.mean(axis=1).max():.4f}")
    lines.append(f"best fused   {best_f} mean {fused_scores.mean(axis=1).max():.4f}")
    lines.append(
        f"test-fold accuracies differing: {(unfused_scores != fused_scores).sum()} of "
        f"{unfused_scores.size}; max |diff| {np.abs(unfused_scores - fused_scores).max():.4f}"
    )
    template = KerasClassifier(units=64, batch_size=32, epochs=20, random_state=0)
    train = folds[0][0]
    clone(template).fit(X[train], y[train])
    shared, single = [], []
    for _ in range(7):  # interleaved, so that load changes hit both alike
        shared.append(
            timed(
                lambda: list(clone(template).prefix_fit(X[train], y[train], values=[5, 10, 20]))
            )[0]
        )
        single.append(timed(lambda: clone(template).fit(X[train], y[train]))[0])
    shared, single = statistics.median(shared), statistics.median(single)
    lines.append(
        f"prefix fit to [5, 10, 20]: {shared * 1e3:.1f} ms; one fit to 20: {single * 1e3:.1f} ms;"
        f" ratio {shared / single:.2f} (medians of 7)"
    )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
