"""Run a search's tasks on Ray: slots, submission, collection, retries.

Connecting to Ray is :mod:`raygrid.local.connect`.

The unit of parallelism is a *slot*: ``num_cpus_per_task`` CPUs and
``num_gpus_per_task`` GPUs. Each slot is held by one long-lived :class:`FitWorker`
actor, so a worker process imports TensorFlow once and keeps the same GPU for all its
fits (Ray's plain GPU tasks would start a fresh process per fit). The driver keeps
every slot busy with a short queue of task batches; batches grow when fits are tiny, so
thousands of small fits do not make the driver the bottleneck.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import ray

from raygrid.run.devices import DeviceError
from raygrid.run.messages import RefitResult
from raygrid.run.pool import (  # noqa: F401  (re-exported: the names callers know)
    SlotSpec,
    WorkerPool,
    count_slots,
    live_workers,
    release_workers,
    set_worker_idle_time,
)
from raygrid.run.units import Task, WorkUnit
from raygrid.store.record import FitRecord

# A batch of fits aims at about this much work, so per-call overhead stays small.
_TARGET_CALL_SECONDS = 0.2
_MAX_BATCH = 256
# A worker whose resident memory passes this after a batch is replaced by a fresh one.
WORKER_MAX_RSS = 4 * 2**30
# How long a failed search gives a kept-alive cluster's warm workers to finish the fits
# they were given, before they are killed (and started again, cold, by the keeper).
WARM_GRACE_SECONDS = 10.0


def default_slots(capacity: int) -> int:
    """The slots a search takes when ``n_jobs`` is None or -1: all of ``capacity``, except
    in a joblib worker, which gets joblib's budget for nested parallelism.

    joblib gives each of its ``n_jobs`` workers ``cpu_count() // n_jobs`` threads
    (``OMP_NUM_THREADS``); searches in sibling workers then run side by side on one Ray
    instead of taking turns with every slot.
    """
    if multiprocessing.parent_process() is None:
        return capacity
    try:
        budget = int(os.environ["OMP_NUM_THREADS"])
    except (KeyError, ValueError):
        return capacity
    return max(1, min(capacity, budget))


def describe_loss(error: BaseException) -> str:
    """Why Ray says a worker (or its result) is gone, in one line."""
    if isinstance(error, ray.exceptions.OutOfMemoryError):
        return "killed by Ray's memory monitor (its node was running out of memory)"
    if isinstance(error, ray.exceptions.NodeDiedError):
        return "its node died"
    if isinstance(error, ray.exceptions.LocalRayletDiedError):
        return "its node's raylet died"
    if isinstance(error, ray.exceptions.ObjectLostError):
        return "its result was lost with its node"
    if isinstance(error, ray.exceptions.WorkerCrashedError):
        return "its worker process crashed"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = " ".join(line for line in lines[1:] if not line.startswith(_ACTOR_FIELDS))
    if "memory monitor" in detail or "OutOfMemory" in detail:
        return f"killed by Ray's memory monitor ({_clip(detail)})"
    return f"its worker process died ({_clip(detail or (lines[0] if lines else type(error).__name__))})"


_ACTOR_FIELDS = ("class_name:", "actor_id:", "pid:", "name:", "namespace:", "ip:")


def _clip(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# What the driver sees when a worker process, its node or its result is gone. Anything
# else a call raises came from raygrid or user code and is never retried.
WORKER_LOST = (
    ray.exceptions.RayActorError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OutOfMemoryError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.LocalRayletDiedError,
)


def run_tasks(
    pool: WorkerPool,
    n_slots: int,
    refs: tuple[ray.ObjectRef, ray.ObjectRef],
    tasks: Iterable[WorkUnit],
    *,
    max_in_flight: int,
    max_retries: int,
    on_records: Callable[[list[FitRecord]], None],
    fit_timeout: float | None = None,
    on_timeout: Callable[[Task, float], FitRecord] | None = None,
) -> None:
    """Run ``tasks`` (units of work, see :class:`~raygrid.run.units.WorkUnit`) on
    ``n_slots`` workers of ``pool``.

    ``refs`` are the search's data and the wave's splits in Ray's object store
    (:class:`~raygrid.run.messages.SearchData`, :class:`~raygrid.run.messages.WaveData`).

    Tasks are handed out in the order given, in batches, at most ``max_in_flight`` fits
    queued or running at once. ``on_records`` is called with each batch's records as
    soon as it finishes (in completion order) and may raise to stop the search.

    A worker that dies (process killed, out-of-memory kill, node lost) costs its batches
    one attempt each: they go back to the front of the queue, and the slot gets a fresh
    worker if the cluster still has room for it. A task that has used ``1 + max_retries``
    attempts stops the search with an error naming it, its split and the cause.

    With ``fit_timeout`` (seconds), each call carries one fit and each worker one call;
    a fit still running after ``fit_timeout`` has its worker replaced, and
    ``on_timeout(task, fit_timeout)`` gives its record (or raises). On any exception,
    including ``KeyboardInterrupt``, every worker of the pool is killed, so nothing keeps
    running, and the exception propagates.
    """
    try:
        scheduler = _Scheduler(pool, n_slots, refs, max_in_flight, max_retries, on_records)
        if fit_timeout is not None:
            scheduler.set_timeout(fit_timeout, on_timeout)
        scheduler.run(deque(tasks))
    except BaseException as exc:
        # A search that fails (not one interrupted) leaves a kept-alive cluster warm.
        pool.shutdown(grace=0.0 if isinstance(exc, KeyboardInterrupt) else WARM_GRACE_SECONDS)
        raise


class _Scheduler:
    """The driver's loop: keep each slot's worker fed, collect, retry lost work."""

    def __init__(self, pool, n_slots, refs, max_in_flight, max_retries, on_records) -> None:
        self.pool = pool
        self.max_retries = max_retries
        self.refs = [[ref] for ref in refs]
        self.on_records = on_records
        pool.grow(n_slots)
        self.slots: dict[int, Any] = dict(enumerate(pool.actors[:n_slots]))
        self.depth = max(1, min(2, max_in_flight // max(1, len(self.slots))))
        self.sizer = _BatchSizer(len(self.slots))
        self.in_flight: dict[ray.ObjectRef, tuple[int, Any, list[WorkUnit]]] = {}
        self.deadlines: dict[ray.ObjectRef, float] = {}
        self.busy = dict.fromkeys(self.slots, 0)
        self.attempts: dict[int, int] = {}
        self.recycle: set[int] = set()
        self.fit_timeout: float | None = None

    def set_timeout(self, seconds: float, on_timeout: Callable[[Task, float], FitRecord]):
        """One fit per call and one call per worker, so each call's start is known."""
        self.fit_timeout, self.on_timeout = seconds, on_timeout
        self.depth = 1
        self.sizer = _BatchSizer(len(self.slots), max_batch=1)

    def run(self, queue: deque[WorkUnit]) -> None:
        self.queue = queue
        for limit in (1, None):  # every slot's first call before any slot's second
            for slot in list(self.slots):
                self._submit(slot, limit)
        while self.in_flight:
            wait = None
            if self.deadlines:
                wait = max(0.0, min(self.deadlines.values()) - time.monotonic())
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=wait)
            for ref in ready:
                self._collect(ref)
            self._stop_overdue()
            if self.queue and not self.slots:
                raise RuntimeError(
                    "Every Ray worker of this search was lost and the cluster has no room "
                    f"left for a new one; {len(self.queue)} fits did not run."
                )

    def _collect(self, ref: ray.ObjectRef) -> None:
        slot, actor, batch = self.in_flight.pop(ref)
        self.deadlines.pop(ref, None)
        if self.slots.get(slot) is actor:
            self.busy[slot] -= 1
        try:
            records = ray.get(ref)
        except WORKER_LOST as exc:
            self._lost(slot, actor, batch, exc)
            return
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, DeviceError):
                raise DeviceError(str(exc.cause)) from None  # its message says it all
            raise
        for record in records:
            record.attempts = self.attempts.get(record.index, 0) + 1
        self.sizer.observe(records)
        if records and (records[-1].worker_rss or 0) > WORKER_MAX_RSS:
            self.recycle.add(slot)
        self.on_records(records)
        self._submit(slot)

    def _stop_overdue(self) -> None:
        """Replace the worker of every fit past ``fit_timeout``; score the fit a failure."""
        now = time.monotonic()
        for ref in [r for r, deadline in self.deadlines.items() if deadline <= now]:
            slot, actor, batch = self.in_flight.pop(ref)
            del self.deadlines[ref]
            tasks = [task for unit in batch for task in unit.tasks]
            records = [self.on_timeout(task, self.fit_timeout) for task in tasks]
            for record in records:
                record.attempts = self.attempts.get(record.index, 0) + 1
            if self.slots.get(slot) is actor:
                self._replace(slot)
            else:
                self.pool.discard(actor)
            self.on_records(records)
            if slot in self.slots:
                self._submit(slot)

    def _submit(self, slot: int, limit: int | None = None) -> None:
        if slot in self.recycle and self.busy[slot] == 0:
            self.recycle.discard(slot)
            self._replace(slot)
        if slot not in self.slots:
            return
        while self.queue and self.busy[slot] < self._depth(limit) and slot not in self.recycle:
            size = min(self.sizer.size(len(self.queue)), len(self.queue))
            batch = [self.queue.popleft() for _ in range(size)]
            name = batch[0].name if size == 1 else f"{batch[0].name} (+{size - 1})"
            ref = (
                self.slots[slot]
                .run.options(name=name)
                .remote(*self.refs, [unit.payload for unit in batch], self._attempt_of(batch))
            )
            self.in_flight[ref] = (slot, self.slots[slot], batch)
            if self.fit_timeout is not None:
                self.deadlines[ref] = time.monotonic() + self.fit_timeout
            self.busy[slot] += 1

    def _depth(self, limit: int | None = None) -> int:
        """Calls a slot may hold (at most ``limit``): a second one hides the round trip
        between calls, but once the queue is shorter than the slots it would pin work to
        a busy slot that another slot, freed sooner, could have taken."""
        depth = self.depth if len(self.queue) > len(self.slots) else 1
        return depth if limit is None else min(depth, limit)

    def _attempt_of(self, batch: list) -> dict[int, int]:
        """Which attempt this call is of each task of ``batch`` (journaled by the worker)."""
        return {t.index: self.attempts.get(t.index, 0) + 1 for unit in batch for t in unit.tasks}

    def _lost(self, slot: int, actor: Any, batch: list, error: Exception) -> None:
        """A worker died with ``batch`` queued or running on it: retry it elsewhere."""
        for unit in batch:
            for task in unit.tasks:
                self.attempts[task.index] = self.attempts.get(task.index, 0) + 1
            used = max(self.attempts[task.index] for task in unit.tasks)
            if used > self.max_retries:
                what = unit.describe()
                raise RuntimeError(
                    f"{what[:1].upper()}{what[1:]} was lost {used} times with its Ray worker "
                    f"(max_retries={self.max_retries}); last cause: {describe_loss(error)}."
                ) from error
        self.queue.extendleft(reversed(batch))
        if self.slots.get(slot) is actor:
            self._replace(slot)
        for other in list(self.slots):
            self._submit(other)

    def _replace(self, slot: int) -> None:
        """Give ``slot`` a fresh worker, or close it if the cluster has no room left."""
        old = self.slots.pop(slot)
        self.busy[slot] = 0
        # Calls still queued on the old worker fail as lost and are retried elsewhere.
        new = self.pool.replace(old, wait_started=self.fit_timeout is not None)
        if new is not None:
            self.slots[slot] = new


