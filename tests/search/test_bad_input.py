"""Bad input: each kind fails before any work is scheduled, with an error naming it.

The matrix covers the constructor, the grid, ``fit``'s data, the journal under
``results_dir`` and the Ray options. Each case asserts the error's type and message, and
that nothing reached Ray (journal cases also check that no journal record was lost).
"""

import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import ray
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from raygrid import RayGridSearchCV
from raygrid.run import execute
from raygrid.store.journal import MANIFEST

X, y = make_classification(n_samples=40, n_features=4, random_state=0)


class WithLock(LogisticRegression):
    def __init__(self, C=1.0, lock=None):
        super().__init__(C=C)
        self.lock = lock


def with_nan():
    bad = X.copy()
    bad[3, 1] = np.nan
    return bad


def with_inf():
    bad = X.copy()
    bad[5, 0] = np.inf
    return bad


def with_text():
    bad = X.astype(object)
    bad[0, 0] = "abc"
    return bad


def search(**kwargs):
    return RayGridSearchCV(LogisticRegression(), {"C": [1.0, 2.0]}, **kwargs)


# (id, how to fail, expected error, message regex)
MATRIX = [
    # constructor and Ray options
    (
        "cpus-zero",
        lambda: search(num_cpus_per_task=0).fit(X, y),
        ValueError,
        "'num_cpus_per_task' parameter",
    ),
    (
        "cpus-negative",
        lambda: search(num_cpus_per_task=-1).fit(X, y),
        ValueError,
        "'num_cpus_per_task' parameter",
    ),
    (
        "cpus-not-number",
        lambda: search(num_cpus_per_task="two").fit(X, y),
        TypeError,
        "'num_cpus_per_task' parameter",
    ),
    (
        "cpus-fraction-above-1",
        lambda: search(num_cpus_per_task=1.5).fit(X, y),
        ValueError,
        "num_cpus_per_task=1.5",
    ),
    (
        "gpus-negative",
        lambda: search(num_gpus_per_task=-0.5).fit(X, y),
        ValueError,
        "'num_gpus_per_task' parameter",
    ),
    (
        "gpus-fraction-above-1",
        lambda: search(num_gpus_per_task=1.5).fit(X, y),
        ValueError,
        "num_gpus_per_task=1.5",
    ),
    (
        "gpus-no-node-offers",
        lambda: search(num_gpus_per_task=8).fit(X, y),
        ValueError,
        "no node of the Ray cluster offers that much",
    ),
    (
        "cpus-no-node-offers",
        lambda: search(num_cpus_per_task=64).fit(X, y),
        ValueError,
        r"num_cpus_per_task=64\.0.*no node",
    ),
    (
        "max-retries-negative",
        lambda: search(max_retries=-1).fit(X, y),
        ValueError,
        "'max_retries' parameter",
    ),
    (
        "ray-address-not-str",
        lambda: search(ray_address=12).fit(X, y),
        TypeError,
        "'ray_address' parameter",
    ),
    (
        "ray-address-conflicts",
        lambda: search(ray_address="10.1.2.3:6379").fit(X, y),
        ValueError,
        "already connected to Ray",
    ),
    (
        "error-score-unknown",
        lambda: search(error_score="ignore").fit(X, y),
        ValueError,
        "'error_score' parameter",
    ),
    ("n-jobs-zero", lambda: search(n_jobs=0).fit(X, y), ValueError, "n_jobs == 0"),
    (
        "pre-dispatch-garbage",
        lambda: search(pre_dispatch="lots").fit(X, y),
        ValueError,
        "pre_dispatch='lots'",
    ),
    (
        "scoring-unknown",
        lambda: search(scoring="not_a_metric").fit(X, y),
        ValueError,
        "'scoring' parameter",
    ),
    ("cv-one-fold", lambda: search(cv=1).fit(X, y), ValueError, "'cv' parameter"),
    (
        "progress-garbage",
        lambda: search(progress="sometimes").fit(X, y),
        ValueError,
        "'progress' parameter",
    ),
    (
        "failure-budget-zero",
        lambda: search(max_consecutive_failures=0).fit(X, y),
        ValueError,
        "'max_consecutive_failures' parameter",
    ),
    (
        "multimetric-refit-true",
        lambda: search(scoring=["accuracy", "f1"]).fit(X, y),
        ValueError,
        "refit must be set to a scorer key",
    ),
    # the grid
    (
        "grid-unknown-param",
        lambda: RayGridSearchCV(LogisticRegression(), {"C": [1.0], "gamma": [1]}).fit(X, y),
        ValueError,
        r"Invalid parameter 'gamma' for estimator LogisticRegression\(\)\. Valid parameters are: \[.*'max_iter'",
    ),
    (
        "grid-unknown-nested",
        lambda: RayGridSearchCV(make_pipeline(StandardScaler(), SVC()), {"svc__gama": [1.0]}).fit(
            X, y
        ),
        ValueError,
        "Invalid parameter 'gama' for estimator SVC",
    ),
    (
        "grid-generator-values",
        lambda: RayGridSearchCV(LogisticRegression(), {"C": (c for c in [1.0])}).fit(X, y),
        TypeError,
        "needs to be a list or a numpy array",
    ),
    (
        "grid-empty-values",
        lambda: RayGridSearchCV(LogisticRegression(), {"C": []}).fit(X, y),
        ValueError,
        "need to be a non-empty sequence",
    ),
    (
        "grid-scalar-values",
        lambda: RayGridSearchCV(LogisticRegression(), {"C": 1.0}).fit(X, y),
        TypeError,
        "needs to be a list or a numpy array",
    ),
    (
        "grid-not-dict",
        lambda: RayGridSearchCV(LogisticRegression(), "C").fit(X, y),
        TypeError,
        "'param_grid' parameter of RayGridSearchCV",
    ),
    # fit's data
    (
        "x-y-length-mismatch",
        lambda: search().fit(X, y[:-3]),
        ValueError,
        "inconsistent numbers of samples",
    ),
    (
        "fewer-samples-than-folds",
        lambda: search(cv=KFold(5)).fit(X[:3], [0, 1, 0]),
        ValueError,
        "n_splits=5 greater than the number of samples",
    ),
    (
        "estimator-unpicklable",
        lambda: RayGridSearchCV(WithLock(lock=threading.Lock()), {"C": [1.0]}).fit(X, y),
        TypeError,
        r"estimator\.lock cannot be pickled",
    ),
    (
        "fit-param-unpicklable",
        lambda: search().fit(X, y, callback=(i for i in range(3))),
        TypeError,
        r"fit params\['callback'\] cannot be pickled",
    ),
]


