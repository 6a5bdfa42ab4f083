"""Journals and results on object storage: a real S3 endpoint (moto's server mode).

Workers write journal parts straight to the bucket, a rerun resumes from it, results are
refreshed there while a search runs, and a location raygrid cannot use fails before any
fit with an error naming it.
"""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from compare import assert_cv_results_equal
from estimators import SlowRidge
from sklearn.datasets import make_regression
from sklearn.model_selection import GridSearchCV

from raygrid import RayGridSearchCV
from raygrid.cli import main as cli
from raygrid.store import compaction
from raygrid.store.journal import MANIFEST
from raygrid.store.live import live_output
from raygrid.store.results import load_results

X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
GRID = {"alpha": [0.1, 1.0, 10.0, 100.0]}


def scores_only(results):
    return {k: v for k, v in results.items() if "_time" not in k}


def _fits(markers):
    return len(os.listdir(markers))


def test_workers_journal_to_the_bucket_and_a_rerun_resumes_every_fit(
    s3_server, s3_bucket, tmp_path, monkeypatch
):
    monkeypatch.setattr(compaction, "SMALL_PART_ROWS", 0)  # keep the workers' own parts
    uri = f"s3://{s3_bucket}/journal"
    first = RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=uri).fit(X, y)
    keys = s3_server.keys(s3_bucket, "journal/")
    parts = [k for k in keys if k.rsplit("/", 1)[1].startswith("part-")]
    assert f"journal/{MANIFEST}" in keys and parts
    writers = {int(k.rsplit("/", 1)[1].split("-")[2]) for k in parts}
    assert os.getpid() not in writers, "the driver wrote the parts, not the workers"
    assert not os.path.exists("s3:"), "a local folder named after the URI"

    markers = tmp_path / "markers"
    markers.mkdir()
    again = RayGridSearchCV(SlowRidge(marker_dir=str(markers)), GRID, cv=3, results_dir=uri)
    # marker_dir is a parameter, so the search differs: resume needs the same search.
    with pytest.raises(ValueError, match="another search"):
        again.fit(X, y)
    second = RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=uri).fit(X, y)
    assert second.tasks_["resumed"].all()
    reference = GridSearchCV(SlowRidge(), GRID, cv=3).fit(X, y)
    assert_cv_results_equal(scores_only(second.cv_results_), scores_only(reference.cv_results_))
    assert_cv_results_equal(scores_only(first.cv_results_), scores_only(reference.cv_results_))
    assert _fits(markers) == 0
    # Nothing journaled was lost to the refused search.
    assert s3_server.keys(s3_bucket, "journal/") == keys


def test_journal_is_compacted_in_the_bucket(s3_server, s3_bucket):
    uri = f"s3://{s3_bucket}/journal"
    grid = {"alpha": [0.1 * i for i in range(1, 13)]}
    RayGridSearchCV(SlowRidge(), grid, cv=3, results_dir=uri, n_jobs=2).fit(X, y)
    parts = [k for k in s3_server.keys(s3_bucket, "journal/") if "/part-" in k]
    assert len(parts) == 1, parts
    resumed = RayGridSearchCV(SlowRidge(), grid, cv=3, results_dir=uri).fit(X, y)
    assert resumed.tasks_["resumed"].all() and len(resumed.tasks_) == 36


@pytest.mark.parametrize(
    "where, message",
    [
        ("s3://raygrid-no-such-bucket/journal", "bucket does not exist"),
        ("nosuchscheme://bucket/journal", "pyarrow cannot open a nosuchscheme://"),
        (
            "s3://{bucket}/journal?endpoint_override=127.0.0.1:9&scheme=http",
            "Could not connect",
        ),
    ],
    ids=["missing-bucket", "unknown-scheme", "unreachable-endpoint"],
)
def test_unusable_results_dir_fails_before_any_fit(s3_bucket, tmp_path, where, message):
    markers = tmp_path / "markers"
    markers.mkdir()
    where = where.format(bucket=s3_bucket)
    search = RayGridSearchCV(SlowRidge(marker_dir=str(markers)), GRID, cv=3, results_dir=where)
    with pytest.raises(ValueError, match=message) as info:
        search.fit(X, y)
    assert f"results_dir={where!r}" in str(info.value)
    assert _fits(markers) == 0
    assert not os.path.exists(where.split("://")[0] + ":"), "a local folder named after the URI"


