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

This module reads the document, checks its tables one by one (each table's checks are
its own module's: ``[estimator]`` :mod:`raygrid.spec.estimator_table`'s, ``[search]``
:mod:`raygrid.spec.search_table`'s, ``[data]`` :mod:`raygrid.spec.data`'s, ``[output]``
and ``[tracking]`` :mod:`raygrid.spec.output`'s), then what needs several of them, and
builds the search. The collecting and wording of problems is :mod:`raygrid.spec.problems`'.

Relative ``[data].path`` values resolve against the spec file's folder; a relative
``[output].path`` or ``[search].results_dir`` against the current working directory.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raygrid.spec.data import DATA_FORMATS, DataSpec, LoadedData, check_data, check_data_columns
from raygrid.spec.data import load_data as _load_data
from raygrid.spec.estimator_table import check_estimator, check_estimator_params
from raygrid.spec.output import check_output, check_tracking
from raygrid.spec.problems import (
    MISSING,
    OUTPUT_SCHEMES,
    Problems,
    SpecError,
    key_text,
)
from raygrid.spec.search_table import SEARCH_KINDS, check_grid, check_search
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
    problems = Problems(file)
    return _check(problems, doc, Path(base_dir) if base_dir is not None else Path.cwd())


def _table(problems: Problems, doc: dict, name: str, required: bool) -> dict | None:
    value = doc.get(name, MISSING)
    if value is MISSING:
        if required:
            problems.fail(f"[{name}]", f"missing table ({_SECTIONS[name]})")
        return None
    if not isinstance(value, dict):
        problems.fail(f"[{name}]", "a table", value)
        return None
    return value


def _check(problems: Problems, doc: dict[str, Any], base_dir: Path) -> SearchSpec:
    """Check every table of ``doc``, then what needs several of them; raise all problems."""
    for name, value in doc.items():
        if name not in _SECTIONS:
            hint = difflib.get_close_matches(name, list(_SECTIONS), n=1)
            kind = "table" if isinstance(value, dict) else "key"
            text = f"unknown {kind}; expected the tables " + ", ".join(f"[{s}]" for s in _SECTIONS)
            if hint:
                text += f" (did you mean [{hint[0]}]?)"
            problems.fail(f"[{name}]" if isinstance(value, dict) else key_text(name), text)

    estimator = _table(problems, doc, "estimator", required=True)
    search = _table(problems, doc, "search", required=True)
    data = _table(problems, doc, "data", required=True)
    output = _table(problems, doc, "output", required=False)
    tracking = _table(problems, doc, "tracking", required=False)

    estimator_class, estimator_params = (
        check_estimator(problems, estimator) if estimator is not None else (None, {})
    )
    search_params = check_search(problems, search) if search is not None else {}
    if tracking is not None:
        search_params["tracking"] = check_tracking(problems, tracking)
    data_spec = check_data(problems, data, base_dir) if data is not None else None
    output_path = check_output(problems, output) if output is not None else None
    problems.raise_if_failed()

    # Checks that need the parts above to be sound.
    estimator_obj = check_estimator_params(problems, estimator_class, estimator_params)
    problems.raise_if_failed()
    check_grid(problems, estimator_obj, search_params["param_grid"])
    check_data_columns(problems, data_spec)
    problems.raise_if_failed()
    return SearchSpec(
        file=problems.file,
        raw=doc,
        estimator_class=estimator_class,
        estimator_params=estimator_params,
        search_params=search_params,
        data=data_spec,
        output=output_path,
    )
