"""Data read where the fits run: a lazy handle on a Parquet dataset.

``search.fit(read_parquet("s3://bucket/train.parquet", target="label"))`` never reads the
features into the driver: the driver reads the file's schema and row count, and the
target column alone when the CV splitter needs it (stratified splits of a classifier);
the Ray workers read the file, once per node, and share it through that node's object
store; folds travel as row indices and the refit runs on a worker too.

Examples
--------
>>> from raygrid.data import read_parquet
>>> data = read_parquet("s3://bucket/train.parquet", target="label")  # doctest: +SKIP
>>> RayGridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}).fit(data)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

__all__ = ["MissingTargetValues", "ParquetData", "read_parquet"]


class MissingTargetValues(ValueError):
    """The target column has missing values (counted in the file's footer, or read)."""


@dataclass(frozen=True)
class ParquetData:
    """A Parquet file (or URI) read lazily: its features, target and groups columns.

    Made by :func:`read_parquet`. It is a stand-in for ``X`` that only workers read;
    ``shape`` and ``len()`` are known on the driver from the file's footer.

    Attributes
    ----------
    uri : str
        The file: a local path or a URI pyarrow opens.
    target : str or None
        The target column (``y``), if any.
    features : tuple of str
        The feature columns, in order (``X``).
    groups : str or None
        The groups column (for group splitters), if any.
    num_rows : int
        Rows in the file.
    version : str
        The file's size and modification time: a changed file is another dataset (and
        another search for ``results_dir``).
    """

    uri: str
    target: str | None
    features: tuple[str, ...]
    groups: str | None
    num_rows: int
    version: str

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, features)``."""
        return (self.num_rows, len(self.features))

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, key: Any) -> Any:
        raise TypeError(
            "raygrid.data.ParquetData is read by the Ray workers, not indexed on the driver; "
            "use .column(name) for one column or .read() for the whole table."
        )

    def column(self, name: str) -> Any:
        """One column as a NumPy array (read alone, the other columns are not read)."""
        return _read(self.uri, [name]).column(name).to_numpy()

    def read(self) -> tuple[Any, Any]:
        """``(X, y)``: the features as a DataFrame and the target (None without one).

        Raises
        ------
        ValueError
            If the target column has missing values.
        """
        columns = [*self.features, *([self.target] if self.target else [])]
        frame = _read(self.uri, columns).to_pandas(split_blocks=False, self_destruct=True)
        y = None
        if self.target is not None:
            target = frame.pop(self.target)
            if target.isna().any():
                raise MissingTargetValues(
                    f"read_parquet({self.uri!r}): target column {self.target!r} has missing "
                    "values; drop those rows or fill them."
                )
            y = target.to_numpy()
        return frame, y


def read_parquet(
    uri: str,
    target: str | None = None,
    columns: list[str] | None = None,
    groups: str | None = None,
) -> ParquetData:
    """A lazy handle on a Parquet file, to pass to ``fit`` as ``X`` (with ``y=None``).

    Only the file's footer is read here.

    Parameters
    ----------
    uri : str
        A local path or a URI pyarrow opens (``s3://``, ``gs://``, ``hdfs://``,
        ``file://``; pyarrow's options such as ``?endpoint_override=...`` work).
    target : str, default=None
        The target column; None for unsupervised estimators.
    columns : list of str, default=None
        The feature columns; by default every column but ``target`` and ``groups``.
    groups : str, default=None
        A column of group labels for group splitters; pass ``groups=data.column(name)``
        to ``fit`` (the driver reads that column alone).

    Returns
    -------
    ParquetData

    Raises
    ------
    ValueError
        If the file cannot be read, or a column named is not in it.
    """
    import pyarrow.parquet as pq

    from raygrid.store.location import Location

    where = Location(uri, "read_parquet")
    try:
        info = where.fs.get_file_info(where.root) if not where.is_local else None
        source = where.root if where.is_local else where.fs.open_input_file(where.root)
        metadata = pq.read_metadata(source)
        schema = metadata.schema.to_arrow_schema()
    except Exception as exc:
        raise ValueError(f"read_parquet({uri!r}): cannot read it as Parquet: {exc}") from None
    names = schema.names
    _check_columns(
        uri,
        names,
        [("target", target), ("groups", groups)]
        + [(f"columns[{i}]", c) for i, c in enumerate(columns or [])],
    )
    if target is not None and _has_nulls(metadata, names.index(target)):
        raise MissingTargetValues(
            f"read_parquet({uri!r}): target column {target!r} has missing values; drop "
            "those rows or fill them."
        )
    features = tuple(columns or [n for n in names if n not in (target, groups)])
    if not features:
        raise ValueError(f"read_parquet({uri!r}): no feature columns besides target and groups")
    return ParquetData(uri, target, features, groups, metadata.num_rows, _version(where, info))


def _check_columns(uri: str, names: list[str], named: list[tuple[str, str | None]]) -> None:
    """Raise a ValueError naming the first ``(parameter, column)`` not in ``names``."""
    for key, name in named:
        if name is not None and name not in names:
            hint = difflib.get_close_matches(name, names, n=1)
            raise ValueError(
                f"read_parquet({uri!r}): {key}={name!r} is not a column of the file"
                + (f" (did you mean {hint[0]!r}?)" if hint else f"; columns: {names}")
            )


def _has_nulls(metadata: Any, column: int) -> bool:
    """Whether the footer's statistics count missing values in ``column`` (unknown: no)."""
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(column).statistics
        if statistics is not None and statistics.has_null_count and statistics.null_count:
            return True
    return False


def _version(where: Any, info: Any) -> str:
    import os

    if where.is_local:
        stat = os.stat(where.root)
        return f"{stat.st_size}-{stat.st_mtime_ns}"
    return f"{info.size}-{info.mtime_ns}"


def _read(uri: str, columns: list[str]) -> Any:
    import pyarrow.parquet as pq

    from raygrid.store.location import Location

    where = Location(uri, "read_parquet")
    source = where.root if where.is_local else where.fs.open_input_file(where.root)
    return pq.read_table(source, columns=columns)
