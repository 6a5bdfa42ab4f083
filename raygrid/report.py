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

import base64
import html
import io
import json
import math
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raygrid import results as results_io
from raygrid.files import atomic_write
from raygrid.ranking import (
    format_table,
    parameter_columns,
    ranked_table,
    score_text,
    table_cells,
    value_label,
)
from raygrid.text import shorten

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGURE_FILES = {
    "heatmap": "heatmap.png",
    "params": "params.png",
    "curves": "curves.png",
    "timeline": "timeline.png",
}
CURVE_COLUMNS = ("loss_curve", "validation_loss_curve")
TASK_COLUMNS = ("candidate", "split", "start_time", "end_time", "node_id", "pid")
DPI = 110
# The HTML page, with $-placeholders (string.Template) for the parts html_report fills.
_TEMPLATE = resources.files("raygrid") / "templates" / "report.html"


class ReportError(Exception):
    """A problem with the report's input; ``raygrid report`` prints it as one line."""


@dataclass
class SearchResults:
    """A saved search, as read back by :func:`read_search`.

    Attributes
    ----------
    results : pandas.DataFrame
        ``cv_results_`` with one column per parameter, best first.
    tasks : pandas.DataFrame or None
        One row per (candidate, split) task; None when the search saved none.
    summary : dict
        The contents of ``search.json`` (empty if absent).
    params : list of str
        The parameter names, in the results' column order.
    metrics : list of str
        The scoring names (``"score"`` for single-metric searches).
    """

    results: pd.DataFrame
    tasks: pd.DataFrame | None
    summary: dict[str, Any]
    params: list[str]
    metrics: list[str]

    def default_metric(self) -> str:
        """The refit metric when ``refit`` names one, else the first metric."""
        refit = self.summary.get("refit")
        return refit if isinstance(refit, str) and refit in self.metrics else self.metrics[0]


# --------------------------------------------------------------------------- reading

# Columns of cv_results_ that must hold numbers.
_SCORE_COLUMN = re.compile(
    r"^((mean|std)_(fit|score)_time|(split\d+|mean|std|rank)_(test|train)_.+)$"
)


def _check_numeric(file: str, frame: pd.DataFrame, columns: list[str]) -> None:
    """Refuse ``file`` if one of ``columns`` holds something other than numbers."""
    for column in columns:
        dtype = frame[column].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            raise ReportError(f"{file}: column {column} holds {dtype}, not numbers")


def read_search(path: str | os.PathLike) -> SearchResults:
    """Read and check a results directory written by ``save_results``.

    Parameters
    ----------
    path : str or path-like
        The directory.

    Returns
    -------
    SearchResults

    Raises
    ------
    ReportError
        If the directory or its results file is missing, not raygrid results, or empty.
    """
    if not os.path.isdir(path):
        what = "not a directory" if os.path.exists(path) else "no such directory"
        raise ReportError(f"{path}: {what}")
    try:
        results, tasks, summary = results_io.load_results(path)
    except (OSError, ValueError) as exc:
        raise ReportError(str(exc)) from None
    if not isinstance(summary, dict):
        summary = {}
    results_file = os.path.join(path, results_io.RESULTS_FILE)
    metrics = [c.removeprefix("rank_test_") for c in results.columns if c.startswith("rank_test_")]
    missing = [
        f"{stat}_test_{m}"
        for m in metrics
        for stat in ("mean", "std")
        if f"{stat}_test_{m}" not in results
    ]
    if missing:
        raise ReportError(f"{results_file}: not raygrid search results (no {missing[0]} column)")
    if len(results) == 0:
        raise ReportError(f"{results_file}: no candidates (the file has zero rows)")
    _check_numeric(results_file, results, [c for c in results if _SCORE_COLUMN.match(c)])
    if tasks is not None:
        tasks_file = os.path.join(path, results_io.TASKS_FILE)
        absent = [c for c in TASK_COLUMNS if c not in tasks.columns]
        if absent:
            raise ReportError(f"{tasks_file}: not raygrid tasks (no {absent[0]} column)")
        _check_numeric(tasks_file, tasks, ["candidate", "split", "pid"])
        for column in ("start_time", "end_time"):
            if not pd.api.types.is_datetime64_any_dtype(tasks[column]):
                raise ReportError(
                    f"{tasks_file}: column {column} holds {tasks[column].dtype}, not times"
                )
        if len(tasks) and not tasks["candidate"].between(0, len(results) - 1).all():
            raise ReportError(f"{tasks_file}: candidate indices outside the results' rows")
    params = parameter_columns(results)
    return SearchResults(results.reset_index(drop=True), tasks, summary, params, metrics)


