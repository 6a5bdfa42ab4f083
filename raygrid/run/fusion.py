"""Fused training, reached through a hook on the estimator: fits trained as one stack.

Many small networks of one architecture train faster together, as one stack in one
compiled loop, than one after another. raygrid never does that itself: the planner asks
the estimator which fits it can train together, and the worker asks it to train them.
An estimator opts in with two methods (raygrid.keras' wrappers implement them, see
:mod:`raygrid.keras.fused`)::

    def fusion_key(self) -> str | None:
        # as configured, the key of the group of fits this one can be trained with;
        # None when it cannot be fused (then it is fitted on its own)

    def fit_fused(self, X, y=None, *, jobs, **fit_params) -> list:
        # fit ``clone(self).set_params(**params)`` on the rows ``train`` of X and y for
        # every ``(params, train)`` of ``jobs`` (configurations of one fusion key),
        # together; return the fitted estimators in order

Fusion is opt-in (a search's ``fuse=True``): a fused fit may differ from an independent
one in the last bits, where prefix sharing (:mod:`raygrid.run.prefix`) is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raygrid.run.prefix import configure


def fusion_key(estimator: Any, params: dict[str, Any]) -> str | None:
    """The fusion key of ``estimator`` configured with ``params``, or None.

    None when the estimator has no fusion hook, or cannot be configured so (the fit will
    report that).
    """
    fit = configure(estimator, params)
    if fit is None or not (hasattr(fit, "fusion_key") and hasattr(fit, "fit_fused")):
        return None
    return fit.fusion_key()


def fit_fused(data: Any, jobs: list[tuple[dict[str, Any], np.ndarray]]) -> list[Any]:
    """Train ``jobs`` (each fit's parameters and training rows) of a search as one stack.

    ``data`` is the search's :class:`~raygrid.run.messages.SearchData`: its estimator's
    hook trains the fits on its ``X`` and ``y`` with its fit params. Returns one fitted
    estimator per job, in order.
    """
    return data.estimator.fit_fused(data.X, data.y, jobs=jobs, **data.fit_params)
