"""Search specs: a grid search described in a TOML file, checked before Ray starts.

A spec names the estimator, the search's settings, the data and where results go::

    [estimator]
    class = "raygrid.keras.KerasClassifier"      # import path

    [estimator.params]                           # constructor arguments
    random_state = 0

    [search]
    param_grid = { units = [32, 64], learning_rate = [0.001, 0.01] }
    cv = 3                                       # or a table: { class = "...", ... }
    scoring = "accuracy"                         # or ["accuracy", "f1_macro"]

    [data]
    path = "train.parquet"                       # Parquet, CSV, Arrow IPC / Feather
    target = "label"
    # features = ["a", "b"]                      # default: every other column
    # groups = "patient"                         # passed to fit(groups=...)
    # or: generator = "make_classification" / dataset = "load_digits", with [data.args]

    [output]
    path = "results/run1"                        # a directory, or s3://, gs://, hdfs://, ...

    [tracking]                                   # optional: raygrid.tracking
    uri = "http://127.0.0.1:5000"                # MLflow (with experiment, run_name, tags)
    experiment = "seed"
    # tensorboard_dir = "runs/seed"              # TensorBoard HParams summaries

``[search]`` takes ``param_grid``, ``cv``, ``scoring``, ``refit``, ``n_jobs``,
``pre_dispatch``, ``error_score``, ``return_train_score``, ``num_cpus_per_task``,
``num_gpus_per_task``, ``max_retries`` and ``verbose``, as
:class:`~raygrid.RayGridSearchCV` does; ``results_dir``, ``max_consecutive_failures`` and
``progress`` when the installed ``RayGridSearchCV`` has them. Arrays inside grid values
and constructor arguments become tuples (TOML has none), e.g.
``hidden_layer_sizes = [[64], [64, 32]]``.

:func:`load_spec` reads and checks everything it can without running anything: unknown
keys, types, the estimator's import path and parameters, the grid's parameter names,
the data file and its columns, the output location. Each problem is reported as a line
``FILE: KEY: what was expected, got what``, all of them at once in one
:class:`SpecError`.

This module owns the TOML shapes and types of ``[estimator]`` and ``[search]``, and
building the search from them. The rules on the values are their owners': the search
class's ``_parameter_constraints``, ``_validate_params`` and
``_check_refit_for_multimetric``, scikit-learn's ``check_cv``, ``check_scoring`` and
``ParameterGrid``, and :mod:`raygrid.search.validate`; their refusals are said here as
``FILE: [search].key: ...`` lines. ``[data]`` is :mod:`raygrid.spec.data`'s,
``[output]`` and ``[tracking]`` :mod:`raygrid.spec.output`'s, and the collecting and
wording of problems :mod:`raygrid.spec.problems`'.

Relative ``[data].path`` values resolve against the spec file's folder; a relative
``[output].path`` or ``[search].results_dir`` against the current working directory.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raygrid.search.validate import (
    UnknownParameterError,
    check_candidate_params,
    check_task_resources,
    resolve_n_slots,
    resolve_pre_dispatch,
)
from raygrid.spec.data import DATA_FORMATS, DataSpec, LoadedData, check_data, check_data_columns
from raygrid.spec.data import load_data as _load_data
from raygrid.spec.output import check_output, check_tracking
from raygrid.spec.problems import (
    MISSING,
    OUTPUT_SCHEMES,
    Problems,
    SpecError,
    key_text,
    tuplify,
)
from raygrid.store.results import is_uri

__all__ = [
    "DATA_FORMATS",
    "OUTPUT_SCHEMES",
    "LoadedData",
    "SearchSpec",
    "SpecError",
    "is_uri",
    "load_spec",
    "parse_spec",
]

_SECTIONS = {
    "estimator": "the estimator to tune",
    "search": "the search's settings",
    "data": "the data to fit",
    "output": "where results are written",
    "tracking": "experiment trackers the search is logged to",
}
_ESTIMATOR_KEYS = ("class", "params")
_SEARCH_KEYS = (
    "param_grid",
    "cv",
    "scoring",
    "refit",
    "n_jobs",
    "pre_dispatch",
    "error_score",
    "return_train_score",
    "num_cpus_per_task",
    "num_gpus_per_task",
    "max_retries",
    "results_dir",
    "max_consecutive_failures",
    "progress",
    "fit_timeout",
    "verbose",
)
# [search].kind -> (raygrid class name, the options of that kind). Their values are checked
# by the class's own parameter validation (see _Checker.check_kind_options).
_HALVING_OPTIONS = (
    "factor",
    "resource",
    "max_resources",
    "min_resources",
    "aggressive_elimination",
    "random_state",
)
SEARCH_KINDS = {
    "grid": ("RayGridSearchCV", ()),
    "randomized": ("RayRandomizedSearchCV", ("n_iter", "random_state")),
    "halving_grid": ("RayHalvingGridSearchCV", _HALVING_OPTIONS),
    "halving_random": ("RayHalvingRandomSearchCV", ("n_candidates", *_HALVING_OPTIONS)),
}
_KIND_KEYS = tuple(sorted({k for _, keys in SEARCH_KINDS.values() for k in keys}))


@dataclass
class SearchSpec:
    """A checked search spec; build the search and load the data from it.

    Attributes
    ----------
    file : str
        The spec file as it was named (used in messages).
    raw : dict
        The TOML document as read.
    estimator_class : type
        The class imported from ``[estimator].class``.
    estimator_params : dict
        ``[estimator.params]``.
    search_params : dict
        Keyword arguments of :class:`~raygrid.RayGridSearchCV` (``param_grid`` included).
    data : DataSpec
        ``[data]``, with its path resolved.
    output : str or None
        ``[output].path``: an absolute local path or a URI; None if not set.
    """

    file: str
    raw: dict[str, Any]
    estimator_class: type
    estimator_params: dict[str, Any]
    search_params: dict[str, Any]
    data: DataSpec
    output: str | None

    def build_estimator(self) -> Any:
        """A new, unfitted estimator from ``[estimator]``."""
        return self.estimator_class(**self.estimator_params)

    def candidates(self) -> Any:
        """Every candidate of the grid, in scikit-learn's order.

        A :class:`~sklearn.model_selection.ParameterGrid`: its length and items are
        computed on demand, so a grid of millions of candidates costs no memory here.
        """
        from sklearn.model_selection import ParameterGrid

        return ParameterGrid(self.search_params["param_grid"])

    def build_search(self, ray_address: str | None = None, **overrides: Any) -> Any:
        """The search ``[search].kind`` names (grid by default), configured from the spec.

        Parameters
        ----------
        ray_address : str, default=None
            Passed as ``ray_address``.
        **overrides
            Search parameters that replace the spec's (e.g. ``verbose``).
        """
        import raygrid

        params = {**self.search_params, **overrides}
        cls = getattr(raygrid, SEARCH_KINDS[params.pop("kind", "grid")][0])
        if cls in (raygrid.RayRandomizedSearchCV, raygrid.RayHalvingRandomSearchCV):
            # Lists of values are distributions to sample from, uniformly.
            params["param_distributions"] = params.pop("param_grid")
        return cls(self.build_estimator(), ray_address=ray_address, **params)

    def load_data(self) -> LoadedData:
        """Read the file, or call the generator / loader, named in ``[data]``.

        Raises
        ------
        SpecError
            If the file cannot be read or the function fails with the given arguments.
        """
        return _load_data(self.file, self.data)


# -- reading and checking -------------------------------------------------------------


def load_spec(path: str | os.PathLike) -> SearchSpec:
    """Read a TOML search spec and check all of it, before anything runs.

    Parameters
    ----------
    path : str or path-like
        The spec file.

    Returns
    -------
    SearchSpec
        The checked spec.

    Raises
    ------
    SpecError
        Listing every problem found, each naming the file and the key.
    """
    file = os.fspath(path)
    try:
        text = Path(file).read_bytes()
    except FileNotFoundError:
        raise SpecError(file, [("", "no such file")]) from None
    except IsADirectoryError:
        raise SpecError(file, [("", "is a directory, expected a TOML file")]) from None
    except OSError as exc:
        raise SpecError(file, [("", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        doc = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(file, [("", f"not UTF-8 text ({exc.reason})")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(file, [("", f"invalid TOML: {exc}")]) from None
    return parse_spec(doc, file=file, base_dir=Path(file).resolve().parent)


def parse_spec(
    doc: dict[str, Any], *, file: str = "<spec>", base_dir: str | os.PathLike | None = None
) -> SearchSpec:
    """Check a spec already read from TOML (see :func:`load_spec`).

    Parameters
    ----------
    doc : dict
        The TOML document.
    file : str, default="<spec>"
        The name used in messages.
    base_dir : path-like, default=None
        The folder relative data paths resolve against; the working directory if None.

    Returns
    -------
    SearchSpec

    Raises
    ------
    SpecError
        Listing every problem found.
    """
    checker = _Checker(file, Path(base_dir) if base_dir is not None else Path.cwd())
    return checker.check(doc)


# -- [search] option checks: each returns None when the value is right, else what was expected
#
# The rules are the search class's: its ``_parameter_constraints`` (scikit-learn's and
# raygrid's options) and raygrid's validate module. The spec adds what TOML needs said:
# true/false is a boolean, never a number, and the expected values in TOML's words.


def _constraint_problem(name: str, value: Any) -> str | None:
    """What ``RayGridSearchCV``'s constraints on ``name`` expect, if ``value`` breaks them."""
    from sklearn.utils._param_validation import (
        InvalidParameterError,
        validate_parameter_constraints,
    )

    from raygrid.search.family import RayGridSearchCV

    constraints = RayGridSearchCV._parameter_constraints[name]
    expected = _constraints_text(constraints)
    if isinstance(value, bool) and "boolean" not in constraints:
        return expected
    try:
        validate_parameter_constraints(
            {name: constraints}, {name: value}, caller_name=RayGridSearchCV.__name__
        )
    except InvalidParameterError:
        return expected
    return None