# ------------------------------------------------------------------ parameter values


@dataclass
class _Axis:
    """One parameter's values as plot-ready labels, in display order."""

    name: str
    labels: pd.Series  # one label per candidate
    order: list[str]  # distinct labels, in axis order
    values: list[float] | None  # numeric positions of ``order``; None: categorical
    log: bool


def _grid_order(summary: dict[str, Any], name: str) -> list[str]:
    """Labels of ``name``'s values in the order the saved ``param_grid`` lists them."""
    grid = summary.get("param_grid")
    grids = grid if isinstance(grid, list) else [grid]
    order: list[str] = []
    for sub in grids:
        values = sub.get(name) if isinstance(sub, dict) else None
        if isinstance(values, list):
            order += [label for label in map(value_label, values) if label not in order]
    return order


def _axis(search: SearchResults, name: str) -> _Axis:
    column = search.results[name]
    labels = column.map(value_label)
    is_number = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if is_number:
        numbers = sorted(float(v) for v in column.dropna().unique())
        order = list(dict.fromkeys(value_label(v) for v in numbers))
        if column.isna().any():
            return _Axis(name, labels, [*order, "None"], None, False)
        return _Axis(name, labels, order, numbers, _log_scale(numbers))
    present = set(labels)
    order = [label for label in _grid_order(search.summary, name) if label in present]
    order += sorted(present - set(order), key=lambda s: (s == "None", s))
    return _Axis(name, labels, order, None, False)


def _log_scale(numbers: list[float]) -> bool:
    """Whether sorted distinct values read better on a log axis.

    Positive values spanning a decade or more (learning rates 0.001 and 0.01, alphas
    0.1 to 100) do, unless they are evenly spaced on a linear scale (depths 1 to 10):
    with three values or more, the spacing (linear or logarithmic) whose steps vary
    least wins.
    """
    if numbers[0] <= 0 or numbers[-1] / numbers[0] < 10:
        return False
    if len(numbers) < 3:
        return True
    return _unevenness(np.diff(np.log(numbers))) <= _unevenness(np.diff(numbers))


def _unevenness(steps: np.ndarray) -> float:
    return float(np.std(steps) / np.mean(steps))


def _scores(search: SearchResults, metric: str, names: Sequence[str]) -> pd.DataFrame:
    """Per candidate: the parameters' labels, mean/std test (and mean train) score."""
    frame = pd.DataFrame({name: search.results[name].map(value_label) for name in names})
    frame["mean"] = search.results[f"mean_test_{metric}"].astype(float)
    frame["std"] = search.results[f"std_test_{metric}"].astype(float)
    train = f"mean_train_{metric}"
    if train in search.results:
        frame["train"] = search.results[train].astype(float)
    return frame


