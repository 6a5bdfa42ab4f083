"""Expand a parameter grid and a list of CV splits into fit tasks.

A :class:`Task` is one (candidate, split) pair: the unit of work that a Ray worker fits
and scores. Tasks are numbered candidate-major, exactly like scikit-learn iterates
``product(candidates, splits)``, so results can be put back in scikit-learn's order
whatever order they finish in.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    """One fit of one candidate on one CV split.

    Attributes
    ----------
    index : int
        Position in its wave, in scikit-learn's candidate-major order.
    candidate : int
        Index of the candidate in ``cv_results_['params']`` (across all waves).
    split : int
        Index of the CV split.
    params : dict
        The candidate's parameters.
    """

    index: int
    candidate: int
    split: int
    params: dict[str, Any]

    @property
    def name(self) -> str:
        """Readable name shown by the Ray dashboard."""
        shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
        return f"raygrid fit [{shown}] split {self.split}"


def plan_tasks(
    candidates: list[dict[str, Any]], n_splits: int, first_candidate: int = 0
) -> list[Task]:
    """One task per (candidate, split) of a wave, candidate-major.

    ``first_candidate`` is the number of candidates earlier waves of the search evaluated.
    """
    return [
        Task(index=c * n_splits + s, candidate=first_candidate + c, split=s, params=params)
        for c, params in enumerate(candidates)
        for s in range(n_splits)
    ]


# Parameters whose value tells how long a fit runs: more of these means a longer fit,
# except batch_size, where a smaller batch means more steps.
_LONGER_WHEN_LARGER = ("epochs", "max_iter", "n_estimators", "n_layers", "units")
_LONGER_WHEN_SMALLER = ("batch_size",)


def expected_cost(params: dict[str, Any]) -> float:
    """A relative cost guess for a candidate, read off well-known parameter names.

    Only ordering matters: submitting long fits first keeps slots from idling at the
    end of a search while one straggler runs alone.
    """
    cost = 1.0
    for name, value in params.items():
        base = name.rsplit("__", 1)[-1]
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or value <= 0:
            continue
        if base in _LONGER_WHEN_LARGER:
            cost *= float(value)
        elif base in _LONGER_WHEN_SMALLER:
            cost /= float(value)
    return cost


def submission_order(tasks: list[Task]) -> list[Task]:
    """Tasks sorted longest-expected first; ties keep scikit-learn's order."""
    return sorted(tasks, key=lambda t: (-expected_cost(t.params), t.index))


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
