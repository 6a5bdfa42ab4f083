"""Quiet workers: framework start-up chatter stays in the worker logs, not the terminal.

Ray forwards every line a worker writes to the driver's terminal. In a fit worker most of
those lines are TensorFlow's start-up messages (absl's "All log messages before
absl::InitializeLog() ...", oneDNN and CPU-feature notices, CUDA probing) and
``tf.function`` retracing notices, printed once per worker process. On the driver, the
handler through which Ray prints forwarded lines is wrapped so that these lines, when
they come from a raygrid worker, are dropped. Everything else passes: the estimator's
own prints, Python warnings, tracebacks, and the lines of the user's own Ray tasks.
The worker log files keep every line (``/tmp/ray/session_latest/logs/worker-*``).

Set ``RAYGRID_FRAMEWORK_LOGS=1`` to see the dropped lines in the terminal again.

What fits print arrives as the fit printed it (:func:`print_fit_lines`): without Ray's
``(FitWorker pid=N)`` prefix, which is kept only for lines from another node than the
driver's, and without colour codes unless the stream is a terminal. Other processes'
lines keep Ray's prefix, also without colour codes when the stream is not a terminal.

One more piece lives here because it shares the forwarding path: :func:`drain`, which
waits until what the workers printed so far has reached the terminal (used at exit). A
GPU that a worker holds but its framework cannot use is not left to those dropped
messages: it stops the search (:mod:`raygrid.run.devices`).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

from raygrid.local import ray_private

SHOW_ENV = "RAYGRID_FRAMEWORK_LOGS"
# Ray's name for the forwarding handler it registers at connect and removes at shutdown.
_RAY_HANDLER = "ray_print_logs"
_WORKER_CLASS = "FitWorker"
_MARKER = "raygrid:drain:"
# Ray's switch for the colour codes around its "(pid=N)" prefixes.
_COLOR_ENV = "RAY_COLOR_PREFIX"

# A C++ log line, in absl's format ("I0000 00:00:1795932570.419982    4044 port.cc:153] ")
# or TensorFlow's older one ("2024-01-01 12:00:00.000000: I tensorflow/x.cc:12] ").
_CPP_LINE = re.compile(
    r"^(?:(?P<level>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: (?P<old_level>[IWEF]) )\S+:\d+\] (?P<message>.*)"
)
# Warnings and errors printed while probing for CUDA, cuDNN and TensorRT on machines
# (or workers) without them.
_PROBING = re.compile(
    r"cuInit|Could not find cuda drivers|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|TF-TRT Warning|Could not find TensorRT|Cannot dlopen some GPU libraries"
    r"|computation_placer|NUMA node"
)
_OTHER = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|^To enable the following instructions: .*rebuild TensorFlow with the appropriate"
    r"|^WARNING:tensorflow:.*triggered tf\.function retracing"
)


def is_chatter(line: str) -> bool:
    """True for a framework start-up or retracing line that a user need not see.

    Parameters
    ----------
    line : str
        One line of a worker's output, without its trailing newline.

    Returns
    -------
    bool
        Whether the line is dropped from the terminal by default.
    """
    match = _CPP_LINE.match(line)
    if match is not None:
        level = match["level"] or match["old_level"]
        return level == "I" or (level in "WE" and _PROBING.search(match["message"]) is not None)
    return _OTHER.match(line) is not None


def print_fit_lines(data: dict[str, Any]) -> None:
    """Print lines a fit worker wrote as the fit itself would have printed them.

    scikit-learn's ``n_jobs`` workers print plain lines; so do fits here: no
    ``(FitWorker pid=N)`` prefix and no colour codes. The prefix stays where it tells
    something, on lines from another node than this driver's: ``(FitWorker pid=N,
    ip=ADDRESS)``, in colour only when the stream is a terminal. Ray's deduplication of
    repeated lines does not apply (each fit's lines arrive, as in scikit-learn).

    Parameters
    ----------
    data : dict
        A batch of lines as Ray forwards them (``lines``, ``is_err``, ``pid``, ``ip``,
        ``localhost``).
    """
    stream = sys.stderr if data.get("is_err") else sys.stdout
    prefix = ""
    ip = data.get("ip")
    if ip and ip != data.get("localhost"):
        prefix = f"({_WORKER_CLASS} pid={data.get('pid')}, ip={ip}) "
        if getattr(stream, "isatty", lambda: False)():
            prefix = f"\x1b[36m{prefix[:-1]}\x1b[0m "
    for line in data.get("lines") or []:
        print(prefix + line, file=stream)
    stream.flush()


class _WorkerLogFilter:
    """Stands in for Ray's forwarding handler; passes on what the user should see.

    Lines of raygrid's fit workers go to ``fit_printer`` (the forwarding handler when
    None), everything else to Ray's handler.
    """

    def __init__(self, forward: Any, fit_printer: Any = None) -> None:
        self.forward = forward
        self.fit_printer = fit_printer
        # This driver's job when it also hears other jobs' lines (a kept-alive cluster).
        self.own_job: str | None = None
        self.show_all = False
        self.markers: set[tuple[str, str, bool]] = set()
        self.arrived = threading.Condition()

    def __call__(self, data: dict[str, Any]) -> None:
        job = data.get("job")
        if self.own_job is not None and job and job != self.own_job:
            # Another job's lines reach this driver only on a kept-alive cluster: those of
            # its warm workers (started by its keeper) while a search here holds them.
            from raygrid.local import kept_alive

            if not (str(data.get("actor_name", "")).startswith(_WORKER_CLASS)):
                return
            if not kept_alive.holds_lease():
                return
        lines = data.get("lines") or []
        kept = [line for line in lines if not line.startswith(_MARKER)]
        if len(kept) < len(lines):
            with self.arrived:
                for line in lines:
                    if line.startswith(_MARKER):
                        token = line[len(_MARKER) :].strip()
                        self.markers.add((token, str(data.get("pid")), bool(data.get("is_err"))))
                self.arrived.notify_all()
        from_fit = str(data.get("actor_name", "")).startswith(_WORKER_CLASS)
        if not self.show_all and from_fit:
            kept = [line for line in kept if not is_chatter(line)]
        if from_fit and self.fit_printer is not None:
            if kept:
                self.fit_printer({**data, "lines": kept})
        elif len(kept) == len(lines):
            self._forward(data)
        elif kept:
            self._forward({**data, "lines": kept})

    def _forward(self, data: dict[str, Any]) -> None:
        """Ray's printing, without its colour codes when the stream is not a terminal."""
        stream = sys.stderr if data.get("is_err") else sys.stdout
        if _COLOR_ENV in os.environ or getattr(stream, "isatty", lambda: False)():
            self.forward(data)
            return
        os.environ[_COLOR_ENV] = "0"  # Ray reads it for each line it prints
        try:
            self.forward(data)
        finally:
            os.environ.pop(_COLOR_ENV, None)


