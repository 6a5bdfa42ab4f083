"""The Ray engine behind every raygrid search: :class:`RaySearchMixin`.

scikit-learn's searches share one seam: ``BaseSearchCV.fit`` prepares the data, the CV
splitter and the scorers, then calls the subclass's ``_run_search(evaluate_candidates)``,
which decides which candidates to try (a grid, random samples, successive-halving
iterations) and hands them to ``evaluate_candidates`` in one or more waves. raygrid keeps
that seam and replaces what is behind it:

1. validate: what scikit-learn validates before fitting, plus raygrid's own options;
2. per search: a Ray session, a pool of warm workers (one per CPU/GPU slot) and the data
   (X, y, fit params, scorers) placed in Ray's object store once;
3. per wave (:class:`_SearchRun`): splits materialised once, one task per (candidate,
   split) planned and run on the pool, records collected (journal, progress, verbose
   lines, warnings, callbacks), and turned into ``cv_results_`` by scikit-learn's own
   ``_format_results``;
4. the best candidate chosen by scikit-learn's rule and refitted in a slot like the
   fits'.

Anything a scikit-learn search does not refuse up front, raygrid does not either: whether
the estimator accepts the data is found out by the fits, which fail under
``error_score`` exactly as in scikit-learn.
"""

from __future__ import annotations

import copy
import os
import pickle
import time
import uuid
import warnings
import weakref
from collections import defaultdict
from inspect import signature
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
import ray
from ray import cloudpickle as ray_pickle
from sklearn.base import _fit_context, clone, is_classifier
from sklearn.metrics._scorer import _MultimetricScorer
from sklearn.model_selection import check_cv
from sklearn.model_selection._search import BaseSearchCV
from sklearn.model_selection._validation import (
    _insert_error_scores,
    _warn_or_raise_about_fit_failures,
)
from sklearn.utils import indexable
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_method_params, check_is_fitted

from raygrid.data import ParquetData
from raygrid.local import quiet, shipping
from raygrid.run import execute, node_data, plan, prefix, progress
from raygrid.run.callbacks import deliver, listener_handles, search_callbacks
from raygrid.run.collect import Collector, raise_from_worker, show_warnings
from raygrid.run.worker import JournalTarget, SearchData, WaveData
from raygrid.search import lazy_data, validate
from raygrid.store import journal as journal_lib
from raygrid.store import live
from raygrid.store import results as results_tables
from raygrid.store.record import FitRecord
from raygrid.tracking import SearchStart, Tracker
from raygrid.tracking.session import TrackingSession

# raygrid's own options, shared by every search class: their defaults (used when a
# user's own search class does not declare them) and their constraints.
RAY_OPTION_DEFAULTS: dict[str, Any] = {
    "num_cpus_per_task": 1,
    "num_gpus_per_task": 0,
    "max_retries": 3,
    "ray_address": None,
    "results_dir": None,
    "max_consecutive_failures": None,
    "progress": "auto",
    "share_prefixes": True,
    "fuse": False,
    "tracking": None,
    "fit_timeout": None,
}
RAY_OPTION_CONSTRAINTS: dict[str, list] = {
    "num_cpus_per_task": [Interval(Real, 0, None, closed="neither")],
    "num_gpus_per_task": [Interval(Real, 0, None, closed="left")],
    "max_retries": [Interval(Integral, 0, None, closed="left")],
    "ray_address": [str, None],
    "results_dir": [str, os.PathLike, None],
    "max_consecutive_failures": [Interval(Integral, 1, None, closed="left"), None],
    "progress": ["boolean", StrOptions({"auto"})],
    "share_prefixes": ["boolean"],
    "fuse": ["boolean"],
    "tracking": [Tracker, list, None],
    "fit_timeout": [Interval(Real, 0, None, closed="neither"), None],
}


