"""A search spec's ``[data]`` table: where the data comes from, checked, then loaded.

``[data]`` names exactly one source: a file (``path``, with ``target`` and optionally
``features``, ``groups`` and ``format``), a scikit-learn generator (``generator``) or a
bundled dataset (``dataset``), the last two with ``[data.args]``. :func:`check_data` checks
the table's keys and types, the file's location and format, the function's name and
arguments; :func:`check_data_columns` the columns named against the file's schema;
:func:`load_data` reads the file or calls the function. Problems are reported to a
:class:`~raygrid.spec.problems.Problems` as ``FILE: [data].key: ...`` lines.
"""

from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raygrid.spec.problems import MISSING, Problems, SpecError, key_text, tuplify
from raygrid.store.results import is_uri, read_schema, read_table
from raygrid.text import error_line

__all__ = [
    "DATA_FORMATS",
    "DATA_KEYS",
    "DataSpec",
    "LoadedData",
    "check_data",
    "check_data_columns",
    "load_data",
]

#: File extensions of ``[data].path`` and the format each is read as.
DATA_FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".arrow": "arrow",
    ".ipc": "arrow",
    ".feather": "arrow",
    ".fea": "arrow",
}

#: The keys of ``[data]``.
DATA_KEYS = ("path", "format", "target", "features", "groups", "generator", "dataset", "args")


@dataclass
class LoadedData:
    """The data of a spec, ready for ``fit``: ``search.fit(X, y, **fit_params)``."""

    X: Any
    y: Any
    fit_params: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass
class DataSpec:
    """Where the data comes from: a file (``path``) or a scikit-learn function."""

    path: str | None = None
    format: str | None = None
    target: str | None = None
    features: list[str] | None = None
    groups: str | None = None
    generator: str | None = None
    dataset: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """A short human-readable name of the data source."""
        if self.path is not None:
            return self.path
        name = self.generator or self.dataset
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{name}({args})"


# -- checking -------------------------------------------------------------------------


def check_data(p: Problems, table: dict, base_dir: Path) -> DataSpec | None:
    """Check ``[data]``'s keys and values: one source, its file or function, the columns' keys.

    Parameters
    ----------
    p : Problems
        Where problems are reported.
    table : dict
        The ``[data]`` table as read from TOML.
    base_dir : Path
        The folder a relative ``path`` resolves against (the spec file's).

    Returns
    -------
    DataSpec or None
        The table, with its path resolved; None when its source is not exactly one.
        Parts with problems are left unset.
    """
    p.unknown_keys(table, DATA_KEYS, "[data]")
    sources = [k for k in ("path", "generator", "dataset") if k in table]
    if len(sources) != 1:
        p.fail(
            "[data]",
            "exactly one of path (a data file), generator (e.g. "
            '"make_classification") or dataset (e.g. "load_digits"), got '
            + (", ".join(sources) if sources else "none"),
        )
        return None
    source = sources[0]
    spec = DataSpec()
    if source == "path":
        for key in ("args",):
            if key in table:
                p.fail(f"[data].{key}", "only with generator or dataset, not with path")
        _check_data_path(p, table, spec, base_dir)
    else:
        _check_data_function(p, table, spec, source)
    return spec


def _check_data_function(p: Problems, table: dict, spec: DataSpec, source: str) -> None:
    """``[data].generator`` or ``[data].dataset``: a function of ``sklearn.datasets``."""
    for key in ("target", "features", "groups", "format"):
        if key in table:
            p.fail(f"[data].{key}", f"only with path, not with {source}")
    name = table[source]
    args = table.get("args", {})
    if not isinstance(args, dict):
        p.fail("[data.args]", f"a table of {source} arguments", args)
        args = {}
    spec.args = tuplify(args)
    if not isinstance(name, str):
        p.fail(f"[data].{source}", "a function name of sklearn.datasets", name)
        return
    import sklearn.datasets

    prefix = "make_" if source == "generator" else "load_"
    choices = [
        n
        for n in getattr(sklearn.datasets, "__all__", dir(sklearn.datasets))
        if n.startswith(prefix)
        and (
            source == "generator"
            or "return_X_y" in inspect.signature(getattr(sklearn.datasets, n)).parameters
        )
    ]
    if name not in choices:
        hint = difflib.get_close_matches(name, choices, n=1)
        what = "generator" if source == "generator" else "bundled dataset loader"
        text = f"unknown scikit-learn {what} {name!r}"
        text += f" (did you mean {hint[0]!r}?)" if hint else f"; one of {', '.join(choices)}"
        p.fail(f"[data].{source}", text)
        return
    setattr(spec, source, name)
    func = getattr(sklearn.datasets, name)
    params = inspect.signature(func).parameters
    for key in args:
        if key not in params or (source == "dataset" and key == "return_X_y"):
            hint = difflib.get_close_matches(key, list(params), n=1)
            text = f"{name}() has no argument {key!r}"
            if source == "dataset" and key == "return_X_y":
                text = "return_X_y is always true here; remove it"
            elif hint:
                text += f" (did you mean {hint[0]!r}?)"
            p.fail(f"[data.args].{key_text(key)}", text)