def _dispatcher() -> Any:
    try:
        global_worker_stdstream_dispatcher = ray_private.stdstream_dispatcher()
    except ray_private.RayApiMissing:  # then Ray's own handler prints every line
        return None
    if not hasattr(global_worker_stdstream_dispatcher, "handlers"):
        return None
    return global_worker_stdstream_dispatcher


def _installed() -> _WorkerLogFilter | None:
    dispatcher = _dispatcher()
    for name, handler in getattr(dispatcher, "handlers", []):
        if name == _RAY_HANDLER and isinstance(handler, _WorkerLogFilter):
            return handler
    return None


def install(show_all: bool = False) -> None:
    """Filter the worker lines Ray forwards to this process (a connected driver).

    Idempotent; call it after each connection (``ray.shutdown`` drops the handler, and
    the next ``ray.init`` registers a fresh one). Without Ray's forwarding (for example
    ``log_to_driver=False``) there is nothing to filter and nothing changes.

    Parameters
    ----------
    show_all : bool, default=False
        Forward every line, as Ray does. ``RAYGRID_FRAMEWORK_LOGS=1`` in the environment
        has the same effect.
    """
    dispatcher = _dispatcher()
    lock = getattr(dispatcher, "_lock", None)
    if dispatcher is None or lock is None:
        return
    show_all = show_all or os.environ.get(SHOW_ENV, "").lower() not in ("", "0", "false", "no")
    with lock:
        handlers = []
        for name, handler in dispatcher.handlers:
            if name == _RAY_HANDLER and not isinstance(handler, _WorkerLogFilter):
                handler = _WorkerLogFilter(handler, print_fit_lines)
            if isinstance(handler, _WorkerLogFilter):
                handler.show_all = show_all
                handler.own_job = _hear_warm_workers()
            handlers.append((name, handler))
        dispatcher.handlers = handlers


def _hear_warm_workers() -> str | None:
    """On a kept-alive cluster, have Ray hand this driver every job's lines; its job.

    The warm workers belong to the keeper's job, whose lines Ray forwards to the keeper
    only; this driver takes those of the workers it holds (see ``_WorkerLogFilter``).
    """
    from raygrid.local import kept_alive

    if not kept_alive.joined():
        return None
    try:
        worker = ray_private.global_worker()
        worker._filter_logs_by_job = False
        return worker.current_job_id.hex()
    except (ray_private.RayApiMissing, AttributeError):  # no such switch: lines stay there
        return None


def print_marker(token: str) -> str:
    """In a worker: write a drain marker on stdout and stderr; return this process id."""
    for stream in (sys.stdout, sys.stderr):
        print(f"{_MARKER}{token}", file=stream, flush=True)
    return str(os.getpid())


def drain(workers: Iterable[Any], timeout: float = 0.5) -> bool:
    """Wait until what ``workers`` printed so far has been printed here.

    Each worker writes a marker line on both streams (``FitWorker.mark_logs``); Ray
    forwards a worker's lines in order, so once both markers of a worker have arrived,
    so has everything it wrote before them. The markers themselves are not shown.

    Parameters
    ----------
    workers : iterable of FitWorker actor handles
        The live workers whose output to wait for.
    timeout : float, default=0.5
        Give up after this many seconds.

    Returns
    -------
    bool
        True when every answering worker's output arrived (or nothing is forwarded).
    """
    import ray

    log_filter = _installed()
    workers = list(workers)
    if log_filter is None or not workers:
        return True
    deadline = time.monotonic() + timeout
    token = uuid.uuid4().hex
    refs = [worker.mark_logs.remote(token) for worker in workers]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    pids = set()
    for ref in ready:
        try:
            pids.add(ray.get(ref))
        except ray.exceptions.RayError:
            continue  # a dead worker prints nothing more
    expected = {(token, pid, is_err) for pid in pids for is_err in (False, True)}
    with log_filter.arrived:
        while not expected <= log_filter.markers:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            log_filter.arrived.wait(left)
        done = expected <= log_filter.markers
        log_filter.markers -= expected
    return done and len(pids) == len(refs)
