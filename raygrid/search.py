"""``RayGridSearchCV``: scikit-learn's ``GridSearchCV``, with every fit a Ray task.

``fit`` reads top to bottom as the search's data flow:

1. validate: parameters, scoring, data, CV splits, grid, resources — before any work;
2. plan: one :class:`~raygrid.plan.Task` per (candidate, split);
3. execute: data into Ray's object store once, tasks onto CPU/GPU slots;
4. aggregate: records into ``cv_results_``, best candidate, refit in a slot.
"""

from __future__ import annotations

import os
import pickle
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.base import clone, is_classifier
from sklearn.model_selection import GridSearchCV, check_cv
from sklearn.utils import get_tags, indexable
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from raygrid import aggregate, execute, plan, progress, validate
from raygrid import journal as journal_lib
from raygrid import results as results_tables
from raygrid.collect import Collector, raise_from_worker
from raygrid.worker import SearchData


class RayGridSearchCV(GridSearchCV):
    """Exhaustive search over a parameter grid, each (candidate, fold) fit a Ray task.

    A drop-in replacement for :class:`sklearn.model_selection.GridSearchCV`: the same
    constructor, ``fit`` signature, fitted attributes and methods, and a ``cv_results_``
    identical to scikit-learn's. The fits run on a local Ray started on first use, or on
    the Ray cluster this process is connected to (``ray_address``, ``RAY_ADDRESS``, or an
    initialised Ray), each in a slot of ``num_cpus_per_task`` CPUs and
    ``num_gpus_per_task`` GPUs.

    Parameters
    ----------
    estimator : estimator object
        Cloned and fitted once per (candidate, fold), inside Ray workers. It must be
        picklable.
    param_grid : dict or list of dict
        Parameter names mapped to lists of values, as for ``GridSearchCV``.
    scoring : str, callable, list, tuple or dict, default=None
        As for ``GridSearchCV``, including multi-metric scoring.
    n_jobs : int, default=None
        The most fits running at once. ``None`` or ``-1``: as many as the cluster's
        resources allow; ``-2``: one fewer; and so on.
    refit : bool, str or callable, default=True
        As for ``GridSearchCV``. The refit runs in a Ray slot like the fold fits.
    cv : int, cross-validation generator or iterable, default=None
        As for ``GridSearchCV``. Splits are computed once, on the driver.
    verbose : int, default=0
        As for ``GridSearchCV``; lines are printed by the driver as fits finish.
    pre_dispatch : int or str, default='2*n_jobs'
        The most fits queued or running at once.
    error_score : 'raise' or numeric, default=np.nan
        Score of a fit that fails; ``'raise'`` re-raises the worker's exception.
    return_train_score : bool, default=False
        Whether ``cv_results_`` includes training scores.
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

    Attributes
    ----------
    cv_results_ : dict of numpy (masked) ndarrays
        As for ``GridSearchCV``.
    best_estimator_, best_score_, best_params_, best_index_, scorer_, n_splits_,
    refit_time_, multimetric_, classes_, n_features_in_, feature_names_in_
        As for ``GridSearchCV``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.svm import SVC
    >>> from raygrid import RayGridSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> search = RayGridSearchCV(SVC(), {"C": [1, 10]}).fit(X, y)  # doctest: +SKIP
    >>> search.best_params_  # doctest: +SKIP
    {'C': 1}
    """

    _parameter_constraints: dict = {
        **GridSearchCV._parameter_constraints,
        "num_cpus_per_task": [Interval(Real, 0, None, closed="neither")],
        "num_gpus_per_task": [Interval(Real, 0, None, closed="left")],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "ray_address": [str, None],
        "results_dir": [str, os.PathLike, None],
        "max_consecutive_failures": [Interval(Integral, 1, None, closed="left"), None],
        "progress": ["boolean", StrOptions({"auto"})],
    }

    def __init__(
        self,
        estimator,
        param_grid,
        *,
        scoring=None,
        n_jobs=None,
        refit=True,
        cv=None,
        verbose=0,
        pre_dispatch="2*n_jobs",
        error_score=np.nan,
        return_train_score=False,
        num_cpus_per_task=1,
        num_gpus_per_task=0,
        max_retries=3,
        ray_address=None,
        results_dir=None,
        max_consecutive_failures=None,
        progress="auto",
    ):
        super().__init__(
            estimator=estimator,
            param_grid=param_grid,
            scoring=scoring,
            n_jobs=n_jobs,
            refit=refit,
            cv=cv,
            verbose=verbose,
            pre_dispatch=pre_dispatch,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.num_cpus_per_task = num_cpus_per_task
        self.num_gpus_per_task = num_gpus_per_task
        self.max_retries = max_retries
        self.ray_address = ray_address
        self.results_dir = results_dir
        self.max_consecutive_failures = max_consecutive_failures
        self.progress = progress

    def fit(self, X, y=None, **params):
        """Run fit with all sets of parameters, as Ray tasks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, n_samples)
            Training data; a precomputed kernel for pairwise estimators.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Target; None for unsupervised learning.
        **params : dict of str -> object
            Parameters for the estimator's ``fit``, the scorer and the CV splitter
            (``groups``), routed and sliced per fold exactly as ``GridSearchCV`` does.

        Returns
        -------
        self : RayGridSearchCV
            The fitted search.
        """
        # 1. Validate everything before scheduling anything.
        self._validate_params()
        validate.check_task_resources(self.num_cpus_per_task, self.num_gpus_per_task)
        scorers, refit_metric = self._get_scorers()
        X, y = indexable(X, y)
        validate.check_data(self.estimator, X, y)
        routed = self._get_routed_params_for_fit(params)
        cv = check_cv(self.cv, y, classifier=is_classifier(self.estimator))
        n_splits = cv.get_n_splits(X, y, **routed.splitter.split)
        splits = [
            (np.asarray(train), np.asarray(test))
            for train, test in cv.split(X, y, **routed.splitter.split)
        ]
        if len(splits) != n_splits:
            raise ValueError(
                "cv.split and cv.get_n_splits return inconsistent results. "
                f"Expected {n_splits} splits, got {len(splits)}"
            )
        validate.check_picklable("estimator", self.estimator)
        validate.check_picklable("scoring", scorers)
        validate.check_picklable("fit params", validate.non_array_values(params))
        candidates = plan.expand_grid(self.param_grid)
        validate.check_candidate_params(self.estimator, candidates)
        data = SearchData(
            estimator=clone(self.estimator),
            X=X,
            y=y,
            splits=splits,
            scorer=scorers,
            fit_params=dict(routed.estimator.fit),
            score_params=dict(routed.scorer.score),
            return_train_score=self.return_train_score,
            error_score=self.error_score,
            pairwise=get_tags(self.estimator).input_tags.pairwise,
        )

        # 2. Plan one task per (candidate, split).
        tasks = plan.plan_tasks(candidates, n_splits)
        if not tasks:
            raise ValueError(
                "No fits were performed. Was the CV iterator empty? Were there no candidates?"
            )
        if self.verbose > 0:
            print(progress.start_line(n_splits, len(candidates)))

        # 3. Execute on Ray: journaled fits are read back, the others run.
        execute.connect(self.ray_address)
        slot = execute.SlotSpec(float(self.num_cpus_per_task), float(self.num_gpus_per_task))
        capacity = execute.count_slots(slot.num_cpus, slot.num_gpus)
        journal, keys = self._open_journal(data, splits, tasks)
        collect = Collector(
            tasks, keys, journal, self.error_score, self.verbose, self.max_consecutive_failures
        )
        to_run = collect.resume_from_journal()
        collect.show_progress(self.progress)

        n_slots = max(1, min(validate.resolve_n_slots(self.n_jobs, capacity), len(to_run)))
        max_in_flight = validate.resolve_pre_dispatch(self.pre_dispatch, n_slots, len(tasks))
        with execute.WorkerPool.acquire(slot, n_slots) as pool:
            data_ref = execute.put_search_data(data)
            try:
                execute.run_tasks(
                    pool,
                    n_slots,
                    data_ref,
                    plan.submission_order(to_run),
                    max_in_flight=max_in_flight,
                    max_retries=self.max_retries,
                    on_records=collect,
                )
            finally:
                collect.close()
            records = collect.records

            # 4. Aggregate, choose the best candidate, refit in a slot like the fits'.
            aggregate.check_fit_failures(records, self.error_score)
            aggregate.fill_failed_multimetric(records, self.error_score)
            results = aggregate.build_cv_results(
                candidates, n_splits, records, self.return_train_score
            )
            self.multimetric_ = isinstance(records[0]["test_scores"], dict)
            if callable(self.scoring) and self.multimetric_:
                self._check_refit_for_multimetric(records[0]["test_scores"])
                refit_metric = self.refit

            if self.refit or not self.multimetric_:
                self.best_index_ = aggregate.select_best_index(self.refit, refit_metric, results)
                if not callable(self.refit):
                    self.best_score_ = results[f"mean_test_{refit_metric}"][self.best_index_]
                self.best_params_ = results["params"][self.best_index_]

            if self.refit:
                refitted = execute.refit_on_pool(
                    pool, data_ref, self.best_params_, self.max_retries
                )
                collect.show_warnings(refitted["warnings"])
                if refitted["error"] is not None:
                    raise_from_worker(refitted["exception"], refitted["error"])
                self.best_estimator_ = pickle.loads(refitted["estimator"])
                self.refit_time_ = refitted["refit_time"]
                if hasattr(self.best_estimator_, "feature_names_in_"):
                    self.feature_names_in_ = self.best_estimator_.feature_names_in_

        self.scorer_ = scorers._scorers if hasattr(scorers, "_scorers") else scorers
        self.cv_results_ = results
        self.n_splits_ = n_splits
        self.tasks_ = results_tables.tasks_frame(records, candidates, n_splits)
        return self

    def results_frame(self) -> pd.DataFrame:
        """``cv_results_`` as a DataFrame: one column per parameter, best rank first.

        Sorted by the refit metric's rank (by the first metric when ``refit`` is not a
        metric name).
        """
        check_is_fitted(self, "cv_results_")
        rank_by = f"rank_test_{self.refit}" if isinstance(self.refit, str) else None
        return results_tables.results_frame(self.cv_results_, rank_by)

    def _open_journal(self, data: SearchData, splits, tasks):
        """The journal under ``results_dir`` and each task's key in it (or None, None)."""
        if self.results_dir is None:
            return None, None
        search_key = journal_lib.fingerprint(
            data.estimator,
            data.X,
            data.y,
            data.fit_params,
            data.score_params,
            data.scorer,
            data.return_train_score,
        )
        description = {"estimator": repr(self.estimator), "param_grid": repr(self.param_grid)}
        journal = journal_lib.Journal(self.results_dir, search_key, description)
        split_keys = journal_lib.split_fingerprints(splits)
        keys = [journal_lib.task_key(search_key, t.params, split_keys[t.split]) for t in tasks]
        return journal, keys

    def save_results(self, path: str | os.PathLike) -> None:
        """Write ``cv_results_`` and ``tasks_`` as Parquet under ``path`` (a directory).

        The layout is the one ``raygrid report PATH`` reads.
        """
        check_is_fitted(self, "cv_results_")
        summary = {
            "estimator": repr(self.estimator),
            "param_grid": self.param_grid,
            "scoring": sorted(self.scorer_)
            if isinstance(self.scorer_, dict)
            else repr(self.scoring),
            "refit": self.refit if isinstance(self.refit, (bool, str)) else repr(self.refit),
            "n_splits": self.n_splits_,
            "best_index": int(getattr(self, "best_index_", -1)),
            "best_params": getattr(self, "best_params_", None),
        }
        results_tables.save_results(path, self.cv_results_, self.tasks_, summary)
