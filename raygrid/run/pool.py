"""Fit workers: how many slots a search can have, and the pools of workers that hold them.

Each ``fit`` owns its pool of :class:`~raygrid.run.worker.FitWorker` actors for as long as it
runs, so that searches running at once (in threads of one process, or in processes
sharing a cluster) never touch each other's workers. A finished search releases its pool
to an idle set, where the next search of the same slot size takes it warm; idle pools
are killed after ``IDLE_SECONDS``, or at once when a search needs their resources.

Pools belong to one Ray session: after ``ray.shutdown()``, a new ``ray.init()`` or a
connection to another cluster, the previous session's pools are forgotten.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import ray

from raygrid.local import kept_alive, quiet, ray_private, teardown
from raygrid.run.worker import FitWorker

# Idle workers are kept this long after a search, for the next one to start warm.
IDLE_SECONDS = 10.0
# How long new workers may take to be placed (and started) before the pool does without.
# Generous: on a loaded 2-core machine a worker took up to 8 s to start, and the
# resources of workers just killed come back only once their processes have exited
# (a full test run here once saw 30 s pass with both CPUs still held).
PLACEMENT_SECONDS = 60.0
# How long a lost worker's slot waits for its resources to come back before it closes.
REPLACE_SECONDS = 5.0
# How often idle workers look for work waiting for their resources.
_DEMAND_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class SlotSpec:
    """The resources of one slot: what each worker holds for its whole life."""

    num_cpus: float
    num_gpus: float

    def describe(self) -> str:
        return f"num_cpus_per_task={self.num_cpus:g}, num_gpus_per_task={self.num_gpus:g}"


def _slots_in(resources: dict[str, float], num_cpus: float, num_gpus: float) -> int:
    fits = math.floor(resources.get("CPU", 0) / num_cpus + 1e-9) if num_cpus > 0 else math.inf
    if num_gpus > 0:
        fits = min(fits, math.floor(resources.get("GPU", 0) / num_gpus + 1e-9))
    return 0 if fits == math.inf else fits


class SlotTooLarge(ValueError):
    """No node of the cluster offers one slot's CPUs and GPUs (bad input, not a failure)."""


def count_slots(num_cpus: float, num_gpus: float) -> int:
    """How many slots of this size the alive nodes of the cluster can hold at once.

    Raises
    ------
    SlotTooLarge
        If no node is large enough for even one slot (Ray would wait forever).
    """
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    total = sum(_slots_in(res, num_cpus, num_gpus) for res in nodes)
    if total == 0:
        largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        raise SlotTooLarge(
            f"num_cpus_per_task={num_cpus}, num_gpus_per_task={num_gpus}: no node of the "
            f"Ray cluster offers that much (largest node: CPU={largest.get('CPU', 0)}, "
            f"GPU={largest.get('GPU', 0)}). Lower the per-task resources or add nodes."
        )
    return total


def free_slots(spec: SlotSpec) -> int:
    """How many more slots of ``spec`` the cluster's nodes have free right now."""
    try:
        per_node = ray_private.available_resources_per_node().values()
    except Exception:  # a Ray without that accounting: the cluster as one node
        per_node = [ray.available_resources()]
    return sum(_slots_in(res, spec.num_cpus, spec.num_gpus) for res in per_node)


def free_resources_text() -> str:
    """What the cluster has free now, e.g. ``CPU 1 of 2, GPU 0 of 0``."""
    free, total = ray.available_resources(), ray.cluster_resources()
    return ", ".join(f"{r} {free.get(r, 0):g} of {total.get(r, 0):g}" for r in ("CPU", "GPU"))


def session_id() -> tuple[str, str]:
    """The current Ray session and job: pools never outlive either."""
    ctx = ray.get_runtime_context()
    return ctx.get_session_name(), ctx.get_job_id()