def _best_per(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The best candidate (highest mean; failed last) for each combination of ``by``."""
    ordered = frame.sort_values("mean", ascending=False, na_position="last", kind="stable")
    return ordered.drop_duplicates(subset=by).set_index(by)


def parameter_influence(search: SearchResults, metric: str) -> pd.DataFrame:
    """How much each parameter moves the score, most influential first.

    Parameters
    ----------
    search : SearchResults
    metric : str
        The scoring name.

    Returns
    -------
    pandas.DataFrame
        Indexed by parameter, with columns ``n_values``, ``spread_of_best`` (max - min
        over the parameter's values of the best mean test score with that value) and
        ``spread_of_mean`` (the same for the average score), sorted by
        ``spread_of_best`` then ``spread_of_mean``. Values whose candidates all failed
        are left out of the spreads.
    """
    frame = _scores(search, metric, search.params)
    rows = []
    for name in search.params:
        best = frame.groupby(name, sort=False)["mean"].max()
        average = frame.groupby(name, sort=False)["mean"].mean()
        rows.append(
            {
                "parameter": name,
                "n_values": frame[name].nunique(),
                "spread_of_best": _spread(best),
                "spread_of_mean": _spread(average),
            }
        )
    table = pd.DataFrame(
        rows, columns=["parameter", "n_values", "spread_of_best", "spread_of_mean"]
    )
    table = table.set_index("parameter")
    return table.sort_values(["spread_of_best", "spread_of_mean"], ascending=False, kind="stable")


def _spread(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.max() - values.min()) if len(values) > 1 else 0.0


def heatmap_params(
    search: SearchResults, metric: str, requested: Sequence[str] | None = None
) -> tuple[str, str] | None:
    """The heatmap's two parameters: ``requested``, or the two most influential.

    Returns
    -------
    tuple of str or None
        None when fewer than two parameters take more than one value.

    Raises
    ------
    ReportError
        If a requested name is not a parameter of the search, or both are the same.
    """
    if requested:
        for name in requested:
            if name not in search.params:
                known = ", ".join(search.params) or "none"
                raise ReportError(
                    f"--params: no parameter {name!r} in the results (parameters: {known})"
                )
        if requested[0] == requested[1]:
            raise ReportError(
                f"--params: give two different parameters, not {requested[0]!r} twice"
            )
        return requested[0], requested[1]
    influence = parameter_influence(search, metric)
    varied = list(influence.index[influence["n_values"] > 1])
    return (varied[0], varied[1]) if len(varied) >= 2 else None


# ------------------------------------------------------------------------- the table


# ----------------------------------------------------------------------- the figures


def _matplotlib() -> Any:
    """Import matplotlib (the ``plot`` extra), or fail with the install command."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise ReportError(
            "figures need matplotlib, which is not installed: pip install 'raygrid[plot]'"
        ) from None
    return matplotlib


def _new_figure(width: float, height: float) -> Figure:
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Figure, dpi: int = DPI) -> bytes:
    """Render a figure as PNG bytes (with the Agg backend).

    Parameters
    ----------
    figure : matplotlib.figure.Figure
    dpi : int, default=110

    Returns
    -------
    bytes
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def heatmap_figure(search: SearchResults, metric: str, pair: tuple[str, str]) -> Figure:
    """Mean test score over two parameters, each cell the best over the others.

    Parameters
    ----------
    search : SearchResults
    metric : str
        The scoring name.
    pair : tuple of str
        The parameters on the x and y axes.

    Returns
    -------
    matplotlib.figure.Figure
    """
    x_axis, y_axis = _axis(search, pair[0]), _axis(search, pair[1])
    best = _best_per(_scores(search, metric, pair), list(pair))["mean"]
    grid = np.full((len(y_axis.order), len(x_axis.order)), np.nan)
    tried = np.zeros(grid.shape, dtype=bool)  # False: no candidate has this pair
    for (x_label, y_label), value in best.items():
        cell = y_axis.order.index(y_label), x_axis.order.index(x_label)
        grid[cell], tried[cell] = value, True

    width = min(12.0, max(5.0, 0.75 * len(x_axis.order) + 3.0))
    height = min(10.0, max(3.6, 0.5 * len(y_axis.order) + 2.0))
    figure = _new_figure(width, height)
    ax = figure.add_subplot()
    cmap = _cmap("viridis").with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, origin="lower", aspect="auto")
    if grid.size <= 300:
        _annotate_cells(ax, grid, tried, image)
    if np.isfinite(grid).any():
        row, col = np.unravel_index(np.nanargmax(grid), grid.shape)
        ax.add_patch(_rectangle((col - 0.5, row - 0.5), "red"))
    ax.set_xticks(range(len(x_axis.order)), [shorten(s, 14) for s in x_axis.order])
    ax.set_yticks(range(len(y_axis.order)), [shorten(s, 18) for s in y_axis.order])
    if max(map(len, x_axis.order)) > 5:
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel(pair[0])
    ax.set_ylabel(pair[1])
    others = [p for p in search.params if p not in pair]
    title = f"Mean test {metric}: {pair[0]} × {pair[1]}"
    if others:
        title += f"\neach cell: best over {shorten(', '.join(others), 50)}"
    ax.set_title(title, fontsize=10)
    colorbar = figure.colorbar(image, ax=ax)
    colorbar.set_label(f"mean test {metric}")
    return figure


def _cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name]


def _rectangle(corner: tuple[float, float], color: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(corner, 1, 1, fill=False, edgecolor=color, linewidth=2.5)


def _annotate_cells(ax: Any, grid: np.ndarray, tried: np.ndarray, image: Any) -> None:
    """Write each cell's score in it, in black or white for contrast."""
    size = 9 if grid.shape[1] <= 6 else 8 if grid.shape[1] <= 10 else 6
    for (row, col), value in np.ndenumerate(grid):
        if np.isnan(value):
            text = "failed" if tried[row, col] else "–"
            ax.text(col, row, text, ha="center", va="center", fontsize=size, color="dimgrey")
            continue
        red, green, blue, _ = image.cmap(image.norm(value))
        dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
        ax.text(
            col,
            row,
            f"{value:.3g}",
            ha="center",
            va="center",
            fontsize=size,
            color="white" if dark else "black",
        )


