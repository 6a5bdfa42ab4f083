"""The record of one finished fit: what a worker reports and everything downstream reads.

A :class:`FitRecord` is written once, by the worker that ran the fit, and read by the
collector (verbose lines, progress, journal), by scikit-learn's own result formatting
(:meth:`FitRecord.sklearn_out`), by the journal (:meth:`FitRecord.to_row` /
:meth:`FitRecord.from_row`) and by the ``tasks_`` table. Scores and times mean exactly
what they mean in scikit-learn's ``_fit_and_score`` result.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Scores = float | dict[str, float]

# Fitted attributes copied from each fold's estimator into the record, when present:
# which training loop ran (raygrid.keras), how many iterations/epochs, where early
# stopping kept the weights, learning curves.
FIT_INFO_ATTRIBUTES = (
    "fit_path_",
    "n_iter_",
    "best_epoch_",
    "loss_curve_",
    "validation_loss_curve_",
    "validation_scores_",
)


@dataclass
class FitRecord:
    """One (candidate, split) fit, as the worker that ran it saw it.

    Attributes
    ----------
    index : int
        The task's position in its wave, candidate-major (scikit-learn's order).
    test_scores, train_scores : float or dict of str to float
        As in scikit-learn; ``train_scores`` is None unless asked for.
    fit_time, score_time : float
        Seconds, measured in the worker as scikit-learn measures them.
    n_test_samples : int
        Rows in the split's test part.
    fit_error : str or None
        The traceback of a fit that failed under a numeric ``error_score``.
    start_time, end_time : float
        Wall-clock (epoch seconds) around the whole task in the worker.
    node_id, pid, gpu_ids, worker_rss : where it ran and the worker's memory after it.
    device : str or None
        What the fit ran on, as the worker checked it: ``"CPU"``, ``"GPU:0 NVIDIA A10G"``,
        ``"CPU (logical GPU 0)"``, ``"GPU:0 (unchecked)"`` (see :mod:`raygrid.run.devices`);
        None for records journaled before raygrid recorded it.
    attempts : int
        1 + the times the fit was lost with its worker and run again.
    trained_in : int or None
        With prefix sharing, the task whose training this fit was scored on the way
        through: its index in the wave as the worker reports it, its candidate once the
        driver has it (None: trained on its own).
    continued_from : int or None
        In a halving search over a training-length resource, the value an earlier
        iteration trained this candidate's fit to, which this fit trained on from (None:
        trained from the start).
    resumed : bool
        Read back from a ``results_dir`` journal instead of run.
    fit_info : dict
        Fitted facts of the fold's estimator (see ``FIT_INFO_ATTRIBUTES``), e.g. the
        epochs a Keras network trained for.
    raised : BaseException or None
        Transient: what ``_fit_and_score`` raised (``error_score='raise'``, a broken
        scorer). The driver re-raises it; it is never journaled.
    raised_text : str or None
        Transient: that exception's traceback in the worker.
    warnings : list of tuple
        Transient: ``(message, category, filename, lineno)`` of warnings the fit raised.
    callback_messages : list of tuple
        Transient: ``(listener address, message)`` sent by scikit-learn callbacks.
    journaled : bool
        Transient: the worker already wrote the record to the search's journal.
    state : ray.ObjectRef or None
        Transient: the fitted estimator, kept for a later wave to train on from.
    """

    index: int
    test_scores: Scores
    fit_time: float
    score_time: float
    n_test_samples: int = 0
    train_scores: Scores | None = None
    fit_error: str | None = None
    start_time: float = math.nan
    end_time: float = math.nan
    node_id: str | None = None
    pid: int | None = None
    gpu_ids: list[str] = field(default_factory=list)
    worker_rss: int | None = None
    device: str | None = None
    attempts: int = 1
    trained_in: int | None = None
    continued_from: int | None = None
    resumed: bool = False
    fit_info: dict[str, Any] = field(default_factory=dict)
    raised: BaseException | None = None
    raised_text: str | None = None
    warnings: list[tuple] = field(default_factory=list)
    callback_messages: list[tuple] = field(default_factory=list)
    journaled: bool = False
    state: Any = None

    @property
    def failed(self) -> bool:
        """Whether the fit failed (under a numeric ``error_score``)."""
        return self.fit_error is not None

    def sklearn_out(self) -> dict[str, Any]:
        """The record as one item of the list scikit-learn's ``_format_results`` reads."""
        out = {
            "fit_error": self.fit_error,
            "test_scores": self.test_scores,
            "n_test_samples": self.n_test_samples,
            "fit_time": self.fit_time,
            "score_time": self.score_time,
        }
        if self.train_scores is not None:
            out["train_scores"] = self.train_scores
        return out

    def to_row(self) -> dict[str, Any]:
        """The durable part of the record as one row of plain columns (journal)."""
        return {
            "test_scores": _dump(self.test_scores),
            "train_scores": None if self.train_scores is None else _dump(self.train_scores),
            "fit_time": float(self.fit_time),
            "score_time": float(self.score_time),
            "n_test_samples": int(self.n_test_samples),
            "fit_error": self.fit_error,
            "start_time": float(self.start_time),
            "end_time": float(self.end_time),
            "node_id": self.node_id,
            "gpu_ids": ",".join(self.gpu_ids),
            "pid": self.pid,
            "worker_rss": self.worker_rss,
            "device": self.device,
            "attempts": int(self.attempts),
            "trained_in": self.trained_in,
            "continued_from": self.continued_from,
            "fit_info": _dump(self.fit_info),
        }

    @classmethod
    def from_row(cls, index: int, row: dict[str, Any]) -> FitRecord:
        """A record read back from :meth:`to_row`'s columns (marked ``resumed``)."""
        return cls(
            index=index,
            test_scores=_load(row["test_scores"]),
            train_scores=None if row["train_scores"] is None else _load(row["train_scores"]),
            fit_time=row["fit_time"],
            score_time=row["score_time"],
            n_test_samples=row["n_test_samples"],
            fit_error=row["fit_error"],
            start_time=row["start_time"],
            end_time=row["end_time"],
            node_id=row["node_id"],
            gpu_ids=[g for g in (row["gpu_ids"] or "").split(",") if g],
            pid=row["pid"],
            worker_rss=row["worker_rss"],
            device=row.get("device"),
            attempts=row["attempts"],
            trained_in=row["trained_in"],
            continued_from=row["continued_from"],
            resumed=True,
            fit_info=_load(row["fit_info"]) or {},
        )


