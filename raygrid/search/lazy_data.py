"""What the driver reads of lazy data (:mod:`raygrid.data`): the target, only when the
CV splitter needs it.

scikit-learn's ``check_cv`` stratifies a classifier's splits by ``y``, and a splitter
may use ``y`` in ways raygrid cannot know; only the splitters below are known to ignore
it, so for them (and for regressors with an integer ``cv``) the driver reads nothing.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

from sklearn import model_selection as ms
from sklearn.base import is_classifier

__all__ = ["driver_target", "splitter_needs_y"]

# Splitters whose splits do not depend on y (their subclasses may; exact types only).
_Y_FREE = tuple(
    getattr(ms, name)
    for name in (
        "GroupKFold",
        "GroupShuffleSplit",
        "KFold",
        "LeaveOneGroupOut",
        "LeaveOneOut",
        "LeavePGroupsOut",
        "LeavePOut",
        "PredefinedSplit",
        "RepeatedKFold",
        "ShuffleSplit",
        "TimeSeriesSplit",
    )
)


def splitter_needs_y(cv: Any, estimator: Any) -> bool:
    """Whether the search's splits may depend on ``y``."""
    if cv is None or isinstance(cv, Integral):
        return is_classifier(estimator)  # check_cv stratifies a classifier's splits
    return type(cv) not in _Y_FREE


def driver_target(handle: Any, y: Any, cv: Any, estimator: Any) -> Any:
    """The ``y`` the driver splits with: with a lazy ``handle`` (:mod:`raygrid.data`), its
    target column or None; otherwise ``y`` as given.

    Raises
    ------
    ValueError
        If ``y`` is given as well (the handle names its target).
    """
    from raygrid.data import ParquetData

    if not isinstance(handle, ParquetData):
        return y
    if y is not None:
        raise ValueError(
            "fit(X, y): X is a raygrid.data handle, which names its target column "
            f"(target={handle.target!r}); pass y=None."
        )
    if handle.target is None or not splitter_needs_y(cv, estimator):
        return None
    return handle.column(handle.target)
