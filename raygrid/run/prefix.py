"""Exact prefix sharing: train once to the largest value, score at every smaller one.

A grid over a training-length parameter (``epochs`` of a Keras network, ``n_estimators``
of a forest) makes each fit of the larger value first repeat, exactly, the fit of the
smaller one on the same split. Tasks that differ only in that parameter are therefore
run as one: the estimator trains to the largest value and is scored each time it passes a
smaller one. Each record keeps its own fit time (the time to reach its value).

Sharing is used only where the estimator says (or raygrid has verified) that the states
passed on the way are bit for bit those of independent fits:

* an estimator opts in with two methods (raygrid.keras' wrappers implement them)::

      def prefix_fit_param(self) -> str | None:
          # the training-length parameter, when the current configuration shares
          # exactly; None otherwise (then every value is fitted on its own)

      def prefix_fit(self, X, y=None, *, values, **fit_params):
          # fit once to max(values), yielding each value (ascending) as soon as
          # training has reached it, with ``self`` then equal to an independent fit

  ``prefix_fit`` may also take ``resume=False``: called with ``resume=True`` on a state
  an earlier ``prefix_fit`` left at a smaller value, it trains on from there. A
  successive-halving search whose resource is that parameter then continues each
  survivor's fits from one iteration to the next instead of retraining them;

* scikit-learn's forests and gradient boosting, whose ``warm_start`` continuation is
  exactly equivalent (tested per family), share ``n_estimators``, also inside a pipeline.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from numbers import Integral
from typing import Any

# scikit-learn estimators whose warm_start continuation over ``n_estimators`` gives the
# same model as a fresh fit (tests/run/test_prefix_sharing.py checks each family), and the
# parameters that would break that equivalence when set.
_WARM_START_FAMILIES = {
    "RandomForestClassifier": (),
    "RandomForestRegressor": (),
    "ExtraTreesClassifier": (),
    "ExtraTreesRegressor": (),
    "GradientBoostingClassifier": ("n_iter_no_change",),
    "GradientBoostingRegressor": ("n_iter_no_change",),
}


def shared_param(estimator: Any, params: dict[str, Any]) -> str | None:
    """The parameter of ``params`` whose values can share one training, or None.

    ``estimator`` is the search's estimator; ``params`` one candidate's parameters.
    """
    configured = None
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, Integral):
            continue
        if configured is None:
            configured = configure(estimator, params)
            if configured is None:
                return None
        path, _, leaf = name.rpartition("__")
        if path == "" and leaf == _protocol_param(configured):
            return name
        owner = configured.get_params()[path] if path else configured
        if leaf == "n_estimators" and _warm_startable(owner):
            return name
    return None


def configure(estimator: Any, params: dict[str, Any]) -> Any:
    """A clone of ``estimator`` with ``params`` set, or None when they cannot be set."""
    from sklearn.base import clone

    try:
        return clone(estimator).set_params(**clone(params, safe=False))
    except Exception:  # the fit will report it
        return None


def _protocol_param(estimator: Any) -> str | None:
    if not (hasattr(estimator, "prefix_fit_param") and hasattr(estimator, "prefix_fit")):
        return None
    return estimator.prefix_fit_param()


def _warm_startable(estimator: Any) -> bool:
    breakers = _WARM_START_FAMILIES.get(type(estimator).__name__)
    if breakers is None or type(estimator).__module__.split(".")[0] != "sklearn":
        return False
    settings = estimator.get_params(deep=False)
    return not settings.get("warm_start") and all(settings.get(b) is None for b in breakers)


def can_resume(estimator: Any, params: dict[str, Any], name: str) -> bool:
    """Whether a state :func:`fit_prefixes` leaves can be trained on to larger values.

    ``name`` is the shared parameter of ``estimator`` configured with ``params``.
    """
    configured = configure(estimator, params)
    if "__" not in name and _protocol_param(configured) == name:
        return "resume" in inspect.signature(configured.prefix_fit).parameters
    return True  # scikit-learn's warm_start families


def fit_prefixes(
    estimator: Any,
    name: str,
    values: list[int],
    X: Any,
    y: Any,
    fit_params: dict[str, Any],
    resume: bool = False,
) -> Iterator[int]:
    """Fit ``estimator`` (its other parameters set) once, yielding each of ``values``.

    After each yield, ``estimator`` is fitted as an independent fit with ``name`` set to
    that value would be. With ``resume``, ``estimator`` is a state an earlier call left
    at a smaller value, and training goes on from there (the protocol's
    ``prefix_fit(..., resume=True)``; ``warm_start`` for scikit-learn's families).
    """
    path, _, leaf = name.rpartition("__")
    if path == "" and _protocol_param(estimator) == leaf:
        extra = {"resume": True} if resume else {}
        yield from estimator.prefix_fit(X, y, values=values, **extra, **fit_params)
        return
    estimator.set_params(**{f"{path}__warm_start" if path else "warm_start": True})
    for value in values:
        estimator.set_params(**{name: value})
        if y is None:
            estimator.fit(X, **fit_params)
        else:
            estimator.fit(X, y, **fit_params)
        yield value