def test_results_are_refreshed_in_the_bucket_while_the_search_runs(s3_server, s3_bucket):
    uri = f"s3://{s3_bucket}/out"
    with live_output(uri, interval=0):
        search = RayGridSearchCV(SlowRidge(), GRID, cv=3).fit(X, y)
    results, tasks, summary = load_results(uri)
    assert summary["partial"] is True and summary["fits"] == 12
    assert len(results) == 4 and len(tasks) == 12
    # Saved in scikit-learn's layout: row i is candidate i, parameters as param_<name>.
    assert list(results["param_alpha"]) == list(search.cv_results_["param_alpha"])
    assert list(results["mean_test_score"]) == list(search.cv_results_["mean_test_score"])
    search.save_results(uri)  # the final write replaces them
    assert "partial" not in json.loads(
        s3_server.client().get_object(Bucket=s3_bucket, Key="out/search.json")["Body"].read()
    )


@pytest.fixture
def s3_checking_credentials(tmp_path):
    """A second moto S3 server that checks credentials (it knows none): its host:port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.time() < deadline, "moto did not start"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def test_wrong_credentials_fail_before_any_fit(s3_checking_credentials, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    where = f"s3://bucket/journal?endpoint_override={s3_checking_credentials}&scheme=http"
    search = RayGridSearchCV(SlowRidge(marker_dir=str(markers)), GRID, cv=3, results_dir=where)
    with pytest.raises(ValueError, match="Access Key Id you provided does not exist") as info:
        search.fit(X, y)
    assert "AWS_ACCESS_KEY_ID" in str(info.value)
    assert _fits(markers) == 0


SPEC = """
[estimator]
class = "sklearn.linear_model.Ridge"

[search]
param_grid = {{ alpha = [0.1, 1.0] }}
cv = 3

[data]
generator = "make_regression"

[output]
path = "{output}"
"""


def test_run_with_an_output_in_a_missing_bucket_fits_nothing(
    s3_server, tmp_path, capsys, monkeypatch
):
    import raygrid.spec.search_spec

    def no_data(*args):
        raise AssertionError("the data was loaded before the output was checked")

    monkeypatch.setattr(raygrid.spec.search_spec, "_load_data", no_data)
    spec = tmp_path / "spec.toml"
    output = "s3://raygrid-no-such-bucket/results"
    spec.write_text(SPEC.format(output=output))
    assert cli.main(["run", str(spec)]) == 1
    err = capsys.readouterr().err
    assert f"raygrid run: cannot write results to {output}" in err
    assert "bucket does not exist" in err


DRIVER = """
import sys, ray
sys.path.insert(0, {tests!r})
from estimators import SlowRidge
from sklearn.datasets import make_regression
from raygrid import RayGridSearchCV
ray.init(address={address!r}, log_to_driver=False,
         runtime_env={{"env_vars": {{"PYTHONPATH": {tests!r}}}}})
X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
RayGridSearchCV(SlowRidge(delay=0.4), {grid!r}, cv=3, results_dir={uri!r},
                progress=False).fit(X, y)
"""


def _all_cpus_free():
    import ray

    return ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU")


def _wait(condition, what, proc=None, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"the driver exited before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_driver_killed_mid_search_resumes_from_the_bucket(s3_server, s3_bucket, tmp_path):
    import ray

    from raygrid.run.execute import release_workers

    grid = {"alpha": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]}
    uri = f"s3://{s3_bucket}/journal"
    release_workers()  # this process's warm workers would hold every CPU
    _wait(_all_cpus_free, "this process's workers to go away")
    script = tmp_path / "driver.py"
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    address = ray.get_runtime_context().gcs_address
    script.write_text(DRIVER.format(tests=tests, address=address, grid=grid, uri=uri))
    proc = subprocess.Popen([sys.executable, str(script)])
    try:
        _wait(lambda: len(s3_server.keys(s3_bucket, "journal/part-")) >= 3, "parts", proc)
        os.kill(proc.pid, 9)
    finally:
        proc.kill()
        proc.wait()
    _wait(_all_cpus_free, "the killed driver's workers to go away")
    resumed = RayGridSearchCV(SlowRidge(delay=0.4), grid, cv=3, results_dir=uri).fit(X, y)
    n_resumed = int(resumed.tasks_["resumed"].sum())
    assert 0 < n_resumed < 18, n_resumed
    reference = GridSearchCV(SlowRidge(), grid, cv=3).fit(X, y)
    assert_cv_results_equal(scores_only(resumed.cv_results_), scores_only(reference.cv_results_))
    again = RayGridSearchCV(SlowRidge(delay=0.4), grid, cv=3, results_dir=uri).fit(X, y)
    assert again.tasks_["resumed"].all()
