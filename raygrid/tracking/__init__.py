"""Experiment tracking: a search and its candidates logged to MLflow or TensorBoard.

Pass a tracker (or a list of them) as a search's ``tracking`` option::

    from raygrid.tracking import MLflowTracker, TensorBoardTracker

    search = RayGridSearchCV(estimator, grid, tracking=MLflowTracker("http://127.0.0.1:5000"))

The trackers run on the driver, in one background thread fed as fits finish (see
:mod:`raygrid.tracking.session`); workers need no access to the tracker, and a tracker
that fails costs one :class:`TrackingWarning`, never the search's results. Neither
MLflow nor TensorBoard is imported until a tracker of its kind is used.

- :mod:`~raygrid.tracking.base`: :class:`Tracker` and what every tracker is handed.
- :mod:`~raygrid.tracking.session`: one search's trackers, fed from the driver without
  holding the search up.
- :mod:`~raygrid.tracking.mlflow` and :mod:`~raygrid.tracking.tensorboard`: the two
  trackers.
"""

from raygrid.tracking.base import CandidateResult, SearchStart, Tracker, TrackerRun
from raygrid.tracking.mlflow import MLflowTracker
from raygrid.tracking.session import TrackingWarning
from raygrid.tracking.tensorboard import TensorBoardTracker

__all__ = [
    "CandidateResult",
    "MLflowTracker",
    "SearchStart",
    "TensorBoardTracker",
    "Tracker",
    "TrackerRun",
    "TrackingWarning",
]
