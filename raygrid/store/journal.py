"""A durable journal of finished fits, so that a rerun does only the missing ones.

Layout of ``results_dir`` (a local directory or a URI, see :mod:`raygrid.store.location`)::

    raygrid-journal.json             what search this journal belongs to (its fingerprint)
    part-<ns>-<pid>-<id>.parquet     finished fits, one file per batch of records

The worker that ran a batch writes its part (the driver does when the worker cannot
reach ``results_dir``), so finished fits survive the driver. Every file is written to a
uniquely named temporary file, flushed to disk and moved into place, so a crash mid-write
never damages earlier parts and concurrent writers never collide; the manifest is
created only if absent, so of two searches opening one new ``results_dir`` exactly one
owns it. Records hold data only (numbers, strings, JSON text); nothing is ever unpickled
from ``results_dir``, and every row is checked on reading: a row that is not what raygrid
writes is not used (its fit runs again) and a warning names its file.

Each record is keyed by a hash of what determines its result: the search's fingerprint
(estimator class and parameters, scoring, data, fit params), the candidate's parameters
and the split's train/test indices. A record whose key a search does not ask for is
ignored, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
import warnings
from typing import Any

import joblib
import numpy as np

from raygrid.store.location import Location
from raygrid.store.record import OPTIONAL_ROW_TYPES, ROW_TYPES, FitRecord

MANIFEST = "raygrid-journal.json"
# Format 3 keys a task by a SHA-1 of its parameters' JSON text when they are plain
# values (see :func:`task_keys`); format 2 (release 0.1.0) always by joblib's hash.
FORMAT = "raygrid-journal/3"
FORMAT_2 = "raygrid-journal/2"
_PART_PREFIX, _PART_SUFFIX = "part-", ".parquet"

_COLUMNS = {"key": "string", "candidate": "int64", "split": "int64", "params": "string"}
_COLUMNS.update(ROW_TYPES)
_COLUMNS.update(OPTIONAL_ROW_TYPES)


def fingerprint(*parts: Any) -> str:
    """A stable hash of ``parts`` (arrays hashed by content)."""
    try:
        return joblib.hash(parts, hash_name="sha1")
    except Exception:  # an object joblib's hasher cannot walk
        import cloudpickle

        return hashlib.sha1(cloudpickle.dumps(parts)).hexdigest()


def split_fingerprints(splits: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """One hash per split, of its train and test indices."""
    return [fingerprint(np.asarray(train), np.asarray(test)) for train, test in splits]


def task_key(search_key: str, params: dict[str, Any], split_key: str) -> str:
    """The key of one (candidate, split) record in a format-2 journal."""
    return fingerprint(search_key, params, split_key)


def task_keys(
    search_key: str, tasks: list[tuple[int, dict[str, Any], int]], split_keys: list[str], fmt: str
) -> list[str]:
    """The keys of ``(candidate, params, split)`` tasks in a journal of format ``fmt``.

    In format 3, parameters made of plain values (str, int, float, bool, None, lists and
    str-keyed dicts of them) are keyed by their JSON text, hashed once per candidate;
    others (arrays, estimators, tuples, ...) by joblib's content hash as in format 2.
    """
    if fmt == FORMAT_2:
        return [task_key(search_key, params, split_keys[split]) for _, params, split in tasks]
    texts: dict[int, str] = {}
    keys = []
    for candidate, params, split in tasks:
        text = texts.get(candidate)
        if text is None:
            text = texts[candidate] = (
                "json:" + json.dumps(params, sort_keys=True)
                if _plain(params)
                else "joblib:" + fingerprint(params)
            )
        keys.append(hashlib.sha1(f"{search_key}|{text}|{split_keys[split]}".encode()).hexdigest())
    return keys


def _plain(value: Any) -> bool:
    """Whether JSON text tells ``value`` apart from every other value of these types."""
    kind = type(value)
    if kind in (str, int, bool) or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_plain(v) for v in value)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    return False


class Journal:
    """The finished fits of one search, kept under ``results_dir``.

    Parameters
    ----------
    path : str or path-like
        The directory (created if missing), or a URI pyarrow opens (``s3://bucket/dir``,
        ``gs://...``, ``hdfs://...``, ``file://...``; see :mod:`raygrid.store.location`).
    search_key : str
        The fingerprint of the search (see :func:`fingerprint`).
    description : dict
        Human-readable facts written to the manifest (estimator, scoring, ...).

    Raises
    ------
    ValueError
        If ``path`` is a file, is not writable (a probe object is written and deleted
        there), has a scheme pyarrow cannot open, or holds another search's journal or a
        manifest raygrid did not write.
    """

    def __init__(self, path: str | os.PathLike, search_key: str, description: dict) -> None:
        self.location = Location(path, "results_dir")
        self.path = self.location.uri
        self.search_key = search_key
        self.format = FORMAT  # that of the journal found there, once checked
        if self.location.is_local and os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"results_dir={self.path!r} is a file, not a directory.")
        self.location.probe()
        self._clean: list[str] = []  # parts whose every row was usable, at the last load
        self._check_manifest(description)

    def _check_manifest(self, description: dict) -> None:
        where = self.location
        if where.exists(MANIFEST):
            try:
                content = json.loads(where.read(MANIFEST))
                owner, key = content["format"], content["search_key"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"results_dir={self.path!r}: {MANIFEST} is not a raygrid journal "
                    f"manifest ({type(exc).__name__}: {exc}). Use another results_dir."
                ) from None
            if owner not in (FORMAT, FORMAT_2):
                raise ValueError(
                    f"results_dir={self.path!r}: journal format {owner!r}, expected {FORMAT!r}."
                )
            if key != self.search_key:
                raise ValueError(
                    f"results_dir={self.path!r} holds the journal of another search (a "
                    "different estimator, scoring, data or fit params). Use another "
                    "results_dir, or delete that one to start over."
                )
            self.format = owner
            return
        elif any(n.startswith(_PART_PREFIX) for n in where.names()):
            raise ValueError(
                f"results_dir={self.path!r} holds journal parts but no {MANIFEST}; "
                "it was not written by this search. Use another results_dir."
            )
        content = {"format": FORMAT, "search_key": self.search_key, **description}
        if not where.create(MANIFEST, json.dumps(content, indent=2, default=repr).encode()):
            self._check_manifest(description)  # another process created it first

    def parts(self) -> list[str]:
        """The names of the journal's part files, oldest first."""
        return [
            n
            for n in self.location.names()
            # Temporary files are parts being written, or left by a crash mid-write.
            if n.startswith(_PART_PREFIX) and n.endswith(_PART_SUFFIX)
        ]

    def load(self) -> dict[str, dict[str, Any]]:
        """Every row of this journal, by key (the newest wins for a repeated key).

        A row holds :meth:`raygrid.store.record.FitRecord.to_row`'s columns.

        Raises
        ------
        ValueError
            If a part file is not a readable raygrid journal part.
        """
        records: dict[str, dict[str, Any]] = {}
        self._clean = []
        for name in self.parts():
            file = self.location.describe(name)
            table = self._read_part(name, file)
            rows, problems = _checked_rows(table, file)
            records.update((row["key"], row) for row in rows)
            if problems:
                warnings.warn(
                    f"results_dir: journal file {file!r}: {len(problems)} row(s) are not what "
                    f"raygrid writes and are not used; their fits run again (first: "
                    f"{problems[0]}).",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                self._clean.append(name)
        return records

    def _read_part(self, name: str, file: str) -> Any:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(self.location.open_input(name))
        except Exception as exc:
            raise ValueError(
                f"results_dir: journal file {file!r} is corrupt ({exc}). "
                "Move it away to rerun its fits."
            ) from None
        missing = set(_COLUMNS) - set(OPTIONAL_ROW_TYPES) - set(table.column_names)
        if missing:
            raise ValueError(
                f"results_dir: journal file {file!r} lacks columns {sorted(missing)}; "
                "it was not written by raygrid."
            )
        return table

    def append(self, entries: list[tuple[str, int, int, dict, FitRecord]]) -> None:
        """Write ``(key, candidate, split, params, record)`` entries durably, as one new
        part file."""
        write_rows(self.path, entries)

    def compact(self) -> int:
        """Merge the journal's small parts into a few large ones; how many parts it removed.

        See :func:`raygrid.store.compaction.compact`.
        """
        from raygrid.store.compaction import compact, small_parts

        if len(small_parts(self.location, self.parts())) < 2:
            return 0
        self.load()
        return compact(self.location, self._clean, _schema())


def params_text(params: dict[str, Any]) -> str:
    """A candidate's parameters as the journal's ``params`` column holds them."""
    return json.dumps(params, default=repr, sort_keys=True)


def write_rows(directory: str, entries: list[tuple[str, int, int, dict, FitRecord]]) -> None:
    """Write ``(key, candidate, split, params, record)`` entries as one new part file.

    ``directory`` is the journal's local path or URI.

    Raises
    ------
    OSError
        If ``directory`` (an existing journal) cannot be written from this process.
    """
    import pyarrow as pa

    if not entries:
        return
    location = Location(directory, "results_dir")
    # A node that does not see a local results_dir must not create a stray one.
    if location.is_local and not location.exists(MANIFEST):
        raise FileNotFoundError(f"no journal manifest in {directory!r}")
    rows = [
        {
            "key": key,
            "candidate": candidate,
            "split": split,
            "params": params_text(params),
            **record.to_row(),
        }
        for key, candidate, split, params, record in entries
    ]
    write_part(location, pa.Table.from_pylist(rows, schema=_schema()))


def part_name(after: int = 0) -> str:
    """A new part's file name, unique, sorting after parts stamped up to ``after`` (ns)."""
    stamp = max(time.time_ns(), after + 1)
    return f"{_PART_PREFIX}{stamp:020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{_PART_SUFFIX}"


def part_stamp(name: str) -> int:
    """The time stamp (ns) in a part's file name; 0 if it has none."""
    field = name[len(_PART_PREFIX) :].split("-", 1)[0]
    return int(field) if field.isdigit() else 0


def write_part(location: Location, table: Any, after: int = 0) -> str:
    """Write ``table`` as a new part under ``location``; its name."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    name = part_name(after)
    location.write(name, sink.getvalue().to_pybytes())
    return name


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([(c, pa.type_for_alias(t)) for c, t in _COLUMNS.items()])


def _checked_rows(table: Any, file: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a part that hold what raygrid writes, and what is wrong with the others.

    Raises
    ------
    ValueError
        If a column does not have raygrid's type (the file was not written by raygrid).
    """
    import pyarrow as pa

    schema = _schema()
    for name in OPTIONAL_ROW_TYPES:
        if name not in table.column_names:  # written by an earlier release
            table = table.append_column(name, pa.nulls(len(table), schema.field(name).type))
    try:
        table = table.select(list(_COLUMNS)).cast(schema)
    except Exception as exc:
        raise ValueError(
            f"results_dir: journal file {file!r} has columns of the wrong type ({exc}); "
            "it was not written by raygrid. Move it away to rerun its fits."
        ) from None
    good, problems = [], []
    for number, row in enumerate(table.to_pylist()):
        problem = _row_problem(row)
        if problem is None:
            good.append(row)
        else:
            problems.append(f"row {number}: {problem}")
    return good, problems


_REQUIRED = ("key", "candidate", "split", "params", "test_scores", "fit_time", "score_time")


def _row_problem(row: dict[str, Any]) -> str | None:
    """What makes ``row`` unusable, or None."""
    missing = [c for c in (*_REQUIRED, "n_test_samples", "attempts") if row[c] is None]
    if missing:
        return f"no value in {missing}"
    if min(row["candidate"], row["split"], row["n_test_samples"]) < 0 or row["attempts"] < 1:
        return "negative index or count"
    for column in ("fit_time", "score_time"):
        if not math.isfinite(row[column]) or row[column] < 0:
            return f"{column} is {row[column]!r}"
    for column in ("params", "test_scores", "train_scores", "fit_info"):
        if row[column] is None:
            continue
        try:
            value = json.loads(row[column])
        except ValueError:
            return f"{column} is not JSON: {row[column][:60]!r}"
        if column.endswith("_scores") and not _valid_scores(value):
            return f"{column} is not a score or a dict of scores: {row[column][:60]!r}"
        if column in ("params", "fit_info") and not isinstance(value, dict):
            return f"{column} is not a JSON object"
    return None


def _valid_scores(value: Any) -> bool:
    """A finite-or-NaN number, or a non-empty dict of them by metric name."""
    if isinstance(value, dict):
        return bool(value) and all(_valid_score(v) for v in value.values())
    return _valid_score(value)


def _valid_score(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) or math.isnan(value)
