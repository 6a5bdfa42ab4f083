"""The saved ``cv_results.parquet``: scikit-learn's columns in Parquet's own types, and
results saved by the previous release still read."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.tree import DecisionTreeClassifier

from raygrid import RayGridSearchCV
from raygrid.cli import main as cli
from raygrid.store.results import RESULTS_FILE, TASKS_FILE, load_results

X, y = make_classification(n_samples=80, n_features=5, random_state=0)
# Two sub-grids: each leaves the other's parameters unset (masked in cv_results_).
GRID = [
    {"max_depth": [1, None], "criterion": ["gini", "entropy"]},
    {"min_samples_leaf": [1, 5], "splitter": ["random"]},
]
RELEASE_0_1 = os.path.join(os.path.dirname(__file__), "..", "data", "results-0.1.0-tree")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "tree"
    search = RayGridSearchCV(DecisionTreeClassifier(random_state=0), GRID, cv=3, progress=False)
    search.fit(X, y).save_results(path)
    return search, path


def test_saved_results_have_scikit_learns_columns_in_parquet_types(saved):
    search, path = saved
    expected = pd.DataFrame(search.cv_results_)
    read = pd.read_parquet(path / RESULTS_FILE)
    assert list(read.columns) == list(expected.columns)
    schema = pq.read_schema(path / RESULTS_FILE)
    assert schema.field("param_max_depth").type == pa.int64()
    assert schema.field("param_min_samples_leaf").type == pa.int64()
    for text in ("param_criterion", "param_splitter", "params"):
        kind = schema.field(text).type
        assert pa.types.is_string(kind) or pa.types.is_large_string(kind), text
    for column in expected.columns:
        if column.startswith("param_"):
            masked = np.ma.getmaskarray(search.cv_results_[column])
            values = np.ma.getdata(search.cv_results_[column])
            want = [None if m or v is None else v for v, m in zip(values, masked, strict=True)]
            assert [None if pd.isna(v) else v for v in read[column]] == want, column
        elif column == "params":
            assert [json.loads(p) for p in read[column]] == search.cv_results_["params"]
        else:
            assert read[column].dtype == expected[column].dtype, column
            np.testing.assert_array_equal(read[column], expected[column])


def test_load_results_reads_what_save_results_wrote(saved):
    search, path = saved
    results, tasks, summary = load_results(path)
    assert list(results.columns) == list(search.cv_results_)
    np.testing.assert_array_equal(
        results["rank_test_score"], search.cv_results_["rank_test_score"]
    )
    assert len(tasks) == len(search.tasks_) and summary["layout_version"] == 2


def reference():
    grid = {"max_depth": [1, 3, None], "criterion": ["gini", "entropy"]}
    return GridSearchCV(DecisionTreeClassifier(random_state=0), grid, cv=3).fit(X, y)


@pytest.mark.parametrize("with_tasks", [True, False])
def test_results_saved_by_release_0_1_are_read(tmp_path, with_tasks):
    """0.1 saved bare parameter names, rows best first; read back in today's layout."""
    path = tmp_path / "old"
    shutil.copytree(RELEASE_0_1, path)
    if not with_tasks:
        (path / TASKS_FILE).unlink()
    results, tasks, _ = load_results(path)
    theirs = reference().cv_results_
    assert sorted(results.columns) == sorted(theirs)
    if with_tasks:  # the tasks say which row is which candidate: candidate order again
        assert [json.loads(p) for p in results["params"]] == theirs["params"]
        np.testing.assert_allclose(results["mean_test_score"], theirs["mean_test_score"])
        np.testing.assert_array_equal(results["rank_test_score"], theirs["rank_test_score"])
    else:  # rows stay best first
        assert results["rank_test_score"].is_monotonic_increasing
    by_params = {json.dumps(p, sort_keys=True): i for i, p in enumerate(theirs["params"])}
    for _, row in results.iterrows():
        candidate = by_params[row["params"]]
        assert row["param_criterion"] == theirs["param_criterion"][candidate]
        assert row["mean_test_score"] == pytest.approx(theirs["mean_test_score"][candidate])


def test_report_reads_results_saved_by_release_0_1(tmp_path, capsys):
    path = tmp_path / "old"
    shutil.copytree(RELEASE_0_1, path)
    assert cli.main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "6 candidates" in out and "note: timeline" not in out
    assert (path / "figures" / "timeline.png").is_file()
    header = next(line for line in out.splitlines() if line.startswith("rank"))
    assert "max_depth" in header.split() and "criterion" in header.split()
