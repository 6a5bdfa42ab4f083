"""What runs inside a Ray worker: process set-up, fit, score, timing.

Nothing here imports from the driver side. A :class:`FitWorker` lives in one Ray worker
process for many fits (so TensorFlow and friends are imported once per process); the
driver hands it the search's shared data once (as an object reference) and then batches
of plain task tuples. User errors never escape as exceptions: they come back inside the
task's record, and the driver decides what ``error_score`` makes of them.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from raygrid import quiet


def prepare_process(num_cpus: float, num_gpus: float) -> None:
    """Set up the process environment before any framework is imported.

    Must run before TensorFlow is imported in this process (a fresh Ray worker has not).

    * CPU-only workers are hidden from every GPU: Ray sets ``CUDA_VISIBLE_DEVICES`` for
      workers that hold GPUs but leaves it untouched for the others, which would let
      TensorFlow grab every device of the node.
    * GPU workers let TensorFlow grow its memory on demand instead of reserving the whole
      device, so workers holding a fraction of one GPU can share it.
    * TensorFlow's thread pools get the worker's CPU count (Ray already sets
      ``OMP_NUM_THREADS``; TensorFlow reads its own variables).
    """
    if num_gpus <= 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    else:
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    threads = str(max(1, int(num_cpus)))
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    os.environ["TF_NUM_INTRAOP_THREADS"] = threads
    os.environ["TF_NUM_INTEROP_THREADS"] = threads
    # 3 also hides the "failed call to cuInit" error every CPU-only worker would print.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@dataclass
class SearchData:
    """Everything a search's tasks share; shipped once per search through Ray's store."""

    estimator: Any
    X: Any
    y: Any
    splits: list[tuple[np.ndarray, np.ndarray]]
    scorer: Any
    fit_params: dict[str, Any]
    score_params: dict[str, Any]
    return_train_score: bool
    error_score: Any
    pairwise: bool = False


def fit_and_score(data: SearchData, params: dict[str, Any], split: int) -> dict[str, Any]:
    """Clone the estimator, set ``params``, fit on one split and score it.

    Returns a record: test (and train) scores, fit and score times, and, when the fit
    failed, the formatted traceback (and, when the driver must re-raise it, the
    exception itself under ``exception``).
    Scores of a failed fit are ``error_score``; warnings raised during the fit are
    returned so that the driver can show them.
    """
    from sklearn.base import clone

    train, test = data.splits[split]
    record: dict[str, Any] = {"fit_error": None, "exception": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator = clone(data.estimator).set_params(**clone(params, safe=False))
        fit_params = slice_params(data.X, data.fit_params, train)
        score_params_train = slice_params(data.X, data.score_params, train)
        score_params_test = slice_params(data.X, data.score_params, test)

        start = time.time()
        X_train, y_train = split_xy(data, train)
        X_test, y_test = split_xy(data, test, train)
        try:
            if y_train is None:
                estimator.fit(X_train, **fit_params)
            else:
                estimator.fit(X_train, y_train, **fit_params)
        except Exception as exc:
            record["fit_time"] = time.time() - start
            record["score_time"] = 0.0
            record["fit_error"] = traceback.format_exc()
            if data.error_score == "raise":
                record["exception"] = _portable(exc)
            record["test_scores"] = data.error_score
            if data.return_train_score:
                record["train_scores"] = data.error_score
        else:
            record["fit_time"] = time.time() - start
            try:
                record["test_scores"] = _score(
                    estimator, X_test, y_test, data.scorer, score_params_test, data.error_score
                )
                record["score_time"] = time.time() - start - record["fit_time"]
                if data.return_train_score:
                    record["train_scores"] = _score(
                        estimator,
                        X_train,
                        y_train,
                        data.scorer,
                        score_params_train,
                        data.error_score,
                    )
            except Exception as exc:
                # Only reached with error_score='raise' (or a malformed score).
                record["score_time"] = time.time() - start - record["fit_time"]
                record["fit_error"] = traceback.format_exc()
                record["exception"] = _portable(exc)
                record["score_failed"] = True
        record["n_test_samples"] = _num_samples(X_test)
    record["warnings"] = _portable_warnings(caught)
    return record


def _portable_warnings(caught: list[warnings.WarningMessage]) -> list[tuple]:
    """Warnings as (message, category, filename, lineno) for ``warnings.warn_explicit``."""
    return [(str(w.message), w.category, w.filename, w.lineno) for w in caught]


def _portable(exc: BaseException) -> BaseException | None:
    """The exception itself if it survives pickling, so the driver can re-raise it."""
    import cloudpickle

    try:
        cloudpickle.loads(cloudpickle.dumps(exc))
    except Exception:
        return None
    return exc


def refit(data: SearchData, params: dict[str, Any]) -> dict[str, Any]:
    """Fit a clone of the estimator with ``params`` on all the data.

    Returns a record with the fitted ``estimator`` (pickled) and ``refit_time``, or the
    ``exception`` (and its ``error`` text) that the fit raised; plus its warnings.
    """
    import cloudpickle
    from sklearn.base import clone

    out: dict[str, Any] = {"estimator": None, "exception": None, "error": None}
    # Arrays read from Ray's object store are read-only; the user's refit gets its own.
    X, y = _writable(data.X), _writable(data.y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimator = clone(data.estimator).set_params(**clone(params, safe=False))
        start = time.time()
        try:
            if y is None:
                estimator.fit(X, **data.fit_params)
            else:
                estimator.fit(X, y, **data.fit_params)
        except Exception as exc:
            out["error"] = traceback.format_exc()
            out["exception"] = _portable(exc)
        else:
            # Shipped as bytes so that the driver's copy owns writable arrays instead of
            # read-only views into Ray's object store.
            out["estimator"] = cloudpickle.dumps(estimator)
        out["refit_time"] = time.time() - start
    out["warnings"] = _portable_warnings(caught)
    return out


def _writable(array: Any) -> Any:
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        return array.copy()
    return array


def _score(estimator, X, y, scorer, score_params, error_score):
    """Score like scikit-learn: failures become ``error_score`` plus a warning."""
    multimetric = hasattr(scorer, "_scorers")
    try:
        scores = (
            scorer(estimator, X, **score_params)
            if y is None
            else scorer(estimator, X, y, **score_params)
        )
    except Exception:
        if multimetric or error_score == "raise":
            raise
        warnings.warn(
            "Scoring failed. The score on this train-test partition for these parameters"
            f" will be set to {error_score}. Details: \n{traceback.format_exc()}",
            UserWarning,
            stacklevel=2,
        )
        scores = error_score
    if isinstance(scores, dict):
        scores = dict(scores)
        for name, value in scores.items():
            if multimetric and isinstance(value, str):
                # A multimetric scorer reports a failing metric as its traceback text.
                warnings.warn(
                    "Scoring failed. The score on this train-test partition for these "
                    f"parameters will be set to {error_score}. Details: \n{value}",
                    UserWarning,
                    stacklevel=2,
                )
                value = error_score
            scores[name] = _as_number(value, name)
        return scores
    return _as_number(scores, scorer)


def _as_number(score, scorer_name):
    if hasattr(score, "item"):
        with contextlib.suppress(ValueError):
            score = score.item()
    if not isinstance(score, numbers.Number):
        raise ValueError(
            f"scoring must return a number, got {score} ({type(score)}) instead. "
            f"(scorer={scorer_name})"
        )
    return score


def split_xy(data: SearchData, indices: np.ndarray, train_indices: np.ndarray | None = None):
    """Rows ``indices`` of X and y; for pairwise estimators, columns are the train rows."""
    from sklearn.utils import _safe_indexing

    if data.pairwise:
        cols = indices if train_indices is None else train_indices
        X = _safe_indexing(_safe_indexing(data.X, indices), cols, axis=1)
    else:
        X = _safe_indexing(data.X, indices)
    y = None if data.y is None else _safe_indexing(data.y, indices)
    return X, y


def slice_params(X: Any, params: dict[str, Any], indices: np.ndarray) -> dict[str, Any]:
    """Slice every per-sample array in ``params`` to ``indices``; keep the rest as is."""
    from sklearn.utils import _safe_indexing

    n = _num_samples(X)
    return {
        key: _safe_indexing(value, indices) if is_per_sample(value, n) else value
        for key, value in params.items()
    }


def is_per_sample(value: Any, n_samples: int) -> bool:
    """True when ``value`` is an array-like with one entry per sample."""
    if value is None or isinstance(value, (str, bytes, dict)) or np.isscalar(value):
        return False
    if not (hasattr(value, "__len__") or hasattr(value, "shape")):
        return False
    try:
        return _num_samples(value) == n_samples
    except TypeError:
        return False


def _num_samples(x: Any) -> int:
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) > 0 and isinstance(shape[0], numbers.Integral):
        return int(shape[0])
    if hasattr(x, "__len__"):
        return len(x)
    raise TypeError(f"Expected a sequence or array-like, got {type(x)}")


class FitWorker:
    """One Ray worker process that runs many fits for one slot of CPUs and GPUs.

    The driver creates it with the slot's resources; it keeps the current search's
    shared data deserialised between calls, so a call carries only task tuples.
    """

    def __init__(self, num_cpus: float, num_gpus: float) -> None:
        prepare_process(num_cpus, num_gpus)
        self._data_key: str | None = None
        self._data: SearchData | None = None
        self._fits = 0
        self._gpu_check = quiet.GpuCheck(num_gpus)

    def _load(self, data_ref: list) -> SearchData:
        import ray

        key = data_ref[0].hex()
        if key != self._data_key:
            self._data = None  # drop the previous search's arrays first
            self._data = ray.get(data_ref[0])
            self._data_key = key
        return self._data

    def run(self, data_ref: list, tasks: list[tuple[int, dict, int]]) -> list[dict]:
        """Fit and score each ``(task_index, params, split)``; one record per task."""
        data = self._load(data_ref)
        where = _placement()
        records = []
        for index, params, split in tasks:
            started = time.time()
            record = fit_and_score(data, params, split)
            record.update(where, index=index, start_time=started, end_time=time.time())
            record["worker_rss"] = _rss()
            records.append(record)
            self._fits += 1
        self._gpu_check.after_fits()
        return records

    def refit(self, data_ref: list, params: dict) -> dict[str, Any]:
        """Fit the best candidate on all data; see :func:`refit`."""
        return refit(self._load(data_ref), params)

    def mark_logs(self, token: str) -> str:
        """Write a marker on stdout and stderr; see :func:`raygrid.quiet.drain`."""
        return quiet.print_marker(token)

    def info(self) -> dict[str, Any]:
        """Where this worker runs and what it holds (for tests and reports)."""
        out = _placement()
        out["fits"] = self._fits
        out["rss"] = _rss()
        out["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        return out


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _placement() -> dict[str, Any]:
    import ray

    ctx = ray.get_runtime_context()
    return {
        "pid": os.getpid(),
        "node_id": ctx.get_node_id(),
        "gpu_ids": [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
