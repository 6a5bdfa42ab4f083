"""raygrid's search classes: scikit-learn's search family, every fit a Ray task.

Each class is scikit-learn's own search class with :class:`~raygrid.search.mixin.RaySearchMixin`
behind its ``_run_search``: the same constructor (plus raygrid's options), the same
candidates, the same ``cv_results_``, fitted attributes and methods. How the fits run is
in :mod:`raygrid.search.mixin`.

scikit-learn reads every constructor parameter from the ``__init__`` signature (for
``get_params``/``clone``): each class's constructor is its scikit-learn parent's, with
raygrid's options (:data:`~raygrid.search.mixin.RAY_OPTION_DEFAULTS`) added after its
parameters, declared in full by :func:`raygrid.constructors.extended_init`.
"""

from __future__ import annotations

from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    RandomizedSearchCV,
)

from raygrid.constructors import extended_init, shared_docs
from raygrid.search.mixin import RAY_OPTION_CONSTRAINTS, RAY_OPTION_DEFAULTS, RaySearchMixin

# What the four docstrings share, written once: the decorator puts it in place of the
# markers, so each class's reference page lists all of it.
_SHARED_DOCS = {
    "    {ray options}": """\
    num_cpus_per_task, num_gpus_per_task, max_retries, ray_address, results_dir, \
max_consecutive_failures, progress, share_prefixes, fuse, tracking, \
fit_timeout : see RaySearchMixin
        The options of raygrid; see :class:`~raygrid.search.mixin.RaySearchMixin`.""",
    "    {halving attributes}": """\
    n_resources_, n_candidates_, n_remaining_candidates_, max_resources_, \
min_resources_, n_iterations_, n_possible_iterations_, n_required_iterations_, \
cv_results_, best_estimator_, best_score_, best_params_, best_index_, scorer_, \
n_splits_, refit_time_, multimetric_, classes_, n_features_in_, feature_names_in_""",
    "    {halving tasks_}": """\
    tasks_ : pandas.DataFrame
        One row per (candidate, split) fit, with the halving ``iter`` and
        ``n_resources`` of its candidate; see :class:`RayGridSearchCV`.""",
}


@shared_docs(_SHARED_DOCS)
class RayGridSearchCV(GridSearchCV, RaySearchMixin):
    """Exhaustive search over a parameter grid, each (candidate, fold) fit a Ray task.

    A drop-in replacement for :class:`sklearn.model_selection.GridSearchCV`: the same
    constructor, ``fit`` signature, fitted attributes and methods, and a ``cv_results_``
    identical to scikit-learn's. The fits run on a local Ray started on first use, or on
    the Ray cluster this process is connected to (``ray_address``, ``RAY_ADDRESS``, or an
    initialised Ray), each in a slot of ``num_cpus_per_task`` CPUs and
    ``num_gpus_per_task`` GPUs.

    Parameters
    ----------
    estimator, param_grid, scoring, n_jobs, refit, cv, verbose, pre_dispatch, \
error_score, return_train_score : see scikit-learn
        As for :class:`~sklearn.model_selection.GridSearchCV`. ``n_jobs`` is the most fits
        running at once (``None`` or ``-1``: as many as the cluster's resources allow);
        ``verbose`` lines are printed by the driver as fits finish.
    {ray options}

    Attributes
    ----------
    cv_results_ : dict of numpy (masked) ndarrays
        As for ``GridSearchCV``.
    best_estimator_, best_score_, best_params_, best_index_, scorer_, n_splits_, \
refit_time_, multimetric_, classes_, n_features_in_, feature_names_in_
        As for ``GridSearchCV``.
    tasks_ : pandas.DataFrame
        One row per (candidate, split) fit: scores, times, where it ran (node, GPU ids,
        pid, worker memory), attempts, errors and the estimator's fitted facts
        (``n_iter``, ``best_epoch``, ...); see :func:`raygrid.store.results.tasks_frame`.
    tracking_ : dict
        Set when ``tracking`` names trackers: where each logged the search, by tracker
        name (``"mlflow"``: run and experiment ids; ``"tensorboard"``: the log directory).

    See Also
    --------
    RayRandomizedSearchCV : Candidates sampled from distributions.
    RayHalvingGridSearchCV : Successive halving over a grid.
    RayHalvingRandomSearchCV : Successive halving over sampled candidates.

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
        **RAY_OPTION_CONSTRAINTS,
    }

    # scikit-learn's parameters, then raygrid's options (see the module docstring).
    __init__ = extended_init(GridSearchCV.__init__, RAY_OPTION_DEFAULTS)


@shared_docs(_SHARED_DOCS)
class RayRandomizedSearchCV(RandomizedSearchCV, RaySearchMixin):
    """Randomized search over parameter settings, each (candidate, fold) fit a Ray task.

    A drop-in replacement for :class:`sklearn.model_selection.RandomizedSearchCV`: with
    the same ``random_state`` it samples the same candidates and gives the same
    ``cv_results_``.

    Parameters
    ----------
    estimator, param_distributions, n_iter, scoring, n_jobs, refit, cv, verbose, \
