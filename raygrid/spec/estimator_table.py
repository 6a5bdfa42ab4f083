"""The ``[estimator]`` table: an estimator class by its import path, and its arguments.

``class`` is imported (any importable scikit-learn estimator class: one with
``get_params``) and ``[estimator.params]`` must be arguments its constructor takes; the
estimator is built once, after every table passed its own checks, so that its own
refusals are reported too. Each problem goes to the spec's collected
``FILE: [estimator]...: ...`` errors (:mod:`raygrid.spec.problems`).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

from raygrid.spec.problems import MISSING, Problems, key_text, tuplify

ESTIMATOR_KEYS = ("class", "params")


def check_estimator(problems: Problems, table: dict) -> tuple[type | None, dict]:
    """``[estimator]``: the class its ``class`` names and ``[estimator.params]``."""
    problems.unknown_keys(table, ESTIMATOR_KEYS, "[estimator]")
    cls = None
    path = table.get("class", MISSING)
    if path is MISSING:
        problems.fail(
            "[estimator].class",
            'missing; expected an import path like "raygrid.keras.KerasClassifier"',
        )
    elif not isinstance(path, str):
        problems.fail("[estimator].class", "an import path (a string)", path)
    else:
        obj = import_object(problems, "[estimator].class", path)
        if obj is not None:
            if not (inspect.isclass(obj) and hasattr(obj, "get_params")):
                problems.fail(
                    "[estimator].class",
                    f"{path!r} is not a scikit-learn estimator class "
                    "(a class with get_params/set_params)",
                )
            else:
                cls = obj
    params = table.get("params", {})
    if not isinstance(params, dict):
        problems.fail("[estimator.params]", "a table of constructor arguments", params)
        params = {}
    return cls, tuplify(params)


def check_estimator_params(problems: Problems, cls: type, params: dict) -> Any:
    """The estimator ``cls(**params)``, or None when its constructor refuses them."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    ):
        names = [n for n in signature.parameters if n != "self"]
        for key in params:
            if key not in names:
                text = no_parameter(cls.__name__, key, names)
                problems.fail(f"[estimator.params].{key_text(key)}", text)
        if problems.problems:
            return None
    try:
        return cls(**params)
    except Exception as exc:
        bad = next((k for k in params if repr(k) in str(exc)), None)
        key = f"[estimator.params].{key_text(bad)}" if bad else "[estimator.params]"
        problems.fail(key, f"{cls.__name__}(...) failed: {type(exc).__name__}: {exc}")
        return None


def import_object(problems: Problems, key: str, path: str) -> Any:
    """The object an import path names (``package.module.Name``), or None."""
    module_name, sep, attr = path.replace(":", ".").rpartition(".")
    if not sep or not module_name or not attr:
        problems.fail(key, 'an import path like "package.module.ClassName"', path)
        return None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        problems.fail(key, f"cannot import {path!r}: no module named {exc.name!r}")
        return None
    except Exception as exc:
        problems.fail(key, f"cannot import {path!r}: {type(exc).__name__}: {exc}")
        return None
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        hint = difflib.get_close_matches(attr, names, n=1)
        text = f"cannot import {path!r}: module {module_name!r} has no attribute {attr!r}"
        problems.fail(key, text + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return None
    return getattr(module, attr)


def no_parameter(owner: str, name: str, names: list[str]) -> str:
    """ "OWNER has no parameter NAME", with the closest of ``names`` as a hint."""
    hint = difflib.get_close_matches(name, names, n=1)
    return f"{owner} has no parameter {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
