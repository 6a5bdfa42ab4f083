"""The messages between the driver and its workers: plain data, pickled by Ray.

The driver places a search's :class:`SearchData` in Ray's object store once, and each
wave's :class:`WaveData` (its CV splits, callbacks and :class:`JournalTarget`) once; calls
then carry only units' payloads (see :class:`raygrid.run.units.WorkUnit`). Fits come back
as :class:`~raygrid.store.record.FitRecord`; the refit as a :class:`RefitResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SearchData:
    """Everything a search's fits share; placed in Ray's object store once per search."""

    estimator: Any
    X: Any
    y: Any
    scorer: Any
    fit_params: dict[str, Any]
    score_params: dict[str, Any]
    return_train_score: bool
    error_score: Any
    allow_logical_gpus: bool = False
    # With X a lazy handle (raygrid.data), the search's token: workers read X and y
    # once per node (see raygrid.run.node_data).
    node_data: str | None = None
    context: CallerContext | None = None


@dataclass
class CallerContext:
    """The caller's context at ``fit``, applied around every fit as scikit-learn's
    ``Parallel`` applies it in its workers: scikit-learn's configuration
    (``sklearn.get_config()``) and the warning filters (``warnings.filters``)."""

    config: dict[str, Any]
    warning_filters: list[tuple]


@dataclass
class WaveData:
    """What one wave of candidates adds: its CV splits (row indices into X, so a
    subsampled halving iteration ships indices, never rows), and, when scikit-learn
    callbacks are set, the pickled ``(search, contexts)`` they run with.
    """

    splits: list[tuple[np.ndarray, np.ndarray]]
    callbacks: bytes | None = None
    listeners: list = field(default_factory=list)
    journal: JournalTarget | None = None


@dataclass
class JournalTarget:
    """Where a worker journals the fits it finishes: ``results_dir`` and, by task index,
    each task's journal key and candidate index."""

    directory: str
    keys: list[str]
    candidates: list[int]


@dataclass
class RefitResult:
    """The refit of the best candidate on all the data, as the worker reports it."""

    estimator: bytes | None
    refit_time: float
    raised: BaseException | None = None
    raised_text: str | None = None
    warnings: list[tuple] = field(default_factory=list)
    callback_messages: list[tuple] = field(default_factory=list)