def _constraints_text(constraints: list) -> str:
    """scikit-learn parameter constraints as the TOML values they allow, e.g. "an int >= 0"."""
    from numbers import Integral, Real

    from sklearn.utils._param_validation import Interval, StrOptions

    numbers, booleans, strings = [], [], []
    for constraint in constraints:
        if isinstance(constraint, Interval):
            numbers.append(_interval_text(constraint))
        elif constraint == "verbose":  # scikit-learn's: an int >= 0 (or a bool)
            numbers.append("an int >= 0")
        elif constraint is Integral:
            numbers.append("an int")
        elif constraint is Real:
            numbers.append("a number (nan allowed)")
        elif constraint == "boolean":
            booleans += ["true", "false"]
        elif isinstance(constraint, StrOptions):
            strings += [f'"{option}"' for option in sorted(constraint.options)]
    pieces = numbers + booleans + strings
    return " or ".join([", ".join(pieces[:-1]), pieces[-1]] if len(pieces) > 1 else pieces)


def _interval_text(interval: Any) -> str:
    """A scikit-learn ``Interval`` in words: "an int >= 1", "a number > 0", ..."""
    from numbers import Integral

    text = "an int" if interval.type is Integral else "a number"
    if interval.left is not None:
        text += f" {'>=' if interval.closed in ('left', 'both') else '>'} {interval.left}"
    if interval.right is not None:
        text += f" {'<=' if interval.closed in ('right', 'both') else '<'} {interval.right}"
    return text


