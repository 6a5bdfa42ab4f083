"""Run a search's tasks on Ray: session, slots, data placement, submission, collection.

The unit of parallelism is a *slot*: ``num_cpus_per_task`` CPUs and
``num_gpus_per_task`` GPUs. Each slot is held by one long-lived :class:`FitWorker`
actor, so a worker process imports TensorFlow once and keeps the same GPU for all its
fits (Ray's plain GPU tasks would start a fresh process per fit). The driver keeps
every slot busy with a short queue of task batches; batches grow when fits are tiny, so
thousands of small fits do not make the driver the bottleneck.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ray

from raygrid import quiet, teardown
from raygrid.plan import PrefixGroup, Task
from raygrid.record import FitRecord
from raygrid.worker import FitWorker, RefitResult

# A batch of fits aims at about this much work, so per-call overhead stays small.
_TARGET_CALL_SECONDS = 0.2
_MAX_BATCH = 256
# A worker whose resident memory passes this after a batch is replaced by a fresh one.
WORKER_MAX_RSS = 4 * 2**30
# Idle workers are kept this long after a search, for the next one to start warm.
IDLE_SECONDS = 10.0


# The GCS addresses of the local Rays this process started with start_local().
_own_sessions: set[str] = set()


def connect(address: str | None) -> bool:
    """Make sure this process is connected to Ray.

    An initialised Ray is used as it is. Otherwise ``address`` (or ``RAY_ADDRESS``) names
    a cluster to join; with neither, a quiet local Ray sized to this machine is started
    and left running for later searches in this process.

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
    start_local()
    return True


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
    teardown.local_ray_started(lambda: [a for p in WorkerPool._pools.values() for a in p.actors])


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


def count_slots(num_cpus: float, num_gpus: float) -> int:
    """How many slots of this size the alive nodes of the cluster can hold at once.

    Raises
    ------
    ValueError
        If no node is large enough for even one slot (Ray would wait forever).
    """
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    total = 0
    for res in nodes:
        fits = math.floor(res.get("CPU", 0) / num_cpus + 1e-9) if num_cpus > 0 else math.inf
        if num_gpus > 0:
            fits = min(fits, math.floor(res.get("GPU", 0) / num_gpus + 1e-9))
        total += 0 if fits == math.inf else fits
    if total == 0:
        largest = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        raise ValueError(
            f"num_cpus_per_task={num_cpus}, num_gpus_per_task={num_gpus}: no node of the "
            f"Ray cluster offers that much (largest node: CPU={largest.get('CPU', 0)}, "
            f"GPU={largest.get('GPU', 0)}). Lower the per-task resources or add nodes."
        )
    return total


@dataclass(frozen=True)
class SlotSpec:
    """The resources of one slot: what each worker holds for its whole life."""

    num_cpus: float
    num_gpus: float


class WorkerPool:
    """Long-lived fit workers, one per slot, kept warm between searches of this process.

    A pool is held by one search at a time (:meth:`acquire`, :meth:`release`). Once
    released, its workers stay alive for ``IDLE_SECONDS`` so that a following search
    starts warm, then are killed so that an idle driver does not keep cluster resources.
    Acquiring a pool of another slot size releases idle pools of other sizes first.
    """

    _pools: dict[tuple, WorkerPool] = {}
    _lock = threading.RLock()

    def __init__(self, spec: SlotSpec) -> None:
        self.spec = spec
        self.actors: list[Any] = []
        self.in_use = False
        self._timer: threading.Timer | None = None

    @classmethod
    def acquire(cls, spec: SlotSpec, size: int) -> WorkerPool:
        """The pool for ``spec``, grown to ``size`` workers, marked in use."""
        key = (_cluster_id(), spec)
        with cls._lock:
            for other_key, other in list(cls._pools.items()):
                if other_key != key and not other.in_use:
                    other.shutdown()
            pool = cls._pools.get(key)
            if pool is None:
                pool = cls._pools[key] = WorkerPool(spec)
            if pool._timer is not None:
                pool._timer.cancel()
            pool.in_use = True
        pool.grow(size)
        return pool

    def release(self) -> None:
        """End this search's use of the pool; its workers go after ``IDLE_SECONDS``."""
        with self._lock:
            self.in_use = False
            if self.actors:
                self._timer = threading.Timer(IDLE_SECONDS, self._expire)
                self._timer.daemon = True
                self._timer.start()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def _expire(self) -> None:
        with self._lock:
            if not self.in_use and ray.is_initialized():
                self.shutdown()

    def grow(self, size: int) -> None:
        """Start workers until the pool has ``size`` of them."""
        while len(self.actors) < size:
            self.add()

    def add(self) -> Any:
        """Start one more worker holding one slot."""
        # Lost workers are replaced by the scheduler, which counts each task's attempts;
        # Ray itself restarts nothing.
        actor = (
            ray.remote(FitWorker)
            .options(
                num_cpus=self.spec.num_cpus,
                num_gpus=self.spec.num_gpus,
                max_restarts=0,
                max_task_retries=0,
                scheduling_strategy="SPREAD",
            )
            .remote(self.spec.num_cpus, self.spec.num_gpus)
        )
        self.actors.append(actor)
        return actor

    def discard(self, actor: Any) -> None:
        """Kill one worker and drop it from the pool."""
        ray.kill(actor, no_restart=True)
        self.actors = [a for a in self.actors if a is not actor]

    def shutdown(self) -> None:
        """Kill every worker now (pending and running fits included) and forget the pool."""
        with self._lock:
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            self.actors = []
            for key, pool in list(self._pools.items()):
                if pool is self:
                    del self._pools[key]


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
        for pool in list(WorkerPool._pools.values()):
            if not pool.in_use:
                pool.shutdown()


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