# Arrow types of :meth:`FitRecord.to_row`'s columns.
ROW_TYPES = {
    "test_scores": "string",
    "train_scores": "string",
    "fit_time": "float64",
    "score_time": "float64",
    "n_test_samples": "int64",
    "fit_error": "string",
    "start_time": "float64",
    "end_time": "float64",
    "node_id": "string",
    "gpu_ids": "string",
    "pid": "int64",
    "worker_rss": "int64",
    "attempts": "int64",
    "trained_in": "int64",
    "continued_from": "int64",
    "fit_info": "string",
}
# Columns added after release 0.1.0: a journal written without them still reads back
# (their values are None).
OPTIONAL_ROW_TYPES = {"device": "string"}


def fit_info(estimator: Any) -> dict[str, Any]:
    """The ``FIT_INFO_ATTRIBUTES`` a fitted estimator has, as plain JSON-able values."""
    info = {}
    for name in FIT_INFO_ATTRIBUTES:
        value = getattr(estimator, name, None)
        if value is None:
            continue
        if isinstance(value, np.ndarray | list | tuple):
            value = [float(v) for v in np.ravel(np.asarray(value, dtype=float))]
            if name in ("n_iter_", "best_epoch_") and len(value) == 1:
                value = int(value[0])
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str | int | float | list):
            info[name.rstrip("_")] = value
    return info


def _dump(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


def _load(text: str | None) -> Any:
    if text is None:
        return None
    value = json.loads(text)
    if isinstance(value, dict):
        return {k: (math.nan if v is None else v) for k, v in value.items()}
    return value
