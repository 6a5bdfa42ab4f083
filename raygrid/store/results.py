"""A finished search's results as tables and files.

* :func:`tasks_frame`: one row per (candidate, split) task, with where and when it ran;
* :func:`results_frame`: ``cv_results_`` with one column per parameter, best first (a
  display: parameters under their bare names);
* :func:`cv_results_table`: ``pd.DataFrame(cv_results_)``'s columns, one row per
  candidate in candidate order, in types Parquet holds: what ``cv_results.parquet`` stores;
* :func:`save_results` / :func:`load_results`: both tables as Parquet plus a small JSON
  summary, the layout ``raygrid report`` reads (and the layout 0.1 wrote, with bare
  parameter names and rows best first);
* :func:`write_output` / :func:`read_output`: the same layout at a path or a URI (copied
  through the URI's pyarrow filesystem);
* :func:`read_table` / :func:`read_schema`: a spec's data file (Parquet, CSV, Arrow IPC),
  local or at a URI.

``cv_results_`` itself is never changed by any of this.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import numpy as np
import pandas as pd

from raygrid.store.location import Location, is_uri  # noqa: F401  (is_uri: callers' name)
from raygrid.store.record import FitRecord

RESULTS_FILE = "cv_results.parquet"
TASKS_FILE = "tasks.parquet"
SUMMARY_FILE = "search.json"
LAYOUT_VERSION = 2

#: Columns of ``cv_results_`` that scikit-learn names itself (not parameters).
SKLEARN_COLUMN = re.compile(
    r"^(params|(mean|std)_(fit|score)_time|(split\d+|mean|std|rank)_(test|train)_.+)$"
)


def tasks_frame(
    fits: list[tuple[int, int, dict[str, Any]]],
    records: list[FitRecord],
    candidate_columns: dict[str, list[Any]] | None = None,
) -> pd.DataFrame:
    """One row per fit, in scikit-learn's candidate-major order.

    ``fits`` gives each fit's ``(candidate, split, params)``, ``records`` its record.

    Columns: ``candidate``, ``split``, ``params``, then ``candidate_columns`` (values per
    candidate, e.g. a halving search's ``iter`` and ``n_resources``), ``test_<metric>``
    (and ``train_<metric>``), ``fit_time``, ``score_time``, ``start_time``, ``end_time``
    (UTC timestamps), ``node_id``, ``gpu_ids``, ``pid``, ``worker_rss`` (the worker's
    resident memory in bytes right after the fit), ``device`` (what the fit ran on, e.g.
    ``GPU:0 NVIDIA A10G`` or ``CPU``; see :mod:`raygrid.run.devices`), ``attempts``, ``trained_with`` (the
    candidate whose training this fit was scored on: itself, or with prefix sharing the
    one trained to a larger value), ``continued_from`` (in a halving search over a
    training-length resource, the value the previous iteration's fit was trained on from),
    ``resumed`` (read back from the journal instead of run), ``error`` (traceback text, or None), and one column
    per fitted fact the estimators reported (``n_iter``, ``best_epoch``, ``loss_curve``,
    ...; see :data:`raygrid.store.record.FIT_INFO_ATTRIBUTES`).
    """
    rows = []
    for (candidate, split, params), record in zip(fits, records, strict=True):
        row: dict[str, Any] = {"candidate": candidate, "split": split, "params": params}
        for name, values in (candidate_columns or {}).items():
            row[name] = values[candidate]
        for prefix, scores in (("test", record.test_scores), ("train", record.train_scores)):
            if isinstance(scores, dict):
                row.update({f"{prefix}_{name}": value for name, value in scores.items()})
            elif scores is not None:
                row[f"{prefix}_score"] = scores
        row.update(
            fit_time=record.fit_time,
            score_time=record.score_time,
            start_time=record.start_time,
            end_time=record.end_time,
            node_id=record.node_id,
            gpu_ids=",".join(record.gpu_ids),
            pid=record.pid,
            worker_rss=record.worker_rss,
            device=record.device,
            attempts=record.attempts,
            trained_with=candidate if record.trained_in is None else record.trained_in,
            continued_from=record.continued_from,
            resumed=record.resumed,
            error=record.fit_error,
            **record.fit_info,
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("start_time", "end_time"):
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


def results_frame(cv_results: dict[str, Any], rank_by: str | None = None) -> pd.DataFrame:
    """``cv_results`` as a DataFrame, one column per parameter, sorted by rank.

    Parameters
    ----------
    cv_results : dict
        A search's ``cv_results_``.
    rank_by : str, default=None
        The ``rank_test_*`` column to sort by; by default the first one.
    """
    columns: dict[str, Any] = {}
    for key, values in cv_results.items():
        if key.startswith("param_"):
            columns[key.removeprefix("param_")] = [
                None if masked else value
                for value, masked in zip(values.data, np.ma.getmaskarray(values), strict=True)
            ]
    for key, values in cv_results.items():
        if key != "params" and not key.startswith("param_"):
            columns[key] = values
    columns["params"] = cv_results["params"]
    frame = pd.DataFrame(columns)
    ranks = [k for k in cv_results if k.startswith("rank_test_")]
    rank_by = rank_by or (ranks[0] if ranks else None)
    if rank_by is not None:
        frame = frame.sort_values(rank_by, kind="stable")
    return frame


def save_results(
    path: str | os.PathLike,
    cv_results: dict[str, Any],
    tasks: pd.DataFrame | None,
    summary: dict[str, Any],
) -> None:
    """Write ``cv_results`` and ``tasks`` as Parquet under ``path``.

    ``path`` is a directory (created if missing) or a URI pyarrow opens (see
    :mod:`raygrid.store.location`); each file is replaced whole. ``cv_results.parquet`` is
    :func:`cv_results_table`: scikit-learn's column names, one row per candidate in
    candidate order. Parameter values that are not plain numbers, strings or booleans
    (estimators, tuples, mixed types) are stored as their ``repr``; ``params`` as JSON
    text; the tasks' per-epoch curves (``loss_curve``, ``validation_loss_curve``) as lists
    of floats.
    """
    where = Location(path, "path")
    where.make()
    where.write(RESULTS_FILE, _parquet_bytes(cv_results_table(cv_results)))
    if tasks is not None:
        where.write(TASKS_FILE, _parquet_bytes(_plain_columns(tasks)))
    summary = {"layout_version": LAYOUT_VERSION, **summary}
    where.write(SUMMARY_FILE, json.dumps(summary, indent=2, default=repr).encode())


def load_results(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None, dict]:
    """Read what :func:`save_results` wrote: (results, tasks or None, summary).

    The results come back as :func:`cv_results_table` wrote them: scikit-learn's column
    names, row ``i`` is candidate ``i``. Results written by raygrid 0.1 (parameters under
    their bare names, rows best first) are read too: their parameter columns get the
    ``param_`` prefix back (the names from the summary's grid), and their rows are put
    back in candidate order when the tasks say which candidate has which parameters
    (else they stay best first).

    Raises
    ------
    FileNotFoundError
        If ``path`` (a directory or a URI) holds no results file.
    ValueError
        If the files are not a raygrid results layout.
    """
    results, summary = read_results(path)
    tasks = read_tasks(path)
    return sklearn_layout(results, tasks, summary), tasks, summary


def _read_parquet(where: Location, name: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(where.open_input(name)).to_pandas()
    except Exception as exc:
        raise ValueError(f"{where.describe(name)}: not a readable Parquet file ({exc})") from None


def read_results(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """The results file and the summary under ``path``, as stored (see :func:`load_results`).

    Raises
    ------
    FileNotFoundError
        If ``path`` (a directory or a URI) holds no results file.
    ValueError
        If the files are not a raygrid results layout.
    """
    where = Location(path, "path")
    names = set(where.names())
    if RESULTS_FILE not in names:
        raise FileNotFoundError(
            f"{where.uri}: no {RESULTS_FILE} here; is it a raygrid results directory?"
        )
    results = _read_parquet(where, RESULTS_FILE)
    if not any(c.startswith("rank_test_") for c in results.columns):
        raise ValueError(
            f"{where.describe(RESULTS_FILE)}: not raygrid search results (no rank_test_* column)"
        )
    summary = {}
    if SUMMARY_FILE in names:
        try:
            summary = json.loads(where.read(SUMMARY_FILE))
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{where.describe(SUMMARY_FILE)}: not a raygrid search summary ({exc})"
            ) from None
    return results, summary if isinstance(summary, dict) else {}


def read_tasks(path: str | os.PathLike) -> pd.DataFrame | None:
    """The tasks file under ``path``, or None when there is none.

    Raises
    ------
    ValueError
        If the file is not readable Parquet.
    """
    where = Location(path, "path")
    return _read_parquet(where, TASKS_FILE) if where.exists(TASKS_FILE) else None


def sklearn_layout(
    results: pd.DataFrame, tasks: pd.DataFrame | None, summary: dict
) -> pd.DataFrame:
    """Stored results in :func:`cv_results_table`'s layout, whichever release wrote them.

    Parameters
    ----------
    results : pandas.DataFrame
        The results file as stored.
    tasks : pandas.DataFrame or None
        The tasks file, used to put 0.1's rows back in candidate order.
    summary : dict
        The summary, whose ``layout_version`` and grid say how the results were written.

    Returns
    -------
    pandas.DataFrame
    """
    version = summary.get("layout_version")
    if version == 1 or (version is None and not any(c.startswith("param_") for c in results)):
        return _from_bare_names(results, tasks, summary)
    return results


def cv_results_table(cv_results: dict[str, Any]) -> pd.DataFrame:
    """``pd.DataFrame(cv_results)``'s columns and rows, in types Parquet holds.

    Masked parameter values (a parameter a sub-grid does not set) and None become nulls;
    a parameter column of integers (and nulls) is nullable ``Int64``, of other numbers
    ``float64``; strings and booleans stay; other values (tuples, estimators, mixed
    types) become their ``repr``. ``params`` becomes JSON text.

    Parameters
    ----------
    cv_results : dict
        A search's ``cv_results_``.

    Returns
    -------
    pandas.DataFrame
        Row ``i`` is candidate ``i``.
    """
    columns: dict[str, Any] = {}
    for key, values in cv_results.items():
        if key.startswith("param_"):
            mask = np.ma.getmaskarray(values)
            data = np.ma.getdata(values)
            columns[key] = pd.Series(
                [
                    None if masked else value.item() if isinstance(value, np.generic) else value
                    for value, masked in zip(data, mask, strict=True)
                ],
                dtype=object,
            )
        else:
            columns[key] = pd.Series(list(values) if key == "params" else values)
    frame = pd.DataFrame(columns)
    for key in frame.columns:
        if key.startswith("param_") and _all_integers(frame[key]):
            frame[key] = pd.array(frame[key].tolist(), dtype="Int64")
    return _plain_columns(frame)


def _all_integers(column: pd.Series) -> bool:
    values = [v for v in column if v is not None]
    return bool(values) and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in values
    )


def _from_bare_names(
    results: pd.DataFrame, tasks: pd.DataFrame | None, summary: dict
) -> pd.DataFrame:
    """Results saved by raygrid 0.1 in :func:`cv_results_table`'s layout (see load_results)."""
    grid = summary.get("param_grid")
    names: set[str] = set()
    for sub in grid if isinstance(grid, list) else [grid]:
        if isinstance(sub, dict):
            names |= set(sub)
    columns = list(results.columns)
    if not names:  # no summary: whatever is not one of scikit-learn's own columns
        names = {c for c in columns if not SKLEARN_COLUMN.match(c)}
    params = [c for c in columns if c in names]
    renamed = results.rename(columns={c: f"param_{c}" for c in params})
    ordered = [f"param_{c}" for c in sorted(params)]  # scikit-learn's order: sorted keys
    rest = [c for c in renamed.columns if c not in ordered]
    times = [c for c in rest if c.endswith("_time")]
    others = [c for c in rest if c not in times]
    renamed = renamed[times + ordered + others]
    order = _candidate_order(renamed, tasks)
    if order is not None:
        renamed = renamed.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    return renamed


def _candidate_order(results: pd.DataFrame, tasks: pd.DataFrame | None) -> list[int] | None:
    """Each row's candidate id, from the tasks' (candidate, params); None if they do not say."""
    if (
        tasks is None
        or not {"candidate", "params"} <= set(tasks.columns)
        or "params" not in results
    ):
        return None
    ids: dict[str, list[int]] = {}
    for candidate, params in (
        tasks[["candidate", "params"]].drop_duplicates().itertuples(index=False)
    ):
        ids.setdefault(params, []).append(int(candidate))
    order = []
    for params in results["params"]:
        if not ids.get(params):
            return None
        order.append(ids[params].pop(0))
    return order if sorted(order) == list(range(len(results))) else None


def _plain_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns Parquet can hold: non-uniform object columns become text."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype != object:
            continue
        values = [v for v in out[column] if v is not None]
        if column == "params":
            out[column] = [json.dumps(v, default=repr, sort_keys=True) for v in out[column]]
        elif values and (
            all(isinstance(v, str) for v in values) or all(isinstance(v, bool) for v in values)
        ):
            continue
        elif values and all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values
        ):
            out[column] = pd.array([None if v is None else float(v) for v in out[column]])
        elif column.endswith("_curve") and all(_is_number_list(v) for v in values):
            out[column] = [None if v is None else [float(x) for x in v] for v in out[column]]
        else:
            out[column] = [None if v is None else repr(v) for v in out[column]]
    return out


def _is_number_list(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray) and all(
        isinstance(x, int | float | np.number) and not isinstance(x, bool) for x in value
    )


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue().to_pybytes()


# -- data files and URIs ------------------------------------------------------------------


def _open_source(path: str) -> Any:
    if is_uri(path):
        import pyarrow.fs

        fs, inner = pyarrow.fs.FileSystem.from_uri(path)
        return fs.open_input_file(inner)
    return path


def read_schema(path: str, fmt: str) -> Any:
    """The pyarrow schema of the data file ``path`` (a local path or a URI) in format ``fmt``."""
    import pyarrow as pa

    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_schema(_open_source(path))
    if fmt == "csv":
        import pyarrow.csv

        return pyarrow.csv.open_csv(_open_source(path)).schema
    try:
        return pa.ipc.open_file(_open_source(path)).schema
    except pa.ArrowInvalid:
        return read_table(path, fmt).schema


def read_table(path: str, fmt: str, columns: list[str] | None = None) -> Any:
    """The data file ``path`` (a local path or a URI) in format ``fmt`` as a pyarrow table."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(_open_source(path), columns=columns)
    if fmt == "csv":
        import pyarrow.csv

        table = pyarrow.csv.read_csv(_open_source(path))
        return table.select(columns) if columns is not None else table
    import pyarrow.feather

    return pyarrow.feather.read_table(_open_source(path), columns=columns)


# -- results at a path or URI -------------------------------------------------------------


def write_output(search: Any, output: str) -> None:
    """Write a fitted search's results under ``output`` (a directory path or a URI).

    The layout is :meth:`RayGridSearchCV.save_results`'s (``cv_results.parquet``,
    ``tasks.parquet``, ``search.json``).
    """
    search.save_results(output)


def read_output(output: str) -> tuple[Any, Any, dict]:
    """Read results written by :func:`write_output`: (results, tasks or None, summary).

    Raises
    ------
    FileNotFoundError
        If ``output`` holds no results.
    """
    return load_results(output)
