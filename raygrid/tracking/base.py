"""What every experiment tracker is handed, and the numbers it logs per candidate.

A tracker is configured by a small object passed as a search's ``tracking`` option
(:class:`Tracker`); each ``fit`` opens one :class:`TrackerRun` from it, on the driver,
and feeds it three kinds of events: the search started (:class:`SearchStart`), some
candidates finished all their splits (:class:`CandidateResult`), the search ended (the
fitted search) or failed.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from raygrid.store.record import FitRecord


@dataclass
class SearchStart:
    """The search a tracker logs, as ``fit`` starts.

    Parameters
    ----------
    search : object
        The search being fitted (its constructor parameters; not fitted yet).
    X, y : array-like
        The data, as ``fit`` received it (for its shape and fingerprint).
    n_slots : int
        How many fits run at once.
    search_key : str or None
        The search's fingerprint when ``results_dir`` is set (see
        :func:`raygrid.store.journal.fingerprint`): what a resumed search shares with the run
        it resumes.
    results_dir : str or None
        The search's ``results_dir``, made absolute.

    See Also
    --------
    Tracker.open : Receives it.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn.svm import SVC
    >>> from raygrid.tracking import SearchStart
    >>> start = SearchStart(GridSearchCV(SVC(), {"C": [1]}), X=[[0.0]], y=[0], n_slots=2)
    >>> start.n_slots
    2
    """

    search: Any
    X: Any
    y: Any
    n_slots: int
    search_key: str | None = None
    results_dir: str | None = None

    @property
    def n_splits(self) -> int:
        """The number of CV splits."""
        return int(self.search.n_splits_)


@dataclass
class CandidateResult:
    """One candidate whose fits on every split have finished.

    Parameters
    ----------
    index : int
        Its row in ``cv_results_``.
    params : dict
        Its parameters.
    records : list of FitRecord
        One per split, in split order.

    See Also
    --------
    TrackerRun.log_candidates : Receives them.

    Examples
    --------
    >>> from raygrid.tracking import CandidateResult
    >>> candidate = CandidateResult(index=0, params={"C": 1.0}, records=[])
    >>> candidate.params
    {'C': 1.0}
    """

    index: int
    params: dict[str, Any]
    records: list[FitRecord]

    @property
    def failed(self) -> bool:
        """Whether every fit of the candidate failed."""
        return all(r.failed for r in self.records)

    def devices(self) -> str:
        """What the candidate's fits ran on (their ``device``), e.g. ``"GPU:0 NVIDIA A10G"``.

        Returns
        -------
        str
            The distinct devices, comma separated, in first-seen order; ``"unknown"`` for
            fits resumed from a journal written before raygrid recorded devices.
        """
        found = [r.device or "unknown" for r in self.records]
        return ", ".join(dict.fromkeys(found))

    def metrics(self) -> dict[str, float]:
        """Collect the candidate's numbers under their ``cv_results_`` names.

        Returns
        -------
        dict of str to float
            Per-split, mean and (population) standard deviation of every test (and
            train) metric, mean and std of fit and score times, and each split's
            ``n_iter`` and ``best_epoch`` when the estimator reported them.
        """
        out: dict[str, float] = {}
        for prefix in ("test", "train"):
            scores = [getattr(r, f"{prefix}_scores") for r in self.records]
            if any(s is None for s in scores):
                continue
            names = list(scores[0]) if isinstance(scores[0], dict) else ["score"]
            for name in names:
                values = [s[name] if isinstance(s, dict) else s for s in scores]
                out.update(_split_stats(values, f"{prefix}_{name}", per_split=True))
        for name in ("fit_time", "score_time"):
            values = [getattr(r, name) for r in self.records]
            out.update(_split_stats(values, name, per_split=False))
        for split, record in enumerate(self.records):
            for name in ("n_iter", "best_epoch"):
                value = record.fit_info.get(name)
                if isinstance(value, int | float):
                    out[f"split{split}_{name}"] = float(value)
        return out

    def curves(self) -> dict[str, list[float]]:
        """Per-epoch curves the fits reported (``loss_curve``, ...), by ``split<k>_<name>``.

        Returns
        -------
        dict of str to list of float
            ``split<k>_<name>`` for each split's curve, and ``mean_<name>``: the mean
            over splits, for the epochs every split reached.
        """
        out: dict[str, list[float]] = {}
        names = {k for r in self.records for k, v in r.fit_info.items() if isinstance(v, list)}
        for name in sorted(names):
            per_split = [r.fit_info.get(name) for r in self.records]
            for split, curve in enumerate(per_split):
                if curve:
                    out[f"split{split}_{name}"] = [float(v) for v in curve]
            if all(per_split):
                length = min(len(c) for c in per_split)
                stacked = np.array([c[:length] for c in per_split], dtype=float)
                out[f"mean_{name}"] = stacked.mean(axis=0).tolist()
        return out


def _split_stats(values: list[Any], name: str, per_split: bool) -> dict[str, float]:
    """Mean and std as scikit-learn's ``_format_results`` computes them."""
    array = np.asarray(values, dtype=float)
    mean = np.average(array)
    out = {
        f"mean_{name}": float(mean),
        f"std_{name}": float(np.sqrt(np.average((array - mean) ** 2))),
    }
    if per_split:
        out.update({f"split{k}_{name}": float(v) for k, v in enumerate(array)})
    return out


