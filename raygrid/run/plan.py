"""Turn a wave's candidates and CV splits into the units of work sent to workers.

One :class:`~raygrid.run.units.Task` per (candidate, split), candidate-major like
scikit-learn's ``product(candidates, splits)``. Tasks that differ only in a training-length
parameter on the same split become one :class:`~raygrid.run.units.PrefixGroup`, trained
once (see :mod:`raygrid.run.prefix`); with ``fuse=True``, fits the estimator can train
together become one :class:`~raygrid.run.units.FusedGroup`. Units are submitted longest
first, one architecture at a time (:func:`submission_order`).
"""

from __future__ import annotations

import numbers
from typing import Any

import joblib

from raygrid.run import fusion
from raygrid.run.prefix import shared_param
from raygrid.run.units import FusedGroup, PrefixGroup, Task, WorkUnit


def fuse_fits(
    tasks: list[Task], estimator: Any, max_models: int = 64
) -> tuple[list[FusedGroup], list[Task]]:
    """Group tasks whose fits the estimator can train as one stack (same fusion key).

    The estimator's fusion hook (see :mod:`raygrid.run.fusion`) says which fits go
    together. Groups hold at most ``max_models`` fits. Returns the groups, and the tasks that
    cannot be fused (or were left alone in their group), in their order.
    """
    groups: dict[str, list[Task]] = {}
    alone: list[Task] = []
    for task in tasks:
        key = fusion.fusion_key(estimator, task.params)
        if key is None:
            alone.append(task)
        else:
            groups.setdefault(key, []).append(task)
    fused: list[FusedGroup] = []
    for members in groups.values():
        for start in range(0, len(members), max_models):
            chunk = tuple(members[start : start + max_models])
            if len(chunk) == 1:
                alone.append(chunk[0])
            else:
                lead = max((t.params for t in chunk), key=expected_cost)
                fused.append(FusedGroup(chunk, lead))
    return fused, alone


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


def share_prefixes(tasks: list[Task], estimator: Any) -> list[WorkUnit]:
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
    units: list[WorkUnit] = []
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


def submission_order(units: list[WorkUnit]) -> list[WorkUnit]:
    """Units longest-expected first, one architecture at a time.

    Units of one architecture (:func:`architecture_key`) are submitted together, so a
    worker traces few networks at a time; architectures go in the order of their
    longest unit, and within one the longest unit goes first. Ties keep scikit-learn's
    order (of each unit's first task).
    """
    groups: dict[tuple, float] = {}
    for unit in units:
        key = architecture_key(unit.params)
        groups[key] = max(groups.get(key, 0.0), expected_cost(unit.params))
    rank = {key: n for n, key in enumerate(sorted(groups, key=lambda k: -groups[k]))}
    return sorted(
        units,
        key=lambda u: (
            rank[architecture_key(u.params)],
            -expected_cost(u.params),
            u.tasks[0].index,
        ),
    )
