"""Checks run on the driver before any work is scheduled.

Each check raises an error that names the offending parameter and says what was wrong,
so a misconfigured search fails in milliseconds instead of after its first Ray task.
"""

from __future__ import annotations

import numbers
import re
from typing import Any

import cloudpickle
from sklearn.base import clone


class UnknownParameterError(ValueError):
    """``set_params`` refused a candidate's parameter name.

    Parameters
    ----------
    message : str
        scikit-learn's own message.
    name : str
        The first of the candidate's names the estimator does not have.
    """

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


def check_candidate_params(estimator: Any, candidates: list[dict[str, Any]]) -> None:
    """Every candidate's parameters must be settable on the estimator.

    Checked once per distinct set of names, before any fit, with the estimator's own
    ``set_params``: the error is the one every fit would have raised in scikit-learn.

    Raises
    ------
    UnknownParameterError
        scikit-learn's "Invalid parameter ..." naming the parameter and the valid ones.
    ValueError
        Any other error ``set_params`` raises.
    """
    checked: set[tuple[str, ...]] = set()
    for params in candidates:
        names = tuple(sorted(params))
        if names not in checked:
            checked.add(names)
            try:
                clone(estimator).set_params(**clone(params, safe=False))
            except ValueError as exc:
                valid = estimator.get_params(deep=True)
                unknown = next((name for name in params if name not in valid), None)
                if unknown is None:
                    raise
                raise UnknownParameterError(str(exc), unknown) from exc


def check_picklable(what: str, obj: Any) -> None:
    """``obj`` must survive cloudpickle, since it is shipped to Ray workers.

    Raises
    ------
    TypeError
        Naming the attribute (or parameter) of ``obj`` that cannot be pickled.
    """
    try:
        cloudpickle.dumps(obj)
    except Exception as exc:
        path, culprit, error = _find_unpicklable(obj, what)
        raise TypeError(
            f"{path} cannot be pickled to be sent to Ray workers: "
            f"{type(culprit).__name__} object fails with {type(error).__name__}: {error}"
        ) from exc


def non_array_values(params: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``params`` that are not arrays (arrays always pickle; and are big)."""
    return {k: v for k, v in params.items() if not (hasattr(v, "shape") and hasattr(v, "dtype"))}


def _find_unpicklable(obj: Any, path: str, depth: int = 0) -> tuple[str, Any, Exception]:
    """Walk attributes and containers down to the smallest part that fails to pickle."""
    try:
        cloudpickle.dumps(obj)
    except Exception as exc:
        error = exc
    else:
        return path, obj, RuntimeError("pickles on its own")
    if depth < 4:
        if isinstance(obj, dict):
            children = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
        elif isinstance(obj, (list, tuple)):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
        elif hasattr(obj, "__dict__"):
            children = [(f"{path}.{k}", v) for k, v in vars(obj).items()]
        else:
            children = []
        for child_path, child in children:
            try:
                cloudpickle.dumps(child)
            except Exception:
                return _find_unpicklable(child, child_path, depth + 1)
    return path, obj, error


def check_task_resources(num_cpus: float, num_gpus: float) -> None:
    """Ray accepts fractional GPUs only below one; above, a whole number is needed."""
    if num_gpus > 1 and not float(num_gpus).is_integer():
        raise ValueError(
            f"num_gpus_per_task={num_gpus}: above 1, a task must ask for a whole number of "
            "GPUs (fractions are for sharing one GPU, e.g. 0.5)."
        )
    if num_cpus > 1 and not float(num_cpus).is_integer():
        raise ValueError(
            f"num_cpus_per_task={num_cpus}: above 1, a task must ask for a whole number of CPUs."
        )


def resolve_n_slots(n_jobs: int | None, capacity: int) -> int:
    """How many slots to use: joblib's meaning of ``n_jobs``, capped by the cluster."""
    if n_jobs is None or n_jobs == -1:
        return capacity
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning; use None or -1 for all slots.")
    if n_jobs < 0:
        return max(1, capacity + 1 + n_jobs)
    return min(n_jobs, capacity)


def resolve_pre_dispatch(pre_dispatch: Any, n_slots: int, n_tasks: int) -> int:
    """How many fits may be queued or running at once (joblib's ``pre_dispatch``)."""
    if pre_dispatch is None or pre_dispatch == "all":
        return max(1, n_tasks)
    if isinstance(pre_dispatch, numbers.Integral) and not isinstance(pre_dispatch, bool):
        value = int(pre_dispatch)
    else:
        match = re.fullmatch(r"\s*(\d+)?\s*\*?\s*n_jobs\s*", str(pre_dispatch))
        if not match:
            raise ValueError(
                f"pre_dispatch={pre_dispatch!r}: expected an int, 'all', or an expression "
                "like '2*n_jobs'."
            )
        value = int(match.group(1) or 1) * n_slots
    if value < 1:
        raise ValueError(f"pre_dispatch={pre_dispatch!r}: must allow at least one task.")
    return value