def _n_jobs_problem(value: Any) -> str | None:
    expected = "a non-zero int (-1 for all slots)"
    if _constraint_problem("n_jobs", value) is not None:
        return expected
    try:
        resolve_n_slots(value, capacity=1)
    except ValueError:
        return expected
    return None


def _pre_dispatch_problem(value: Any) -> str | None:
    expected = 'an int >= 1, "all" or like "2*n_jobs"'
    if _constraint_problem("pre_dispatch", value) is not None:
        return expected
    try:
        resolve_pre_dispatch(value, n_slots=1, n_tasks=1)
    except ValueError:
        return expected
    return None


def _resources_problem(value: Any, gpus: bool) -> str | None:
    name = "num_gpus_per_task" if gpus else "num_cpus_per_task"
    problem = _constraint_problem(name, value)
    # inf breaks the constraint too; the spec has always called it "not whole".
    if problem is not None and value != math.inf:
        return problem
    try:
        check_task_resources(num_cpus=0 if gpus else value, num_gpus=value if gpus else 0)
    except ValueError:
        return "a whole number above 1 (fractions only below 1)"
    return None


def _results_dir_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "a directory path or a URI like s3://bucket/journal (a string)"
    if is_uri(value) and value.split("://", 1)[0].lower() not in OUTPUT_SCHEMES:
        return f"a local path or a URI with one of the schemes {', '.join(OUTPUT_SCHEMES)}"
    return None


