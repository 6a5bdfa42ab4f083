"""Writing TOML: :mod:`tomllib` reads, the standard library has no writer.

``raygrid submit`` writes the spec it ships with the job with :func:`dump_toml`.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

import numpy as np


def dump_toml(doc: dict[str, Any]) -> str:
    """Write a document as TOML that :mod:`tomllib` reads back to the same values.

    Nested dicts become ``[a.b]`` tables; dicts inside arrays become inline tables;
    tuples are written as arrays.

    Parameters
    ----------
    doc : dict
        Keys are strings; values are strings, bools, ints, floats (nan, inf included),
        dates and times, lists, tuples and dicts of these.

    Returns
    -------
    str
    """
    lines: list[str] = []
    _dump_table(doc, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _dump_table(table: dict, prefix: list[str], lines: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, dict)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, dict)]
    if prefix and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(toml_key(p) for p in prefix) + "]")
    for key, value in scalars:
        lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, value in tables:
        _dump_table(value, [*prefix, key], lines)


def toml_key(key: str) -> str:
    """``key`` as written in TOML: bare when it can be, quoted otherwise."""
    if not isinstance(key, str):
        raise TypeError(f"TOML keys are strings, got {key!r}")
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_string(text: str) -> str:
    out = ['"']
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
    escapes["\r"] = "\\r"
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    """``value`` as written in TOML (a scalar, an array or an inline table)."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + (f" {items} " if items else "") + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")
