"""A saved search read back and analysed: which parameters move the score, and how.

:func:`read_search` reads what :meth:`RayGridSearchCV.save_results` wrote and checks it;
:func:`parameter_influence` and :func:`heatmap_params` find the parameters that matter
(see :mod:`raygrid.report.build` for how influence is defined).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from raygrid.report.ranking import display_frame, value_label
from raygrid.store import results as results_io
from raygrid.text import shorten

TASK_COLUMNS = ("candidate", "split", "start_time", "end_time", "node_id", "pid")


class ReportError(Exception):
    """A problem with the report's input; ``raygrid report`` prints it as one line."""


@dataclass
class SearchResults:
    """A saved search, as read back by :func:`read_search`.

    Attributes
    ----------
    results : pandas.DataFrame
        ``cv_results_`` with one column per parameter (under its bare name), indexed by
        candidate id (row ``i`` is candidate ``i``).
    tasks : pandas.DataFrame or None
        One row per (candidate, split) task; None when the search saved none.
    summary : dict
        The contents of ``search.json`` (empty if absent).
    params : list of str
        The parameter names, in the results' column order.
    metrics : list of str
        The scoring names (``"score"`` for single-metric searches).
    notes : list of str
        Figures left out for want of usable tasks, and why.
    """

    results: pd.DataFrame
    tasks: pd.DataFrame | None
    summary: dict[str, Any]
    params: list[str]
    metrics: list[str]
    notes: list[str] = field(default_factory=list)

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

    A missing, unreadable or foreign ``tasks.parquet`` (one whose tasks do not have the
    parameters the results give their candidates) is not an error: the search is read
    without tasks, and :attr:`SearchResults.notes` says which figures that leaves out
    and why.

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
        stored, summary = results_io.read_results(path)
    except (OSError, ValueError) as exc:
        raise ReportError(str(exc)) from None
    tasks_file = os.path.join(path, results_io.TASKS_FILE)
    try:
        tasks = results_io.read_tasks(path)
        problem = None if tasks is not None else f"no {results_io.TASKS_FILE} in {path}"
    except ValueError as exc:
        tasks, problem = None, str(exc)
    results = results_io.sklearn_layout(stored, tasks, summary)
    results_file = os.path.join(path, results_io.RESULTS_FILE)
    metrics = _check_results(results_file, results)
    if tasks is not None:
        problem = _tasks_problem(tasks_file, tasks, results)
    notes = []
    if problem is not None:
        tasks = None
        notes.append(f"timeline and learning curves left out: {problem}")
    shown = display_frame(results)
    params = [shown.columns[i] for i, c in enumerate(results.columns) if c.startswith("param_")]
    shown.index.name = "candidate"
    return SearchResults(shown, tasks, summary, params, metrics, notes)


def _check_results(results_file: str, results: pd.DataFrame) -> list[str]:
    """The results' metrics, after checking they are search results with numeric scores."""
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
    return metrics


def _tasks_problem(tasks_file: str, tasks: pd.DataFrame, results: pd.DataFrame) -> str | None:
    """Why ``tasks`` cannot be drawn next to ``results``, or None when they belong together."""
    absent = [c for c in (*TASK_COLUMNS, "params") if c not in tasks.columns]
    if absent:
        return f"{tasks_file} holds no raygrid tasks (no {absent[0]} column)"
    try:
        _check_numeric(tasks_file, tasks, ["candidate", "split", "pid"])
    except ReportError as exc:
        return str(exc)
    for column in ("start_time", "end_time"):
        if not pd.api.types.is_datetime64_any_dtype(tasks[column]):
            return f"{tasks_file}: column {column} holds {tasks[column].dtype}, not times"
    if len(tasks) and not tasks["candidate"].between(0, len(results) - 1).all():
        return (
            f"{tasks_file}: candidate indices outside the results' rows (another search's tasks)"
        )
    if "params" not in results:
        return f"{tasks_file}: the results have no params column to check the tasks against"
    expected = results["params"].astype(str).to_numpy()[tasks["candidate"].astype(int)]
    wrong = np.flatnonzero(tasks["params"].astype(str).to_numpy() != expected)
    if len(wrong):
        row = tasks.iloc[wrong[0]]
        return (
            f"{tasks_file} belongs to another search: its candidate {int(row['candidate'])} "
            f"has parameters {shorten(str(row['params']), 60)}, the results' "
            f"{shorten(str(expected[wrong[0]]), 60)}"
        )
    return None


# ------------------------------------------------------------------ parameter values


@dataclass
class ParameterAxis:
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


def parameter_axis(search: SearchResults, name: str) -> ParameterAxis:
    """The values of parameter ``name`` as labels, in grid order (numbers sorted).

    Parameters
    ----------
    search : SearchResults
    name : str
        A parameter column of ``search.results``.

    Returns
    -------
    ParameterAxis
    """
    column = search.results[name]
    labels = column.map(value_label)
    is_number = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if is_number:
        numbers = sorted(float(v) for v in column.dropna().unique())
        order = list(dict.fromkeys(value_label(v) for v in numbers))
        if column.isna().any():
            return ParameterAxis(name, labels, [*order, "None"], None, False)
        return ParameterAxis(name, labels, order, numbers, _log_scale(numbers))
    present = set(labels)
    order = [label for label in _grid_order(search.summary, name) if label in present]
    order += sorted(present - set(order), key=lambda s: (s == "None", s))
    return ParameterAxis(name, labels, order, None, False)


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


def candidate_scores(search: SearchResults, metric: str, names: Sequence[str]) -> pd.DataFrame:
    """Per candidate: the parameters' labels, mean/std test (and mean train) score.

    Parameters
    ----------
    search : SearchResults
    metric : str
        The scoring name.
    names : sequence of str
        The parameters to label.

    Returns
    -------
    pandas.DataFrame
        Columns ``names``, then ``mean``, ``std`` (and ``train`` when saved).
    """
    frame = pd.DataFrame({name: search.results[name].map(value_label) for name in names})
    frame["mean"] = search.results[f"mean_test_{metric}"].astype(float)
    frame["std"] = search.results[f"std_test_{metric}"].astype(float)
    train = f"mean_train_{metric}"
    if train in search.results:
        frame["train"] = search.results[train].astype(float)
    return frame


def best_per(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """The best candidate (highest mean; failed last) for each combination of ``by``.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`candidate_scores`.
    by : list of str
        Parameter columns.

    Returns
    -------
    pandas.DataFrame
        One row per combination, indexed by ``by``.
    """
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
    frame = candidate_scores(search, metric, search.params)
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
