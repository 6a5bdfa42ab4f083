"""The ranked results table, printed by ``raygrid run``, ``raygrid submit`` and ``raygrid report``.

A results frame is ``cv_results_`` as columns (see :mod:`raygrid.store.results`): the parameters
under their own names next to scikit-learn's score and time columns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from raygrid.store.results import SKLEARN_COLUMN
from raygrid.text import shorten

#: Columns of a results frame that are not parameters.
NON_PARAMETER = SKLEARN_COLUMN


def parameter_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a results frame that hold parameter values, in the frame's order.

    Parameters
    ----------
    frame : pandas.DataFrame
        A results frame.

    Returns
    -------
    list of str

    Examples
    --------
    >>> parameter_columns(pd.DataFrame(columns=["alpha", "mean_test_score", "params"]))
    ['alpha']
    """
    return [c for c in frame.columns if not NON_PARAMETER.match(c)]


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A results frame with its parameters under their bare names, for display.

    ``param_C`` becomes ``C`` (unless the frame already has a column ``C``); frames
    whose parameters already have bare names are returned as they are.

    Parameters
    ----------
    frame : pandas.DataFrame
        Saved results (scikit-learn's column names) or a results frame.

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> list(display_frame(pd.DataFrame(columns=["param_C", "mean_test_score"])).columns)
    ['C', 'mean_test_score']
    """
    names = {
        c: c.removeprefix("param_")
        for c in frame.columns
        if c.startswith("param_") and c.removeprefix("param_") not in frame.columns
    }
    return frame.rename(columns=names) if names else frame


def _is_missing(value: Any) -> bool:
    if isinstance(value, float | np.floating):
        return math.isnan(value)
    return value is None or value is pd.NA


def value_label(value: Any) -> str:
    """A parameter value as text: None for missing, integral floats without '.0'.

    Parameters
    ----------
    value : object

    Returns
    -------
    str

    Examples
    --------
    >>> value_label(4.0), value_label(float("nan")), value_label(0.5)
    ('4', 'None', '0.5')
    """
    if _is_missing(value):
        return "None"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def ranked_table(
    results: pd.DataFrame, metric: str, params: list[str], top: int | None = None
) -> pd.DataFrame:
    """The candidates ranked by ``metric``: rank, mean, std and the parameters' values.

    Parameters
    ----------
    results : pandas.DataFrame
        A results frame.
    metric : str
        The scoring name; ranks are the search's ``rank_test_<metric>``.
    params : list of str
        The parameter columns to show.
    top : int, default=None
        Keep the first ``top`` rows; all when None.

    Returns
    -------
    pandas.DataFrame
        Columns ``rank``, ``mean``, ``std``, then one column of labels per parameter.

    Examples
    --------
    >>> frame = pd.DataFrame({"alpha": [1.0, 2.0], "mean_test_score": [0.5, 0.7],
    ...                       "std_test_score": [0.1, 0.0], "rank_test_score": [2, 1]})
    >>> ranked_table(frame, "score", ["alpha"])["alpha"].tolist()
    ['2', '1']
    """
    table = pd.DataFrame(
        {
            "rank": results[f"rank_test_{metric}"].astype(int),
            "mean": results[f"mean_test_{metric}"].astype(float),
            "std": results[f"std_test_{metric}"].astype(float),
        }
    )
    for name in params:
        table[name] = results[name].map(value_label)
    table = table.sort_values("rank", kind="stable").reset_index(drop=True)
    return table if top is None else table.head(top)


def score_text(mean: float, std: float) -> str:
    """A mean score and its std as ``mean ± std``, or ``failed`` when the mean is NaN.

    Parameters
    ----------
    mean, std : float

    Returns
    -------
    str
    """
    if math.isnan(mean):
        return "failed"
    digits = ".4f" if abs(mean) < 1e4 else ".4g"
    return f"{mean:{digits}} ± {std:{digits}}"


def table_cells(table: pd.DataFrame, metric: str) -> tuple[list[str], list[list[str]]]:
    """A :func:`ranked_table` as a header and rows of text cells.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`ranked_table`.
    metric : str
        The scoring name, for the header.

    Returns
    -------
    header : list of str
    rows : list of list of str
    """
    header = ["rank", f"{metric} (mean ± std)", *table.columns[3:]]
    rows = [
        [str(int(row["rank"])), score_text(row["mean"], row["std"])]
        + [shorten(str(row[c]), 30) for c in table.columns[3:]]
        for _, row in table.iterrows()
    ]
    return header, rows


def format_table(table: pd.DataFrame, metric: str) -> str:
    """A :func:`ranked_table` as aligned text for the terminal.

    Parameters
    ----------
    table, metric
        As for :func:`table_cells`.

    Returns
    -------
    str
    """
    header, rows = table_cells(table, metric)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].rjust(widths[0])
        return "  ".join(
            [first] + [c.ljust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])
