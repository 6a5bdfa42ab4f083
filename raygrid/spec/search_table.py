"""The ``[search]`` table: the search class's keyword arguments, checked by their owners.

The rules on the values are their owners': the search class's
``_parameter_constraints``, ``_validate_params`` and ``_check_refit_for_multimetric``,
scikit-learn's ``check_cv``, ``check_scoring`` and ``ParameterGrid``, and
:mod:`raygrid.search.validate`; their refusals are said here as
``FILE: [search].key: ...`` lines (:mod:`raygrid.spec.problems`). :func:`check_grid`
checks the grid's parameter names against the estimator ``[estimator]`` built.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
from typing import Any

from raygrid.search.validate import (
    UnknownParameterError,
    check_candidate_params,
    check_task_resources,
    resolve_n_slots,
    resolve_pre_dispatch,
)
from raygrid.spec.estimator_table import import_object, no_parameter
from raygrid.spec.problems import MISSING, OUTPUT_SCHEMES, Problems, key_text, tuplify
from raygrid.store.results import is_uri

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
# by the class's own parameter validation (see _check_kind_options).
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


def check_search(problems: Problems, table: dict) -> dict[str, Any]:
    """``[search]``: the keyword arguments of the search class it names."""
    problems.unknown_keys(table, (*_SEARCH_KEYS, "kind", *_KIND_KEYS), "[search]")
    out: dict[str, Any] = {}
    _check_kind_options(problems, table, out)
    grid = table.get("param_grid", MISSING)
    if grid is MISSING:
        problems.fail(
            "[search].param_grid",
            "missing; expected a table of arrays, e.g. { units = [32, 64] }, "
            "or an array of such tables",
        )
    else:
        out["param_grid"] = _check_param_grid(problems, grid)
    if "cv" in table:
        out["cv"] = _check_cv(problems, table["cv"])
    _check_scoring_and_refit(problems, table, out)
    for name, check in _SEARCH_OPTION_CHECKS.items():
        if name in table:
            _take(problems, table, out, name, check)
    _check_optional_options(problems, table, out)
    return out


def _take(problems: Problems, table: dict, out: dict[str, Any], name: str, check: Any) -> None:
    """``out[name] = table[name]`` when ``check`` returns None, else the problem it names."""
    expected = check(table[name])
    if expected is None:
        out[name] = table[name]
    else:
        problems.fail(f"[search].{name}", expected, table[name])


def _check_scoring_and_refit(problems: Problems, table: dict, out: dict[str, Any]) -> None:
    scoring = table.get("scoring", MISSING)
    metrics: list[str] | None = None
    if scoring is not MISSING:
        out["scoring"], metrics = _check_scoring(problems, scoring)
    refit = _check_refit(problems, table.get("refit", MISSING), metrics)
    if refit is not MISSING:
        out["refit"] = refit


def _check_optional_options(problems: Problems, table: dict, out: dict[str, Any]) -> None:
    """The options only some versions of ``RayGridSearchCV`` have."""
    for name, check in _OPTIONAL_SEARCH_CHECKS.items():
        if name not in table:
            continue
        if not _search_accepts(name):
            problems.fail(
                f"[search].{name}",
                f"not supported by this version of RayGridSearchCV (no {name} "
                "parameter); remove it",
            )
        else:
            _take(problems, table, out, name, check)
    if "results_dir" in out and not is_uri(out["results_dir"]):
        out["results_dir"] = os.path.abspath(os.path.expanduser(out["results_dir"]))


def _check_kind_options(problems: Problems, table: dict, out: dict[str, Any]) -> None:
    """``kind`` and its options, checked by the search class's own validation."""
    from sklearn.dummy import DummyClassifier
    from sklearn.utils._param_validation import InvalidParameterError

    import raygrid

    kind = table.get("kind", "grid")
    if kind not in SEARCH_KINDS:
        problems.fail("[search].kind", f"one of {sorted(SEARCH_KINDS)}", kind)
        return
    class_name, allowed = SEARCH_KINDS[kind]
    options = {k: table[k] for k in _KIND_KEYS if k in table}
    for name in list(options):
        if name not in allowed:
            problems.fail(f"[search].{name}", f'not an option of kind = "{kind}"; remove it')
            del options[name]
    if kind.startswith("halving") and "pre_dispatch" in table:
        problems.fail("[search].pre_dispatch", f'not an option of kind = "{kind}"; remove it')
    if kind != "grid":
        out["kind"] = kind
    cls = getattr(raygrid, class_name)
    for name, value in options.items():
        try:
            cls(DummyClassifier(), {}, **{name: value})._validate_params()
        except InvalidParameterError as exc:
            if f"{name!r} parameter" in str(exc):
                expected = str(exc).split(" must be ", 1)[-1].split(". Got ")[0]
                problems.fail(f"[search].{name}", expected, value)
                continue
        out[name] = value