def _cluster_id() -> str:
    ctx = ray.get_runtime_context()
    return f"{ctx.gcs_address}/{ctx.get_job_id()}"


def run_tasks(
    pool: WorkerPool,
    n_slots: int,
    refs: tuple[ray.ObjectRef, ray.ObjectRef],
    tasks: Iterable[Task | PrefixGroup],
    *,
    max_in_flight: int,
    max_retries: int,
    on_records: Callable[[list[FitRecord]], None],
) -> None:
    """Run ``tasks`` on ``n_slots`` workers of ``pool``.

    ``refs`` are the search's data and the wave's splits in Ray's object store
    (:class:`~raygrid.worker.SearchData`, :class:`~raygrid.worker.WaveData`).

    Tasks are handed out in the order given, in batches, at most ``max_in_flight`` fits
    queued or running at once. ``on_records`` is called with each batch's records as
    soon as it finishes (in completion order) and may raise to stop the search.

    A worker that dies (process killed, node lost) costs its batches one attempt each:
    they go back to the front of the queue, and the slot gets a fresh worker if the
    cluster still has room for it. A task that has used ``1 + max_retries`` attempts
    stops the search. On any exception, including ``KeyboardInterrupt``, every worker of
    the pool is killed, so nothing keeps running, and the exception propagates.
    """
    try:
        scheduler = _Scheduler(pool, n_slots, refs, max_in_flight, max_retries, on_records)
        scheduler.run(deque(tasks))
    except BaseException:
        pool.shutdown()
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
        self.depth = max(1, min(2, max_in_flight // max(1, n_slots)))
        self.sizer = _BatchSizer(n_slots)
        self.in_flight: dict[ray.ObjectRef, tuple[int, Any, list[Task]]] = {}
        self.busy = dict.fromkeys(self.slots, 0)
        self.attempts: dict[int, int] = {}
        self.recycle: set[int] = set()

    def run(self, queue: deque[Task]) -> None:
        self.queue = queue
        for slot in list(self.slots):
            self._submit(slot)
        while self.in_flight:
            ready, _ = ray.wait(list(self.in_flight), num_returns=1)
            for ref in ready:
                slot, actor, batch = self.in_flight.pop(ref)
                current = self.slots.get(slot) is actor
                if current:
                    self.busy[slot] -= 1
                try:
                    records = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
                    self._lost(slot, actor, batch, exc)
                    continue
                for record in records:
                    record.attempts = self.attempts.get(record.index, 0) + 1
                self.sizer.observe(records)
                if records and (records[-1].worker_rss or 0) > WORKER_MAX_RSS:
                    self.recycle.add(slot)
                self.on_records(records)
                self._submit(slot)
            if self.queue and not self.slots:
                raise RuntimeError(
                    "Every Ray worker of this search was lost and the cluster has no room "
                    f"left for a new one; {len(self.queue)} fits did not run."
                )

    def _submit(self, slot: int) -> None:
        if slot in self.recycle and self.busy[slot] == 0:
            self.recycle.discard(slot)
            self._replace(slot)
        if slot not in self.slots:
            return
        while self.queue and self.busy[slot] < self.depth and slot not in self.recycle:
            size = min(self.sizer.size(len(self.queue)), len(self.queue))
            batch = [self.queue.popleft() for _ in range(size)]
            name = batch[0].name if size == 1 else f"{batch[0].name} (+{size - 1})"
            ref = (
                self.slots[slot]
                .run.options(name=name)
                .remote(*self.refs, [unit.payload for unit in batch])
            )
            self.in_flight[ref] = (slot, self.slots[slot], batch)
            self.busy[slot] += 1

    def _lost(self, slot: int, actor: Any, batch: list, error: Exception) -> None:
        """A worker died with ``batch`` queued or running on it: retry it elsewhere."""
        for unit in batch:
            for index in unit.indices:
                self.attempts[index] = self.attempts.get(index, 0) + 1
            if self.attempts[unit.index] > self.max_retries:
                raise RuntimeError(
                    f"{unit.name!r} was lost {self.attempts[unit.index]} times with its "
                    f"Ray worker (max_retries={self.max_retries}): {error}"
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
        self.pool.discard(old)
        spec = self.pool.spec
        try:
            capacity = count_slots(spec.num_cpus, spec.num_gpus)
        except ValueError:
            capacity = 0
        if len(self.slots) < capacity:
            self.slots[slot] = self.pool.add()


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
            actor = pool.actors[0] if pool.actors else pool.add()
            try:
                return ray.get(
                    actor.refit.options(name="raygrid refit").remote(
                        [data_ref], params, blob, listeners
                    )
                )
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
                pool.discard(actor)
                if attempt == max_retries:
                    raise RuntimeError(
                        f"The refit was lost {attempt + 1} times with its Ray worker "
                        f"(max_retries={max_retries}): {exc}"
                    ) from exc
    except BaseException:
        pool.shutdown()
        raise
    raise AssertionError("unreachable")


class _BatchSizer:
    """Chooses how many fits go into one call, from the fit durations seen so far."""

    def __init__(self, n_slots: int) -> None:
        self.n_slots = max(1, n_slots)
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
        return max(1, min(wanted, fair, _MAX_BATCH))