class RaySearchMixin(BaseSearchCV):
    """Runs a scikit-learn search's fits on Ray, behind ``_run_search``.

    Put it after a ``BaseSearchCV`` subclass in the bases of a class, so that the
    subclass's own ``fit`` (if any) and ``_run_search`` run, and this ``fit`` replaces
    ``BaseSearchCV.fit``::

        class RayMySearchCV(MySearchCV, RaySearchMixin):
            pass

    raygrid's options below are read from the instance when its class declares them in
    ``__init__`` (as raygrid's own search classes do), and take their defaults otherwise.

    Parameters
    ----------
    num_cpus_per_task : float, default=1
        CPUs reserved for each fit (Ray ``num_cpus``).
    num_gpus_per_task : float, default=0
        GPUs reserved for each fit (Ray ``num_gpus``); a fraction shares one GPU.
    max_retries : int, default=3
        How often a fit is retried after its worker process or node died. Errors raised
        by the estimator are never retried: they follow ``error_score``.
    ray_address : str, default=None
        Ray cluster to connect to when Ray is not initialised yet; ``None`` reads
        ``RAY_ADDRESS`` and otherwise starts a local Ray.
    results_dir : str or path-like, default=None
        A directory where every finished fit is journaled as it arrives (Parquet). A
        later ``fit`` of the same search (same estimator, scoring, data and fit params)
        with the same ``results_dir`` reuses the journaled fits and runs only the
        missing ones; the ``cv_results_`` are those of an uninterrupted run.
    max_consecutive_failures : int, default=None
        Stop the search once this many fits in a row have failed, raising an error with
        the first of their tracebacks. ``None`` never stops (scikit-learn's behaviour).
    progress : bool or 'auto', default='auto'
        A progress bar on the driver (fits done, failures, ETA, best mean score so far):
        ``'auto'`` shows it when stderr is a terminal or in a notebook. It never
        changes what ``verbose`` prints.
    share_prefixes : bool, default=True
        Fits of one split that differ only in a training-length parameter (``epochs``
        of raygrid.keras, ``n_estimators`` of scikit-learn's forests and gradient
        boosting, or any estimator implementing the protocol of :mod:`raygrid.run.prefix`)
        are trained once, to the largest value, and scored at each smaller one on the
        way: the same ``cv_results_`` bit for bit, for the training cost of the largest
        fits alone. Only where that equivalence is exact; ``False`` fits each alone.
    fuse : bool, default=False
        Train raygrid.keras fits of one architecture and batch size (any candidates and
        folds differing in learning rate, dropout rate, epochs or seed) together, as one
        stack of networks in one compiled loop (:mod:`raygrid.keras.fused`). Faster for
        small networks; scores can differ from unfused training in the last bits (see
        that module), so it is opt-in.
    tracking : Tracker or list of Tracker, default=None
        Experiment trackers the search is logged to as fits finish, from the driver
        (:class:`~raygrid.tracking.MLflowTracker`,
        :class:`~raygrid.tracking.TensorBoardTracker`); where each logged it is in the
        fitted ``tracking_``. A tracker that fails costs one
        :class:`~raygrid.tracking.TrackingWarning`, never the search's results.
    fit_timeout : float, default=None
        Seconds one fit (of one candidate on one split) may run. A fit still running
        then is stopped (its Ray worker is killed and replaced) and fails under
        ``error_score`` with "timed out after N s" in its error; with
        ``error_score='raise'`` the search raises ``TimeoutError``. With a timeout, each
        worker runs one fit per call, so searches of many tiny fits run slower. ``None``
        lets fits run as long as they take.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from raygrid import RaySearchMixin
    >>> class MyGridSearchCV(GridSearchCV):
    ...     def _run_search(self, evaluate_candidates):
    ...         results = evaluate_candidates([{"C": 1.0}])
    ...         evaluate_candidates([{"C": 10.0 if results["mean_test_score"][0] < 0.9 else 0.1}])
    >>> class RayMyGridSearchCV(MyGridSearchCV, RaySearchMixin):
    ...     pass
    """

    def _ray_option(self, name: str) -> Any:
        return getattr(self, name, RAY_OPTION_DEFAULTS[name])

    def __reduce_ex__(self, protocol):
        # A worker's copy of a search in fit (what callbacks receive as ``estimator``)
        # goes back to the driver as the search itself, as if the fit had run there.
        token = self.__dict__.get("_raygrid_driver_token")
        if token is not None:
            return _search_in_fit, (token,)
        return super().__reduce_ex__(protocol)

    @_fit_context(
        # The estimator is validated by its own fit, in the workers.
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y=None, **params):
        """Run fit with all sets of parameters, each (candidate, fold) fit a Ray task.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_samples)
            Training data (anything the estimator accepts: N-D arrays, sparse
            matrices, DataFrames, lists of documents, ...); a precomputed kernel for
            pairwise estimators.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Target; None for unsupervised learning.
        **params : dict of str -> object
            Parameters for the estimator's ``fit``, the scorer and the CV splitter
            (``groups``), routed and sliced per fold exactly as scikit-learn does.

        Returns
        -------
        object
            The fitted search, ``self``.
        """
        # 1. Validate what scikit-learn validates before fitting, and raygrid's options.
        slot = self._slot()
        scorers, refit_metric = self._get_scorers()
        # A lazy X (raygrid.data) is read by the workers; here, y alone if the splits need it.
        y = lazy_data.driver_target(X, y, self.cv, self.estimator)
        X, y = indexable(X, y)
        params = _check_method_params(X, params=params)
        routed = self._get_routed_params_for_fit(params)
        sample_weight = params.get("sample_weight")
        metadata = None if sample_weight is None else {"sample_weight": sample_weight}
        root_ctx = self._init_callback_context(
            max_subtasks=1 + (self.refit is not False)
        ).call_on_fit_task_begin(estimator=self, X=X, y=y, metadata=metadata)
        self._checked_cv_orig = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        self._check_input_parameters(X=X, y=y, split_params=routed.splitter.split)
        self.n_splits_ = self._checked_cv_orig.get_n_splits(X, y, **routed.splitter.split)
        validate.check_picklable("estimator", self.estimator)
        validate.check_picklable("scoring", scorers)
        validate.check_picklable("fit params", validate.non_array_values(params))

        # 2. A Ray session, warm workers, and the search's data in the object store once.
        data = self._connect_and_describe(X, y, scorers, routed)
        tracking = TrackingSession.from_option(self._ray_option("tracking"))
        with _SearchRun(self, slot, self._n_slots(slot), data, routed, tracking) as run:
            # 3. The subclass decides which candidates to evaluate, in waves.
            if "callback_ctx" in signature(self._run_search).parameters:
                self._run_search(run.evaluate_candidates, callback_ctx=root_ctx)
            else:
                self._run_search(run.evaluate_candidates)
            # 4. The best candidate, by scikit-learn's rule, refitted in a slot.
            self._choose_best_and_refit(run, refit_metric, root_ctx)
            run.finish()

        self.scorer_ = scorers._scorers if hasattr(scorers, "_scorers") else scorers
        self.cv_results_ = run.results
        self.tasks_ = run.tasks_frame()
        if tracking is not None:
            self.tracking_ = tracking.end(self)
        root_ctx.call_on_fit_task_end(estimator=self, X=X, y=y, metadata=metadata)
        return self

    def _slot(self) -> execute.SlotSpec:
        """The resources of one slot, checked."""
        num_cpus = float(self._ray_option("num_cpus_per_task"))
        num_gpus = float(self._ray_option("num_gpus_per_task"))
        validate.check_task_resources(num_cpus, num_gpus)
        return execute.SlotSpec(num_cpus, num_gpus)

    def _n_slots(self, slot: execute.SlotSpec) -> int:
        """How many slots this search uses (``n_jobs`` against what the cluster holds)."""
        capacity = execute.count_slots(slot.num_cpus, slot.num_gpus)
        if self.n_jobs in (None, -1):
            capacity = execute.default_slots(capacity)
        return validate.resolve_n_slots(self.n_jobs, capacity)

    def _connect_and_describe(self, X, y, scorers, routed) -> SearchData:
        """Join or start Ray (shipping the user's own modules where needed); the data."""
        if not execute.connect(self._ray_option("ray_address")):
            shipping.ship_local_modules(self.estimator, scorers, routed)
        quiet.install(show_all=self.verbose >= 10)  # framework start-up lines too
        return SearchData(
            estimator=clone(self.estimator),
            X=X,
            y=y,
            scorer=scorers,
            fit_params=dict(routed.estimator.fit),
            score_params=dict(routed.scorer.score),
            return_train_score=self.return_train_score,
            error_score=self.error_score,
            # Workers replace a lazy X (and y, the target read here) by the file's.
            node_data=uuid.uuid4().hex if isinstance(X, ParquetData) else None,
        )

    def _choose_best_and_refit(self, run: _SearchRun, refit_metric: str, root_ctx) -> None:
        """``best_index_``, ``best_score_``, ``best_params_`` and the refit, as scikit-learn."""
        results = run.results
        first_test_score = run.out[0]["test_scores"]
        self.multimetric_ = isinstance(first_test_score, dict)
        if callable(self.scoring) and self.multimetric_:
            self._check_refit_for_multimetric(first_test_score)
            refit_metric = self.refit
        if self.refit or not self.multimetric_:
            if callable(self.refit):
                run.pause()
            self.best_index_ = self._select_best_index(self.refit, refit_metric, results)
            if not callable(self.refit):
                self.best_score_ = results[f"mean_test_{refit_metric}"][self.best_index_]
            self.best_params_ = results["params"][self.best_index_]
        if self.refit:
            refit_ctx = root_ctx.subcontext(task_name="refit-with-best-params")
            self.best_estimator_, self.refit_time_ = run.refit(self.best_params_, refit_ctx)
            if hasattr(self.best_estimator_, "feature_names_in_"):
                self.feature_names_in_ = self.best_estimator_.feature_names_in_

    def results_frame(self) -> pd.DataFrame:
        """``cv_results_`` as a DataFrame: one column per parameter, best rank first.

        Returns
        -------
        pandas.DataFrame
            Sorted by the refit metric's rank (by the first metric when ``refit`` is not
            a metric name).
        """
        check_is_fitted(self, "cv_results_")
        rank_by = f"rank_test_{self.refit}" if isinstance(self.refit, str) else None
        return results_tables.results_frame(self.cv_results_, rank_by)

    def save_results(self, path: str | os.PathLike) -> None:
        """Write ``cv_results_`` and ``tasks_`` as Parquet under ``path`` (a directory).

        The layout is the one ``raygrid report PATH`` reads.

        Parameters
        ----------
        path : str or path-like
            The directory; created if missing.
        """
        check_is_fitted(self, "cv_results_")
        summary = {
            "search": type(self).__name__,
            "estimator": repr(self.estimator),
            "param_grid": _search_space(self),
            "scoring": sorted(self.scorer_)
            if isinstance(self.scorer_, dict)
            else repr(self.scoring),
            "refit": self.refit if isinstance(self.refit, bool | str) else repr(self.refit),
            "n_splits": self.n_splits_,
            "best_index": int(getattr(self, "best_index_", -1)),
            "best_params": getattr(self, "best_params_", None),
        }
        results_tables.save_results(path, self.cv_results_, self.tasks_, summary)