def _check_param_grid(problems: Problems, grid: Any) -> Any:
    if isinstance(grid, dict):
        return _check_grid_table(problems, grid, "[search].param_grid")
    if isinstance(grid, list) and grid and all(isinstance(g, dict) for g in grid):
        return [
            _check_grid_table(problems, g, f"[search].param_grid[{i}]") for i, g in enumerate(grid)
        ]
    problems.fail(
        "[search].param_grid",
        "a table of arrays (e.g. { units = [32, 64] }) or a non-empty array of such tables",
        grid,
    )
    return {}


def _check_grid_table(problems: Problems, table: dict, where: str) -> dict[str, list]:
    """One table of ``param_grid``; each entry as scikit-learn's ParameterGrid wants it."""
    from sklearn.model_selection import ParameterGrid

    if not table:
        problems.fail(where, "at least one parameter, got an empty table")
    out = {}
    for name, values in table.items():
        try:  # ParameterGrid's rule: a non-empty sequence, not a string
            ParameterGrid({name: values})
        except (TypeError, ValueError):
            problems.fail(
                f"{where}.{key_text(name)}",
                "a non-empty array of values (write [x] for a single value)",
                values,
            )
            continue
        out[name] = [tuplify(v) for v in values]
    return out


def _check_cv(problems: Problems, value: Any) -> Any:
    """``cv``: an int (TOML) that scikit-learn's ``check_cv`` takes, or a splitter table."""
    from sklearn.model_selection import check_cv

    if not _is_int(value):
        if not isinstance(value, dict):
            problems.fail("[search].cv", "an int >= 2 or a table", value)
            return None
        return _check_cv_table(problems, value)
    try:  # check_cv's KFold refuses fewer than 2 splits
        check_cv(value)
    except ValueError:
        problems.fail("[search].cv", "an int >= 2 or a table", value)
    return value


def _check_cv_table(problems: Problems, value: dict) -> Any:
    """``cv = { class = "...", ... }``: the splitter, built with the table's arguments."""
    from sklearn.model_selection import check_cv

    path = value.get("class", MISSING)
    if not isinstance(path, str):
        problems.fail(
            "[search].cv.class",
            'a splitter import path like "sklearn.model_selection.KFold"',
            None if path is MISSING else path,
        )
        return None
    cls = import_object(problems, "[search].cv.class", path)
    if cls is None:
        return None
    try:  # check_cv's rule for a splitter (a split method), asked before building one
        check_cv(cls)
    except ValueError:
        problems.fail("[search].cv.class", f"{path!r} is not a CV splitter (no split method)")
        return None
    args = {k: tuplify(v) for k, v in value.items() if k != "class"}
    try:
        return cls(**args)
    except Exception as exc:
        bad = next((k for k in args if repr(k) in str(exc) or k in str(exc)), None)
        key = f"[search].cv.{key_text(bad)}" if bad else "[search].cv"
        problems.fail(key, f"{cls.__name__}(...) failed: {type(exc).__name__}: {exc}")
        return None


