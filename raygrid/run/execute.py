"""Run a search's tasks on Ray: session, slots, data placement, submission, collection.

The unit of parallelism is a *slot*: ``num_cpus_per_task`` CPUs and
``num_gpus_per_task`` GPUs. Each slot is held by one long-lived :class:`FitWorker`
actor, so a worker process imports TensorFlow once and keeps the same GPU for all its
fits (Ray's plain GPU tasks would start a fresh process per fit). The driver keeps
every slot busy with a short queue of task batches; batches grow when fits are tiny, so
thousands of small fits do not make the driver the bottleneck.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import ray

from raygrid.local import kept_alive, quiet, teardown
from raygrid.run.plan import PrefixGroup, Task
from raygrid.run.pool import (  # noqa: F401  (re-exported: the names callers know)
    SlotSpec,
    WorkerPool,
    count_slots,
    live_workers,
    release_workers,
    set_worker_idle_time,
)
from raygrid.run.worker import RefitResult
from raygrid.store.record import FitRecord

# A batch of fits aims at about this much work, so per-call overhead stays small.
_TARGET_CALL_SECONDS = 0.2
_MAX_BATCH = 256
# A worker whose resident memory passes this after a batch is replaced by a fresh one.
WORKER_MAX_RSS = 4 * 2**30
# How long a failed search gives a kept-alive cluster's warm workers to finish the fits
# they were given, before they are killed (and started again, cold, by the keeper).
WARM_GRACE_SECONDS = 10.0


# The GCS addresses of the local Rays this process started with start_local().
_own_sessions: set[str] = set()


def connect(address: str | None) -> bool:
    """Make sure this process is connected to Ray.

    An initialised Ray is used as it is (inside a Ray task or actor, that is the cluster
    running it). Otherwise ``address`` (or ``RAY_ADDRESS``) names a cluster to join; with
    neither, a nested search joins the local Ray its parent process started for its
    searches, then the kept-alive cluster of ``raygrid up`` (see
    :mod:`raygrid.local.kept_alive`), then the local Ray that a sibling joblib/multiprocessing
    worker started; failing those, a quiet local Ray sized to this machine is started
    and left running for later searches in this process (and its children).

    Returns
    -------
    bool
        Whether the session is a local Ray that raygrid started, whose workers import
        what this process imports (see :func:`start_local`).
    """
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto", current):
            raise ValueError(
                f"ray_address={address!r}, but this process is already connected to Ray at "
                f"{current!r}. Call ray.shutdown() first, or leave ray_address unset to use "
                "that cluster."
            )
        quiet.install()
        return current in _own_sessions
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address)
        ray.init(address=address, logging_level=logging.WARNING)
        quiet.install()
        return False
    if _join_parents_ray():
        quiet.install()
        return ray.get_runtime_context().gcs_address in _own_sessions
    if kept_alive.join():
        quiet.install()
        teardown.local_ray_started(live_workers)
        return False
    if _start_or_join_siblings():
        quiet.install()
        return ray.get_runtime_context().gcs_address in _own_sessions
    start_local()
    # Child processes (subprocesses, joblib workers) search on this Ray, not their own.
    os.environ[PARENT_RAY_ENV] = ray.get_runtime_context().gcs_address
    return True


# Set by a process that started a local Ray for its searches; inherited by its children.
PARENT_RAY_ENV = "RAYGRID_PARENT_RAY"


def _join_parents_ray() -> bool:
    """Join the local Ray the parent process started for its searches, if it runs."""
    address = os.environ.get(PARENT_RAY_ENV)
    if not address or address in _own_sessions or not kept_alive.answers(address):
        return False
    ray.init(address=address, logging_level=logging.ERROR)
    return True


def _start_or_join_siblings() -> bool:
    """In a multiprocessing or joblib worker: share one local Ray with its siblings.

    ``cross_val_score(RayGridSearchCV(...), n_jobs=2)`` runs searches in joblib workers
    whose parent has no Ray; the first worker to search starts a local Ray (it lives as
    long as that worker) and the others join it instead of each claiming every CPU.
    Returns False outside such workers.
    """
    if multiprocessing.parent_process() is None:
        return False
    path = os.path.join(
        tempfile.gettempdir(), f"raygrid-{os.getuid()}-ray-of-children-of-{os.getppid()}"
    )
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                address, _, auth_mode = f.read().strip().partition(" ")
        except OSError:
            address = ""
        if address and kept_alive.answers(address):
            if auth_mode:
                kept_alive.use_auth(auth_mode)
            ray.init(address=address, logging_level=logging.ERROR)
            return True
        start_local()
        address = ray.get_runtime_context().gcs_address
        with open(path, "w") as f:
            f.write(f"{address} {os.environ.get('RAY_AUTH_MODE', '')}")
    atexit.register(_forget_siblings_ray, path, address)
    return True


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


def _forget_siblings_ray(path: str, address: str) -> None:
    with contextlib.suppress(OSError), open(path) as f:
        if f.read().split(" ")[0] == address:
            os.unlink(path)


def start_local(num_cpus: int | None = None, num_gpus: int | None = None, **kwargs: Any) -> None:
    """Start a fresh, quiet local Ray whose workers import what this process imports.

    Workers get the driver's own import path (the script's folder, a test folder, a
    notebook's working directory), as joblib's workers do, so estimators defined in the
    user's modules unpickle in them. ``num_gpus`` declares logical GPUs (for trying GPU
    scheduling on a machine without one).
    """
    driver_paths = [
        p
        for p in (os.path.abspath(p or ".") for p in sys.path)
        if os.path.isdir(p) and not p.startswith((sys.prefix, sys.base_prefix))
    ]
    env = {"PYTHONPATH": os.pathsep.join([*driver_paths, os.environ.get("PYTHONPATH", "")])}
    ray.init(
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        num_gpus=num_gpus,
        include_dashboard=False,
        logging_level=logging.ERROR,
        runtime_env={"env_vars": env},
        **kwargs,
    )
    _own_sessions.add(ray.get_runtime_context().gcs_address)
    quiet.install()
    teardown.local_ray_started(live_workers)


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when a ``host:port`` address does not answer."""
    if address == "auto" or ("://" in address and not address.startswith("ray://")):
        return
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConnectionError(
            f"ray_address={address!r}: no Ray cluster answers there ({exc}). "
            "Start one (`ray start --head`) or unset ray_address / RAY_ADDRESS to run "
            "on a local Ray."
        ) from None


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
    tasks: Iterable[Task | PrefixGroup],
    *,
    max_in_flight: int,
    max_retries: int,
    on_records: Callable[[list[FitRecord]], None],
    fit_timeout: float | None = None,
    on_timeout: Callable[[Task, float], FitRecord] | None = None,
) -> None:
    """Run ``tasks`` on ``n_slots`` workers of ``pool``.

    ``refs`` are the search's data and the wave's splits in Ray's object store
    (:class:`~raygrid.run.worker.SearchData`, :class:`~raygrid.run.worker.WaveData`).

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
        self.in_flight: dict[ray.ObjectRef, tuple[int, Any, list[Task]]] = {}
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

    def run(self, queue: deque[Task]) -> None:
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
            tasks = [t for u in batch for t in (u.tasks if isinstance(u, PrefixGroup) else [u])]
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
        return {i: self.attempts.get(i, 0) + 1 for unit in batch for i in unit.indices}

    def _lost(self, slot: int, actor: Any, batch: list, error: Exception) -> None:
        """A worker died with ``batch`` queued or running on it: retry it elsewhere."""
        for unit in batch:
            for index in unit.indices:
                self.attempts[index] = self.attempts.get(index, 0) + 1
            if self.attempts[unit.index] > self.max_retries:
                task = unit.tasks[-1] if isinstance(unit, PrefixGroup) else unit
                raise RuntimeError(
                    f"The fit of candidate {task.candidate} {task.params}, split {task.split} "
                    f"was lost {self.attempts[unit.index]} times with its Ray worker "
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
