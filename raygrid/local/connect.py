"""Connecting this process to Ray: join what runs, or start a quiet local Ray.

:func:`connect` decides, for each search, which Ray it runs on: an initialised Ray as it
is, an address given (``ray_address`` or ``RAY_ADDRESS``), the local Ray of the parent
process, the kept-alive cluster of ``raygrid up`` (:mod:`raygrid.local.kept_alive`), the
local Ray of a sibling joblib/multiprocessing worker, or a fresh local Ray
(:func:`start_local`). It remembers which sessions it started itself: their workers
import what this process imports.
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
from typing import Any

import ray

from raygrid.local import kept_alive, quiet, teardown

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
        teardown.local_ray_started()
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
    teardown.local_ray_started()


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