def _check_scorer_name(problems: Problems, key: str, name: Any) -> bool:
    """A scorer name, as scikit-learn's ``check_scoring`` takes it; a problem if not."""
    from sklearn.metrics import check_scoring, get_scorer_names

    if not isinstance(name, str):
        problems.fail(key, "a scorer name (a string)", name)
        return False
    try:
        check_scoring(None, scoring=name)
    except ValueError:
        hint = difflib.get_close_matches(name, list(get_scorer_names()), n=1)
        text = f"unknown scorer {name!r}"
        text += f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.fail(key, text + "; see sklearn.metrics.get_scorer_names()")
        return False
    return True


def _check_scoring(problems: Problems, value: Any) -> tuple[Any, list[str] | None]:
    """``scoring``: a scorer name or an array of them; and the metrics' names."""
    from sklearn.metrics import check_scoring

    if isinstance(value, str):
        _check_scorer_name(problems, "[search].scoring", value)
        return value, [value]
    if isinstance(value, list) and value:
        names = enumerate(value)
        if all(_check_scorer_name(problems, f"[search].scoring[{i}]", v) for i, v in names):
            try:  # of known names, check_scoring refuses only a repeated one
                check_scoring(None, scoring=value)
            except ValueError:
                problems.fail("[search].scoring", "distinct scorer names", value)
        return list(value), list(value)
    problems.fail("[search].scoring", "a scorer name or a non-empty array of them", value)
    return None, None


def _check_refit(problems: Problems, value: Any, metrics: list[str] | None) -> Any:
    """``refit`` (``MISSING`` when not set) against the metrics of ``scoring``.

    With several metrics the rule is the search's own ``_check_refit_for_multimetric``;
    with one, the spec takes only true or false.
    """
    if value is not MISSING and _constraint_problem("refit", value) is not None:
        problems.fail("[search].refit", "true, false or a scoring metric name", value)
        return True
    if metrics is None or len(metrics) < 2:
        if isinstance(value, str):
            problems.fail(
                "[search].refit",
                "true or false (a metric name only with several scoring metrics)",
                value,
            )
        return value
    if _refit_refused(True if value is MISSING else value, metrics):
        if value is MISSING:
            problems.fail(
                "[search].refit",
                f"missing; with several scoring metrics, set refit to one of {metrics} "
                "or to false",
            )
        elif value is True:
            problems.fail(
                "[search].refit",
                f"with several scoring metrics, expected false or one of {metrics}",
                value,
            )
        else:
            problems.fail("[search].refit", f"one of the scoring metrics {metrics}", value)
    return value


def check_grid(problems: Problems, estimator: Any, grid: Any) -> None:
    """The grid's parameter names against the estimator built from ``[estimator]``."""
    from sklearn.model_selection import ParameterGrid

    grids = grid if isinstance(grid, list) else [grid]
    for i, one in enumerate(grids):
        where = f"[search].param_grid[{i}]" if isinstance(grid, list) else "[search].param_grid"
        try:
            candidates = ParameterGrid(one)  # lazy: a huge grid is not expanded
            first = [candidates[0]] if len(candidates) else []
        except Exception as exc:
            problems.fail(where, f"not a valid grid: {exc}")
            continue
        try:
            check_candidate_params(estimator, first)
        except UnknownParameterError as exc:
            names = sorted(estimator.get_params(deep=True))
            text = no_parameter(type(estimator).__name__, exc.name, names)
            problems.fail(f"{where}.{key_text(exc.name)}", text)
        except Exception as exc:
            problems.fail(where, f"{type(exc).__name__}: {exc}")


# -- small helpers ----------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _search_accepts(name: str) -> bool:
    from raygrid.search.family import RayGridSearchCV

    return name in inspect.signature(RayGridSearchCV).parameters