class TrackerRun(ABC):
    """One search's logging to one tracker (opened by :meth:`Tracker.open`).

    Its methods run on the driver, in the tracking thread, one at a time; any exception
    they raise stops this tracker for the rest of the search, with one warning.

    See Also
    --------
    Tracker : Opens it.

    Examples
    --------
    >>> from raygrid.tracking import TrackerRun
    >>> class PrintRun(TrackerRun):
    ...     def log_candidates(self, candidates):
    ...         print([c.params for c in candidates])
    ...
    ...     def end(self, search):
    ...         return {}
    >>> PrintRun().end(search=None)
    {}
    """

    @abstractmethod
    def log_candidates(self, candidates: list[CandidateResult]) -> None:
        """Log candidates that finished every split.

        Parameters
        ----------
        candidates : list of CandidateResult
            The candidates, each with all its splits' records.
        """

    @abstractmethod
    def end(self, search: Any) -> dict[str, Any]:
        """Log the finished search; return where it was logged.

        Parameters
        ----------
        search : BaseSearchCV
            The fitted search.

        Returns
        -------
        dict
            Where the search was logged (run ids, directories); the search's
            ``tracking_`` holds it under the tracker's name.
        """

    def abort(self, reason: str) -> None:  # noqa: B027  (optional for trackers)
        """Close the logging of a search that raised or was interrupted.

        Does nothing unless a tracker overrides it.

        Parameters
        ----------
        reason : str
            The exception's text, or why the search stopped.
        """


class Tracker(ABC):
    """Configuration of an experiment tracker: the value of a search's ``tracking``.

    Subclasses hold settings only (they are copied with the search by ``clone``);
    everything of one ``fit`` lives in the :class:`TrackerRun` that :meth:`open`
    returns.

    See Also
    --------
    MLflowTracker : Logs to MLflow.
    TensorBoardTracker : Logs to TensorBoard.

    Examples
    --------
    >>> from raygrid.tracking import Tracker, TrackerRun
    >>> class NullRun(TrackerRun):
    ...     def log_candidates(self, candidates):
    ...         pass
    ...
    ...     def end(self, search):
    ...         return {}
    >>> class NullTracker(Tracker):
    ...     name = "null"
    ...
    ...     def open(self, start):
    ...         return NullRun()
    >>> NullTracker().open(start=None).end(search=None)
    {}
    """

    #: The key of this tracker's entry in the search's ``tracking_``.
    name: str = "tracker"

    @abstractmethod
    def open(self, start: SearchStart) -> TrackerRun:
        """Start logging a search.

        Parameters
        ----------
        start : SearchStart
            What is known of the search when it starts.

        Returns
        -------
        TrackerRun
            The run that logs this search's candidates and end.
        """


def absolute_dir(path: str | os.PathLike | None) -> str | None:
    """``path`` as an absolute path (None stays None, a URI stays as it is)."""
    if path is None or "://" in os.fspath(path):
        return None if path is None else os.fspath(path)
    return os.path.abspath(os.fspath(path))


def plain_value(value: Any) -> bool | int | float | str:
    """A parameter value as a bool, int, float or str (its ``repr`` otherwise)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    return repr(value)