class WorkerPool:
    """The fit workers of one search, one per slot.

    :meth:`acquire` gives a search a pool of its own (an idle one of the same slot size
    when there is one); :meth:`release` hands it back to the idle set, where its workers
    stay warm for ``IDLE_SECONDS``.
    """

    _idle: list[WorkerPool] = []
    # Every pool of this process, idle or in use (for a quick exit).
    _live: weakref.WeakSet[WorkerPool] = weakref.WeakSet()
    _session: tuple[str, str] | None = None
    _lock = threading.RLock()
    # Placements are made one search at a time, so each sees what the previous took.
    _placing = threading.Lock()

    def __init__(self, spec: SlotSpec, session: tuple[str, str]) -> None:
        self.spec = spec
        self.session = session
        self.gcs_address = ray.get_runtime_context().gcs_address
        self.actors: list[Any] = []
        self._timer: threading.Event | None = None
        # Why workers died while starting, for the error when none starts.
        self.start_failures: list[BaseException] = []
        self._actors_lock = threading.Lock()
        # The hold on a kept-alive cluster's warm workers (see raygrid.local.kept_alive).
        self.lease: kept_alive.Lease | None = None
        WorkerPool._live.add(self)

    @classmethod
    def acquire(cls, spec: SlotSpec, size: int) -> WorkerPool:
        """A pool of this search's own for ``spec``, grown to at most ``size`` workers.

        Raises
        ------
        RuntimeError
            If not one worker could be placed within ``PLACEMENT_SECONDS``.
        """
        session = session_id()
        lease = kept_alive.lease_workers()
        if lease is not None and not lease.fits(spec.num_cpus, spec.num_gpus):
            for actor in lease.actors:
                _kill(actor)  # their resources are this search's; the keeper restarts them
            lease.actors = []
        if lease is not None and lease.actors:
            pool = WorkerPool(spec, session)
            pool.actors = lease.actors[:size]
        else:
            pool = cls._idle_or_new(spec, size, session)
        pool.lease = lease
        try:
            pool.grow(size)
        except BaseException:
            pool.shutdown()
            raise
        return pool

    @classmethod
    def _idle_or_new(cls, spec: SlotSpec, size: int, session: tuple[str, str]) -> WorkerPool:
        """An idle pool of ``spec`` (the largest, trimmed to ``size``), or a new one."""
        with cls._lock:
            cls._forget_stale(session)
            same = [p for p in cls._idle if p.spec == spec]
            pool = max(same, key=lambda p: len(p.actors), default=None)
            if pool is None:
                return WorkerPool(spec, session)
            cls._idle.remove(pool)
            pool._cancel_timer()
            for extra in pool.actors[size:]:
                pool.discard(extra)  # its resources are for others to use
            return pool

    @classmethod
    def _forget_stale(cls, session: tuple[str, str]) -> None:
        """Drop the pools of an earlier Ray session: their workers died with it."""
        if cls._session == session:
            return
        for pool in cls._idle:
            pool._cancel_timer()
            pool.actors = []
        cls._idle = []
        cls._session = session

    def release(self) -> None:
        """End this search's use of the pool; its workers go after ``IDLE_SECONDS``.

        Warm workers of a kept-alive cluster go back to the cluster instead (and workers
        this search started in place of lost ones are stopped).
        """
        lease, self.lease = self.lease, None
        if lease is not None:
            warm = {id(actor) for actor in lease.actors}
            if warm:
                with self._actors_lock:
                    actors, self.actors = self.actors, []
                for actor in actors:
                    if id(actor) not in warm:
                        _kill(actor)
            quiet.drain(lease.actors)  # their lines reach this driver while it holds them
            lease.give_back()
        with self._lock:
            if not self.actors or self.session != WorkerPool._session:
                return
            self._idle.append(self)
            self._timer = threading.Event()
            threading.Thread(target=self._keep_warm, args=(self._timer,), daemon=True).start()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.set()
            self._timer = None

    def _keep_warm(self, cancelled: threading.Event) -> None:
        """Keep the idle workers for ``IDLE_SECONDS``, or until other work waits for room."""
        deadline = time.monotonic() + IDLE_SECONDS
        while not cancelled.wait(_DEMAND_POLL_SECONDS):
            if time.monotonic() >= deadline or _work_waiting(self.gcs_address):
                self._expire()
                return

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _expire(self) -> None:
        with self._lock:
            if self not in self._idle:
                return
            self._idle.remove(self)
            # Only this pool's own session may be asked for anything: after a shutdown,
            # ray.get_runtime_context() would start a new Ray from this thread.
            if ray.is_initialized() and WorkerPool._session == self.session:
                self._kill_all()
            self.actors = []

    def grow(self, size: int) -> None:
        """Add workers up to ``size``, as many as the cluster can place now.

        Idle pools are killed first when their resources are needed. A worker not placed
        within ``PLACEMENT_SECONDS`` is given up with a warning; if the pool has no
        worker at all by then, a ``RuntimeError`` names what was asked and what is free.
        """
        with self._placing:
            need = size - len(self.actors)
            if need <= 0:
                return
            free = free_slots(self.spec)
            recently_killed = time.monotonic() - _last_kill < REPLACE_SECONDS
            if free < need and (_kill_idle_pools() or recently_killed):
                free = _wait_for_free(self.spec, need, REPLACE_SECONDS)
            target = min(need, free) if self.actors else max(1, min(need, free))
            if target <= 0:
                return
            placed = self._place(target)
        if len(self.actors) == 0:
            if self.start_failures:
                raise RuntimeError(
                    f"No Ray worker for this search started ({self.spec.describe()}): "
                    f"{first_line(self.start_failures[-1])}"
                ) from self.start_failures[-1]
            raise RuntimeError(
                f"No Ray worker for this search could be placed within {PLACEMENT_SECONDS:g} s "
                f"({self.spec.describe()}); the cluster has {free_resources_text()} free. "
                "Other work holds the rest: wait for it, add nodes, or lower the per-task "
                "resources."
            )
        if len(self.actors) < size:
            unplaced = target - placed
            why = (
                f"{unplaced} could not be placed within {PLACEMENT_SECONDS:g} s"
                if unplaced
                else f"the cluster has {free_resources_text()} free"
            )
            warnings.warn(
                f"raygrid: this search runs on {len(self.actors)} of the {size} workers asked "
                f"for ({self.spec.describe()}): {why}.",
                RuntimeWarning,
                stacklevel=2,
            )

    def _place(self, count: int) -> int:
        """Start ``count`` workers; keep those placed and started in time. How many?"""
        new = [self._new_actor() for _ in range(count)]
        ready = {a.__ray_ready__.remote(): a for a in new}
        try:
            done, pending = _wait_for_starts(list(ready))
            placed = [ready[ref] for ref in done if self._started(ref)]
        except BaseException:
            for actor in new:
                _kill(actor)
            raise
        for ref in pending:
            _kill(ready[ref])
        with self._actors_lock:
            self.actors.extend(placed)
        return len(placed)

    def _started(self, ready_ref: Any) -> bool:
        """Whether the worker behind ``ready_ref`` started (False if it died starting).

        Raises
        ------
        ray.exceptions.RayActorError
            If the worker's own start-up code failed: no retry can help.
        """
        try:
            ray.get(ready_ref)
        except ray.exceptions.RayActorError as exc:
            if exc.actor_init_failed:
                raise
            self.start_failures.append(exc)
            return False
        except (ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError) as exc:
            self.start_failures.append(exc)
            return False
        return True

    def _new_actor(self) -> Any:
        return new_worker(self.spec)

    def replace(self, actor: Any, wait_started: bool = False) -> Any | None:
        """Kill ``actor`` and start another in its place; None if there is no room left.

        The dead worker's resources may take a moment to come back; a lost node's never
        do, and its slot closes after ``REPLACE_SECONDS``. With ``wait_started``, return
        once the new worker has started (so that its first call's time is the fit's).
        """
        self.discard(actor)
        if _wait_for_free(self.spec, 1, REPLACE_SECONDS) < 1:
            return None
        new = self._new_actor()
        if wait_started:
            ray.wait([new.__ray_ready__.remote()], timeout=PLACEMENT_SECONDS)
        with self._actors_lock:
            self.actors.append(new)
        return new

    def discard(self, actor: Any) -> None:
        """Kill one worker and drop it from the pool."""
        with self._actors_lock:
            self.actors = [a for a in self.actors if a is not actor]
        _kill(actor)

    def shutdown(self, grace: float = 0.0) -> None:
        """Kill every worker now (pending and running fits included) and forget the pool.

        With ``grace`` (seconds), the warm workers of a kept-alive cluster that finish
        what they were given within it are given back warm instead of killed.
        """
        with self._lock:
            if self in self._idle:
                self._idle.remove(self)
            self._cancel_timer()
        lease, self.lease = self.lease, None
        if lease is not None and grace > 0:
            lease.actors = _finished(lease.actors, grace)
            kept = {id(actor) for actor in lease.actors}
            with self._actors_lock:
                self.actors = [a for a in self.actors if id(a) not in kept]
        self._kill_all()
        if lease is not None:
            quiet.drain(lease.actors)
            lease.give_back()

    def _kill_all(self) -> None:
        with self._actors_lock:
            actors, self.actors = self.actors, []
        for actor in actors:
            _kill(actor)


