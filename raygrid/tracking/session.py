"""One search's trackers, fed from the driver without ever holding the search up.

The engine calls :class:`TrackingSession` at three points: the search started, a batch of
fits finished (also the fits a resumed search read back from its journal), and the search
ended or raised. The session groups fits into finished candidates and hands every event
to a single background thread, which calls the trackers in order; the engine's calls
only append to a queue. A tracker that raises (server down, a write refused) is stopped
for the rest of the search and costs one :class:`TrackingWarning`, issued on the
driver's thread; the search's results never depend on it.
"""

from __future__ import annotations

import queue
import threading
import warnings
from collections import defaultdict
from typing import Any

from raygrid.run.units import Task
from raygrid.store.record import FitRecord
from raygrid.tracking.base import CandidateResult, SearchStart, Tracker, TrackerRun


class TrackingWarning(UserWarning):
    """An experiment tracker stopped logging; the search went on without it.

    See Also
    --------
    Tracker : The trackers that can fail.

    Examples
    --------
    >>> import warnings
    >>> from raygrid.tracking import TrackingWarning
    >>> warnings.simplefilter("error", TrackingWarning)  # make a failing tracker an error
    """


class TrackingSession:
    """The trackers of one ``fit``.

    Parameters
    ----------
    trackers : list of Tracker
        From the search's ``tracking`` option.
    """

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers
        self.runs: list[TrackerRun | None] = [None] * len(trackers)
        self.info: dict[str, Any] = {}
        self._stopped: dict[int, str] = {}
        self._warned: set[int] = set()
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._n_splits = 0
        self._pending: dict[int, dict[int, FitRecord]] = defaultdict(dict)

    @classmethod
    def from_option(cls, option: Any) -> TrackingSession | None:
        """A session for a search's ``tracking`` value (None when it names no tracker).

        Raises
        ------
        TypeError
            If ``option`` is not a Tracker, a list of them, or None.
        """
        if option is None:
            return None
        trackers = list(option) if isinstance(option, list | tuple) else [option]
        for tracker in trackers:
            if not isinstance(tracker, Tracker):
                raise TypeError(
                    "tracking must be a raygrid.tracking tracker (MLflowTracker, "
                    f"TensorBoardTracker), a list of them, or None; got {tracker!r}"
                )
        return cls(trackers) if trackers else None

    def start(self, start: SearchStart) -> None:
        """Open every tracker's run (in the tracking thread)."""
        self._n_splits = start.n_splits
        self._thread = threading.Thread(target=self._work, name="raygrid-tracking", daemon=True)
        self._thread.start()
        self._queue.put(("open", start))

    def fits(self, tasks: list[Task], records: list[FitRecord]) -> None:
        """Take finished fits of one wave; hand on the candidates they complete."""
        done = []
        for record in records:
            task = tasks[record.index]
            splits = self._pending[task.candidate]
            splits[task.split] = record
            if len(splits) == self._n_splits:
                del self._pending[task.candidate]
                ordered = [splits[s] for s in range(self._n_splits)]
                done.append(CandidateResult(task.candidate, task.params, ordered))
        if done:
            self._queue.put(("candidates", done))
        self._warn()

    def end(self, search: Any) -> dict[str, Any]:
        """Log the fitted search, wait for the trackers to finish; where each logged it."""
        self._queue.put(("end", search))
        self._finish()
        return self.info

    def abort(self, error: BaseException) -> None:
        """The search raised ``error``: mark the runs failed, wait for the trackers."""
        if self._thread is None:
            return
        self._queue.put(("abort", f"{type(error).__name__}: {error}"))
        self._finish()

    def _finish(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join()
        self._warn()

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            kind, payload = event
            for i, tracker in enumerate(self.trackers):
                if i in self._stopped or (kind != "open" and self.runs[i] is None):
                    continue
                try:
                    self._call(i, tracker, kind, payload)
                except Exception as exc:
                    self._stopped[i] = f"{type(exc).__name__}: {exc}"

    def _call(self, i: int, tracker: Tracker, kind: str, payload: Any) -> None:
        if kind == "open":
            self.runs[i] = tracker.open(payload)
        elif kind == "candidates":
            self.runs[i].log_candidates(payload)
        elif kind == "end":
            self.info[tracker.name] = self.runs[i].end(payload)
        else:
            self.runs[i].abort(payload)

    def _warn(self) -> None:
        for i, error in list(self._stopped.items()):
            if i in self._warned:
                continue
            self._warned.add(i)
            warnings.warn(
                f"{self.trackers[i]!r} stopped logging after an error; the search goes on "
                f"and its results are not affected. The error: {error}",
                TrackingWarning,
                stacklevel=3,
            )