def parameters_figure(search: SearchResults, metric: str) -> Figure:
    """One panel per parameter: the test score against the parameter's values.

    Each value's line point is the best candidate with that value (error bar: its std
    over the splits; dashed: its train score when saved); grey dots are all candidates.

    Parameters
    ----------
    search : SearchResults
    metric : str
        The scoring name.

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = search.params
    n_cols = min(3, max(1, len(names)))
    n_rows = max(1, math.ceil(len(names) / n_cols))
    figure = _new_figure(max(5.5, 4.0 * n_cols), 3.2 * n_rows)
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    frame = _scores(search, metric, names)
    for i, (ax, name) in enumerate(zip(axes, names, strict=False)):
        _parameter_panel(ax, _axis(search, name), frame)
        if i % n_cols == 0:
            ax.set_ylabel(f"mean test {metric}")
    for ax in axes[max(1, len(names)) :]:
        ax.set_visible(False)
    if names:
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=8)
    else:
        axes[0].text(0.5, 0.5, "the grid has no parameters", ha="center", va="center")
        axes[0].set_axis_off()
    figure.suptitle(f"Test {metric} per parameter", fontsize=10)
    return figure


def _parameter_panel(ax: Any, axis: _Axis, frame: pd.DataFrame) -> None:
    positions = dict(zip(axis.order, axis.values or range(len(axis.order)), strict=True))
    x_all = frame[axis.name].map(positions)
    ax.scatter(
        x_all, frame["mean"], s=12, color="grey", alpha=0.35, label="all candidates", zorder=1
    )
    best = _best_per(frame, [axis.name]).reindex(axis.order)
    x = [positions[label] for label in axis.order]
    ax.errorbar(
        x,
        best["mean"],
        yerr=best["std"],
        marker="o",
        capsize=3,
        color="tab:blue",
        label="best candidate per value, ± std over splits",
        zorder=3,
    )
    if "train" in best:
        ax.plot(
            x,
            best["train"],
            ls="--",
            marker=".",
            color="tab:orange",
            label="train score of the same candidate",
            zorder=2,
        )
    if axis.values is None:
        ax.set_xticks(range(len(axis.order)), [shorten(s, 14) for s in axis.order])
        if max(map(len, axis.order)) > 6:
            ax.tick_params(axis="x", labelrotation=35)
        ax.set_xlim(-0.5, len(axis.order) - 0.5)
    elif axis.log:
        ax.set_xscale("log")
    ax.set_xlabel(axis.name)
    ax.grid(alpha=0.3)
    failed = [label for label in axis.order if np.isnan(best.loc[label, "mean"])]
    if failed:
        ax.text(
            0.02,
            0.02,
            shorten("all fits failed: " + ", ".join(failed), 40),
            transform=ax.transAxes,
            fontsize=7,
            color="tab:red",
        )


def timeline_tasks(tasks: pd.DataFrame | None) -> pd.DataFrame:
    """The tasks a timeline shows: run in this search (not resumed), with times and pid.

    Parameters
    ----------
    tasks : pandas.DataFrame or None
        A search's ``tasks_``.

    Returns
    -------
    pandas.DataFrame
        Possibly empty.
    """
    if tasks is None:
        return pd.DataFrame(columns=list(TASK_COLUMNS))
    keep = tasks["start_time"].notna() & tasks["end_time"].notna() & tasks["pid"].notna()
    if "resumed" in tasks:
        keep &= ~tasks["resumed"].fillna(False).astype(bool)
    return tasks[keep]


def _node_keys(tasks: pd.DataFrame) -> pd.Series:
    return tasks["node_id"].fillna("?").astype(str)


def _workers(tasks: pd.DataFrame) -> pd.DataFrame:
    """One row per worker process (node, pid), ordered by node then GPU then pid."""
    gpus = (
        tasks["gpu_ids"].fillna("").astype(str)
        if "gpu_ids" in tasks
        else pd.Series("", tasks.index)
    )
    keyed = tasks.assign(gpu=gpus, node=_node_keys(tasks))
    workers = keyed.groupby(["node", "pid"], sort=False).agg(
        gpu=("gpu", lambda s: ",".join(sorted(set(s) - {""}))),
        first=("start_time", "min"),
    )
    node_first = workers.groupby(level="node")["first"].min().sort_values()
    node_rank = {node: i for i, node in enumerate(node_first.index)}
    workers = workers.reset_index()
    workers["node_index"] = workers["node"].map(node_rank)
    return workers.sort_values(["node_index", "gpu", "pid"]).reset_index(drop=True)


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 3 * 3600:
        return 3600.0, "hours"
    if seconds >= 3 * 60:
        return 60.0, "minutes"
    return 1.0, "seconds"


def timeline_figure(tasks: pd.DataFrame, n_candidates: int) -> Figure:
    """Every task as a bar from start to end, one row per worker process.

    Bars are coloured by candidate; failed tasks are red and hatched, retried ones
    outlined in black. Each row's label gives its share of the wall time spent busy.

    Parameters
    ----------
    tasks : pandas.DataFrame
        From :func:`timeline_tasks`; not empty.
    n_candidates : int
        For the colour scale.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    workers = _workers(tasks)
    row_of = {(w.node, w.pid): i for i, w in enumerate(workers.itertuples())}
    t0, t1 = tasks["start_time"].min(), tasks["end_time"].max()
    wall = max((t1 - t0).total_seconds(), 1e-9)
    scale, unit = _time_unit(wall)
    start = (tasks["start_time"] - t0).dt.total_seconds() / scale
    duration = ((tasks["end_time"] - tasks["start_time"]).dt.total_seconds() / scale).clip(
        lower=wall / scale / 2000
    )
    nodes = _node_keys(tasks)
    rows = pd.Series(
        [row_of[key] for key in zip(nodes, tasks["pid"], strict=True)], index=tasks.index
    )
    failed, retried = _failed_and_retried(tasks)

    figure = _new_figure(10.0, min(14.0, 1.8 + 0.42 * len(workers)))
    ax = figure.add_subplot()
    norm = matplotlib.colors.Normalize(0, max(1, n_candidates - 1))
    cmap = matplotlib.colormaps["viridis"]
    colors = cmap(norm(tasks["candidate"].to_numpy()))
    _task_bars(ax, rows, start, duration, colors, failed, retried)

    _worker_rows(ax, workers, duration.groupby(rows).sum() * scale / wall)
    ax.set_xlim(0, wall / scale * 1.01)
    ax.set_xlabel(f"{unit} since the first task started")
    ax.grid(axis="x", alpha=0.3)
    share = duration.sum() * scale / (wall * len(workers))
    ax.set_title(
        f"Tasks per worker: {len(tasks)} tasks on {len(workers)} workers, "
        f"{workers['node'].nunique()} node(s); wall {wall / scale:.3g} {unit}, busy {share:.0%}",
        fontsize=10,
    )
    colorbar = figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01)
    colorbar.set_label("candidate")
    colorbar.locator = matplotlib.ticker.MaxNLocator(integer=True)
    colorbar.update_ticks()
    return figure