def _finished(actors: list[Any], timeout: float) -> list[Any]:
    """Those of ``actors`` whose queued calls have all ended within ``timeout`` seconds."""
    if not actors:
        return []
    refs = {actor.__ray_ready__.remote(): actor for actor in actors}  # queued after them
    ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
    return [refs[ref] for ref in ready]


def new_worker(spec: SlotSpec, **options: Any) -> Any:
    """Start a :class:`~raygrid.run.worker.FitWorker` holding one slot of ``spec``.

    Parameters
    ----------
    spec : SlotSpec
        The slot's resources.
    **options
        More of Ray's actor options (``name``, ``namespace``).

    Returns
    -------
    ray.actor.ActorHandle
    """
    # Lost workers are replaced by the scheduler, which counts each task's attempts;
    # Ray itself restarts nothing.
    return (
        ray.remote(FitWorker)
        .options(
            num_cpus=spec.num_cpus,
            num_gpus=spec.num_gpus,
            max_restarts=0,
            max_task_retries=0,
            scheduling_strategy="SPREAD",
            **options,
        )
        .remote(spec.num_cpus, spec.num_gpus)
    )


def first_line(error: BaseException) -> str:
    """An exception's message in one line (Ray's messages span dozens)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _work_waiting(gcs_address: str) -> bool:
    """Whether tasks or actors on the cluster wait for resources (other searches, other
    jobs, nested searches): idle workers then give their resources up at once."""
    # Never ray.get_runtime_context() here: after ray.shutdown() it would start a Ray.
    if not ray.is_initialized():
        return False
    try:
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(gcs_address, timeout=5)
        return bool(status.resource_demands.ray_task_actor_demand)
    except Exception:  # no such accounting (or Ray going away): wait for the deadline
        return False


# When this process last killed a worker: its resources come back a moment later.
_last_kill = -math.inf


def _kill(actor: Any) -> None:
    global _last_kill
    _last_kill = time.monotonic()
    with contextlib.suppress(Exception):  # already gone with its session
        ray.kill(actor, no_restart=True)


def _wait_for_starts(refs: list[Any]) -> tuple[list[Any], list[Any]]:
    """Wait for new workers to start: up to ``PLACEMENT_SECONDS`` for the first, then as
    long again as it took (at least 2 s) for the others, which are then given up: a
    worker placed with the first starts about as fast, one that waits for resources may
    wait for another search to end."""
    start = time.monotonic()
    done, pending = ray.wait(refs, num_returns=1, timeout=PLACEMENT_SECONDS)
    if done and pending:
        grace = max(2.0, time.monotonic() - start)
        more, pending = ray.wait(pending, num_returns=len(pending), timeout=grace)
        done = done + more
    return done, pending


def _wait_for_free(spec: SlotSpec, wanted: int, seconds: float) -> int:
    """Free slots of ``spec``, waiting up to ``seconds`` for ``wanted`` of them."""
    deadline = time.monotonic() + seconds
    while True:
        free = free_slots(spec)
        if free >= wanted or time.monotonic() > deadline:
            return free
        time.sleep(0.1)


def _kill_idle_pools() -> bool:
    """Kill every idle pool of this process's current session; whether there was any."""
    with WorkerPool._lock:
        pools = [p for p in WorkerPool._idle if p.session == WorkerPool._session]
        for pool in pools:
            pool.shutdown()
    return bool(pools)