def _check_data_path(p: Problems, table: dict, spec: DataSpec, base_dir: Path) -> None:
    """``[data].path`` and the keys that go with it (target, features, groups)."""
    found = _data_file(p, table, base_dir)
    if found is None:
        return
    resolved, fmt = found
    spec.path = resolved
    spec.format = "arrow" if fmt == "feather" else fmt
    _check_data_column_keys(p, table, spec)


def _data_file(p: Problems, table: dict, base_dir: Path) -> tuple[str, str] | None:
    """``[data].path`` resolved, and its format; None when either is wrong."""
    path = table["path"]
    if not isinstance(path, str) or not path:
        p.fail("[data].path", "a file path or URI (a string)", path)
        return None
    fmt = table.get("format", MISSING)
    if fmt is not MISSING and fmt not in ("parquet", "csv", "arrow", "feather"):
        p.fail("[data].format", 'one of "parquet", "csv", "arrow", "feather"', fmt)
        return None
    if is_uri(path):
        if not p.known_scheme("[data].path", path):
            return None
        resolved = path
    else:
        resolved = str((base_dir / os.path.expanduser(path)).resolve())
        if not os.path.exists(resolved):
            p.fail("[data].path", f"no such file: {resolved}")
            return None
        if not os.path.isfile(resolved):
            p.fail("[data].path", f"not a file: {resolved}")
            return None
    if fmt is MISSING:
        suffix = os.path.splitext(path.rstrip("/"))[1].lower()
        fmt = DATA_FORMATS.get(suffix)
        if fmt is None:
            p.fail(
                "[data].path",
                f"a file ending in one of {', '.join(DATA_FORMATS)} (or set [data].format)",
                path,
            )
            return None
    return resolved, fmt


def _check_data_column_keys(p: Problems, table: dict, spec: DataSpec) -> None:
    """``target``, ``features`` and ``groups``: column names (a string, an array of them)."""
    target = table.get("target", MISSING)
    if target is MISSING:
        p.fail("[data].target", "missing; expected the name of the target column")
    elif not isinstance(target, str):
        p.fail("[data].target", "a column name (a string)", target)
    else:
        spec.target = target
    if "features" in table:
        features = table["features"]
        if (
            not isinstance(features, list)
            or not features
            or not all(isinstance(f, str) for f in features)
        ):
            p.fail("[data].features", "a non-empty array of column names", features)
        elif len(set(features)) != len(features):
            p.fail("[data].features", "distinct column names", features)
        else:
            spec.features = list(features)
    if "groups" in table:
        groups = table["groups"]
        if not isinstance(groups, str):
            p.fail("[data].groups", "a column name (a string)", groups)
        else:
            spec.groups = groups


def check_data_columns(p: Problems, spec: DataSpec) -> None:
    """Check that the columns ``spec`` names are in its file (read from the file's schema).

    Parameters
    ----------
    p : Problems
        Where problems are reported.
    spec : DataSpec
        A ``[data]`` table that :func:`check_data` found sound; a function source, or a
        file without a target, is not checked.
    """
    if spec.path is None or spec.target is None:
        return
    try:
        columns = read_schema(spec.path, spec.format).names
    except Exception as exc:
        p.fail("[data].path", f"cannot read {spec.path} as {spec.format}: {error_line(exc)}")
        return

    def missing(key: str, name: str) -> None:
        hint = difflib.get_close_matches(name, columns, n=1)
        text = f"no column {name!r} in {os.path.basename(spec.path)}"
        text += f" (did you mean {hint[0]!r}?)" if hint else f"; columns: {columns}"
        p.fail(key, text)

    if spec.target not in columns:
        missing("[data].target", spec.target)
    if spec.groups is not None and spec.groups not in columns:
        missing("[data].groups", spec.groups)
    if spec.features is not None:
        for i, name in enumerate(spec.features):
            if name not in columns:
                missing(f"[data].features[{i}]", name)
            elif name == spec.target:
                p.fail(f"[data].features[{i}]", f"the target column {name!r} is a feature")
    elif not [c for c in columns if c not in (spec.target, spec.groups)]:
        p.fail("[data].features", "at least one feature column besides target and groups")


