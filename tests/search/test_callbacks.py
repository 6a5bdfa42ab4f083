"""scikit-learn callbacks on raygrid searches: the same hooks and logs as with GridSearchCV.

scikit-learn's own callback tests run in ``test_sklearn_search_suite.py``; here the
``ScoringMonitor`` log is compared with GridSearchCV's, and the relay is checked for a
worker on a host where the driver's listener socket does not exist.
"""

import pickle
import subprocess
import sys
import textwrap

import pytest
from sklearn.callback import ScoringMonitor
from sklearn.callback.tests._utils import MaxIterEstimator
from sklearn.datasets import make_regression
from sklearn.model_selection import GridSearchCV

from raygrid import RayGridSearchCV, RayHalvingGridSearchCV

X, y = make_regression(n_samples=60, n_features=3, random_state=0)


def _log_rows(monitor):
    """The monitor's rows, in task order, with the run's own name and ids left out."""
    (log,) = monitor.get_logs(select="all")
    rows = [
        {k: v for k, v in row.items() if k != "estimator_name" or v == "MaxIterEstimator"}
        for row in log.data
    ]
    return sorted(rows, key=lambda row: row["task_id_path"])


@pytest.mark.parametrize("refit", [True, False])
def test_scoring_monitor_log_equals_grid_search_cv(refit):
    logs = []
    for cls in (GridSearchCV, RayGridSearchCV):
        monitor = ScoringMonitor(scoring=["r2", "neg_mean_squared_error"])
        estimator = MaxIterEstimator().set_callbacks(monitor)
        grid = {"max_iter": [2, 3, 5]}
        cls(estimator, grid, cv=3, scoring="r2", refit=refit).fit(X, y)
        logs.append(_log_rows(monitor))
    theirs, ours = logs
    assert len(ours) == len(theirs) > 20
    assert ours == theirs


def test_scoring_monitor_on_a_halving_search():
    monitor = ScoringMonitor(scoring="r2")
    estimator = MaxIterEstimator().set_callbacks(monitor)
    search = RayHalvingGridSearchCV(
        estimator, {"max_iter": [1, 2, 3, 4]}, cv=2, factor=2, scoring="r2"
    )
    search.fit(X, y)
    (log,) = monitor.get_logs(select="all")
    assert log.estimator_name == "RayHalvingGridSearchCV"
    assert {row["estimator_name"] for row in log.data} == {"MaxIterEstimator"}


RELAY_SCRIPT = textwrap.dedent(
    """
    import pickle, sys
    from raygrid.run.callbacks import Relay
    handle, blob = pickle.loads(sys.stdin.buffer.read())
    relay = Relay([handle])              # before the callback is unpickled, as in a worker
    monitor = pickle.loads(blob)
    assert monitor._listener_handle == handle, "the callback opened a listener of its own"
    from sklearn.callback._transport import send
    send(monitor._listener_handle, ("a message",))
    sys.stdout.buffer.write(pickle.dumps(relay.take()))
    """
)


def test_relay_keeps_the_driver_listener_where_its_socket_is_out_of_reach(tmp_path):
    """A worker on another host: the driver's socket path does not exist there."""
    from sklearn.callback._transport import ListenerHandle

    monitor = ScoringMonitor(scoring="r2")
    remote = ListenerHandle(str(tmp_path / "elsewhere" / "listener-x"), b"k" * 32)
    monitor._listener_handle = remote  # what a copy shipped from another host holds
    payload = pickle.dumps((remote, pickle.dumps(monitor)))
    done = subprocess.run(
        [sys.executable, "-c", RELAY_SCRIPT], input=payload, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert pickle.loads(done.stdout) == [(remote.address, ("a message",))]
