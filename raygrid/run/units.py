"""The units of work the scheduler hands to workers, and the one protocol they share.

A :class:`Task` is one (candidate, split) pair: one fit and its scores. Tasks are
numbered candidate-major, exactly like scikit-learn iterates
``product(candidates, splits)``, so results can be put back in scikit-learn's order
whatever order they finish in. A :class:`PrefixGroup` is tasks of one split trained once
(see :mod:`raygrid.run.prefix`); a :class:`FusedGroup` is fits trained together as one
stack by the estimator's fusion hook (see :mod:`raygrid.run.fusion`).

All three are a :class:`WorkUnit`, and the scheduler (:mod:`raygrid.run.execute`) knows
them only as that: it never asks a unit its kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from raygrid.text import shorten


class WorkUnit(Protocol):
    """What the scheduler knows of a unit of work, whatever it is.

    What it covers
        :attr:`tasks`: the fits it runs. The worker returns one
        :class:`~raygrid.store.record.FitRecord` per task, indexed by the task's
        ``index``; each record is journaled under its own task's key, by the worker
        that made it (or by the driver when the worker could not), and reported like any
        fit's (progress, verbose lines, ``tasks_``).
    How it is run
        :attr:`payload`: plain data the worker dispatches on (see
        :meth:`raygrid.run.worker.FitWorker.run`); :attr:`params`: the parameters whose
        expected cost orders submission.
    How it is retried
        A worker lost with the unit costs each of its tasks one attempt; the unit goes
        back to the queue whole until one of its tasks has used ``1 + max_retries``
        attempts, and then the search stops with an error naming :meth:`describe`.
    How it is timed out
        With ``fit_timeout`` a call carries one unit; past the deadline each of its
        tasks gets the timed-out record of a failed fit.
    How it is reported
        :attr:`name`: what the Ray dashboard shows for its call.
    """

    @property
    def tasks(self) -> tuple[Task, ...]: ...

    @property
    def params(self) -> dict[str, Any]: ...

    @property
    def name(self) -> str: ...

    @property
    def payload(self) -> tuple: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Task:
    """One fit of one candidate on one CV split (a :class:`WorkUnit` of one task).

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
    def tasks(self) -> tuple[Task, ...]:
        """The tasks this unit of work runs (itself)."""
        return (self,)

    @property
    def name(self) -> str:
        """Readable name shown by the Ray dashboard."""
        shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self.params.items()))
        return f"raygrid fit [{shown}] split {self.split}"

    @property
    def payload(self) -> tuple:
        """What the worker is sent: ``(kind, [(index, params, split), ...], options)``.

        ``kind`` is ``"fit"`` for a task (options None), ``"prefix"`` for a
        :class:`PrefixGroup` and ``"fused"`` for a :class:`FusedGroup`.
        """
        return ("fit", [(self.index, self.params, self.split)], None)

    def describe(self) -> str:
        """The fit, as errors name it."""
        return f"the fit of candidate {self.candidate} {self.params}, split {self.split}"


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
    def params(self) -> dict[str, Any]:
        """The parameters of the fit actually trained (the largest value's)."""
        return self.tasks[-1].params

    @property
    def name(self) -> str:
        values = ", ".join(str(t.params[self.param]) for t in self.tasks)
        return f"{self.tasks[-1].name} scored at {self.param}={values}"

    @property
    def payload(self) -> tuple:
        members = [(t.index, t.params, t.split) for t in self.tasks]
        return ("prefix", members, (self.param, self.resume, self.keep))

    def describe(self) -> str:
        """The fit actually trained, as errors name it."""
        return self.tasks[-1].describe()


@dataclass(frozen=True)
class FusedGroup:
    """Fits the estimator trains together as one stack (its fusion hook).

    Opt-in (``fuse=True``): see :mod:`raygrid.run.fusion`. Its tasks may come from any
    candidates and splits.

    Attributes
    ----------
    tasks : tuple of Task
        The fits of the stack.
    params : dict
        The parameters of its longest-expected fit: the stack trains as long as that one.
    """

    tasks: tuple[Task, ...]
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return f"raygrid fused fits: {self.tasks[0].name} (+{len(self.tasks) - 1})"

    @property
    def payload(self) -> tuple:
        return ("fused", [(t.index, t.params, t.split) for t in self.tasks], None)

    def describe(self) -> str:
        """The stack, as errors name it: its first fit and how many more."""
        return f"{self.tasks[0].describe()} (fused with {len(self.tasks) - 1} more fits)"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return shorten(" ".join(text.split()), limit, mark="...")
