"""The keeper of the kept-alive cluster: ``python -m raygrid.cli.keeper`` (run by ``raygrid up``).

It runs in a session of its own, detached from the terminal, with ``RAY_AUTH_MODE=token``
and the cluster's token in its environment (set by ``raygrid up``). It starts the local
Ray (whose processes die with it), one warm :class:`~raygrid.run.worker.FitWorker` per CPU
that imports TensorFlow, and writes the state file (see :mod:`raygrid.local.kept_alive`). Then,
every second, it checks the cluster: warm workers lost while no search holds them are
started again; once no search has held them for the idle timeout, or on SIGTERM
(``raygrid down``), it removes the state file, stops Ray and kills whatever of its
session is left.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import sys
import time
from typing import Any

import psutil
import ray

from raygrid.local import connect, kept_alive
from raygrid.run.pool import SlotSpec, new_worker

# The warm workers' slot: a search's default (num_cpus_per_task=1, no GPU).
WARM_SLOT = SlotSpec(1.0, 0.0)
# What warm workers import before any search comes.
PRELOAD = ["tensorflow", "raygrid.keras"]
_TICK_SECONDS = 1.0
_CHECK_WORKERS_SECONDS = 5.0


def main(argv: list[str] | None = None) -> int:
    """Run the keeper until the cluster has been idle too long or SIGTERM comes.

    Parameters
    ----------
    argv : list of str, default=None
        ``--idle-timeout SECONDS [--num-cpus N] [--num-gpus N]``.

    Returns
    -------
    int
        The exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m raygrid.cli.keeper")
    parser.add_argument("--idle-timeout", type=float, required=True)
    parser.add_argument("--num-cpus", type=int)
    parser.add_argument("--num-gpus", type=int)
    args = parser.parse_args(argv)
    stop: list[str] = []
    pid = os.getpid()
    try:
        connect.start_local(args.num_cpus, args.num_gpus)
        # After Ray's start, which installs handlers of its own that end the process.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda n, _frame: stop.append(signal.Signals(n).name))
        keeper = _Keeper(args.idle_timeout)
        kept_alive.write_state(keeper.state())
        print(f"raygrid keeper: up at {keeper.address}, warm: {keeper.preloaded}", flush=True)
        why = keeper.watch(stop)
        print(f"raygrid keeper: stopping ({why})", flush=True)
    finally:
        kept_alive.remove_state(pid)
        with contextlib.suppress(Exception):
            ray.shutdown()
        kept_alive.stop_session(os.getsid(pid), spare=pid)
    return 0


class _Keeper:
    """The cluster's warm workers and its idle clock."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self.address = ray.get_runtime_context().gcs_address
        resources = ray.cluster_resources()
        self.num_cpus = int(resources.get("CPU", 0))
        self.num_gpus = int(resources.get("GPU", 0))
        self.names = [f"raygrid-warm-{i}" for i in range(self.num_cpus)]
        self.workers: dict[str, Any] = {name: self._start(name) for name in self.names}
        # The state file (which lets searches in) comes once the workers are warm: a
        # search's calls would otherwise run before those of the keeper.
        self.preloaded = ray.get([w.preload.remote(PRELOAD) for w in self.workers.values()])
        self.started = time.time()
        self.lease_path = kept_alive.state_dir() / "lease"
        self.lease_path.touch(mode=0o600)

    def state(self) -> dict[str, Any]:
        """What the state file says about this cluster."""
        me = psutil.Process()
        return {
            "address": self.address,
            "token": os.environ["RAY_AUTH_TOKEN"],
            "keeper_pid": me.pid,
            "keeper_started": me.create_time(),
            "started": self.started,
            "idle_timeout": self.idle_timeout,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "warm": {
                "num_cpus": WARM_SLOT.num_cpus,
                "num_gpus": WARM_SLOT.num_gpus,
                "names": self.names,
            },
        }

    def _start(self, name: str) -> Any:
        return new_worker(WARM_SLOT, name=name, namespace=kept_alive.NAMESPACE)

    def watch(self, stop: list[str]) -> str:
        """Tick until a reason to stop comes; return it."""
        last_check = time.monotonic()
        while not stop:
            time.sleep(_TICK_SECONDS)
            if not kept_alive.answers(self.address):
                return "its Ray is gone"
            with open(self.lease_path, "a") as lease:
                try:
                    fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a search holds the workers
                idle = time.time() - max(self.started, os.fstat(lease.fileno()).st_mtime)
                if idle >= self.idle_timeout:
                    kept_alive.remove_state(os.getpid())  # no one joins while it stops
                    return f"idle for {idle:.0f} s"
                if time.monotonic() - last_check >= _CHECK_WORKERS_SECONDS:
                    self._replace_lost()
                    last_check = time.monotonic()
        return f"{stop[0]} received"

    def _replace_lost(self) -> None:
        """Start again the warm workers that a search stopped or lost."""
        refs = {name: w.__ray_ready__.remote() for name, w in self.workers.items()}
        ray.wait(list(refs.values()), num_returns=len(refs), timeout=2.0)
        for name, ref in refs.items():
            try:
                ray.get(ref, timeout=0)
            except ray.exceptions.GetTimeoutError:
                continue  # still starting
            except Exception:
                try:
                    self.workers[name] = self._start(name)
                except ray.exceptions.ActorAlreadyExistsError:
                    # Ray frees a dead actor's name a moment after it reports the death:
                    # take the actor now holding it, or try again at the next check.
                    with contextlib.suppress(ValueError):
                        self.workers[name] = ray.get_actor(name, namespace=kept_alive.NAMESPACE)
                    continue
                print(f"raygrid keeper: replaced the lost warm worker {name}", flush=True)
                self.workers[name].preload.remote(PRELOAD)


if __name__ == "__main__":
    sys.exit(main())
