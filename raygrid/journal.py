"""A durable journal of finished fits, so that a rerun does only the missing ones.

Layout of ``results_dir``::

    raygrid-journal.json       what search this journal belongs to (its fingerprint)
    part-<ns>-<pid>.parquet    finished fits, one file per batch of records

Every part is written to a temporary file, flushed to disk and renamed into place, so a
crash mid-write never damages earlier parts. Records hold data only (numbers, strings,
JSON text); nothing is ever unpickled from ``results_dir``.

Each record is keyed by a hash of what determines its result: the search's fingerprint
(estimator class and parameters, scoring, data, fit params), the candidate's parameters
and the split's train/test indices. A record whose key a search does not ask for is
ignored, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import joblib
import numpy as np

from raygrid.plan import Task
from raygrid.record import ROW_TYPES, FitRecord

MANIFEST = "raygrid-journal.json"
FORMAT = "raygrid-journal/2"
_PART_PREFIX, _PART_SUFFIX = "part-", ".parquet"

_COLUMNS = {"key": "string", "candidate": "int64", "split": "int64", "params": "string"}
_COLUMNS.update(ROW_TYPES)


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
    """The key of one (candidate, split) record."""
    return fingerprint(search_key, params, split_key)


class Journal:
    """The finished fits of one search, kept under ``results_dir``.

    Parameters
    ----------
    path : str or path-like
        The directory; created if missing.
    search_key : str
        The fingerprint of the search (see :func:`fingerprint`).
    description : dict
        Human-readable facts written to the manifest (estimator, scoring, ...).

    Raises
    ------
    ValueError
        If ``path`` is a file, is not writable, or holds another search's journal or a
        manifest raygrid did not write.
    """

    def __init__(self, path: str | os.PathLike, search_key: str, description: dict) -> None:
        self.path = os.fspath(path)
        self.search_key = search_key
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ValueError(f"results_dir={self.path!r} is a file, not a directory.")
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"results_dir={self.path!r} cannot be created: {exc}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise ValueError(f"results_dir={self.path!r} is not writable.")
        self._check_manifest(description)

    def _check_manifest(self, description: dict) -> None:
        manifest = os.path.join(self.path, MANIFEST)
        if os.path.exists(manifest):
            try:
                with open(manifest) as f:
                    content = json.load(f)
                owner, key = content["format"], content["search_key"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"results_dir={self.path!r}: {MANIFEST} is not a raygrid journal "
                    f"manifest ({type(exc).__name__}: {exc}). Use another results_dir."
                ) from None
            if owner != FORMAT:
                raise ValueError(
                    f"results_dir={self.path!r}: journal format {owner!r}, expected {FORMAT!r}."
                )
            if key != self.search_key:
                raise ValueError(
                    f"results_dir={self.path!r} holds the journal of another search (a "
                    "different estimator, scoring, data or fit params). Use another "
                    "results_dir, or delete that one to start over."
                )
            return
        elif any(n.startswith(_PART_PREFIX) for n in os.listdir(self.path)):
            raise ValueError(
                f"results_dir={self.path!r} holds journal parts but no {MANIFEST}; "
                "it was not written by this search. Use another results_dir."
            )
        _atomic_write(
            manifest,
            json.dumps(
                {"format": FORMAT, "search_key": self.search_key, **description},
                indent=2,
                default=repr,
            ).encode(),
        )

    def load(self) -> dict[str, dict[str, Any]]:
        """Every row of this journal, by key (the newest wins for a repeated key).

        A row holds :meth:`raygrid.record.FitRecord.to_row`'s columns.

        Raises
        ------
        ValueError
            If a part file is not a readable raygrid journal part.
        """
        import pyarrow.parquet as pq

        records: dict[str, dict[str, Any]] = {}
        for name in sorted(os.listdir(self.path)):
            # Temporary files are parts being written, or left by a crash mid-write.
            if not (name.startswith(_PART_PREFIX) and name.endswith(_PART_SUFFIX)):
                continue
            file = os.path.join(self.path, name)
            try:
                table = pq.read_table(file)
            except Exception as exc:
                raise ValueError(
                    f"results_dir: journal file {file!r} is corrupt ({exc}). "
                    "Move it away to rerun its fits."
                ) from None
            missing = set(_COLUMNS) - set(table.column_names)
            if missing:
                raise ValueError(
                    f"results_dir: journal file {file!r} lacks columns {sorted(missing)}; "
                    "it was not written by raygrid."
                )
            for row in table.to_pylist():
                records[row["key"]] = row
        return records

    def append(self, entries: list[tuple[str, Task, FitRecord]]) -> None:
        """Write ``(key, task, record)`` entries durably, as one new part file."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not entries:
            return
        rows = [
            {
                "key": key,
                "candidate": task.candidate,
                "split": task.split,
                "params": json.dumps(task.params, default=repr, sort_keys=True),
                **record.to_row(),
            }
            for key, task, record in entries
        ]
        table = pa.Table.from_pylist(
            rows, schema=pa.schema([(c, pa.type_for_alias(t)) for c, t in _COLUMNS.items()])
        )
        name = f"{_PART_PREFIX}{time.time_ns():020d}-{os.getpid()}{_PART_SUFFIX}"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        _atomic_write(os.path.join(self.path, name), sink.getvalue().to_pybytes())


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
