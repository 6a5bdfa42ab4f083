"""Data read where the fits run (raygrid.data.read_parquet, a spec's [data].path).

The driver never reads the features: ``ParquetData.read`` is made to fail in this
(the driver's) process, and the searches still give scikit-learn's results, because only
the workers, in their own processes, read the file.
"""

import numpy as np
import pandas as pd
import pytest
from compare import assert_cv_results_equal
from ray.util import list_named_actors
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold

from raygrid import RayGridSearchCV
from raygrid.cli import main as cli
from raygrid.data import ParquetData, read_parquet
from raygrid.store.results import read_output

FEATURES = ["f0", "f1", "f2", "f3"]


def frame():
    X, y = make_classification(n_samples=120, n_features=4, random_state=0)
    data = pd.DataFrame(X.astype(np.float32), columns=FEATURES)
    data["label"] = y
    data["other"] = np.arange(len(y))  # a column the searches do not use
    return data


def write(where):
    frame().to_parquet(where)
    return where


def scores_only(results):
    return {k: v for k, v in results.items() if "_time" not in k}


@pytest.fixture
def driver_never_reads(monkeypatch):
    def refuse(self, *args):
        raise AssertionError("the driver read the data")

    monkeypatch.setattr(ParquetData, "read", refuse)
    return monkeypatch


@pytest.fixture
def s3_data(s3_bucket):
    import pyarrow.fs

    uri = f"s3://{s3_bucket}/data/train.parquet"
    fs, path = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_output_stream(path) as f:
        frame().to_parquet(f)
    return uri


def test_classifier_search_over_a_bucket_matches_scikit_learn(s3_data, driver_never_reads):
    handle = read_parquet(s3_data, target="label", columns=FEATURES)
    grid = {"C": [0.01, 1.0]}
    ours = RayGridSearchCV(LogisticRegression(), grid, cv=3).fit(handle)
    data = frame()
    theirs = GridSearchCV(LogisticRegression(), grid, cv=3).fit(
        data[FEATURES], data["label"].to_numpy()
    )
    assert_cv_results_equal(scores_only(ours.cv_results_), scores_only(theirs.cv_results_))
    assert list(ours.best_estimator_.feature_names_in_) == FEATURES
    # Each node's copy of the data went with the search.
    holders = [a for a in list_named_actors(all_namespaces=True) if "raygrid-data" in str(a)]
    assert not holders
    np.testing.assert_allclose(ours.best_estimator_.coef_, theirs.best_estimator_.coef_)


def test_regressor_with_kfold_reads_not_even_the_target(tmp_path, driver_never_reads):
    def refuse(self, name):
        raise AssertionError(f"the driver read column {name}")

    driver_never_reads.setattr(ParquetData, "column", refuse)
    handle = read_parquet(str(write(tmp_path / "d.parquet")), target="label", columns=FEATURES)
    cv = KFold(3, shuffle=True, random_state=0)
    ours = RayGridSearchCV(Ridge(), {"alpha": [0.1, 10.0]}, cv=cv).fit(handle)
    data = frame()
    theirs = GridSearchCV(Ridge(), {"alpha": [0.1, 10.0]}, cv=cv).fit(
        data[FEATURES], data["label"]
    )
    assert_cv_results_equal(scores_only(ours.cv_results_), scores_only(theirs.cv_results_))


def test_bad_handles_are_refused_naming_the_column(tmp_path):
    where = str(write(tmp_path / "d.parquet"))
    with pytest.raises(ValueError, match=r"target='lable' is not a column.*did you mean 'label'"):
        read_parquet(where, target="lable")
    with pytest.raises(ValueError, match=r"columns\[1\]='nope' is not a column"):
        read_parquet(where, target="label", columns=["f0", "nope"])
    handle = read_parquet(where, target="label")
    with pytest.raises(ValueError, match="pass y=None"):
        RayGridSearchCV(Ridge(), {"alpha": [1.0]}).fit(handle, np.zeros(120))


SPEC = """
[estimator]
class = "sklearn.linear_model.LogisticRegression"

[search]
param_grid = {{ C = [0.01, 0.1, 1.0] }}
cv = 3
results_dir = "s3://{bucket}/journal"
verbose = 0

[data]
path = "{data}"
target = "label"
features = ["f0", "f1", "f2", "f3"]

[output]
path = "s3://{bucket}/results"
"""


def test_spec_all_on_s3_second_run_resumes_every_fit(s3_bucket, s3_data, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(bucket=s3_bucket, data=s3_data))
    assert cli.main(["run", str(spec)]) == 0, capsys.readouterr().err
    first, first_tasks, _ = read_output(f"s3://{s3_bucket}/results")
    assert not first_tasks["resumed"].any()
    assert cli.main(["run", str(spec)]) == 0, capsys.readouterr().err
    second, second_tasks, _ = read_output(f"s3://{s3_bucket}/results")
    assert second_tasks["resumed"].all() and len(second_tasks) == 9
    scores = [c for c in first.columns if "_time" not in c]
    pd.testing.assert_frame_equal(first[scores], second[scores])


def test_spec_data_column_that_does_not_exist_fails_before_fitting(
    s3_server, s3_bucket, s3_data, tmp_path, capsys
):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(bucket=s3_bucket, data=s3_data).replace('"f3"', '"f9"'))
    assert cli.main(["run", str(spec)]) == 2
    assert "[data].features[3]: no column 'f9' in train.parquet" in capsys.readouterr().err
    assert not [k for k in s3_server.keys(s3_bucket) if not k.startswith("data/")]