# -- loading --------------------------------------------------------------------------


def load_data(file: str, data: DataSpec) -> LoadedData:
    """Read the file, or call the generator / loader, that ``data`` names.

    Parameters
    ----------
    file : str
        The spec file as it was named (used in messages).
    data : DataSpec
        The checked ``[data]`` table.

    Returns
    -------
    LoadedData
        ``X``, ``y`` and the fit parameters (``groups``).

    Raises
    ------
    SpecError
        If the file cannot be read or the function fails with the given arguments.
    """
    if data.path is not None:
        return _load_table_data(file, data)
    import sklearn.datasets

    name = data.generator or data.dataset
    key = "[data].generator" if data.generator else "[data].dataset"
    func = getattr(sklearn.datasets, name)
    kwargs = dict(data.args)
    if data.dataset:
        kwargs["return_X_y"] = True
    try:
        result = func(**kwargs)
    except Exception as exc:
        raise SpecError(
            file, [(key, f"{name}(...) failed: {type(exc).__name__}: {exc}")]
        ) from None
    if not isinstance(result, tuple) or len(result) < 2:
        raise SpecError(file, [(key, f"{name}(...) did not return (X, y)")])
    X, y = result[0], result[1]
    return LoadedData(X=X, y=y, description=f"{name}: {_shape_text(X)}, target of {len(y)} values")


def _load_table_data(file: str, data: DataSpec) -> LoadedData:
    """The data file read: features, target (without missing values) and groups.

    A Parquet file is not read here: ``X`` is a :mod:`raygrid.data` handle that the
    workers read (the driver reads the groups column alone, when there is one).
    """
    if data.format == "parquet":
        return _lazy_parquet_data(file, data)
    try:
        table = read_table(data.path, data.format)
    except Exception as exc:
        raise SpecError(
            file, [("[data].path", f"cannot read {data.path} as {data.format}: {error_line(exc)}")]
        ) from None
    frame = table.to_pandas()
    features = data.features or [c for c in frame.columns if c not in (data.target, data.groups)]
    X = frame[features]
    y = frame[data.target].to_numpy()
    problems = []
    if frame[data.target].isna().any():
        problems.append(("[data].target", f"column {data.target!r} has missing values"))
    if problems:
        raise SpecError(file, problems)
    fit_params = {}
    if data.groups is not None:
        fit_params["groups"] = frame[data.groups].to_numpy()
    return LoadedData(
        X=X,
        y=y,
        fit_params=fit_params,
        description=f"{data.path}: {len(frame)} rows, {len(features)} features, "
        f"target {data.target!r}" + (f", groups {data.groups!r}" if data.groups else ""),
    )


def _lazy_parquet_data(file: str, data: DataSpec) -> LoadedData:
    """A Parquet ``[data].path`` as a handle the workers read; only its footer is read."""
    from raygrid.data import MissingTargetValues, read_parquet

    try:
        handle = read_parquet(data.path, data.target, data.features, data.groups)
        fit_params = {} if data.groups is None else {"groups": handle.column(data.groups)}
    except MissingTargetValues:
        raise SpecError(
            file, [("[data].target", f"column {data.target!r} has missing values")]
        ) from None
    except Exception as exc:
        raise SpecError(
            file, [("[data].path", f"cannot read {data.path} as parquet: {error_line(exc)}")]
        ) from None
    return LoadedData(
        X=handle,
        y=None,
        fit_params=fit_params,
        description=f"{data.path}: {handle.num_rows} rows, {len(handle.features)} features, "
        f"target {data.target!r}"
        + (f", groups {data.groups!r}" if data.groups else "")
        + " (read by the Ray workers)",
    )


# -- small helpers ----------------------------------------------------------------------


def _shape_text(X: Any) -> str:
    shape = getattr(X, "shape", None)
    if shape is not None and len(shape) == 2:
        return f"{shape[0]} rows, {shape[1]} features"
    return f"{len(X)} samples"