# Searches in ``fit`` in this process, by token: where workers' copies resolve to.
_searches_in_fit: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _search_in_fit(token: str) -> Any:
    return _searches_in_fit[token]


def _search_space(search: Any) -> Any:
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
        self.tasks: list[plan.Task] = []
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

    def _run_wave(self, tasks: list[plan.Task], splits, callback_ctx) -> list[FitRecord]:
        search = self.search
        wave = WaveData(splits, listeners=self.listeners)
        keys = self._journal_keys(tasks, splits)
        if keys is not None:
            # Workers journal what they finish (an absolute path or a URI), so it survives
            # the driver.
            wave.journal = JournalTarget(self.journal.path, keys, [t.candidate for t in tasks])
        if callback_ctx is not None and self.with_callbacks:
            contexts = [
                callback_ctx.subcontext(task_name="candidate-split-evaluation", task_id=i)
                for i in range(len(tasks))
            ]
            wave.callbacks = ray_pickle.dumps((self.token, search, contexts))
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

    def _after_wave(self, tasks: list[plan.Task], collect: Collector) -> list[FitRecord]:
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

        def record(task: plan.Task, seconds: float) -> FitRecord:
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

    def _units(self, tasks: list[plan.Task]) -> list:
        """How the wave's tasks run: fused, continuing earlier fits, sharing prefixes, alone."""
        search = self.search
        if self.with_callbacks or not tasks:
            return tasks
        fused = []
        if search._ray_option("fuse"):
            units = plan.fuse_fits(tasks, search.estimator)
            fused = [u for u in units if isinstance(u, plan.FusedGroup)]
            tasks = [u for u in units if isinstance(u, plan.Task)]
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

    def _write_partial(self, tasks: list[plan.Task], records: list[FitRecord | None]) -> None:
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
            frame = results_tables.tasks_frame(done_tasks, done_records)
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
        return results_tables.tasks_frame(self.tasks, self.records, dict(self.more_results))

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
            "param_grid": repr(_search_space(self.search)),
        }
        journal = journal_lib.Journal(directory, self.search_key, description)
        journal.compact()  # a resumed search reads a few large parts, not many small ones
        return journal

    def finish(self) -> None:
        """After the search's last fit: merge the journal's parts into a few large ones."""
        if self.journal is not None:
            self.journal.compact()

    def _journal_keys(self, tasks: list[plan.Task], splits) -> list[str] | None:
        if self.journal is None:
            return None
        split_keys = journal_lib.split_fingerprints(splits)
        return journal_lib.task_keys(
            self.search_key,
            [(t.candidate, t.params, t.split) for t in tasks],
            split_keys,
            self.journal.format,
        )
