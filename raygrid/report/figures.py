"""The report's figures: heatmap, score per parameter, learning curves, task timeline.

Matplotlib is imported only when a figure is drawn (the ``plot`` extra).
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raygrid.report.analysis import (
    ParameterAxis,
    ReportError,
    SearchResults,
    best_per,
    candidate_scores,
    parameter_axis,
    timeline_tasks,
)
from raygrid.report.ranking import value_label
from raygrid.text import shorten

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVE_COLUMNS = ("loss_curve", "validation_loss_curve")
DPI = 110


# ----------------------------------------------------------------------- the figures


def load_matplotlib() -> Any:
    """Import matplotlib (the ``plot`` extra), or fail with the install command.

    Returns
    -------
    module
        The ``matplotlib`` module.

    Raises
    ------
    ReportError
        When matplotlib is not installed.
    """
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
    load_matplotlib()
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
    x_axis, y_axis = parameter_axis(search, pair[0]), parameter_axis(search, pair[1])
    best = best_per(candidate_scores(search, metric, pair), list(pair))["mean"]
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
    frame = candidate_scores(search, metric, names)
    for i, (ax, name) in enumerate(zip(axes, names, strict=False)):
        _parameter_panel(ax, parameter_axis(search, name), frame)
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


def _parameter_panel(ax: Any, axis: ParameterAxis, frame: pd.DataFrame) -> None:
    positions = dict(zip(axis.order, axis.values or range(len(axis.order)), strict=True))
    x_all = frame[axis.name].map(positions)
    ax.scatter(
        x_all, frame["mean"], s=12, color="grey", alpha=0.35, label="all candidates", zorder=1
    )
    best = best_per(frame, [axis.name]).reindex(axis.order)
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


def _node_keys(tasks: pd.DataFrame) -> pd.Series:
    return tasks["node_id"].fillna("?").astype(str)


def _workers(tasks: pd.DataFrame) -> pd.DataFrame:
    """One row per worker process (node, pid), ordered by node then GPU then pid."""
    gpus = (
        tasks["gpu_ids"].fillna("").astype(str)
        if "gpu_ids" in tasks
        else pd.Series("", tasks.index)
    )
    device = (
        tasks["device"].fillna("").astype(str) if "device" in tasks else pd.Series("", tasks.index)
    )
    keyed = tasks.assign(gpu=gpus, device=device, node=_node_keys(tasks))
    workers = keyed.groupby(["node", "pid"], sort=False).agg(
        gpu=("gpu", lambda s: ",".join(sorted(set(s) - {""}))),
        device=("device", lambda s: ", ".join(sorted(set(s) - {""}))),
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
    outlined in black. Each row's label gives the device its fits ran on (``device``)
    and its share of the wall time spent busy.

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

    busy = busy_seconds(tasks, rows)
    _worker_rows(ax, workers, busy / wall)
    ax.set_xlim(0, wall / scale * 1.01)
    ax.set_xlabel(f"{unit} since the first task started")
    ax.grid(axis="x", alpha=0.3)
    share = busy.sum() / (wall * len(workers))
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


def busy_seconds(tasks: pd.DataFrame, rows: pd.Series) -> pd.Series:
    """Per row (worker), the seconds during which at least one of its tasks ran.

    Tasks that overlap on one worker (the fits a shared training or a fused stack
    reports, each with the training's start and end) count their time once.

    Parameters
    ----------
    tasks : pandas.DataFrame
        With ``start_time`` and ``end_time``.
    rows : pandas.Series
        Each task's worker row, on ``tasks``' index.

    Returns
    -------
    pandas.Series
        Indexed by row.
    """
    busy = {}
    for row, group in tasks.groupby(rows):
        total, reach = 0.0, None
        for start, end in sorted(zip(group["start_time"], group["end_time"], strict=True)):
            if reach is None or start > reach:
                total += (end - start).total_seconds()
                reach = end
            elif end > reach:
                total += (end - reach).total_seconds()
                reach = end
        busy[row] = total
    return pd.Series(busy, dtype=float)


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
    if worker.device:  # what the worker checked it ran on (CPU, GPU:0 NVIDIA A10G, ...)
        parts.append(worker.device)
    elif worker.gpu:
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
    best = list(ranks.index[:top])  # candidate ids (the results' index), best first
    figure = _new_figure(8.0, 4.5)
    ax = figure.add_subplot()
    colors = load_matplotlib().colormaps["tab10"]
    for i, candidate in enumerate(best):
        rows = search.tasks[search.tasks["candidate"] == candidate].sort_values("split")
        values = search.results.loc[candidate, search.params]
        name = f"#{ranks.loc[candidate]}: " + shorten(
            ", ".join(f"{p}={value_label(values[p])}" for p in search.params), 60
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
        Why a figure was left out (including ``search.notes``).
    """
    load_matplotlib()
    figures: dict[str, bytes] = {}
    notes: list[str] = list(search.notes)
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
    elif search.tasks is not None:
        notes.append("timeline left out: no tasks with start and end times in the results")
    return figures, notes
