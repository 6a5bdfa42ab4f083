"""Write a search as TensorBoard HParams summaries: one session per candidate.

Needs the ``tensorboard`` package (``pip install "raygrid[tensorboard]"``), imported
only when this tracker is used. Summaries are built as protocol buffers and written with
TensorBoard's own event file writer; no TensorFlow graph or ``tf.summary`` is involved.

Layout under ``logdir``::

    events.out.tfevents.*        the experiment: every parameter and metric (at the end)
    candidate-0000/events.*      a session: its parameters, its metrics at step 0,
                                 per-epoch curves (``split0_loss_curve``, ...) by epoch,
                                 and the text ``raygrid.device`` (what its fits ran on)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from raygrid.tracking.base import (
    CandidateResult,
    SearchStart,
    Tracker,
    TrackerRun,
    absolute_dir,
    plain_value,
)

#: The text summary holding what a candidate's fits ran on (``CandidateResult.devices``).
DEVICE_TAG = "raygrid.device"


@dataclass
class TensorBoardTracker(Tracker):
    """Write the HParams plugin's summaries of a search under ``logdir``.

    ``tensorboard --logdir LOGDIR`` then shows the grid in the HParams dashboard's
    table, parallel-coordinates and scatter views: one session per candidate with its
    parameters, per-split, mean and std scores and fit times, and its per-epoch curves
    in the scalars dashboard.

    Parameters
    ----------
    logdir : str or path-like
        The log directory; created if missing. A candidate already written there (a
        resumed search) is not written again.

    Examples
    --------
    >>> from raygrid.tracking import TensorBoardTracker
    >>> tracker = TensorBoardTracker("runs/seed")
    """

    logdir: str | os.PathLike

    name = "tensorboard"

    def open(self, start: SearchStart) -> TensorBoardRun:
        """Check that TensorBoard is installed and create ``logdir``.

        Parameters
        ----------
        start : SearchStart
            As for :meth:`Tracker.open` (unused: the summaries are written as
            candidates finish).

        Returns
        -------
        TensorBoardRun
            The run that writes the search's summaries.
        """
        return TensorBoardRun(absolute_dir(self.logdir))


class TensorBoardRun(TrackerRun):
    """One search written to a TensorBoard log directory."""

    def __init__(self, logdir: str) -> None:
        from tensorboard.summary.writer.event_file_writer import (  # noqa: F401 (checks it)
            EventFileWriter,
        )

        self.logdir = logdir
        os.makedirs(logdir, exist_ok=True)
        self.hparams: dict[str, set] = {}
        self.metrics: set[str] = set()

    def log_candidates(self, candidates: list[CandidateResult]) -> None:
        """One session directory per candidate."""
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        for candidate in candidates:
            session = os.path.join(self.logdir, _session_name(candidate.index))
            hparams = {k: plain_value(v) for k, v in candidate.params.items()}
            for k, v in hparams.items():
                self.hparams.setdefault(k, set()).add(v)
            metrics = candidate.metrics()
            self.metrics.update(metrics)
            if os.path.isdir(session):
                continue
            start = min(r.start_time for r in candidate.records)
            start = start if start == start else None  # NaN: not known
            summaries = [(0, hparams_pb(hparams, _session_name(candidate.index), start))]
            summaries += [(0, _scalar(k, v)) for k, v in metrics.items()]
            summaries.append((0, _text(DEVICE_TAG, candidate.devices())))
            for key, values in candidate.curves().items():
                summaries += [(step, _scalar(key, v)) for step, v in enumerate(values, 1)]
            _write(session, summaries)

    def end(self, search: Any) -> dict[str, Any]:
        """The experiment summary: every parameter with the values tried, every metric."""
        from tensorboard.plugins.hparams import summary_v2 as hp

        hparams = [
            hp.HParam(name, _domain(values)) for name, values in sorted(self.hparams.items())
        ]
        metrics = [hp.Metric(name) for name in sorted(self.metrics)]
        _write(self.logdir, [(0, hp.hparams_config_pb(hparams, metrics))])
        return {"logdir": self.logdir}


def _session_name(index: int) -> str:
    """The directory (and HParams trial id) of candidate ``index``."""
    return f"candidate-{index:04d}"


def _domain(values: set) -> Any:
    """A discrete domain when every value tried has one type (bool, number or str)."""
    from tensorboard.plugins.hparams.summary_v2 import Discrete

    kinds = {bool if isinstance(v, bool) else str if isinstance(v, str) else float for v in values}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    return Discrete(sorted(kind(v) for v in values))


def _scalar(tag: str, value: float) -> Any:
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb

    return scalar_pb(tag, value)


def _text(tag: str, value: str) -> Any:
    from tensorboard.plugins.text.summary_v2 import text_pb

    return text_pb(tag, value)


def _write(directory: str, summaries: list[tuple[int, Any]]) -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(directory)
    now = time.time()
    try:
        for step, summary in summaries:
            writer.add_event(Event(wall_time=now, step=step, summary=summary))
    finally:
        writer.close()
