"""A kept-alive local Ray: ``raygrid up`` starts it, later scripts join it, ``raygrid down``.

``raygrid up`` starts a *keeper* process (:mod:`raygrid.cli.keeper`) in a session of its own,
detached from the terminal. The keeper starts a local Ray with token authentication
(a random token), starts warm fit workers that import TensorFlow once, and writes the
*state file*, readable by this user only (mode 0600)::

    $RAYGRID_STATE_DIR/cluster.json          if RAYGRID_STATE_DIR is set, else
    $XDG_RUNTIME_DIR/raygrid/cluster.json    if XDG_RUNTIME_DIR is set, else
    ~/.raygrid/cluster.json

It holds the cluster's address, its token, the keeper's process id and the warm
workers' names. A search with no ``ray_address`` and no ``RAY_ADDRESS`` joins that
cluster (:func:`join`) instead of starting a Ray of its own; a state file whose cluster
is gone is removed and the search starts a local Ray as usual.

The warm workers serve one search at a time: a search takes them with a *lease*, an
exclusive lock on the ``lease`` file next to the state file, and gives them back when it
ends (the lock also goes when its process dies); the holder writes its process id and
command line in the file. A search that finds them taken says whose they are and waits for
them, at most ``RAYGRID_LEASE_TIMEOUT`` seconds (default 3600), then fails with a
``TimeoutError`` that names the holder. A search that fails gives the workers back warm
(those still busy after a few seconds are stopped; the keeper starts them again). While a
search holds them, what its fits print reaches that search's terminal, not the keeper's
log (see :mod:`raygrid.local.quiet`). A search with another slot size (``num_cpus_per_task`` other than 1, or GPUs)
stops the warm workers for its own; the keeper starts them again once it has ended.

The keeper stops the cluster (every process of it) and removes the state file when no
search has held the lease for the idle timeout, or at ``raygrid down``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import psutil

from raygrid.local import ray_private

STATE_DIR_ENV = "RAYGRID_STATE_DIR"
DEFAULT_IDLE_TIMEOUT = 3600.0
NAMESPACE = "raygrid-kept-alive"
# How long `raygrid up` waits for the keeper to have its Ray running.
UP_SECONDS = 180.0
# How long `raygrid down` gives the keeper to stop its Ray before killing what is left.
DOWN_SECONDS = 20.0
# How long a search waits for another search's lease on the warm workers
# (RAYGRID_LEASE_TIMEOUT, in seconds, overrides it).
LEASE_TIMEOUT_ENV = "RAYGRID_LEASE_TIMEOUT"
LEASE_TIMEOUT = 3600.0

# The kept-alive cluster this process joined (its GCS address), and the threads that
# hold its lease (a search nested in one of them takes workers of its own).
_joined: dict[str, Any] = {}
_holders: set[int] = set()


def state_dir() -> Path:
    """Where the state file lives: ``RAYGRID_STATE_DIR``, ``$XDG_RUNTIME_DIR/raygrid``
    or ``~/.raygrid``.

    Returns
    -------
    pathlib.Path
    """
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "raygrid"
    return Path.home() / ".raygrid"


def state_path() -> Path:
    """The state file of the kept-alive cluster (it exists while one is up).

    Returns
    -------
    pathlib.Path
    """
    return state_dir() / "cluster.json"


def _lease_path() -> Path:
    return state_dir() / "lease"


def read_state() -> dict[str, Any] | None:
    """The state file's content, or None when there is none (or it is unreadable).

    Returns
    -------
    dict or None
    """
    try:
        return json.loads(state_path().read_text())
    except (OSError, ValueError):
        return None


def write_state(state: dict[str, Any]) -> None:
    """Write the state file atomically, readable and writable by this user only.

    Parameters
    ----------
    state : dict
        What :func:`read_state` gives back.
    """
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = directory / f".cluster.json.{os.getpid()}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    os.replace(partial, state_path())


def remove_state(keeper_pid: int) -> None:
    """Remove the state file if it is still the one of the keeper ``keeper_pid``.

    Parameters
    ----------
    keeper_pid : int
        Process id of the keeper the state file must name.
    """
    state = read_state()
    if state is not None and state.get("keeper_pid") == keeper_pid:
        with contextlib.suppress(OSError):
            state_path().unlink()


def answers(address: str) -> bool:
    """Whether something listens at ``host:port`` (a Ray's GCS, for its callers).

    Parameters
    ----------
    address : str

    Returns
    -------
    bool
    """
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except (OSError, ValueError):
        return False
    return True


def _keeper_alive(state: dict[str, Any]) -> bool:
    """Whether the keeper named in ``state`` still runs (not another process with its id)."""
    try:
        process = psutil.Process(state["keeper_pid"])
        return abs(process.create_time() - state["keeper_started"]) < 1.0
    except (psutil.Error, KeyError, TypeError):
        return False


def live_state() -> dict[str, Any] | None:
    """The state of the kept-alive cluster if it is up; a stale state file is removed.

    Returns
    -------
    dict or None
    """
    state = read_state()
    if state is None:
        return None
    if _keeper_alive(state) and answers(state["address"]):
        return state
    if not _keeper_alive(state):
        remove_state(state.get("keeper_pid"))
    return None


def use_auth(mode: str, token: str | None = None) -> None:
    """Make this process's Ray client authenticate as a cluster started with ``mode`` wants.

    The one place raygrid sets Ray's authentication: for the kept-alive cluster
    (``"token"`` and its token) and for a sibling's Ray (the mode it was started with;
    its token, if any, comes with the environment).

    Parameters
    ----------
    mode : str
        Ray's ``RAY_AUTH_MODE`` (``"token"``).
    token : str, optional
        The token to present.
    """
    os.environ["RAY_AUTH_MODE"] = mode
    if token is not None:
        os.environ["RAY_AUTH_TOKEN"] = token
    AuthenticationTokenLoader, Config = ray_private.token_auth()
    Config.initialize("")  # Ray reads RAY_AUTH_MODE once, into its config
    if token is not None:
        AuthenticationTokenLoader.instance().reset_cache()


def join() -> bool:
    """Join the kept-alive cluster, if one is up; whether this process joined it.

    Returns
    -------
    bool
    """
    state = live_state()
    if state is None:
        return False
    import ray

    use_auth("token", state["token"])
    try:
        ray.init(address=state["address"], logging_level=logging.ERROR)
    except ConnectionError:  # it stopped (idle) as this process came: start one's own
        return False
    _joined.clear()
    _joined.update(state, gcs_address=ray.get_runtime_context().gcs_address)
    with contextlib.suppress(OSError):
        os.utime(_lease_path())  # a search is coming: the cluster is in use
    return True


def joined() -> bool:
    """Whether this process is connected to the kept-alive cluster it joined.

    Returns
    -------
    bool
    """
    import ray

    if not _joined or not ray.is_initialized():
        return False
    return ray.get_runtime_context().gcs_address == _joined["gcs_address"]


class Lease:
    """This process's hold on the kept-alive cluster's warm workers, for one search.

    Parameters
    ----------
    fd : int
        The lease file, locked.
    actors : list
        The warm workers alive when the lease was taken.
    warm : dict
        The warm workers' slot (``num_cpus``, ``num_gpus``) and names.
    """

    def __init__(self, fd: int, actors: list[Any], warm: dict[str, Any]) -> None:
        self.fd = fd
        self.actors = actors
        self.warm = warm
        self.thread = threading.get_ident()
        _holders.add(self.thread)

    def fits(self, num_cpus: float, num_gpus: float) -> bool:
        """Whether the warm workers hold slots of this size.

        Parameters
        ----------
        num_cpus, num_gpus : float
            A search's slot size.

        Returns
        -------
        bool
        """
        return (num_cpus, num_gpus) == (self.warm["num_cpus"], self.warm["num_gpus"])

    def give_back(self) -> None:
        """End the hold: the next search (in any process) takes the workers."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.utime(self.fd)  # the idle timeout counts from here
        os.close(self.fd)  # releases the lock
        self.fd = -1
        _holders.discard(self.thread)