def _failed_and_retried(tasks: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Which tasks failed, and which ran more than once."""
    failed = tasks["error"].notna() if "error" in tasks else pd.Series(False, index=tasks.index)
    retried = (
        tasks["attempts"].fillna(1) > 1
        if "attempts" in tasks
        else pd.Series(False, index=tasks.index)
    )
    return failed, retried


def _task_bars(
    ax: Any,
    rows: pd.Series,
    start: pd.Series,
    duration: pd.Series,
    colors: np.ndarray,
    failed: pd.Series,
    retried: pd.Series,
) -> None:
    """The tasks' bars: coloured by candidate, failed ones red and hatched, retried outlined."""
    ok = ~failed
    ax.barh(
        rows[ok],
        duration[ok],
        left=start[ok],
        height=0.7,
        color=colors[ok.to_numpy()],
        edgecolor=np.where(retried[ok], "black", "white"),
        linewidth=np.where(retried[ok], 1.2, 0.3),
    )
    if failed.any():
        ax.barh(
            rows[failed],
            duration[failed],
            left=start[failed],
            height=0.7,
            color="tab:red",
            edgecolor="darkred",
            hatch="///",
            label=f"failed ({int(failed.sum())})",
        )
    if retried.any():
        ax.barh([], [], color="white", edgecolor="black", label=f"retried ({int(retried.sum())})")
    if failed.any() or retried.any():
        ax.legend(fontsize=8, loc="upper right")


def _worker_rows(ax: Any, workers: pd.DataFrame, busy: pd.Series) -> None:
    """One labelled row per worker, a line between nodes."""
    labels = [
        _worker_label(w, busy.get(i, 0.0), len(workers["node"].unique()))
        for i, w in enumerate(workers.itertuples())
    ]
    ax.set_yticks(range(len(workers)), labels, fontsize=8)
    ax.set_ylim(len(workers) - 0.5, -0.5)
    for i in range(1, len(workers)):
        if workers["node_index"][i] != workers["node_index"][i - 1]:
            ax.axhline(i - 0.5, color="black", linewidth=0.8)


def _worker_label(worker: Any, busy: float, n_nodes: int) -> str:
    parts = [f"node {worker.node_index + 1} {worker.node[:6]}"] if n_nodes > 1 else []
    if worker.gpu:
        parts.append(f"GPU {worker.gpu}")
    parts.append(f"pid {worker.pid}")
    return " · ".join(parts) + f"  ({busy:.0%})"


def _has_curves(tasks: pd.DataFrame | None) -> bool:
    return tasks is not None and "loss_curve" in tasks and tasks["loss_curve"].notna().any()


def curves_figure(search: SearchResults, metric: str, top: int = 5) -> Figure:
    """The per-epoch loss of the ``top`` best candidates, one line per fold.

    Solid lines are the training loss (``loss_curve``), dashed ones the validation loss
    (``validation_loss_curve``) when the estimator kept one; one colour per candidate.

    Parameters
    ----------
    search : SearchResults
        With tasks that have a ``loss_curve`` column.
    metric : str
        The scoring name the candidates are ranked by.
    top : int, default=5
        How many candidates to draw.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ranks = search.results[f"rank_test_{metric}"].sort_values(kind="stable")
    best = list(ranks.index[:top])
    figure = _new_figure(8.0, 4.5)
    ax = figure.add_subplot()
    colors = _matplotlib().colormaps["tab10"]
    for i, candidate in enumerate(best):
        rows = search.tasks[search.tasks["candidate"] == candidate].sort_values("split")
        name = f"#{ranks[candidate]}: " + shorten(
            ", ".join(f"{p}={value_label(search.results[p][candidate])}" for p in search.params),
            60,
        )
        for column, style in zip(CURVE_COLUMNS, ("-", "--"), strict=True):
            cells = rows.get(column, [])
            curves = [c for c in cells if isinstance(c, list | tuple | np.ndarray) and len(c)]
            for fold, curve in enumerate(curves):
                label = name if column == "loss_curve" and fold == 0 else None
                epochs = np.arange(1, len(curve) + 1)
                ax.plot(epochs, curve, style, color=colors(i % 10), alpha=0.8, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(
        f"Loss per epoch of the {len(best)} best candidates by {metric}, one line per fold "
        "(dashed: validation)",
        fontsize=10,
    )
    return figure


def render_figures(
    search: SearchResults, metric: str, pair: tuple[str, str] | None
) -> tuple[dict[str, bytes], list[str]]:
    """Draw the report's figures as PNG bytes.

    Parameters
    ----------
    search : SearchResults
    metric : str
        The scoring name.
    pair : tuple of str or None
        The heatmap's parameters; None skips the heatmap.

    Returns
    -------
    figures : dict of str to bytes
        Keyed by ``"heatmap"``, ``"params"``, ``"curves"`` (when the tasks hold
        per-epoch losses), ``"timeline"`` (those drawn).
    notes : list of str
        Why a figure was skipped.
    """
    _matplotlib()
    figures: dict[str, bytes] = {}
    notes: list[str] = []
    if pair is None:
        varied = [p for p in search.params if search.results[p].map(value_label).nunique() > 1]
        notes.append(
            "heatmap skipped: it needs two parameters taking several values "
            f"(this grid varies {len(varied)}: {', '.join(varied) or 'none'})"
        )
    else:
        figures["heatmap"] = figure_png(heatmap_figure(search, metric, pair))
    figures["params"] = figure_png(parameters_figure(search, metric))
    if _has_curves(search.tasks):
        figures["curves"] = figure_png(curves_figure(search, metric))
    tasks = timeline_tasks(search.tasks)
    if len(tasks):
        figures["timeline"] = figure_png(timeline_figure(tasks, len(search.results)))
    else:
        notes.append("timeline skipped: no tasks with start and end times in the results")
    return figures, notes


# ------------------------------------------------------------------------ HTML page


def _summary_items(search: SearchResults, metric: str) -> list[tuple[str, str]]:
    summary, results = search.summary, search.results
    items: list[tuple[str, str]] = []
    for key, name in (("estimator", "estimator"), ("scoring", "scoring"), ("refit", "refit")):
        if key in summary:
            items.append((name, str(summary[key])))
    if "param_grid" in summary:
        items.append(("parameter grid", json.dumps(summary["param_grid"])))
    splits = summary.get("n_splits")
    items.append(("candidates", f"{len(results)}" + (f" × {splits} splits" if splits else "")))
    best = results.sort_values(f"rank_test_{metric}", kind="stable").iloc[0]
    items.append(
        (f"best {metric}", score_text(best[f"mean_test_{metric}"], best[f"std_test_{metric}"]))
    )
    if summary.get("best_params") is not None:
        items.append(("best parameters (refit)", json.dumps(summary["best_params"])))
    if search.tasks is not None and len(search.tasks):
        items.append(("tasks", _tasks_text(search.tasks)))
    return items


def _tasks_text(tasks: pd.DataFrame) -> str:
    parts = [f"{len(tasks)}"]
    for column, word in (("error", "failed"), ("resumed", "resumed")):
        if column in tasks:
            count = int(
                tasks[column].notna().sum()
                if column == "error"
                else tasks[column].fillna(False).astype(bool).sum()
            )
            parts.append(f"{count} {word}")
    if "attempts" in tasks:
        parts.append(f"{int((tasks['attempts'].fillna(1) > 1).sum())} retried")
    n_workers = len(tasks[["node_id", "pid"]].drop_duplicates())
    parts.append(f"{tasks['node_id'].nunique()} node(s), {n_workers} workers")
    shown = timeline_tasks(tasks)
    if len(shown):
        wall = (shown["end_time"].max() - shown["start_time"].min()).total_seconds()
        parts.append(f"wall {wall:.3g} s")
    return ", ".join(parts)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figures_html(figures: dict[str, bytes], heatmap_pair: tuple[str, str] | None) -> str:
    """The PNGs as embedded ``<figure>`` elements with their captions."""
    pair = f" ({' × '.join(heatmap_pair)})" if heatmap_pair else ""
    captions = {
        "heatmap": f"Mean test score over two parameters{pair}, best over the others",
        "params": "Test score per parameter",
        "curves": "Loss per epoch of the best candidates",
        "timeline": "Tasks per worker over time",
    }
    return "\n".join(
        f'<figure><img alt="{html.escape(name)}" src="{_data_uri(png)}">'
        f"<figcaption>{html.escape(captions.get(name, name))}</figcaption></figure>"
        for name, png in figures.items()
    )


def html_report(
    search: SearchResults,
    metric: str,
    table: pd.DataFrame,
    figures: dict[str, bytes],
    notes: Sequence[str] = (),
    title: str = "raygrid report",
    heatmap_pair: tuple[str, str] | None = None,
) -> str:
    """One self-contained HTML page: summary, ranked table and embedded PNG figures.

    Parameters
    ----------
    search : SearchResults
    metric : str
        The scoring name.
    table : pandas.DataFrame
        From :func:`raygrid.ranking.ranked_table`.
    figures : dict of str to bytes
        PNG images, from :func:`render_figures`.
    notes : sequence of str, default=()
        Shown under the figures.
    title : str, default="raygrid report"
    heatmap_pair : tuple of str, default=None
        The heatmap's parameters, for its caption.

    Returns
    -------
    str
        The page; it loads nothing from elsewhere.
    """
    esc = html.escape
    summary = "\n".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _summary_items(search, metric)
    )
    header, rows = table_cells(table, metric)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    images = _figures_html(figures, heatmap_pair)
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    shown = (
        f"top {len(table)} of {len(search.results)}" if len(table) < len(search.results) else "all"
    )
    page = string.Template(_TEMPLATE.read_text(encoding="utf-8"))
    return page.substitute(
        title=esc(title),
        summary=summary,
        metric=esc(metric),
        shown=esc(shown),
        head=head,
        body=body,
        images=images,
        notes=note_items,
    )


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
    _matplotlib()

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
