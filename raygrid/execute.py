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
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ray

from raygrid.plan import Task
from raygrid.worker import FitWorker, SearchData

# A batch of fits aims at about this much work, so per-call overhead stays small.
_TARGET_CALL_SECONDS = 0.2
_MAX_BATCH = 256


def connect(address: str | None) -> None:
    """Make sure this process is connected to Ray.

    An initialised Ray is used as it is. Otherwise ``address`` (or ``RAY_ADDRESS``) names
    a cluster to join; with neither, a quiet local Ray sized to this machine is started
    and left running for later searches in this process.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        _check_reachable(address)
        ray.init(address=address, logging_level=logging.WARNING)
        return
    start_local()


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


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when a ``host:port`` address does not answer."""
    if address == "auto" or "://" in address and not address.startswith("ray://"):
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


@dataclass
class SlotSpec:
    """The resources of one slot and how workers holding it are restarted."""

    num_cpus: float
    num_gpus: float
    max_retries: int

    def key(self) -> tuple:
        return (self.num_cpus, self.num_gpus, self.max_retries)


class WorkerPool:
    """Long-lived fit workers, one per slot, reused by later searches of this process."""

    _pools: dict[tuple, WorkerPool] = {}

    def __init__(self, spec: SlotSpec) -> None:
        self.spec = spec
        self.actors: list[Any] = []
        self._cluster = _cluster_id()

    @classmethod
    def get(cls, spec: SlotSpec, size: int) -> WorkerPool:
        """A pool of at least ``size`` workers for ``spec`` (created on first use)."""
        key = (_cluster_id(), *spec.key())
        pool = cls._pools.get(key)
        if pool is None:
            pool = cls._pools[key] = WorkerPool(spec)
        pool._grow(size)
        return pool

    def _grow(self, size: int) -> None:
        actor_class = ray.remote(FitWorker).options(
            num_cpus=self.spec.num_cpus,
            num_gpus=self.spec.num_gpus,
            max_restarts=self.spec.max_retries,
            max_task_retries=self.spec.max_retries,
            scheduling_strategy="SPREAD",
        )
        while len(self.actors) < size:
            self.actors.append(actor_class.remote(self.spec.num_cpus, self.spec.num_gpus))

    def shutdown(self) -> None:
        """Kill every worker now (pending and running fits included) and forget the pool."""
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        for key, pool in list(self._pools.items()):
            if pool is self:
                del self._pools[key]


def _cluster_id() -> str:
    ctx = ray.get_runtime_context()
    return f"{ctx.gcs_address}/{ctx.get_job_id()}"


def put_search_data(data: SearchData) -> ray.ObjectRef:
    """Place the search's shared data in Ray's object store, once for the whole search."""
    return ray.put(data)


def run_tasks(
    pool: WorkerPool,
    n_slots: int,
    data_ref: ray.ObjectRef,
    tasks: Iterable[Task],
    *,
    max_in_flight: int,
    on_records: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Run ``tasks`` on the first ``n_slots`` workers of ``pool``.

    Tasks are handed out in the order given, in batches, at most ``max_in_flight`` fits
    queued or running at once. ``on_records`` is called with each batch's records as
    soon as it finishes (in completion order) and may raise to stop the search; on any
    exception, including ``KeyboardInterrupt``, every worker of the pool is killed so
    nothing keeps running, and the exception propagates.
    """
    queue = deque(tasks)
    actors = pool.actors[:n_slots]
    per_actor = max(1, max_in_flight // max(1, len(actors)))
    sizer = _BatchSizer(n_slots)
    in_flight: dict[ray.ObjectRef, tuple[Any, list[Task]]] = {}
    busy = {i: 0 for i in range(len(actors))}

    def submit(slot: int) -> None:
        while queue and busy[slot] < min(per_actor, 2):
            batch = [queue.popleft() for _ in range(min(sizer.size(len(queue)), len(queue)))]
            name = batch[0].name if len(batch) == 1 else f"{batch[0].name} (+{len(batch) - 1})"
            ref = (
                actors[slot]
                .run.options(name=name)
                .remote([data_ref], [(t.index, t.params, t.split) for t in batch])
            )
            in_flight[ref] = (slot, batch)
            busy[slot] += 1

    try:
        for slot in range(len(actors)):
            submit(slot)
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                slot, batch = in_flight.pop(ref)
                busy[slot] -= 1
                records = _get(ref, batch, pool.spec.max_retries)
                sizer.observe(records)
                on_records(records)
                submit(slot)
    except BaseException:
        pool.shutdown()
        raise


def refit_on_pool(pool: WorkerPool, data_ref: ray.ObjectRef, params: dict) -> dict[str, Any]:
    """Fit the best candidate on all the data, in a slot like the search's fits.

    Returns the worker's refit record (see :func:`raygrid.worker.refit`).
    """
    try:
        return ray.get(
            pool.actors[0].refit.options(name="raygrid refit").remote([data_ref], params)
        )
    except BaseException:
        pool.shutdown()
        raise


def _get(ref: ray.ObjectRef, batch: list[Task], max_retries: int) -> list[dict[str, Any]]:
    try:
        return ray.get(ref)
    except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
        raise RuntimeError(
            f"A Ray worker running {batch[0].name!r} was lost and could not be recovered "
            f"after max_retries={max_retries} restarts: {exc}"
        ) from exc


class _BatchSizer:
    """Chooses how many fits go into one call, from the fit durations seen so far."""

    def __init__(self, n_slots: int) -> None:
        self.n_slots = max(1, n_slots)
        self.mean_seconds: float | None = None

    def observe(self, records: list[dict[str, Any]]) -> None:
        seconds = [r["end_time"] - r["start_time"] for r in records]
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


def wait_for_workers(pool: WorkerPool, n_slots: int, timeout: float = 120.0) -> None:
    """Block until the pool's first ``n_slots`` workers have started (or time out)."""
    deadline = time.time() + timeout
    refs = [a.info.remote() for a in pool.actors[:n_slots]]
    ready, pending = ray.wait(
        refs, num_returns=len(refs), timeout=max(0.0, deadline - time.time())
    )
    if pending:
        raise TimeoutError(f"{len(pending)} of {n_slots} Ray workers did not start in {timeout} s")