def lease_workers() -> Lease | None:
    """Take the kept-alive cluster's warm workers for a search, waiting while another
    search has them; None when this process is not on that cluster (or, in this thread,
    already holds them).

    Returns
    -------
    Lease or None
    """
    import ray

    if not _joined or threading.get_ident() in _holders or not ray.is_initialized():
        return None
    if ray.get_runtime_context().gcs_address != _joined["gcs_address"]:
        return None
    fd = os.open(_lease_path(), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _wait_for_lease(fd)
    except BaseException:
        os.close(fd)
        raise
    os.utime(fd)
    return Lease(fd, _warm_actors(), _joined["warm"])


def holds_lease() -> bool:
    """Whether a search in this process holds the kept-alive cluster's warm workers.

    Returns
    -------
    bool
    """
    return bool(_holders)


def _holder_text() -> str:
    """Who holds the lease, as its holder wrote it in the lease file."""
    try:
        holder = json.loads(_lease_path().read_text())
        since = time.strftime("%H:%M:%S", time.localtime(holder["since"]))
        return f"process {holder['pid']} ({shorten_command(holder['command'])}, since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def shorten_command(command: list[str]) -> str:
    """A process's command line, shortened for one line of text."""
    text = " ".join(command)
    return text if len(text) <= 60 else text[:57] + "..."


def _wait_for_lease(fd: int) -> None:
    """Lock the lease file, waiting at most the lease timeout; then say who holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        limit = float(os.environ.get(LEASE_TIMEOUT_ENV) or LEASE_TIMEOUT)
        holder = _holder_text()
        print(
            f"raygrid: the kept-alive cluster's workers are in use by {holder}; "
            f"waiting for them (at most {limit:g} s, {LEASE_TIMEOUT_ENV})",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + limit
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"raygrid: waited {limit:g} s for the kept-alive cluster's workers, "
                        f"still in use by {holder}; set {LEASE_TIMEOUT_ENV} to wait longer, "
                        "or stop that search (or the cluster: raygrid down)"
                    ) from None
                time.sleep(0.2)
    me = {"pid": os.getpid(), "command": sys.argv or [sys.executable], "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)


def _warm_actors() -> list[Any]:
    """Handles of the warm workers alive now (the keeper replaces lost ones later)."""
    import ray

    actors = []
    for name in _joined["warm"]["names"]:
        with contextlib.suppress(ValueError):
            actors.append(ray.get_actor(name, namespace=NAMESPACE))
    return actors


# -- up and down (the command line's side) ------------------------------------------------


def up(
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    out: TextIO = sys.stdout,
) -> int:
    """Start the kept-alive local cluster and return once it runs (``raygrid up``).

    Parameters
    ----------
    num_cpus : int, default=None
        CPUs the cluster offers (one warm worker each); all of this machine's if None.
    num_gpus : int, default=None
        GPUs the cluster offers; Ray's detection if None.
    idle_timeout : float, default=3600
        Seconds without a search after which the cluster stops itself.
    out : file, default=sys.stdout
        Where the result is said.

    Returns
    -------
    int
        0 when the cluster runs (started now or already up), 1 when it failed to start.
    """
    directory = state_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(directory / "up.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stale = read_state()
        state = live_state()
        if stale is not None and state is None and not state_path().exists():
            print(
                f"raygrid up: removed the state file of a cluster that is gone "
                f"(keeper {stale.get('keeper_pid')}, {stale.get('address')})",
                file=out,
            )
        if state is not None:
            print(f"raygrid up: already up at {state['address']} ({_describe(state)})", file=out)
            return 0
        keeper = _spawn_keeper(directory, num_cpus, num_gpus, idle_timeout)
        state = _wait_for_keeper(keeper)
    if state is None:
        log = (directory / "keeper.log").read_text(errors="replace").strip().splitlines()
        print("raygrid up: the cluster did not start; the end of its log:", file=sys.stderr)
        print("\n".join(log[-20:]), file=sys.stderr)
        return 1
    print(f"raygrid up: a local Ray at {state['address']} ({_describe(state)})", file=out)
    print(
        f"raygrid up: scripts on this machine join it; state in {state_path()}; "
        "stop it with: raygrid down",
        file=out,
    )
    return 0


def _describe(state: dict[str, Any]) -> str:
    return (
        f"{state['num_cpus']} CPUs, {state['num_gpus']} GPUs, "
        f"{len(state['warm']['names'])} warm workers, stops after "
        f"{state['idle_timeout']:g} s idle"
    )


def _spawn_keeper(
    directory: Path, num_cpus: int | None, num_gpus: int | None, idle_timeout: float
) -> subprocess.Popen:
    """Start the keeper in a session of its own, detached from this terminal."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    for name in ("RAY_ADDRESS", "RAYGRID_PARENT_RAY", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    command = [sys.executable, "-m", "raygrid.cli.keeper", "--idle-timeout", str(idle_timeout)]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        command += ["--num-gpus", str(num_gpus)]
    log_fd = os.open(directory / "keeper.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(log_fd, "w") as log:
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=str(directory),
        )


def _wait_for_keeper(keeper: subprocess.Popen) -> dict[str, Any] | None:
    deadline = time.monotonic() + UP_SECONDS
    while time.monotonic() < deadline and keeper.poll() is None:
        state = read_state()
        if state is not None and state.get("keeper_pid") == keeper.pid:
            return state
        time.sleep(0.1)
    if keeper.poll() is None:
        stop_session(keeper.pid)
    return None


def down(out: TextIO = sys.stdout) -> int:
    """Stop the kept-alive cluster: every process of it, and its state file.

    Parameters
    ----------
    out : file, default=sys.stdout
        Where the result is said.

    Returns
    -------
    int
        0, also when no cluster was up.
    """
    state = read_state()
    if state is None:
        print("raygrid down: no kept-alive cluster is up", file=out)
        return 0
    pid = state["keeper_pid"]
    if _keeper_alive(state):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(timeout=DOWN_SECONDS)
        stopped = f"stopped the local Ray at {state['address']}"
    else:
        stopped = f"the cluster at {state['address']} was gone; removed its state file"
    left = stop_session(pid)
    remove_state(pid)
    extra = f" (killed {left} leftover processes)" if left else ""
    print(f"raygrid down: {stopped}{extra}", file=out)
    return 0


def session_processes(session: int) -> list[psutil.Process]:
    """This user's live processes (zombies aside) in the session ``session``: the
    keeper's, and its Ray's.

    Parameters
    ----------
    session : int
        A session id: the keeper's process id, since it leads its own session.

    Returns
    -------
    list of psutil.Process
    """
    found = []
    for process in psutil.process_iter(["uids", "status"]):
        try:
            if (
                process.info["uids"].real == os.getuid()
                and process.info["status"] != psutil.STATUS_ZOMBIE
                and os.getsid(process.pid) == session
            ):
                found.append(process)
        except (OSError, psutil.Error, AttributeError):
            continue
    return found


def stop_session(session: int, spare: int | None = None) -> int:
    """SIGKILL every process of ``session`` but ``spare`` and wait for them; how many?

    Parameters
    ----------
    session : int
        The session id (see :func:`session_processes`).
    spare : int, default=None
        A process id to leave alone (the caller itself).

    Returns
    -------
    int
    """
    processes = [p for p in session_processes(session) if p.pid != spare]
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=10)
    return len(processes)
