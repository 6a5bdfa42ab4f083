"""The Ray engine behind every raygrid search: :class:`RaySearchMixin`.

scikit-learn's searches share one seam: ``BaseSearchCV.fit`` prepares the data, the CV
splitter and the scorers, then calls the subclass's ``_run_search(evaluate_candidates)``,
which decides which candidates to try (a grid, random samples, successive-halving
iterations) and hands them to ``evaluate_candidates`` in one or more waves. raygrid keeps
that seam and replaces what is behind it:

1. validate: what scikit-learn validates before fitting, plus raygrid's own options;
2. per search: a Ray session, a pool of warm workers (one per CPU/GPU slot) and the data
   (X, y, fit params, scorers) placed in Ray's object store once;
3. per wave (:class:`~raygrid.search.waves._SearchRun`, in :mod:`raygrid.search.waves`):
   splits materialised once, one task per (candidate, split) planned and run on the pool,
   records collected (journal, progress, verbose lines, warnings, callbacks), and turned
   into ``cv_results_`` by scikit-learn's own ``_format_results``;
4. the best candidate chosen by scikit-learn's rule and refitted in a slot like the
   fits'.

Anything a scikit-learn search does not refuse up front, raygrid does not either: whether
the estimator accepts the data is found out by the fits, which fail under
``error_score`` exactly as in scikit-learn.
"""

from __future__ import annotations

import os
import uuid
import warnings
from inspect import signature
from numbers import Integral, Real
from typing import Any

import pandas as pd
import sklearn
from sklearn.base import _fit_context, clone, is_classifier
from sklearn.model_selection import check_cv
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import indexable
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_method_params, check_is_fitted

from raygrid.data import ParquetData
from raygrid.local import connect, quiet, shipping
from raygrid.run import devices, execute
from raygrid.run.messages import CallerContext, SearchData
from raygrid.search import lazy_data, validate
from raygrid.search.waves import _SearchRun, search_in_fit, search_space
from raygrid.store import results as results_tables
from raygrid.tracking import Tracker
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
        stack of networks in one compiled loop (:mod:`raygrid.keras.fused`; any estimator
        implementing the hooks of :mod:`raygrid.run.fusion` can do the same). Faster for
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
            return search_in_fit, (token,)
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
        self._check_picklable(scorers, params)

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

    def _check_picklable(self, scorers, params) -> None:
        """What is shipped to workers must survive cloudpickle."""
        validate.check_picklable("estimator", self.estimator)
        validate.check_picklable("scoring", scorers)
        validate.check_picklable("fit params", validate.non_array_values(params))

    def _connect_and_describe(self, X, y, scorers, routed) -> SearchData:
        """Join or start Ray (shipping the user's own modules where needed); the data."""
        if not connect.connect(self._ray_option("ray_address")):
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
            allow_logical_gpus=devices.allow_logical_gpus(),
            context=_caller_context(),
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
            "param_grid": search_space(self),
            "scoring": sorted(self.scorer_)
            if isinstance(self.scorer_, dict)
            else repr(self.scoring),
            "refit": self.refit if isinstance(self.refit, bool | str) else repr(self.refit),
            "n_splits": self.n_splits_,
            "best_index": int(getattr(self, "best_index_", -1)),
            "best_params": getattr(self, "best_params_", None),
        }
        results_tables.save_results(path, self.cv_results_, self.tasks_, summary)


def _caller_context() -> CallerContext:
    """scikit-learn's configuration and the warning filters in force where ``fit`` runs."""
    get_filters = getattr(warnings, "_get_filters", None)  # context-aware warnings (3.14)
    filters = get_filters() if get_filters is not None else warnings.filters
    return CallerContext(config=sklearn.get_config(), warning_filters=list(filters))
