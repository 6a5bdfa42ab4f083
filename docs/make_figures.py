"""Regenerate the user guide's heatmap (docs/guide/results.rst): ``python docs/make_figures.py``.

By default runs a small real search (an RBF SVC over C × gamma on 600 digits, 3-fold)
with raygrid on a local Ray and draws ``docs/heatmap.png`` from its saved results, with
the same code as ``raygrid report``. To draw it from another saved search instead (for
instance the Keras seed example's)::

    python docs/make_figures.py --results path/to/results [--params A B] [--metric NAME]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from raygrid.report import build as report

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_BYTES = 150_000


def run_demo_search(path: str) -> None:
    """Fit the demo search and save its results under ``path``."""
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    from raygrid import RayGridSearchCV

    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16.0, y[:600]
    grid = {"C": np.logspace(-1, 3, 5).tolist(), "gamma": np.logspace(-4, 0, 5).tolist()}
    search = RayGridSearchCV(SVC(kernel="rbf"), grid, cv=3, n_jobs=-1)
    search.fit(X, y)
    search.save_results(path)


def draw_heatmap(results: str, out: str, params: list[str] | None, metric: str | None) -> int:
    """Draw ``out`` from the saved search ``results``; return its size in bytes."""
    search = report.read_search(results)
    metric = metric or search.default_metric()
    pair = report.heatmap_params(search, metric, params)
    if pair is None:
        raise SystemExit(f"{results}: the grid varies fewer than two parameters")
    png = report.figure_png(report.heatmap_figure(search, metric, pair), dpi=90)
    with open(out, "wb") as f:
        f.write(png)
    return len(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", help="a saved search (default: run the SVC demo)")
    parser.add_argument("--params", nargs=2, metavar=("X", "Y"), help="the heatmap's axes")
    parser.add_argument("--metric", help="scoring name (default: the refit metric)")
    parser.add_argument("--out", default=os.path.join(HERE, "heatmap.png"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = args.results
        if results is None:
            results = os.path.join(tmp, "svc-digits")
            run_demo_search(results)
        size = draw_heatmap(results, args.out, args.params, args.metric)
    print(f"wrote {args.out} ({size / 1000:.0f} KB)")
    if size > MAX_BYTES:
        print(f"warning: larger than {MAX_BYTES // 1000} KB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