def _fit_timeout_problem(value: Any) -> str | None:
    ok = _is_number(value) and math.isfinite(value) and value > 0
    return None if ok else "a number of seconds > 0"


def _refit_refused(refit: Any, metrics: list[str]) -> bool:
    """Whether the search's ``_check_refit_for_multimetric`` refuses ``refit`` for ``metrics``."""
    from sklearn.dummy import DummyClassifier

    from raygrid.search.family import RayGridSearchCV

    try:
        RayGridSearchCV(DummyClassifier(), {}, refit=refit)._check_refit_for_multimetric(metrics)
    except ValueError:
        return True
    return False


def _checked_by_constraints(name: str) -> Any:
    return lambda value: _constraint_problem(name, value)


_SEARCH_OPTION_CHECKS = {
    "n_jobs": _n_jobs_problem,
    "pre_dispatch": _pre_dispatch_problem,
    "error_score": _checked_by_constraints("error_score"),
    "return_train_score": _checked_by_constraints("return_train_score"),
    "num_cpus_per_task": lambda value: _resources_problem(value, gpus=False),
    "num_gpus_per_task": lambda value: _resources_problem(value, gpus=True),
    "max_retries": _checked_by_constraints("max_retries"),
    "verbose": _checked_by_constraints("verbose"),
}
# Parameters newer versions of RayGridSearchCV take: checked and passed only when it has them.
_OPTIONAL_SEARCH_CHECKS = {
    "results_dir": _results_dir_problem,
    "max_consecutive_failures": _checked_by_constraints("max_consecutive_failures"),
    "progress": _checked_by_constraints("progress"),
    "fit_timeout": _fit_timeout_problem,
}


