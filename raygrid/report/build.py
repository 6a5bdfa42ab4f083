"""``raygrid report``: a saved search as a ranked table, figures and one HTML page.

Reads the directory :meth:`RayGridSearchCV.save_results` wrote (``cv_results.parquet``,
``tasks.parquet``, ``search.json``) — from a local run or a cluster job alike — and makes:

* a ranked table of the candidates (printed, and in the HTML page);
* ``heatmap.png``: mean test score over two parameters, each cell the best candidate
  over the other parameters;
* ``params.png``: one panel per parameter, the score against the parameter's values;
* ``timeline.png``: every task as a bar from its start to its end, one row per worker
  process (node, GPU, pid), showing idle workers and stragglers;
* with ``--html``, one self-contained page with all of the above.

The two *most influential* parameters (the heatmap's default) are found by
:func:`parameter_influence`: for each value of a parameter, take the best mean test
score over all candidates with that value; a parameter's influence is the spread (max -
min) of those best scores, i.e. how much is lost by fixing it at its worst value while
tuning everything else. Ties are broken by the spread of the per-value *average* score,
then by the results' column order. Values whose fits all failed are left out.

Matplotlib is imported only when figures are drawn (the ``plot`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from raygrid.report.analysis import (
    ReportError,
    SearchResults,
    heatmap_params,
    parameter_influence,
    read_search,
)
from raygrid.report.figures import (
    curves_figure,
    figure_png,
    heatmap_figure,
    load_matplotlib,
    parameters_figure,
    render_figures,
    timeline_figure,
)
from raygrid.report.page import html_report
from raygrid.report.ranking import format_table, ranked_table
from raygrid.store.files import atomic_write
from raygrid.text import shorten

# The report's public pieces, whichever module draws or computes them.
__all__ = [
    "FIGURE_FILES",
    "ReportError",
    "SearchResults",
    "curves_figure",
    "figure_png",
    "heatmap_figure",
    "heatmap_params",
    "html_report",
    "parameter_influence",
    "parameters_figure",
    "read_search",
    "render_figures",
    "run_report",
    "timeline_figure",
]

FIGURE_FILES = {
    "heatmap": "heatmap.png",
    "params": "params.png",
    "curves": "curves.png",
    "timeline": "timeline.png",
}


# ------------------------------------------------------------------------------ CLI


def _write(path: str, data: bytes | str) -> None:
    try:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        atomic_write(path, data if isinstance(data, bytes) else data.encode("utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None


def _write_figures(figures: dict[str, bytes], out: str) -> None:
    """Write the PNGs under ``out``; remove those an earlier report left that are not redrawn."""
    for name, png in figures.items():
        target = os.path.join(out, FIGURE_FILES[name])
        _write(target, png)
        print(f"wrote {target}")
    for name in FIGURE_FILES.keys() - figures.keys():
        stale = os.path.join(out, FIGURE_FILES[name])
        if os.path.isfile(stale):  # from an earlier report; it would not match these results
            try:
                os.remove(stale)
            except OSError as exc:
                raise ReportError(f"cannot remove {stale}: {exc.strerror or exc}") from None
            print(f"removed {stale}")


def run_report(
    path: str,
    out: str | None = None,
    html_file: str | None = None,
    metric: str | None = None,
    params: Sequence[str] | None = None,
    top: int = 10,
) -> None:
    """``raygrid report``: print the ranked table, write the figures and the HTML page.

    Parameters
    ----------
    path : str
        A directory written by ``save_results``.
    out : str, default=None
        Where to write the PNGs; ``path/figures`` when None.
    html_file : str, default=None
        Also write one self-contained HTML page here.
    metric : str, default=None
        The scoring name to rank by; the refit metric when None.
    params : sequence of two str, default=None
        The heatmap's parameters (x, y); the two most influential when None.
    top : int, default=10
        Rows in the table.

    Raises
    ------
    ReportError
        For input that cannot be reported, as one line.
    """
    search = read_search(path)
    metric = metric or search.default_metric()
    if metric not in search.metrics:
        raise ReportError(
            f"--metric: no metric {metric!r} in the results (metrics: {', '.join(search.metrics)})"
        )
    pair = heatmap_params(search, metric, params)
    load_matplotlib()

    table = ranked_table(search.results, metric, search.params, top)
    print(f"{len(search.results)} candidates, ranked by mean test {metric} (top {len(table)}):")
    print(format_table(table, metric))

    figures, notes = render_figures(search, metric, pair)
    out = out or os.path.join(path, "figures")
    print()
    _write_figures(figures, out)
    if html_file:
        title = f"raygrid report: {shorten(str(search.summary.get('estimator', path)), 80)}"
        _write(html_file, html_report(search, metric, table, figures, notes, title, pair))
        print(f"wrote {html_file}")
    if pair is not None:
        why = "from --params" if params else "the largest spread of per-value best score"
        print(f"heatmap parameters: {pair[0]} (x), {pair[1]} (y): {why}")
    for note in notes:
        print(f"note: {note}")