def refit_on_pool(
    pool: WorkerPool,
    data_ref: ray.ObjectRef,
    params: dict,
    max_retries: int,
    callbacks: tuple[bytes, list] | None = None,
) -> RefitResult:
    """Fit the best candidate on all the data, in a slot like the search's fits.

    A worker lost during the refit is replaced and the refit retried, up to
    ``max_retries`` times. ``callbacks`` is the pickled ``(search, refit context)`` and
    the listeners to relay, when scikit-learn callbacks are set.
    """
    blob, listeners = callbacks or (None, [])
    try:
        for attempt in range(max_retries + 1):
            if not pool.actors:
                pool.grow(1)
            actor = pool.actors[0]
            try:
                return ray.get(
                    actor.refit.options(name="raygrid refit").remote(
                        [data_ref], params, blob, listeners
                    )
                )
            except WORKER_LOST as exc:
                pool.discard(actor)
                if attempt == max_retries:
                    raise RuntimeError(
                        f"The refit of {params} was lost {attempt + 1} times with its Ray "
                        f"worker (max_retries={max_retries}); last cause: "
                        f"{describe_loss(exc)}."
                    ) from exc
    except BaseException as exc:
        pool.shutdown(grace=0.0 if isinstance(exc, KeyboardInterrupt) else WARM_GRACE_SECONDS)
        raise
    raise AssertionError("unreachable")


class _BatchSizer:
    """Chooses how many fits go into one call, from the fit durations seen so far."""

    def __init__(self, n_slots: int, max_batch: int = _MAX_BATCH) -> None:
        self.n_slots = max(1, n_slots)
        self.max_batch = max_batch
        self.mean_seconds: float | None = None

    def observe(self, records: list[FitRecord]) -> None:
        seconds = [r.end_time - r.start_time for r in records]
        mean = sum(seconds) / len(seconds)
        self.mean_seconds = (
            mean if self.mean_seconds is None else 0.7 * self.mean_seconds + 0.3 * mean
        )

    def size(self, remaining: int) -> int:
        if self.mean_seconds is None:
            return 1
        wanted = int(_TARGET_CALL_SECONDS / max(self.mean_seconds, 1e-6))
        # Leave enough batches for every slot at the end of the search.
        fair = max(1, remaining // (4 * self.n_slots))
        return max(1, min(wanted, fair, self.max_batch))