pre_dispatch, random_state, error_score, return_train_score : see scikit-learn
        As for :class:`~sklearn.model_selection.RandomizedSearchCV`.
    {ray options}

    Attributes
    ----------
    cv_results_, best_estimator_, best_score_, best_params_, best_index_, scorer_, \
n_splits_, refit_time_, multimetric_, classes_, n_features_in_, feature_names_in_
        As for ``RandomizedSearchCV``.
    tasks_ : pandas.DataFrame
        One row per (candidate, split) fit; see :class:`RayGridSearchCV`.

    See Also
    --------
    RayGridSearchCV : Every candidate of a parameter grid.
    RayHalvingRandomSearchCV : Successive halving over sampled candidates.

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.svm import SVC
    >>> from raygrid import RayRandomizedSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> search = RayRandomizedSearchCV(
    ...     SVC(), {"C": loguniform(1e-2, 1e2)}, n_iter=5, random_state=0
    ... ).fit(X, y)  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        **RandomizedSearchCV._parameter_constraints,
        **RAY_OPTION_CONSTRAINTS,
    }

    # scikit-learn's parameters, then raygrid's options (see the module docstring).
    __init__ = extended_init(RandomizedSearchCV.__init__, RAY_OPTION_DEFAULTS)


@shared_docs(_SHARED_DOCS)
class RayHalvingGridSearchCV(HalvingGridSearchCV, RaySearchMixin):
    """Successive halving over a parameter grid, each iteration a wave of Ray tasks.

    A drop-in replacement for :class:`sklearn.model_selection.HalvingGridSearchCV`: the
    same iterations, ``n_resources_``, ``n_candidates_`` and ``cv_results_``. Every
    iteration runs on the same warm workers; the data is placed in Ray's object store
    once, and a subsampled iteration ships row indices, never rows.

    Parameters
    ----------
    estimator, param_grid, factor, resource, max_resources, min_resources, \
aggressive_elimination, cv, scoring, refit, error_score, return_train_score, \
random_state, n_jobs, verbose : see scikit-learn
        As for :class:`~sklearn.model_selection.HalvingGridSearchCV`.
    {ray options}

    Attributes
    ----------
    {halving attributes}
        As for ``HalvingGridSearchCV``.
    {halving tasks_}

    See Also
    --------
    RayGridSearchCV : Every candidate of a parameter grid.
    RayHalvingRandomSearchCV : Successive halving over sampled candidates.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.svm import SVC
    >>> from raygrid import RayHalvingGridSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> search = RayHalvingGridSearchCV(
    ...     SVC(), {"C": [0.1, 1, 10, 100]}, random_state=0
    ... ).fit(X, y)  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        **HalvingGridSearchCV._parameter_constraints,
        **RAY_OPTION_CONSTRAINTS,
    }

    # scikit-learn's parameters, then raygrid's options (see the module docstring).
    __init__ = extended_init(HalvingGridSearchCV.__init__, RAY_OPTION_DEFAULTS)


@shared_docs(_SHARED_DOCS)
class RayHalvingRandomSearchCV(HalvingRandomSearchCV, RaySearchMixin):
    """Successive halving over sampled candidates, each iteration a wave of Ray tasks.

    A drop-in replacement for :class:`sklearn.model_selection.HalvingRandomSearchCV`:
    with the same ``random_state``, the same candidates, iterations, ``n_resources_``,
    ``n_candidates_`` and ``cv_results_``.

    Parameters
    ----------
    estimator, param_distributions, n_candidates, factor, resource, max_resources, \
min_resources, aggressive_elimination, cv, scoring, refit, error_score, \
return_train_score, random_state, n_jobs, verbose : see scikit-learn
        As for :class:`~sklearn.model_selection.HalvingRandomSearchCV`.
    {ray options}

    Attributes
    ----------
    {halving attributes}
        As for ``HalvingRandomSearchCV``.
    {halving tasks_}

    See Also
    --------
    RayRandomizedSearchCV : Candidates sampled from distributions.
    RayHalvingGridSearchCV : Successive halving over a grid.

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.svm import SVC
    >>> from raygrid import RayHalvingRandomSearchCV
    >>> X, y = load_iris(return_X_y=True)
    >>> search = RayHalvingRandomSearchCV(
    ...     SVC(), {"C": loguniform(1e-2, 1e2)}, random_state=0
    ... ).fit(X, y)  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        **HalvingRandomSearchCV._parameter_constraints,
        **RAY_OPTION_CONSTRAINTS,
    }

    # scikit-learn's parameters, then raygrid's options (see the module docstring).
    __init__ = extended_init(HalvingRandomSearchCV.__init__, RAY_OPTION_DEFAULTS)
