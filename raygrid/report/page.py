"""The report as one self-contained HTML page, from the template ``templates/report.html``."""

from __future__ import annotations

import base64
import html
import json
import string
from collections.abc import Sequence
from importlib import resources

import pandas as pd

from raygrid.report.analysis import SearchResults, timeline_tasks
from raygrid.report.ranking import score_text, table_cells

# The HTML page, with $-placeholders (string.Template) for the parts html_report fills.
_TEMPLATE = resources.files("raygrid.report") / "templates" / "report.html"


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
        From :func:`raygrid.report.ranking.ranked_table`.
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