def live_workers() -> list[Any]:
    """The worker actors of every pool of this process, idle or in use."""
    return [actor for pool in list(WorkerPool._live) for actor in pool.actors]


teardown.watch_workers(live_workers)


def release_workers() -> None:
    """Kill the warm workers of every idle pool now, freeing their cluster resources.

    After a search its workers stay warm for a while (see :func:`set_worker_idle_time`)
    so that a following search starts without importing TensorFlow again; call this when
    no search follows soon. Workers of a search that is still running are left alone.

    Examples
    --------
    >>> import raygrid
    >>> raygrid.release_workers()
    """
    with WorkerPool._lock:
        if ray.is_initialized():
            WorkerPool._forget_stale(session_id())
        for pool in list(WorkerPool._idle):
            pool.shutdown()
        WorkerPool._idle = []


def set_worker_idle_time(seconds: float) -> float:
    """Set how long the workers of a finished search stay warm for the next search.

    Applies to searches that finish after the call, in this process.

    Parameters
    ----------
    seconds : float
        Idle time in seconds (default 10); 0 releases the workers as soon as a search
        ends.

    Returns
    -------
    float
        The previous idle time, to restore it later.

    Examples
    --------
    >>> import raygrid
    >>> previous = raygrid.set_worker_idle_time(60.0)
    >>> raygrid.set_worker_idle_time(previous)
    60.0
    """
    global IDLE_SECONDS
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise ValueError(f"seconds must be a non-negative number, got {seconds!r}.")
    previous, IDLE_SECONDS = IDLE_SECONDS, float(seconds)
    return previous
