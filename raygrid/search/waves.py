"""One ``fit``'s waves: :class:`_SearchRun`, the state behind ``evaluate_candidates``.

scikit-learn's ``_run_search(evaluate_candidates)`` hands candidates to
``evaluate_candidates`` in one or more waves (a grid: one; successive halving: one per
iteration). Each wave here: splits materialised once, one task per (candidate, split)
planned (:mod:`raygrid.run.plan`) into units of work, run on the search's pool of warm
workers (:mod:`raygrid.run.execute`), records collected (:mod:`raygrid.run.collect`:
journal, progress, verbose lines, warnings, callbacks) and turned into ``cv_results_`` by
scikit-learn's own ``_format_results``. The run also refits the best candidate in a slot,
and builds ``tasks_``.
"""

from __future__ import annotations

import copy
import pickle
import time
import uuid
import warnings
import weakref
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import ray
from ray import cloudpickle as ray_pickle
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.model_selection._validation import (
    _insert_error_scores,
    _warn_or_raise_about_fit_failures,
)

from raygrid.run import execute, node_data, plan, prefix, progress
from raygrid.run.callbacks import deliver, listener_handles, search_callbacks
from raygrid.run.collect import Collector, raise_from_worker, show_warnings
from raygrid.run.messages import JournalTarget, WaveData
from raygrid.run.units import Task, WorkUnit
from raygrid.search import validate
from raygrid.store import journal as journal_lib
from raygrid.store import live
from raygrid.store import results as results_tables
from raygrid.store.record import FitRecord
from raygrid.tracking import SearchStart
from raygrid.tracking.session import TrackingSession

# Searches in ``fit`` in this process, by token: where workers' copies resolve to.
_searches_in_fit: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def search_in_fit(token: str) -> Any:
    """The search in ``fit`` in this process that ``token`` names."""
    return _searches_in_fit[token]


def search_space(search: Any) -> Any:
    """What the search draws candidates from: its grid or its distributions."""
    for name in ("param_grid", "param_distributions"):
        if hasattr(search, name):
            return getattr(search, name)
    return None