@pytest.fixture
def no_scheduling(monkeypatch):
    """Fail the test if validation lets anything reach Ray's workers."""

    def refuse(*args, **kwargs):
        raise AssertionError("work was scheduled before validation failed")

    monkeypatch.setattr(ray, "put", refuse)
    monkeypatch.setattr(execute.WorkerPool, "acquire", refuse)


@pytest.mark.parametrize(
    "make, error, message", [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX]
)
def test_bad_input_matrix(no_scheduling, make, error, message):
    with pytest.raises(error, match=message):
        make()


# Data the estimator refuses is the estimator's business: the fits run, fail, and end
# the way they end in scikit-learn (the same error, with the same tracebacks).
BAD_DATA = {
    "x-with-nan": lambda: (with_nan(), y),
    "x-with-inf": lambda: (with_inf(), y),
    "x-object-text": lambda: (with_text(), y),
    "x-3d": lambda: (X.reshape(40, 2, 2), y),
    "x-1d": lambda: (X[:, 0], y),
    "y-one-class": lambda: (X, np.zeros(40)),
}


@pytest.mark.parametrize("make_data", BAD_DATA.values(), ids=BAD_DATA.keys())
@pytest.mark.parametrize("error_score", [np.nan, "raise"])
def test_bad_data_fails_as_in_scikit_learn(make_data, error_score):
    data = make_data()
    grid = {"C": [1.0, 2.0]}
    with pytest.raises(Exception) as theirs:
        GridSearchCV(LogisticRegression(), grid, error_score=error_score).fit(*data)
    with pytest.raises(type(theirs.value)) as ours:
        RayGridSearchCV(LogisticRegression(), grid, error_score=error_score).fit(*data)
    if error_score == "raise":
        # The first fit to fail is raised; which fold that is may differ (the fits run in
        # parallel), and with it the data quoted in the message.
        assert _without_numbers(str(ours.value)) == _without_numbers(str(theirs.value))
    else:
        # "All the 10 fits failed ..." with each distinct traceback and its count.
        assert _without_paths(str(ours.value)) == _without_paths(str(theirs.value))


