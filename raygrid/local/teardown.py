"""A quick exit for the local Ray that raygrid started.

Ray's own exit hook (``ray.shutdown`` at interpreter exit) keeps a script for about two
seconds after its last line (measured, see ``benchmarks/exit_time.py``): it sleeps 0.5 s
so that the workers' last lines reach the terminal, then stops Ray's processes one by one,
giving each up to one second to go after SIGTERM; the autoscaler monitor always uses the
whole second, because it answers SIGTERM by trying to report its own death to the GCS.

For a local Ray that raygrid started itself (:func:`raygrid.local.connect.start_local`), a hook
that runs before Ray's waits only as long as the workers' output takes to arrive
(:func:`raygrid.local.quiet.drain`), kills the monitors and the dashboard outright, and then
calls ``ray.shutdown``, which stops the rest as Ray does (of its 0.3 s here, about 0.25 s
is the driver waiting for a gRPC thread to end). Workers and agents that outlive their
raylet by more than a moment (seen on a loaded machine) are killed, so nothing is left
running. A Ray that the user started or joined is left to Ray's own hook.

A script that joined the kept-alive cluster of ``raygrid up`` exits the same quick way:
it started no Ray process (so there is none to stop), and the warm workers' output does
not come to it (they belong to the keeper's job); only workers it started itself are
waited for.

Last, the hook freezes the garbage collector's heap (:func:`gc.freeze`): the interpreter's
own finalization otherwise runs full collections over every object that Ray, pandas and
scikit-learn loaded, about 0.3 s on the machine measured. Objects alive at exit are still
freed by reference counting; only reference cycles still alive at that point are left to
the process's end, which Python allows (it does not promise finalizers at exit).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil
import ray

from raygrid.local import quiet, ray_private

_LOG_DRAIN_SECONDS = 0.5
# How long a worker may outlive its raylet before it is killed.
_OUTLIVE_SECONDS = 0.2
_state: dict[str, Any] = {}


def watch_workers(live_workers: Callable[[], Iterable[Any]]) -> None:
    """Name where the worker actors alive at exit come from (whose output is waited for).

    The pool of warm workers registers itself here when it is imported, so that this
    module, below the scheduler, need not import it.
    """
    _state["live_workers"] = live_workers


def local_ray_started() -> None:
    """Register the quick exit for the local Ray just started (or kept-alive one joined)."""
    _state["node"] = _current_node()
    # ray.shutdown imports this (30 ms); better now than at exit.
    import ray.dag.compiled_dag_node  # noqa: F401

    if not _state.get("registered"):
        # Registered after Ray's own hook, so it runs first (atexit runs last-in first).
        atexit.register(shutdown_local)
        _state["registered"] = True


def shutdown_local() -> None:
    """Stop the local Ray that raygrid started, if it is still the one connected."""
    node = _state.get("node")
    if node is None or not ray.is_initialized() or _current_node() is not node:
        return
    _state["node"] = None
    # Waiting for the workers' output is a courtesy; stopping Ray is what must happen.
    with contextlib.suppress(Exception):
        quiet.drain(_state.get("live_workers", list)(), timeout=_LOG_DRAIN_SECONDS)
    _kill_helpers(node)
    raylets_children = _raylets_children(node)
    with _without_grace(node, raylets_children):
        ray.shutdown()
    _finish_off(raylets_children)
    gc.freeze()


def _current_node() -> Any:
    return ray_private.global_node()


@contextlib.contextmanager
def _without_grace(node: Any, raylets_children: list[psutil.Process]) -> Iterator[None]:
    """While ``ray.shutdown`` runs, its last step stops Ray's processes with SIGKILL.

    By then the driver has disconnected and the workers' output has arrived, so the
    SIGTERM-and-wait that Ray gives each process (a few hundredths of a second each)
    buys nothing. The raylet's workers and agents go first, as the raylet would have
    stopped them.
    """
    kill_gracefully = node.kill_all_processes

    def kill_all_processes(**kwargs: Any) -> None:
        for process in raylets_children:
            with contextlib.suppress(psutil.Error):
                process.kill()
        kill_gracefully(**{**kwargs, "allow_graceful": False})

    node.kill_all_processes = kill_all_processes
    try:
        yield
    finally:
        node.kill_all_processes = kill_gracefully


def _raylets_children(node: Any) -> list[psutil.Process]:
    """The local raylet's worker and agent processes (they go when it goes, eventually)."""
    name = getattr(ray_private.ray_constants(), "PROCESS_TYPE_RAYLET", "raylet")
    children = []
    for info in getattr(node, "all_processes", {}).get(name, []):
        with contextlib.suppress(psutil.Error, AttributeError):
            children += psutil.Process(info.process.pid).children(recursive=True)
    return children


def _finish_off(processes: list[psutil.Process]) -> None:
    """Give ``processes`` a moment to end by themselves, then SIGKILL the rest."""
    deadline = time.monotonic() + _OUTLIVE_SECONDS
    while processes and time.monotonic() < deadline:
        processes = [p for p in processes if _running(p)]
        if processes:
            time.sleep(0.01)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_helpers(node: Any) -> None:
    """SIGKILL the processes that only serve a running Ray, and wait for them together.

    The autoscaler monitor would hold ``ray.shutdown`` for a whole second, and the log
    monitor and the dashboard each for a few hundredths; their work is done once the
    workers' output has arrived.
    """
    constants = ray_private.ray_constants()
    names = [
        getattr(constants, constant, default)
        for constant, default in (
            ("PROCESS_TYPE_MONITOR", "monitor"),
            ("PROCESS_TYPE_LOG_MONITOR", "log_monitor"),
            ("PROCESS_TYPE_DASHBOARD", "dashboard"),
        )
    ]
    killed = []
    for name in names:
        for info in getattr(node, "all_processes", {}).get(name, []):
            process = getattr(info, "process", None)
            if process is not None and process.poll() is None:
                process.kill()
                killed.append(process)
    for process in killed:
        process.wait(timeout=5)