class _SearchRun:
    """One ``fit``'s state across its waves: the pool, the data and what came back.

    The pool is acquired, and the data placed in Ray's object store, when the first wave
    has passed its checks; leaving the ``with`` block releases the pool.
    """

    def __init__(self, search, slot, n_slots, data, routed, tracking=None) -> None:
        self.search = search
        self.slot = slot
        self.pool: execute.WorkerPool | None = None
        self.n_slots = n_slots
        self.data = data
        self.data_ref: ray.ObjectRef | None = None
        self.routed = routed
        self.candidates: list[dict[str, Any]] = []
        self.out: list[dict[str, Any]] = []
        self.more_results: dict[str, list] = defaultdict(list)
        self.tasks: list[Task] = []
        self.records: list[FitRecord] = []
        self.results: dict[str, Any] = {}
        callbacks = search_callbacks(search)
        # With callbacks anywhere (search or estimator), fits run in callback contexts.
        self.with_callbacks = bool(callbacks)
        self.listeners = listener_handles(callbacks)
        # A halving search over a training-length resource continues each survivor's
        # fits from the states the previous iteration kept (see raygrid.run.prefix).
        self.continued: str | None = None
        self.states: dict[tuple, tuple[int, Any]] = {}
        self.token = uuid.uuid4().hex
        _searches_in_fit[self.token] = search
        self.journal = self._open_journal()
        self.live = live.current()
        self.tracking: TrackingSession | None = tracking
        if tracking is not None:
            tracking.start(
                SearchStart(
                    search,
                    data.X,
                    data.y,
                    n_slots,
                    getattr(self, "search_key", None),
                    None if self.journal is None else self.journal.path,
                )
            )

    def __enter__(self) -> _SearchRun:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self.pool is not None:
            self.pool.release()
        if self.data.node_data is not None:
            node_data.release(self.data.node_data)
        if exc is not None and self.tracking is not None:
            self.tracking.abort(exc)

    def _start(self) -> None:
        if self.pool is None:
            self.pool = execute.WorkerPool.acquire(self.slot, self.n_slots)
        if self.data_ref is None:
            self.data_ref = ray.put(self.data)

    def pause(self) -> None:
        """Hand the workers back while the driver runs user code that may search too.

        A callable ``refit`` may run searches of its own (scikit-learn's tests do); they
        take these workers warm, and the refit takes a pool again afterwards.
        """
        if self.pool is not None:
            self.pool.release()
            self.pool = None

    def evaluate_candidates(self, candidate_params, cv=None, more_results=None, callback_ctx=None):
        """Fit and score every candidate on every split; return the ``cv_results_`` so far.

        The function scikit-learn's ``_run_search`` calls, with scikit-learn's meaning for
        each argument (``cv`` is a halving iteration's subsampling splitter).
        """
        search = self.search
        cv = cv or search._checked_cv_orig
        candidate_params = list(candidate_params)
        n_splits = search.n_splits_
        X, y = self.data.X, self.data.y
        splits = [
            (np.asarray(train), np.asarray(test))
            for train, test in cv.split(X, y, **self.routed.splitter.split)
        ]
        if len(splits) != n_splits:
            raise ValueError(
                "cv.split and cv.get_n_splits return inconsistent results. "
                f"Expected {n_splits} splits, got {len(splits)}"
            )
        if search.verbose > 0:
            print(progress.start_line(n_splits, len(candidate_params)))
        tasks = plan.plan_tasks(candidate_params, n_splits, len(self.candidates))
        if not tasks:
            raise ValueError(
                "No fits were performed. Was the CV iterator empty? Were there no candidates?"
            )
        validate.check_candidate_params(search.estimator, candidate_params)

        records = self._run_wave(tasks, splits, callback_ctx)
        out = [record.sklearn_out() for record in records]
        _warn_or_raise_about_fit_failures(out, search.error_score)
        if callable(search.scoring):
            _insert_error_scores(out, search.error_score)
        self.candidates.extend(candidate_params)
        self.out.extend(out)
        self.tasks.extend(tasks)
        self.records.extend(records)
        for key, value in (more_results or {}).items():
            self.more_results[key].extend(value)
        self.results = search._format_results(
            self.candidates, n_splits, self.out, self.more_results
        )
        return self.results

    def _wave_data(self, tasks: list[Task], splits, keys, callback_ctx) -> WaveData:
        """What the wave's workers share: its splits, journal target and callbacks."""
        wave = WaveData(splits, listeners=self.listeners)
        if keys is not None:
            # Workers journal what they finish (an absolute path or a URI), so it survives
            # the driver.
            wave.journal = JournalTarget(self.journal.path, keys, [t.candidate for t in tasks])
        if callback_ctx is not None and self.with_callbacks:
            contexts = [
                callback_ctx.subcontext(task_name="candidate-split-evaluation", task_id=i)
                for i in range(len(tasks))
            ]
            wave.callbacks = ray_pickle.dumps((self.token, self.search, contexts))
        return wave

    def _run_wave(self, tasks: list[Task], splits, callback_ctx) -> list[FitRecord]:
        search = self.search
        keys = self._journal_keys(tasks, splits)
        wave = self._wave_data(tasks, splits, keys, callback_ctx)
        collect = Collector(
            tasks,
            keys,
            self.journal,
            search.error_score,
            search.verbose,
            search._ray_option("max_consecutive_failures"),
        )
        to_run = collect.resume_from_journal()
        on_records = collect
        if self.tracking is not None:
            self.tracking.fits(tasks, [r for r in collect.records if r is not None])
        if self.tracking is not None or self.live is not None:

            def on_records(batch: list[FitRecord]) -> None:
                collect(batch)
                if self.tracking is not None:
                    self.tracking.fits(tasks, batch)
                if self.live is not None and self.live.due():
                    self._write_partial(tasks, collect.records)

        collect.show_progress(search._ray_option("progress"))
        units = self._units(to_run)
        n_slots = max(1, min(self.n_slots, len(units)))
        pre_dispatch = getattr(search, "pre_dispatch", "2*n_jobs")
        max_in_flight = validate.resolve_pre_dispatch(pre_dispatch, n_slots, len(tasks))
        if not units:  # every fit was journaled: no worker is needed for this wave
            collect.close()
            return self._after_wave(tasks, collect)
        self._start()
        try:
            execute.run_tasks(
                self.pool,
                n_slots,
                (self.data_ref, ray.put(wave)),
                plan.submission_order(units),
                max_in_flight=max_in_flight,
                max_retries=search._ray_option("max_retries"),
                on_records=on_records,
                fit_timeout=search._ray_option("fit_timeout"),
                on_timeout=self._timed_out(splits),
            )
        finally:
            collect.close()
        return self._after_wave(tasks, collect)

    def _after_wave(self, tasks: list[Task], collect: Collector) -> list[FitRecord]:
        """Keep the states a halving search's next iteration continues from; the records."""
        if self.continued is not None:
            param = self.continued
            self.states = {
                plan.prefix_key(task, param): (task.params[param], record.state)
                for task, record in zip(tasks, collect.records, strict=True)
                if record.state is not None
            }
        return collect.records

    def _timed_out(self, splits) -> Any:
        """What a fit stopped by ``fit_timeout`` reports: a failure, as ``_fit_and_score``
        would record an exception in the fit (or a ``TimeoutError`` under 'raise')."""
        data = self.data

        def record(task: Task, seconds: float) -> FitRecord:
            what = (
                f"the fit of candidate {task.candidate} {task.params} on split {task.split} "
                f"timed out after {seconds:g} s (fit_timeout={seconds:g}); raygrid stopped it "
                "and replaced its Ray worker."
            )
            if data.error_score == "raise":
                raise TimeoutError(what)
            fill = data.error_score
            if isinstance(data.scorer, _MultimetricScorer):
                fill = dict.fromkeys(data.scorer._scorers, data.error_score)
            now = time.time()
            return FitRecord(
                index=task.index,
                test_scores=fill,
                train_scores=copy.copy(fill) if data.return_train_score else None,
                fit_time=seconds,
                score_time=0.0,
                n_test_samples=len(splits[task.split][1]),
                fit_error=f"TimeoutError: {what}\n",
                start_time=now - seconds,
                end_time=now,
            )

        return record

    def _units(self, tasks: list[Task]) -> list[WorkUnit]:
        """How the wave's tasks run: fused, continuing earlier fits, sharing prefixes, alone."""
        search = self.search
        if self.with_callbacks or not tasks:
            return list(tasks)
        fused: list[WorkUnit] = []
        if search._ray_option("fuse"):
            fused, tasks = plan.fuse_fits(tasks, search.estimator)
        if not search._ray_option("share_prefixes") or not tasks:
            return fused + tasks
        resource = getattr(search, "resource", "n_samples")
        param = prefix.shared_param(search.estimator, tasks[0].params)
        if param == resource and prefix.can_resume(search.estimator, tasks[0].params, param):
            self.continued = resource
            return fused + plan.continue_fits(tasks, resource, self.states)
        return fused + plan.share_prefixes(tasks, search.estimator)

    def refit(self, params: dict[str, Any], refit_ctx: Any) -> tuple[Any, float]:
        """Fit the best candidate on all the data in a slot; (estimator, refit time)."""
        blob = None
        if self.with_callbacks:
            blob = ray_pickle.dumps((self.token, self.search, refit_ctx))
        callbacks = (blob, self.listeners) if self.with_callbacks else None
        self._start()
        result = execute.refit_on_pool(
            self.pool, self.data_ref, params, self.search._ray_option("max_retries"), callbacks
        )
        show_warnings(result.warnings)
        deliver(result.callback_messages)
        if result.raised_text is not None:
            raise_from_worker(result.raised, result.raised_text)
        return pickle.loads(result.estimator), result.refit_time

    def _write_partial(self, tasks: list[Task], records: list[FitRecord | None]) -> None:
        """Write the results so far to the live output (see :mod:`raygrid.store.live`)."""
        search = self.search
        n_splits = search.n_splits_
        candidates, out = list(self.candidates), list(self.out)
        done_tasks, done_records = list(self.tasks), list(self.records)
        for start in range(0, len(tasks), n_splits):
            chunk = slice(start, start + n_splits)
            group = list(zip(tasks[chunk], records[chunk], strict=True))
            if any(r is None or r.raised is not None for _, r in group):
                continue
            candidates.append(group[0][0].params)
            out.extend(r.sklearn_out() for _, r in group)
            done_tasks.extend(t for t, _ in group)
            done_records.extend(r for _, r in group)
        self.live.written()
        if not candidates:
            return
        try:
            if callable(search.scoring):
                _insert_error_scores(out, search.error_score)
            results = search._format_results(candidates, n_splits, out, {})
            fits = [(t.candidate, t.split, t.params) for t in done_tasks]
            frame = results_tables.tasks_frame(fits, done_records)
            summary = {"search": type(search).__name__, "partial": True, "fits": len(out)}
            results_tables.save_results(self.live.path, results, frame, summary)
        except Exception as exc:  # the search goes on; its final write is what counts
            warnings.warn(
                f"raygrid: could not refresh the results at {self.live.path} "
                f"({type(exc).__name__}: {exc}); they are written when the search ends.",
                RuntimeWarning,
                stacklevel=2,
            )

    def tasks_frame(self) -> pd.DataFrame:
        """Every fit of every wave as ``tasks_`` (see :func:`raygrid.store.results.tasks_frame`)."""
        fits = [(t.candidate, t.split, t.params) for t in self.tasks]
        return results_tables.tasks_frame(fits, self.records, dict(self.more_results))

    def _open_journal(self) -> journal_lib.Journal | None:
        directory = self.search._ray_option("results_dir")
        if directory is None:
            return None
        data = self.data
        self.search_key = journal_lib.fingerprint(
            data.estimator,
            data.X,
            data.y,
            data.fit_params,
            data.score_params,
            data.scorer,
            data.return_train_score,
        )
        description = {
            "search": type(self.search).__name__,
            "estimator": repr(self.search.estimator),
            "param_grid": repr(search_space(self.search)),
        }
        journal = journal_lib.Journal(directory, self.search_key, description)
        journal.compact()  # a resumed search reads a few large parts, not many small ones
        return journal

    def finish(self) -> None:
        """After the search's last fit: merge the journal's parts into a few large ones."""
        if self.journal is not None:
            self.journal.compact()

    def _journal_keys(self, tasks: list[Task], splits) -> list[str] | None:
        if self.journal is None:
            return None
        split_keys = journal_lib.split_fingerprints(splits)
        return journal_lib.task_keys(
            self.search_key,
            [(t.candidate, t.params, t.split) for t in tasks],
            split_keys,
            self.journal.format,
        )