class _Checker(Problems):
    """Collects every problem of a spec, then raises them together."""

    def __init__(self, file: str, base_dir: Path) -> None:
        super().__init__(file)
        self.base_dir = base_dir

    def table(self, doc: dict, name: str, required: bool) -> dict | None:
        value = doc.get(name, MISSING)
        if value is MISSING:
            if required:
                self.fail(f"[{name}]", f"missing table ({_SECTIONS[name]})")
            return None
        if not isinstance(value, dict):
            self.fail(f"[{name}]", "a table", value)
            return None
        return value

    # -- the whole document ---------------------------------------------------------

    def check(self, doc: dict[str, Any]) -> SearchSpec:
        for name, value in doc.items():
            if name not in _SECTIONS:
                hint = difflib.get_close_matches(name, list(_SECTIONS), n=1)
                kind = "table" if isinstance(value, dict) else "key"
                text = f"unknown {kind}; expected the tables " + ", ".join(
                    f"[{s}]" for s in _SECTIONS
                )
                if hint:
                    text += f" (did you mean [{hint[0]}]?)"
                self.fail(f"[{name}]" if isinstance(value, dict) else key_text(name), text)

        estimator = self.table(doc, "estimator", required=True)
        search = self.table(doc, "search", required=True)
        data = self.table(doc, "data", required=True)
        output = self.table(doc, "output", required=False)
        tracking = self.table(doc, "tracking", required=False)

        estimator_class, estimator_params = (
            self.check_estimator(estimator) if estimator is not None else (None, {})
        )
        search_params = self.check_search(search) if search is not None else {}
        if tracking is not None:
            search_params["tracking"] = check_tracking(self, tracking)
        data_spec = check_data(self, data, self.base_dir) if data is not None else None
        output_path = check_output(self, output) if output is not None else None
        self.raise_if_failed()

        # Checks that need the parts above to be sound.
        estimator_obj = self.check_estimator_params(estimator_class, estimator_params)
        self.raise_if_failed()
        self.check_grid(estimator_obj, search_params["param_grid"])
        check_data_columns(self, data_spec)
        self.raise_if_failed()
        return SearchSpec(
            file=self.file,
            raw=doc,
            estimator_class=estimator_class,
            estimator_params=estimator_params,
            search_params=search_params,
            data=data_spec,
            output=output_path,
        )

    # -- [estimator] --------------------------------------------------------------

    def check_estimator(self, table: dict) -> tuple[type | None, dict]:
        self.unknown_keys(table, _ESTIMATOR_KEYS, "[estimator]")
        cls = None
        path = table.get("class", MISSING)
        if path is MISSING:
            self.fail(
                "[estimator].class",
                'missing; expected an import path like "raygrid.keras.KerasClassifier"',
            )
        elif not isinstance(path, str):
            self.fail("[estimator].class", "an import path (a string)", path)
        else:
            obj = self.import_object("[estimator].class", path)
            if obj is not None:
                if not (inspect.isclass(obj) and hasattr(obj, "get_params")):
                    self.fail(
                        "[estimator].class",
                        f"{path!r} is not a scikit-learn estimator class "
                        "(a class with get_params/set_params)",
                    )
                else:
                    cls = obj
        params = table.get("params", {})
        if not isinstance(params, dict):
            self.fail("[estimator.params]", "a table of constructor arguments", params)
            params = {}
        return cls, tuplify(params)

    def check_estimator_params(self, cls: type, params: dict) -> Any:
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
                    text = _no_parameter(cls.__name__, key, names)
                    self.fail(f"[estimator.params].{key_text(key)}", text)
            if self.problems:
                return None
        try:
            return cls(**params)
        except Exception as exc:
            bad = next((k for k in params if repr(k) in str(exc)), None)
            key = f"[estimator.params].{key_text(bad)}" if bad else "[estimator.params]"
            self.fail(key, f"{cls.__name__}(...) failed: {type(exc).__name__}: {exc}")
            return None

    def import_object(self, key: str, path: str) -> Any:
        module_name, sep, attr = path.replace(":", ".").rpartition(".")
        if not sep or not module_name or not attr:
            self.fail(key, 'an import path like "package.module.ClassName"', path)
            return None
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            self.fail(key, f"cannot import {path!r}: no module named {exc.name!r}")
            return None
        except Exception as exc:
            self.fail(key, f"cannot import {path!r}: {type(exc).__name__}: {exc}")
            return None
        if not hasattr(module, attr):
            names = [n for n in dir(module) if not n.startswith("_")]
            hint = difflib.get_close_matches(attr, names, n=1)
            text = f"cannot import {path!r}: module {module_name!r} has no attribute {attr!r}"
            self.fail(key, text + (f" (did you mean {hint[0]!r}?)" if hint else ""))
            return None
        return getattr(module, attr)

    # -- [search] -------------------------------------------------------------------

    def check_search(self, table: dict) -> dict[str, Any]:
        self.unknown_keys(table, (*_SEARCH_KEYS, "kind", *_KIND_KEYS), "[search]")
        out: dict[str, Any] = {}
        self.check_kind_options(table, out)
        grid = table.get("param_grid", MISSING)
        if grid is MISSING:
            self.fail(
                "[search].param_grid",
                "missing; expected a table of arrays, e.g. { units = [32, 64] }, "
                "or an array of such tables",
            )
        else:
            out["param_grid"] = self.check_param_grid(grid)
        if "cv" in table:
            out["cv"] = self.check_cv(table["cv"])
        self.check_scoring_and_refit(table, out)
        for name, check in _SEARCH_OPTION_CHECKS.items():
            if name in table:
                self.take(table, out, name, check)
        self.check_optional_options(table, out)
        return out

    def take(self, table: dict, out: dict[str, Any], name: str, check: Any) -> None:
        """``out[name] = table[name]`` when ``check`` returns None, else the problem it names."""
        expected = check(table[name])
        if expected is None:
            out[name] = table[name]
        else:
            self.fail(f"[search].{name}", expected, table[name])

    def check_scoring_and_refit(self, table: dict, out: dict[str, Any]) -> None:
        scoring = table.get("scoring", MISSING)
        metrics: list[str] | None = None
        if scoring is not MISSING:
            out["scoring"], metrics = self.check_scoring(scoring)
        refit = self.check_refit(table.get("refit", MISSING), metrics)
        if refit is not MISSING:
            out["refit"] = refit

    def check_optional_options(self, table: dict, out: dict[str, Any]) -> None:
        """The options only some versions of ``RayGridSearchCV`` have."""
        for name, check in _OPTIONAL_SEARCH_CHECKS.items():
            if name not in table:
                continue
            if not _search_accepts(name):
                self.fail(
                    f"[search].{name}",
                    f"not supported by this version of RayGridSearchCV (no {name} "
                    "parameter); remove it",
                )
            else:
                self.take(table, out, name, check)
        if "results_dir" in out and not is_uri(out["results_dir"]):
            out["results_dir"] = os.path.abspath(os.path.expanduser(out["results_dir"]))

    def check_kind_options(self, table: dict, out: dict[str, Any]) -> None:
        """``kind`` and its options, checked by the search class's own validation."""
        from sklearn.dummy import DummyClassifier
        from sklearn.utils._param_validation import InvalidParameterError

        import raygrid

        kind = table.get("kind", "grid")
        if kind not in SEARCH_KINDS:
            self.fail("[search].kind", f"one of {sorted(SEARCH_KINDS)}", kind)
            return
        class_name, allowed = SEARCH_KINDS[kind]
        options = {k: table[k] for k in _KIND_KEYS if k in table}
        for name in list(options):
            if name not in allowed:
                self.fail(f"[search].{name}", f'not an option of kind = "{kind}"; remove it')
                del options[name]
        if kind.startswith("halving") and "pre_dispatch" in table:
            self.fail("[search].pre_dispatch", f'not an option of kind = "{kind}"; remove it')
        if kind != "grid":
            out["kind"] = kind
        cls = getattr(raygrid, class_name)
        for name, value in options.items():
            try:
                cls(DummyClassifier(), {}, **{name: value})._validate_params()
            except InvalidParameterError as exc:
                if f"{name!r} parameter" in str(exc):
                    expected = str(exc).split(" must be ", 1)[-1].split(". Got ")[0]
                    self.fail(f"[search].{name}", expected, value)
                    continue
            out[name] = value

    def check_param_grid(self, grid: Any) -> Any:
        if isinstance(grid, dict):
            return self.check_grid_table(grid, "[search].param_grid")
        if isinstance(grid, list) and grid and all(isinstance(g, dict) for g in grid):
            return [
                self.check_grid_table(g, f"[search].param_grid[{i}]") for i, g in enumerate(grid)
            ]
        self.fail(
            "[search].param_grid",
            "a table of arrays (e.g. { units = [32, 64] }) or a non-empty array of such tables",
            grid,
        )
        return {}

    def check_grid_table(self, table: dict, where: str) -> dict[str, list]:
        """One table of ``param_grid``; each entry as scikit-learn's ParameterGrid wants it."""
        from sklearn.model_selection import ParameterGrid

        if not table:
            self.fail(where, "at least one parameter, got an empty table")
        out = {}
        for name, values in table.items():
            try:  # ParameterGrid's rule: a non-empty sequence, not a string
                ParameterGrid({name: values})
            except (TypeError, ValueError):
                self.fail(
                    f"{where}.{key_text(name)}",
                    "a non-empty array of values (write [x] for a single value)",
                    values,
                )
                continue
            out[name] = [tuplify(v) for v in values]
        return out

    def check_cv(self, value: Any) -> Any:
        """``cv``: an int (TOML) that scikit-learn's ``check_cv`` takes, or a splitter table."""
        from sklearn.model_selection import check_cv

        if not _is_int(value):
            if not isinstance(value, dict):
                self.fail("[search].cv", "an int >= 2 or a table", value)
                return None
            return self.check_cv_table(value)
        try:  # check_cv's KFold refuses fewer than 2 splits
            check_cv(value)
        except ValueError:
            self.fail("[search].cv", "an int >= 2 or a table", value)
        return value

    def check_cv_table(self, value: dict) -> Any:
        """``cv = { class = "...", ... }``: the splitter, built with the table's arguments."""
        from sklearn.model_selection import check_cv

        path = value.get("class", MISSING)
        if not isinstance(path, str):
            self.fail(
                "[search].cv.class",
                'a splitter import path like "sklearn.model_selection.KFold"',
                None if path is MISSING else path,
            )
            return None
        cls = self.import_object("[search].cv.class", path)
        if cls is None:
            return None
        try:  # check_cv's rule for a splitter (a split method), asked before building one
            check_cv(cls)
        except ValueError:
            self.fail("[search].cv.class", f"{path!r} is not a CV splitter (no split method)")
            return None
        args = {k: tuplify(v) for k, v in value.items() if k != "class"}
        try:
            return cls(**args)
        except Exception as exc:
            bad = next((k for k in args if repr(k) in str(exc) or k in str(exc)), None)
            key = f"[search].cv.{key_text(bad)}" if bad else "[search].cv"
            self.fail(key, f"{cls.__name__}(...) failed: {type(exc).__name__}: {exc}")
            return None

    def check_scorer_name(self, key: str, name: Any) -> bool:
        """A scorer name, as scikit-learn's ``check_scoring`` takes it; a problem if not."""
        from sklearn.metrics import check_scoring, get_scorer_names

        if not isinstance(name, str):
            self.fail(key, "a scorer name (a string)", name)
            return False
        try:
            check_scoring(None, scoring=name)
        except ValueError:
            hint = difflib.get_close_matches(name, list(get_scorer_names()), n=1)
            text = f"unknown scorer {name!r}"
            text += f" (did you mean {hint[0]!r}?)" if hint else ""
            self.fail(key, text + "; see sklearn.metrics.get_scorer_names()")
            return False
        return True

    def check_scoring(self, value: Any) -> tuple[Any, list[str] | None]:
        """``scoring``: a scorer name or an array of them; and the metrics' names."""
        from sklearn.metrics import check_scoring

        if isinstance(value, str):
            self.check_scorer_name("[search].scoring", value)
            return value, [value]
        if isinstance(value, list) and value:
            names = enumerate(value)
            if all(self.check_scorer_name(f"[search].scoring[{i}]", v) for i, v in names):
                try:  # of known names, check_scoring refuses only a repeated one
                    check_scoring(None, scoring=value)
                except ValueError:
                    self.fail("[search].scoring", "distinct scorer names", value)
            return list(value), list(value)
        self.fail("[search].scoring", "a scorer name or a non-empty array of them", value)
        return None, None

    def check_refit(self, value: Any, metrics: list[str] | None) -> Any:
        """``refit`` (``MISSING`` when not set) against the metrics of ``scoring``.

        With several metrics the rule is the search's own ``_check_refit_for_multimetric``;
        with one, the spec takes only true or false.
        """
        if value is not MISSING and _constraint_problem("refit", value) is not None:
            self.fail("[search].refit", "true, false or a scoring metric name", value)
            return True
        if metrics is None or len(metrics) < 2:
            if isinstance(value, str):
                self.fail(
                    "[search].refit",
                    "true or false (a metric name only with several scoring metrics)",
                    value,
                )
            return value
        if _refit_refused(True if value is MISSING else value, metrics):
            if value is MISSING:
                self.fail(
                    "[search].refit",
                    f"missing; with several scoring metrics, set refit to one of {metrics} "
                    "or to false",
                )
            elif value is True:
                self.fail(
                    "[search].refit",
                    f"with several scoring metrics, expected false or one of {metrics}",
                    value,
                )
            else:
                self.fail("[search].refit", f"one of the scoring metrics {metrics}", value)
        return value

    def check_grid(self, estimator: Any, grid: Any) -> None:
        from sklearn.model_selection import ParameterGrid

        grids = grid if isinstance(grid, list) else [grid]
        for i, one in enumerate(grids):
            where = (
                f"[search].param_grid[{i}]" if isinstance(grid, list) else "[search].param_grid"
            )
            try:
                candidates = ParameterGrid(one)  # lazy: a huge grid is not expanded
                first = [candidates[0]] if len(candidates) else []
            except Exception as exc:
                self.fail(where, f"not a valid grid: {exc}")
                continue
            try:
                check_candidate_params(estimator, first)
            except UnknownParameterError as exc:
                names = sorted(estimator.get_params(deep=True))
                text = _no_parameter(type(estimator).__name__, exc.name, names)
                self.fail(f"{where}.{key_text(exc.name)}", text)
            except Exception as exc:
                self.fail(where, f"{type(exc).__name__}: {exc}")


# -- small helpers ----------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _no_parameter(owner: str, name: str, names: list[str]) -> str:
    """ "OWNER has no parameter NAME", with the closest of ``names`` as a hint."""
    hint = difflib.get_close_matches(name, names, n=1)
    return f"{owner} has no parameter {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")


def _search_accepts(name: str) -> bool:
    from raygrid.search.family import RayGridSearchCV

    return name in inspect.signature(RayGridSearchCV).parameters
