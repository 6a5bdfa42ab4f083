"""What runs inside a Ray worker: process set-up, fit, score, timing.

Nothing here imports from the driver side but the plain messages it is handed
(:mod:`raygrid.run.messages`). A :class:`FitWorker` lives in one Ray worker process for
many fits (so TensorFlow and friends are imported once per process); the driver hands it
the search's shared data once and each wave's splits once (as object references), then
batches of units' payloads. Each fit is scikit-learn's own
``_fit_and_score``, so slicing, fit params, scoring, ``error_score`` and callbacks behave
exactly as in ``GridSearchCV``. User errors never escape as exceptions: they come back
inside the task's :class:`~raygrid.store.record.FitRecord`, and the driver decides what
``error_score`` makes of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import pickle
import time
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import psutil
import ray
import sklearn
from ray import cloudpickle as ray_pickle
from sklearn.base import clone
from sklearn.model_selection._validation import _fit_and_score, _score
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.validation import _check_method_params, _num_samples

from raygrid.local import quiet
from raygrid.run import devices, fusion, gpu_memory, node_data, prefix
from raygrid.run.callbacks import Relay
from raygrid.run.messages import JournalTarget, RefitResult, SearchData, WaveData
from raygrid.store.journal import write_rows
from raygrid.store.record import FitRecord, fit_info


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


@contextlib.contextmanager
def caller_context(data: SearchData) -> Iterator[list[warnings.WarningMessage]]:
    """Run a fit in the caller's context; yield the warnings it raised, to ship back.

    Filters whose action is ``"error"`` apply as the caller set them (the warning raises
    inside the fit, which ``error_score`` then records as failed); every other warning
    is recorded, whatever the caller's filter says, for the driver to re-issue, where the
    caller's filters decide again whether and how it shows.
    """
    context = data.context
    with (
        sklearn.config_context(**context.config) if context else contextlib.nullcontext(),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.resetwarnings()
        for action, message, category, module, lineno in (
            context.warning_filters if context else []
        ):
            action = "error" if action == "error" else "always"
            if message is None and module is None:
                warnings.simplefilter(action, category, lineno, append=True)
            else:
                message = getattr(message, "pattern", message) or ""
                module = getattr(module, "pattern", module) or ""
                warnings.filterwarnings(action, message, category, module, lineno, append=True)
        warnings.simplefilter("always", append=True)
        yield caught


def fit_and_score(
    data: SearchData,
    train: np.ndarray,
    test: np.ndarray,
    params: dict[str, Any],
    callback_args: dict[str, Any],
) -> FitRecord:
    """Fit and score one candidate on one split with scikit-learn's own ``_fit_and_score``.

    Returns a :class:`~raygrid.store.record.FitRecord` (its ``index`` is set by the caller).
    Warnings the fit raises are recorded for the driver to show; an exception that
    scikit-learn would let through (``error_score='raise'``, a failing multimetric
    scorer) is caught and returned in ``raised`` for the driver to re-raise.
    """
    with caller_context(data) as caught:
        start = time.time()
        try:
            out = _fit_and_score(
                clone(data.estimator),
                data.X,
                data.y,
                scorer=data.scorer,
                train=train,
                test=test,
                verbose=0,
                parameters=params,
                fit_params=data.fit_params,
                score_params=data.score_params,
                return_train_score=data.return_train_score,
                return_n_test_samples=True,
                return_times=True,
                return_estimator=True,
                error_score=data.error_score,
                **callback_args,
            )
        except BaseException as exc:  # noqa: BLE001  (what the estimator raised is the user's)
            record = FitRecord(
                index=-1,
                test_scores=math.nan,
                fit_time=time.time() - start,
                score_time=0.0,
                raised=_portable(exc),
                raised_text=traceback.format_exc(),
            )
        else:
            record = FitRecord(
                index=-1,
                test_scores=_plain_scores(out["test_scores"]),
                train_scores=_plain_scores(out.get("train_scores")),
                fit_time=out["fit_time"],
                score_time=out["score_time"],
                n_test_samples=int(out["n_test_samples"]),
                fit_error=gpu_memory.explain_out_of_memory(out["fit_error"]),
                fit_info=fit_info(out["estimator"]) if out["fit_error"] is None else {},
            )
    record.warnings = _portable_warnings(caught)
    return record


_END = object()


def fit_and_score_prefixes(
    data: SearchData,
    split: tuple[np.ndarray, np.ndarray],
    members: list[tuple[int, dict[str, Any]]],
    shared: str,
    resume: Any = None,
    keep: bool = False,
) -> list[FitRecord]:
    """Train once to the largest value of ``shared``; score each member on the way.

    The members' parameters differ only in ``shared`` and are sorted by it. Each record
    is what ``_fit_and_score`` would give for that member alone; its ``fit_time`` is the
    training time until its value was reached. ``resume`` is a fitted state of the same
    candidate at a smaller value to train on from; with ``keep``, the last record
    carries the final state (in Ray's object store) for a later wave to resume.
    """
    train, test = split
    if resume is None:
        estimator, continued_from = clone(data.estimator), None
    else:
        estimator, continued_from = resume, resume.get_params()[shared]
    estimator.set_params(**clone(members[-1][1], safe=False))
    parts = {
        "train": _safe_split(estimator, data.X, data.y, train),
        "test": _safe_split(estimator, data.X, data.y, test, train),
        "fit_params": _check_method_params(data.X, params=data.fit_params, indices=train),
        "score_train": _check_method_params(data.X, params=data.score_params, indices=train),
        "score_test": _check_method_params(data.X, params=data.score_params, indices=test),
    }
    with caller_context(data) as caught:
        records = _train_and_score(data, estimator, parts, members, shared, resume is not None)
    for record in records:
        record.trained_in = members[-1][0] if len(members) > 1 else None
        record.continued_from = continued_from
    records[-1].warnings = _portable_warnings(caught)
    if keep and len(records) == len(members) and not any(r.failed for r in records):
        records[-1].state = ray.put(estimator)
    return records


def _train_and_score(data, estimator, parts, members, shared, resume) -> list[FitRecord]:
    """The training loop of :func:`fit_and_score_prefixes`: a record at each value reached."""
    values = [params[shared] for _, params in members]
    scoring = {"train": parts["score_train"], "test": parts["score_test"]}
    records: list[FitRecord] = []
    start, scoring_time = time.time(), 0.0
    steps = prefix.fit_prefixes(
        estimator, shared, values, *parts["train"], parts["fit_params"], resume=resume
    )
    for position, (index, _) in enumerate(members):
        try:
            if next(steps, _END) is _END:
                raise RuntimeError(f"prefix_fit stopped before {shared}={values[position]}")
        except Exception as exc:
            fit_time = time.time() - start - scoring_time
            return records + [_failed(data, i, fit_time, exc) for i, _ in members[position:]]
        except BaseException as exc:  # noqa: BLE001  (KeyboardInterrupt, SystemExit from fit)
            return [*records, _raised(index, time.time() - start - scoring_time, exc)]
        fit_time = time.time() - start - scoring_time
        try:
            record = _score_fitted(data, estimator, parts["test"], parts["train"], scoring)
        except Exception as exc:  # what _fit_and_score lets through: the search stops
            record = _raised(index, fit_time, exc)
        record.index, record.fit_time = index, fit_time
        scoring_time += record.score_time
        records.append(record)
        if record.raised_text is not None:
            break
    return records


def fit_and_score_fused(
    data: SearchData, splits: list, members: list[tuple[int, dict[str, Any], int]]
) -> list[FitRecord]:
    """Train the members' fits together as one stack (the estimator's fusion hook, see
    :mod:`raygrid.run.fusion`), then score each on its split.

    Each record's ``fit_time`` is the stack's training time shared out evenly.
    """
    jobs = [(params, splits[split][0]) for _, params, split in members]
    with caller_context(data) as caught:
        start = time.time()
        try:
            fitted = fusion.fit_fused(data, jobs)
        except Exception as exc:
            fit_time = (time.time() - start) / len(members)
            records = [_failed(data, index, fit_time, exc) for index, _, _ in members]
        else:
            fit_time = (time.time() - start) / len(members)
            records = []
            for (index, _, split), estimator in zip(members, fitted, strict=True):
                train, test = splits[split]
                X_train, y_train = _safe_split(estimator, data.X, data.y, train)
                X_test, y_test = _safe_split(estimator, data.X, data.y, test, train)
                scoring = {
                    "train": _check_method_params(data.X, params=data.score_params, indices=train),
                    "test": _check_method_params(data.X, params=data.score_params, indices=test),
                }
                record = _score_fitted(
                    data, estimator, (X_test, y_test), (X_train, y_train), scoring
                )
                record.index, record.fit_time = index, fit_time
                records.append(record)
    records[-1].warnings = _portable_warnings(caught)
    return records


def _resumable(ref: Any) -> Any:
    """The fitted state behind ``ref``, or None when it is gone (its worker was lost)."""
    if ref is None:
        return None
    try:
        return ray.get(ref, timeout=60)
    except (ray.exceptions.RayError, TimeoutError):
        return None  # trained from the start instead: the same result, only slower


def _score_fitted(data: SearchData, estimator: Any, test: tuple, train: tuple, scoring: dict):
    """Score ``estimator`` as ``_fit_and_score`` does after a successful fit."""
    start = time.time()
    test_scores = _score(estimator, *test, data.scorer, scoring["test"], data.error_score)
    score_time = time.time() - start
    train_scores = None
    if data.return_train_score:
        train_scores = _score(estimator, *train, data.scorer, scoring["train"], data.error_score)
    return FitRecord(
        index=-1,
        test_scores=_plain_scores(test_scores),
        train_scores=_plain_scores(train_scores),
        fit_time=0.0,
        score_time=score_time,
        n_test_samples=_num_samples(test[0]),
        fit_info=fit_info(estimator),
    )


def _failed(data: SearchData, index: int, fit_time: float, exc: Exception) -> FitRecord:
    """A member whose value the shared training never reached, as scikit-learn records it."""
    if data.error_score == "raise":
        return _raised(index, fit_time, exc)
    error = data.error_score
    scores = (
        dict.fromkeys(data.scorer._scorers, error) if hasattr(data.scorer, "_scorers") else error
    )
    return FitRecord(
        index=index,
        test_scores=scores,
        train_scores=(dict(scores) if isinstance(scores, dict) else scores)
        if data.return_train_score
        else None,
        fit_time=fit_time,
        score_time=0.0,
        fit_error=traceback.format_exc(),
    )


def _raised(index: int, fit_time: float, exc: BaseException) -> FitRecord:
    """A record carrying the exception the driver must re-raise (call in ``except``)."""
    return FitRecord(
        index=index,
        test_scores=math.nan,
        fit_time=fit_time,
        score_time=0.0,
        raised=_portable(exc),
        raised_text=traceback.format_exc(),
    )


def _plain_scores(scores: Any) -> Any:
    """NumPy scalars as Python floats, so records pickle and journal as plain data."""
    if isinstance(scores, dict):
        return {name: _plain_scores(value) for name, value in scores.items()}
    if isinstance(scores, np.generic):
        return scores.item()
    return scores


def _portable_warnings(caught: list[warnings.WarningMessage]) -> list[tuple]:
    """Warnings as (message, category, filename, lineno) for ``warnings.warn_explicit``."""
    return [(str(w.message), w.category, w.filename, w.lineno) for w in caught]


def _portable(exc: BaseException) -> BaseException | None:
    """The exception itself if it survives pickling, so the driver can re-raise it."""
    try:
        ray_pickle.loads(ray_pickle.dumps(exc))
    except Exception:
        return None
    return exc


def refit(data: SearchData, params: dict[str, Any], callback_args: dict[str, Any]) -> RefitResult:
    """Fit a clone of the estimator with ``params`` on all the data, as ``BaseSearchCV`` does.

    With scikit-learn callbacks, ``callback_args`` holds the search (``caller``) and the
    refit's context (``callback_ctx``); the hooks run around the fit as in scikit-learn.
    """
    # Arrays read from Ray's object store are read-only; the user's refit gets its own.
    X, y = _writable(data.X), _writable(data.y)
    ctx, caller = callback_args.get("callback_ctx"), callback_args.get("caller")
    metadata = _callback_metadata(data.fit_params)
    estimator = clone(data.estimator).set_params(**clone(params, safe=False))
    with caller_context(data) as caught:
        start = time.time()
        try:
            with ctx.propagate_callback_context(estimator) if ctx else contextlib.nullcontext():
                if ctx is not None:
                    ctx.call_on_fit_task_begin(estimator=caller, X=X, y=y, metadata=metadata)
                if y is None:
                    estimator.fit(X, **data.fit_params)
                else:
                    estimator.fit(X, y, **data.fit_params)
            refit_time = time.time() - start
            if ctx is not None:
                ctx.call_on_fit_task_end(estimator=caller, X=X, y=y, metadata=metadata)
        except BaseException as exc:  # noqa: BLE001  (what the estimator raised is the user's)
            result = RefitResult(None, time.time() - start, _portable(exc), traceback.format_exc())
        else:
            # Shipped as bytes so that the driver's copy owns writable arrays instead of
            # read-only views into Ray's object store.
            result = RefitResult(ray_pickle.dumps(estimator), refit_time)
    result.warnings = _portable_warnings(caught)
    return result


def _callback_metadata(fit_params: dict[str, Any]) -> dict[str, Any] | None:
    """What scikit-learn hands callbacks as ``metadata``: the sample weights, if any."""
    weight = fit_params.get("sample_weight")
    return None if weight is None else {"sample_weight": weight}


def _writable(array: Any) -> Any:
    if isinstance(array, np.ndarray) and not array.flags.writeable:
        return array.copy()
    return array


class FitWorker:
    """One Ray worker process that runs many fits for one slot of CPUs and GPUs.

    The driver creates it with the slot's resources; it keeps the current search's
    shared data, and the current wave's splits, deserialised between calls, so a call
    carries only task tuples.
    """

    def __init__(self, num_cpus: float, num_gpus: float) -> None:
        prepare_process(num_cpus, num_gpus)
        try:
            gpu_memory.limit_if_shared(num_gpus)
        except Exception as exc:  # a broken TensorFlow install fails the fits, not the worker
            warnings.warn(
                f"raygrid: could not limit TensorFlow's GPU memory: {exc!r}", stacklevel=1
            )
        self._data_key: str | None = None
        self._data: SearchData | None = None
        self._wave_key: str | None = None
        self._wave: WaveData | None = None
        self._relay: Relay | None = None
        self._caller: Any = None
        self._contexts: list = []
        self._fits = 0
        self._device: tuple[str | None, str] = (None, "")

    def _load(self, data_ref: list) -> SearchData:
        key = data_ref[0].hex()
        if key != self._data_key:
            self._data = None  # drop the previous search's arrays first
            data = ray.get(data_ref[0])
            if data.node_data is not None:
                X, y = node_data.fetch(data.X, data.node_data)
                data = dataclasses.replace(data, X=X, y=y, node_data=None)
            self._data = data
            self._data_key = key
        return self._data

    def _load_wave(self, wave_ref: list) -> WaveData:
        key = wave_ref[0].hex()
        if key != self._wave_key:
            if self._relay is not None:
                self._relay.close()
            self._wave, self._relay, self._caller, self._contexts = None, None, None, []
            wave = ray.get(wave_ref[0])
            # The relay must be in place before any callback is unpickled.
            if wave.listeners:
                self._relay = Relay(wave.listeners)
            if wave.callbacks is not None:
                self._caller, self._contexts = _load_callbacks(wave.callbacks)
            self._wave, self._wave_key = wave, key
        return self._wave

    def _callback_args(self, index: int) -> dict[str, Any]:
        if self._caller is None:
            return {}
        return {"caller": self._caller, "callback_ctx": self._contexts[index]}

    def preload(self, modules: list[str]) -> dict[str, Any]:
        """Import those of ``modules`` that are installed, before any search needs them.

        A kept-alive cluster's warm workers import TensorFlow this way, once.

        Parameters
        ----------
        modules : list of str
            Module names; one that fails to import is skipped.

        Returns
        -------
        dict
            This worker's process id (``pid``) and the modules imported (``loaded``).
        """
        loaded = []
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # not installed (or broken): fits that need it will say so
                continue
            loaded.append(name)
        return {"pid": os.getpid(), "loaded": loaded}

    def run(
        self, data_ref: list, wave_ref: list, units: list[tuple], attempts: dict | None = None
    ) -> list:
        """Fit and score each unit of the wave; one record per task.

        A unit is ``(kind, [(index, params, split), ...], options)``: ``"fit"``, one task;
        ``"prefix"``, tasks differing only in the training-length parameter named in
        ``options = (shared, resume, keep)``, trained once (see :mod:`raygrid.run.prefix`),
        from the state ``resume`` if given, keeping the final state in Ray's object
        store if ``keep``; ``"fused"``, fits trained together as one stack of networks
        by the estimator's fusion hook (see :mod:`raygrid.run.fusion`).
        ``attempts`` says which attempt this is of each task, by index.

        With a journal, the finished records are journaled here, so that they survive the
        driver; a record is marked ``journaled`` when that worked.
        """
        wave = self._load_wave(wave_ref)  # first: it may relay the data's callbacks
        data = self._load(data_ref)
        where = _placement()
        device = self._checked_device(data, where[2])
        records = []
        for kind, members, options in units:
            started = time.time()
            if kind == "fit":
                index, params, split = members[0]
                train, test = wave.splits[split]
                done = [fit_and_score(data, train, test, params, self._callback_args(index))]
                done[0].index = index
            elif kind == "prefix":
                shared, resume, keep = options
                split = wave.splits[members[0][2]]
                done = fit_and_score_prefixes(
                    data, split, [m[:2] for m in members], shared, _resumable(resume), keep
                )
            else:
                done = fit_and_score_fused(data, wave.splits, members)
            for record in done:
                record.start_time, record.end_time = started, time.time()
                record.node_id, record.pid, record.gpu_ids = where
                record.device = device
                record.worker_rss = _rss()
                record.attempts = (attempts or {}).get(record.index, 1)
                if self._relay is not None:
                    record.callback_messages = self._relay.take()
            records.extend(done)
            self._fits += 1
        if wave.journal is not None:
            tasks = {i: (split, params) for _, members, _ in units for i, params, split in members}
            _journal(wave.journal, records, tasks)
        return records

    def _checked_device(self, data: SearchData, gpu_ids: list[str]) -> str:
        """This worker's device for the search's estimator, checked once per search.

        Raises :class:`~raygrid.run.devices.DeviceError` when the worker holds GPUs the
        estimator's framework cannot see.
        """
        if self._device[0] != self._data_key:
            where = f"{ray.util.get_node_ip_address()} (node {ray.get_runtime_context().get_node_id()[:8]})"
            device = devices.worker_device(data.estimator, gpu_ids, where, data.allow_logical_gpus)
            self._device = (self._data_key, device)
        return self._device[1]

    def refit(self, data_ref: list, params: dict, callbacks: bytes | None, listeners: list):
        """Fit the best candidate on all data; see :func:`refit`."""
        if callbacks is None and not listeners:
            return refit(self._load(data_ref), params, {})
        relay = Relay(listeners)  # before any callback is unpickled
        try:
            data = self._load(data_ref)
            args = {}
            if callbacks is not None:
                caller, ctx = _load_callbacks(callbacks)
                args = {"caller": caller, "callback_ctx": ctx}
            result = refit(data, params, args)
            result.callback_messages = relay.take()
        finally:
            relay.close()
        return result

    def mark_logs(self, token: str) -> str:
        """Write a marker on stdout and stderr; see :func:`raygrid.local.quiet.drain`."""
        return quiet.print_marker(token)

    def info(self) -> dict[str, Any]:
        """Where this worker runs and what it holds (for tests and reports)."""
        node_id, pid, gpu_ids = _placement()
        return {
            "node_id": node_id,
            "pid": pid,
            "gpu_ids": gpu_ids,
            "fits": self._fits,
            "rss": _rss(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }


def _journal(target: JournalTarget, records: list[FitRecord], tasks: dict[int, tuple]) -> None:
    """Write the batch's records to ``results_dir`` (a directory this node may not see)."""
    rows = [
        (
            target.keys[r.index],
            target.candidates[r.index],
            *tasks[r.index],
            _as_journaled(target, r),
        )
        for r in records
        if r.raised is None
    ]
    try:
        write_rows(target.directory, rows)
    except (OSError, ValueError):  # not reachable from here (ValueError: pyarrow's URI)
        return  # the driver journals them
    for record in records:
        record.journaled = record.raised is None


def _as_journaled(target: JournalTarget, record: FitRecord) -> FitRecord:
    """The record as the journal keeps it: ``trained_in`` as a candidate, not a wave index."""
    if record.trained_in is None:
        return record
    return dataclasses.replace(record, trained_in=target.candidates[record.trained_in])


def _load_callbacks(blob: bytes) -> tuple[Any, Any]:
    """The search and its callback context(s), pickled by the driver for this worker.

    The search is marked as the worker's copy of the driver's search in fit, so that
    whatever callbacks send back with it arrives on the driver as that search itself.
    """
    token, caller, contexts = pickle.loads(blob)
    caller.__dict__["_raygrid_driver_token"] = token
    return caller, contexts


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _placement() -> tuple[str, int, list[str]]:
    """(node id, pid, GPU ids) of this worker."""
    ctx = ray.get_runtime_context()
    gpu_ids = [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])]
    return ctx.get_node_id(), os.getpid(), gpu_ids
