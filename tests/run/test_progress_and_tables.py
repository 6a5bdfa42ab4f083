"""Seeing the search: progress bar, per-task records, results tables."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import numpy as np
import pandas as pd
import pytest
import ray
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.tree import DecisionTreeClassifier

from raygrid import RayGridSearchCV
from raygrid.run.execute import release_workers
from raygrid.store.results import load_results

X, y = make_classification(n_samples=80, n_features=5, random_state=0)
GRID = {"max_depth": [1, 3, None], "criterion": ["gini", "entropy"]}


@pytest.fixture(scope="module")
def search():
    return RayGridSearchCV(DecisionTreeClassifier(random_state=0), GRID, cv=4).fit(X, y)


def test_tasks_frame_has_one_row_per_task_with_times_and_node(search):
    tasks = search.tasks_
    assert len(tasks) == 6 * 4
    assert list(tasks[["candidate", "split"]].itertuples(index=False, name=None)) == [
        (c, s) for c in range(6) for s in range(4)
    ]
    assert tasks["params"].tolist() == [p for p in search.cv_results_["params"] for _ in range(4)]
    for c in range(6):
        np.testing.assert_array_equal(
            tasks.loc[tasks.candidate == c, "test_score"],
            [search.cv_results_[f"split{s}_test_score"][c] for s in range(4)],
        )
    assert (tasks["end_time"] >= tasks["start_time"]).all()
    assert tasks["start_time"].dt.tz is not None
    assert tasks["node_id"].str.len().gt(0).all()
    assert tasks["pid"].gt(0).all()
    assert (tasks["attempts"] == 1).all()
    assert tasks["error"].isna().all()
    np.testing.assert_allclose(
        tasks.groupby("candidate")["fit_time"].mean(), search.cv_results_["mean_fit_time"]
    )


def test_results_frame_is_sorted_with_a_column_per_parameter(search):
    frame = search.results_frame()
    assert {"max_depth", "criterion", "mean_test_score", "rank_test_score"} <= set(frame.columns)
    assert frame["rank_test_score"].is_monotonic_increasing
    best = frame.iloc[0]
    assert best["params"] == search.best_params_
    assert best["mean_test_score"] == search.best_score_
    assert frame["max_depth"].isna().sum() == 2  # None values stay None


def test_cv_results_keys_unchanged_by_these_features(search, tmp_path):
    theirs = GridSearchCV(DecisionTreeClassifier(random_state=0), GRID, cv=4).fit(X, y)
    assert list(search.cv_results_) == list(theirs.cv_results_)
    search.results_frame()
    search.save_results(tmp_path)
    assert list(search.cv_results_) == list(theirs.cv_results_)


def test_save_results_round_trip(search, tmp_path):
    search.save_results(tmp_path)
    results, tasks, summary = load_results(tmp_path)
    assert len(results) == 6 and len(tasks) == 24
    assert summary["best_params"] == search.best_params_
    assert list(results.columns) == list(search.cv_results_)  # scikit-learn's, in its order
    np.testing.assert_array_equal(
        results["rank_test_score"], search.cv_results_["rank_test_score"]
    )
    assert isinstance(tasks["start_time"].iloc[0], pd.Timestamp)


def test_progress_false_prints_nothing(capsys):
    RayGridSearchCV(DecisionTreeClassifier(), GRID, cv=3, progress=False).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and "raygrid" not in captured.err and "%" not in captured.err


def test_progress_true_shows_a_bar_even_without_terminal(capsys):
    RayGridSearchCV(DecisionTreeClassifier(), GRID, cv=3, progress=True).fit(X, y)
    err = capsys.readouterr().err
    assert "raygrid: 100%" in err and "18/18" in err


def test_progress_auto_is_silent_without_terminal(capsys):
    RayGridSearchCV(DecisionTreeClassifier(), GRID, cv=3).fit(X, y)
    assert "raygrid" not in capsys.readouterr().err


DRIVER = """
import ray
from sklearn.datasets import make_classification
from sklearn.tree import DecisionTreeClassifier
from raygrid import RayGridSearchCV
ray.init(address={address!r}, log_to_driver=False, logging_level="ERROR")
X, y = make_classification(n_samples=80, n_features=5, random_state=0)
grid = {{"max_depth": [1, 3, None], "criterion": ["gini", "entropy"]}}
search = RayGridSearchCV(DecisionTreeClassifier(), grid, cv=4, verbose={verbose})
search.fit(X, y)
print("best", search.best_params_)
"""


def run_in_terminal(script: str, timeout: float = 120) -> str:
    """Run ``python -c script`` with a pseudo-terminal as stdin, stdout and stderr."""
    release_workers()  # this process's warm workers would hold the session's CPUs
    primary, secondary = pty.openpty()
    # A terminal 120 columns wide, as a real one would report.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=secondary, stdout=secondary, stderr=secondary
    )
    os.close(secondary)
    output = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal closed: the process exited
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=10)
    os.close(primary)
    assert proc.returncode == 0, output.decode(errors="replace")[-3000:]
    return output.decode(errors="replace")


def test_progress_bar_reaches_100_percent_in_a_terminal():
    address = ray.get_runtime_context().gcs_address
    out = run_in_terminal(DRIVER.format(address=address, verbose=0))
    assert "raygrid: 100%" in out
    assert "24/24" in out
    assert "best=" in out and "failed=0" in out
    assert "best {" in out


def test_progress_bar_leaves_verbose_lines_intact():
    address = ray.get_runtime_context().gcs_address
    out = run_in_terminal(DRIVER.format(address=address, verbose=2))
    assert "Fitting 4 folds for each of 6 candidates, totalling 24 fits" in out
    assert out.count("[CV] END ") == 24


def test_progress_of_a_resumed_search_counts_journaled_fits(tmp_path, capsys):
    RayGridSearchCV(DecisionTreeClassifier(), GRID, cv=3, results_dir=tmp_path).fit(X, y)
    capsys.readouterr()
    RayGridSearchCV(DecisionTreeClassifier(), GRID, cv=3, results_dir=tmp_path, progress=True).fit(
        X, y
    )
    err = capsys.readouterr().err
    assert "18/18" in err and "best=" in err
