"""Turn a wave's candidates and CV splits into the units of work sent to workers.

A :class:`Task` is one (candidate, split) pair: one fit and its scores. Tasks are
numbered candidate-major, exactly like scikit-learn iterates
``product(candidates, splits)``, so results can be put back in scikit-learn's order
whatever order they finish in. Tasks that differ only in a training-length parameter on
the same split become one :class:`PrefixGroup`, trained once (see :mod:`raygrid.run.prefix`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import joblib

from raygrid.run.prefix import shared_param
from raygrid.text import shorten


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

    @property
    def indices(self) -> tuple[int, ...]:
        """The tasks this unit of work runs (itself)."""
        return (self.index,)

    @property
    def payload(self) -> tuple:
        """What the worker is sent: ``(kind, [(index, params, split), ...], options)``.

        ``kind`` is ``"fit"`` for a task (options None), ``"prefix"`` for a
        :class:`PrefixGroup` and ``"fused"`` for a :class:`FusedGroup`.
        """
        return ("fit", [(self.index, self.params, self.split)], None)


@dataclass(frozen=True)
class PrefixGroup:
    """Tasks of one split that differ only in ``param``, trained as one fit.

    A group may hold a single task when it continues a fit of an earlier wave (a halving
    iteration with a training-length resource).

    Attributes
    ----------
    tasks : tuple of Task
        Sorted by ascending ``param`` value; the last one's fit is the one trained.
    param : str
        The training-length parameter (e.g. ``epochs``, ``rf__n_estimators``).
    resume : ray.ObjectRef or None
        A fitted state of the same candidate and split, trained to a smaller value in an
        earlier wave, to continue from.
    keep : bool
        Whether the worker keeps the final state in Ray's object store for a later wave.
    """

    tasks: tuple[Task, ...]
    param: str
    resume: Any = None
    keep: bool = False

    @property
    def index(self) -> int:
        return self.tasks[0].index

    @property
    def split(self) -> int:
        return self.tasks[0].split

    @property
    def params(self) -> dict[str, Any]:
        """The parameters of the fit actually trained (the largest value's)."""
        return self.tasks[-1].params

    @property
    def name(self) -> str:
        values = ", ".join(str(t.params[self.param]) for t in self.tasks)
        return f"{self.tasks[-1].name} scored at {self.param}={values}"

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(t.index for t in self.tasks)

    @property
    def payload(self) -> tuple:
        members = [(t.index, t.params, t.split) for t in self.tasks]
        return ("prefix", members, (self.param, self.resume, self.keep))


@dataclass(frozen=True)
class FusedGroup:
    """Fits of one network architecture and batch size, trained together as one stack.

    Opt-in (``fuse=True``): see :mod:`raygrid.keras.fused`. Its tasks may come from any
    candidates and splits.
    """

    tasks: tuple[Task, ...]

    @property
    def index(self) -> int:
        return self.tasks[0].index

    @property
    def params(self) -> dict[str, Any]:
        """The parameters of its longest-expected fit: the stack trains as long as that one."""
        return max((t.params for t in self.tasks), key=expected_cost)

    @property
    def name(self) -> str:
        return f"raygrid fused fits: {self.tasks[0].name} (+{len(self.tasks) - 1})"

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(t.index for t in self.tasks)

    @property
    def payload(self) -> tuple:
        return ("fused", [(t.index, t.params, t.split) for t in self.tasks], None)


def fuse_fits(tasks: list, estimator: Any, max_models: int = 64) -> list:
    """Group tasks whose fits can be trained as one stack (same fusion key).

    Groups hold at most ``max_models`` fits; tasks that cannot be fused stay as they are.
    """
    from raygrid.keras.fused import fusion_key  # imports TensorFlow: only when asked

    groups: dict[str, list[Task]] = {}
    units: list = []
    for task in tasks:
        key = fusion_key(_configured(estimator, task.params))
        if key is None:
            units.append(task)
        else:
            groups.setdefault(key, []).append(task)
    for members in groups.values():
        for start in range(0, len(members), max_models):
            chunk = tuple(members[start : start + max_models])
            units.append(FusedGroup(chunk) if len(chunk) > 1 else chunk[0])
    return units


def _configured(estimator: Any, params: dict[str, Any]) -> Any:
    from sklearn.base import clone

    return clone(estimator).set_params(**clone(params, safe=False))


def prefix_key(task: Task, param: str) -> tuple:
    """What identifies a task's training apart from ``param``: its split and other params."""
    return (task.split, joblib.hash({k: v for k, v in task.params.items() if k != param}))


def continue_fits(
    tasks: list[Task], param: str, states: dict[tuple, tuple[int, Any]]
) -> list[PrefixGroup]:
    """A halving wave's tasks, each continuing the state an earlier wave left, if any.

    ``states`` maps :func:`prefix_key` to ``(value, state)`` kept by the previous wave;
    a task continues a state trained to a smaller value of ``param``, and keeps its own
    final state for the next wave.
    """
    units = []
    for task in tasks:
        known = states.get(prefix_key(task, param))
        resume = known[1] if known is not None and known[0] < task.params[param] else None
        units.append(PrefixGroup((task,), param, resume=resume, keep=True))
    return units


def share_prefixes(tasks: list[Task], estimator: Any) -> list[Task | PrefixGroup]:
    """Group the tasks that differ only in a shareable training-length parameter.

    Tasks keep their order otherwise; a group stands where its first task stood.
    """
    groups: dict[tuple, list[Task]] = {}
    order: list[tuple] = []
    for task in tasks:
        param = shared_param(estimator, task.params)
        rest = {k: v for k, v in task.params.items() if k != param}
        key = (task.split, param, joblib.hash(rest)) if param else (task.index,)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(task)
    units: list[Task | PrefixGroup] = []
    for key in order:
        members = groups[key]
        values = {t.params.get(key[1]) for t in members} if len(members) > 1 else set()
        if len(values) == len(members) > 1:
            members.sort(key=lambda t: t.params[key[1]])
            units.append(PrefixGroup(tuple(members), key[1]))
        else:
            units.extend(members)
    return units


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


# Parameters that change a network's architecture (its traced graph), not its training.
_ARCHITECTURE = ("units", "n_layers", "hidden_layer_sizes", "activation", "dropout_rate", "model")


def architecture_key(params: dict[str, Any]) -> tuple:
    """The values of ``params`` that define a network's architecture, as a sortable key.

    A cheap, driver-side reading of well-known names (``units``, ``n_layers``,
    ``hidden_layer_sizes``, ``activation``, ``dropout_rate``, ``model``, also nested as
    ``<step>__<name>``); candidates with equal keys build the same graph.
    """
    return tuple(
        sorted(
            (name, repr(value))
            for name, value in params.items()
            if name.rsplit("__", 1)[-1] in _ARCHITECTURE
        )
    )


def submission_order(tasks: list[Task | PrefixGroup]) -> list[Task | PrefixGroup]:
    """Tasks longest-expected first, one architecture at a time.

    Tasks of one architecture (:func:`architecture_key`) are submitted together, so a
    worker traces few networks at a time; architectures go in the order of their
    longest task, and within one the longest task goes first. Ties keep scikit-learn's
    order.
    """
    groups: dict[tuple, float] = {}
    for task in tasks:
        key = architecture_key(task.params)
        groups[key] = max(groups.get(key, 0.0), expected_cost(task.params))
    rank = {key: n for n, key in enumerate(sorted(groups, key=lambda k: -groups[k]))}
    return sorted(
        tasks,
        key=lambda t: (rank[architecture_key(t.params)], -expected_cost(t.params), t.index),
    )


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return shorten(" ".join(text.split()), limit, mark="...")