def _without_paths(text):
    """Tracebacks' file lines differ only by where the package is installed."""
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("File "))


def _without_numbers(text):
    return " ".join(re.sub(r"[-+]?\d[\d.e+-]*", "#", text).split())


@pytest.mark.parametrize(
    "grid",
    [{"C": []}, {"C": 1.0}, {"C": (c for c in [1.0, 2.0])}, [{"C": [1.0]}, "C"], "C", []],
    ids=["empty-list", "scalar", "generator", "non-dict-in-list", "string", "empty-grid-list"],
)
def test_malformed_grid_same_error_as_scikit_learn(no_scheduling, grid):
    with pytest.raises(Exception) as theirs:
        GridSearchCV(LogisticRegression(), grid).fit(X, y)
    with pytest.raises(type(theirs.value)) as ours:
        RayGridSearchCV(LogisticRegression(), grid).fit(X, y)
    assert str(ours.value) == str(theirs.value).replace("GridSearchCV", "RayGridSearchCV")


# The journal under results_dir. Each case prepares the directory, then fits.
def _journaled(path):
    """A finished search with a journal under ``path``; returns its part files."""
    search(results_dir=path).fit(X, y)
    return sorted(n for n in os.listdir(path) if n.startswith("part-"))


def _is_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a directory")
    return target


def _unwritable(tmp_path):
    return "/proc/raygrid-journal"  # not even root can create it


def _another_search(tmp_path):
    _journaled(tmp_path)
    return tmp_path, X + 1.0  # same estimator and grid, other data


def _corrupt_part(tmp_path):
    _journaled(tmp_path)
    (tmp_path / "part-99999999999999999999-1.parquet").write_bytes(b"PAR1 garbage")
    return tmp_path


def _foreign_manifest(tmp_path):
    (tmp_path / MANIFEST).write_text("{not json")
    return tmp_path


def _other_format(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "other/9", "search_key": "x"}))
    return tmp_path


def _parts_without_manifest(tmp_path):
    _journaled(tmp_path)
    os.remove(tmp_path / MANIFEST)
    return tmp_path


JOURNAL_CASES = [
    ("results-dir-is-file", _is_file, "is a file, not a directory"),
    ("results-dir-unwritable", _unwritable, "cannot be created"),
    ("journal-of-another-search", _another_search, "holds the journal of another search"),
    ("journal-part-corrupt", _corrupt_part, r"journal file .*part-9+-1\.parquet' is corrupt"),
    ("journal-manifest-foreign", _foreign_manifest, "is not a raygrid journal manifest"),
    ("journal-other-format", _other_format, "journal format 'other/9'"),
    ("journal-parts-without-manifest", _parts_without_manifest, "holds journal parts but no"),
]


@pytest.mark.parametrize(
    "prepare, message", [c[1:] for c in JOURNAL_CASES], ids=[c[0] for c in JOURNAL_CASES]
)
def test_bad_results_dir(tmp_path, prepare, message):
    path, data = prepared if isinstance(prepared := prepare(tmp_path), tuple) else (prepared, X)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=message):
        search(results_dir=path).fit(data, y)
    assert sorted(os.listdir(tmp_path)) == before, "journal files were changed or lost"


def test_unreachable_ray_address_fails_fast():
    code = (
        "from sklearn.linear_model import Ridge; from raygrid import RayGridSearchCV\n"
        "RayGridSearchCV(Ridge(), {'alpha': [1.0]}, ray_address='127.0.0.1:1')"
        ".fit([[0.0], [1.0], [2.0], [3.0], [4.0]], [0, 1, 2, 3, 4])"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "ConnectionError: ray_address='127.0.0.1:1': no Ray cluster answers there" in run.stderr


def test_bad_input_schedules_nothing_then_good_input_works():
    bad = RayGridSearchCV(LogisticRegression(), {"C": [1.0], "nope": [1]})
    with pytest.raises(ValueError):
        bad.fit(X, y)
    assert not hasattr(bad, "cv_results_")
    good = search().fit(X, y)
    assert np.all(np.isfinite(good.cv_results_["mean_test_score"]))
