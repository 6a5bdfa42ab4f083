"""Killed workers, lost nodes, killed or interrupted drivers, and the results journal."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import ray
from compare import assert_cv_results_equal
from estimators import FailingRidge, MisbehavingRidge, SlowRidge
from sklearn.datasets import make_regression

from raygrid import RayGridSearchCV
from raygrid.run.execute import release_workers
from raygrid.store.journal import MANIFEST, Journal

X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
GRID = {"alpha": [0.1, 1.0, 10.0, 100.0]}
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scores_only(results):
    return {k: v for k, v in results.items() if "_time" not in k}


def test_killed_worker_is_retried_and_results_unchanged(tmp_path):
    reference = RayGridSearchCV(SlowRidge(), GRID, cv=3).fit(X, y)
    marker = str(tmp_path / "killed")
    search = RayGridSearchCV(
        SlowRidge(delay=0.05, kill_once=marker, kill_alpha=10.0), GRID, cv=3
    ).fit(X, y)
    assert os.path.exists(marker), "the worker never killed itself"
    assert_cv_results_equal(search.cv_results_, reference.cv_results_)
    retried = search.tasks_[search.tasks_["attempts"] > 1]
    assert set(retried["candidate"]) >= {2}


def test_worker_killed_during_refit_is_retried(tmp_path):
    marker = str(tmp_path / "killed")
    search = RayGridSearchCV(SlowRidge(kill_once=marker, kill_rows=len(X)), GRID, cv=3)
    search.fit(X, y)
    assert os.path.exists(marker), "the refit never killed its worker"
    reference = RayGridSearchCV(SlowRidge(), GRID, cv=3).fit(X, y)
    np.testing.assert_array_equal(search.predict(X), reference.predict(X))


def test_worker_killed_every_time_exhausts_max_retries():
    search = RayGridSearchCV(
        SlowRidge(kill_alpha=1.0, kill_always=True), {"alpha": [1.0]}, cv=2, max_retries=1
    )
    with pytest.raises(RuntimeError, match=r"was lost 2 times .*max_retries=1"):
        search.fit(X, y)
    # The pool recovers: the next search runs normally.
    assert RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, cv=2).fit(X, y).best_score_ > 0.9


def test_user_errors_are_not_retried():
    with pytest.warns(Warning, match="fits failed"):
        search = RayGridSearchCV(FailingRidge(), GRID, cv=3).fit(X, y)
    failed = search.tasks_[search.tasks_["error"].notna()]
    assert len(failed) == 6
    assert (failed["attempts"] == 1).all()
    assert failed["error"].str.contains("ArithmeticError").all()


def test_max_consecutive_failures_stops_early_and_keeps_journal(tmp_path):
    grid = {"alpha": [100.0, 200.0, 300.0, 400.0, 1.0]}
    search = RayGridSearchCV(
        FailingRidge(), grid, cv=3, max_consecutive_failures=3, results_dir=tmp_path, n_jobs=1
    )
    with pytest.raises(RuntimeError, match="max_consecutive_failures=3") as info:
        search.fit(X, y)
    assert "ArithmeticError: alpha=" in str(info.value)
    assert len(_journal_records(tmp_path)) >= 3


def test_max_consecutive_failures_off_by_default_keeps_scikit_learn_behaviour():
    with pytest.warns(Warning, match="fits failed"):
        search = RayGridSearchCV(FailingRidge(fail_from=1.0), GRID, cv=3).fit(X, y)
    assert np.isnan(search.cv_results_["mean_test_score"][1:]).all()


def _journal_records(path):
    return Journal(path, _manifest_key(path), {}).load()


def _manifest_key(path):
    with open(os.path.join(path, MANIFEST)) as f:
        return json.load(f)["search_key"]


def test_resume_reuses_every_journaled_fit(tmp_path):
    first = RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=tmp_path).fit(X, y)
    assert len(_journal_records(tmp_path)) == 12
    second = RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=tmp_path).fit(X, y)
    assert second.tasks_["resumed"].all()
    assert_cv_results_equal(scores_only(second.cv_results_), scores_only(first.cv_results_))
    # A larger grid reuses the candidates it shares and runs only the new ones.
    bigger = {"alpha": [*GRID["alpha"], 1000.0]}
    third = RayGridSearchCV(SlowRidge(), bigger, cv=3, results_dir=tmp_path).fit(X, y)
    assert third.tasks_["resumed"].sum() == 12
    plain = RayGridSearchCV(SlowRidge(), bigger, cv=3).fit(X, y)
    assert_cv_results_equal(scores_only(third.cv_results_), scores_only(plain.cv_results_))


def test_journal_of_another_search_is_refused(tmp_path):
    RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="holds the journal of another search"):
        RayGridSearchCV(SlowRidge(), GRID, cv=3, results_dir=tmp_path).fit(X + 1, y)
    assert len(_journal_records(tmp_path)) == 12


DRIVER = textwrap.dedent(
    """
    import sys, ray
    sys.path.insert(0, {tests!r})
    from estimators import SlowRidge
    from sklearn.datasets import make_regression
    from raygrid import RayGridSearchCV
    ray.init(
        address={address!r},
        log_to_driver=False,
        runtime_env={{"env_vars": {{"PYTHONPATH": {tests!r}}}}},
    )
    X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
    search = RayGridSearchCV(
        SlowRidge(delay={delay}, marker_dir={markers!r}),
        {{"alpha": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]}},
        cv=3,
        results_dir={results!r},
        progress=False,
    )
    try:
        search.fit(X, y)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        import time
        time.sleep(60)  # stay connected: Ray must not rely on the driver exiting
        raise
    print("resumed", int(search.tasks_["resumed"].sum()), flush=True)
    ran = search.tasks_[~search.tasks_["resumed"]]
    print("pids", " ".join(str(p) for p in sorted(set(ran["pid"]))), flush=True)
    """
)


def _driver(tmp_path, delay):
    release_workers()  # this process's warm workers would hold every CPU
    _wait_for(_all_cpus_free, 30, "this process's workers to go away")
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    script = tmp_path / "driver.py"
    script.write_text(
        DRIVER.format(
            tests=TESTS_DIR,
            address=ray.get_runtime_context().gcs_address,
            delay=delay,
            markers=str(markers),
            results=str(tmp_path / "results"),
        )
    )
    return script, markers


def _wait_for(condition, timeout, what, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver exited ({proc.returncode}) before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _all_cpus_free():
    return ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU")


@pytest.mark.slow
def test_killed_driver_then_rerun_runs_only_missing_fits(tmp_path):
    script, markers = _driver(tmp_path, delay=0.4)
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(
            lambda: (
                results.exists() and sum(n.startswith("part-") for n in os.listdir(results)) >= 5
            ),
            120,
            "about half of the fits to be journaled",
            proc,
        )
    finally:
        proc.kill()
        proc.wait()
    _wait_for(_all_cpus_free, 30, "the killed driver's workers to go away")
    release_workers()
    journaled = len(_journal_records(results))
    assert 0 < journaled < 18
    before = set(os.listdir(markers))

    rerun = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # Fits run by the rerun's workers (a fit of the killed driver may still have been
    # finishing when it died; it left a marker but no journal record).
    pids = next(line for line in rerun.stdout.splitlines() if line.startswith("pids")).split()[1:]
    ran_again = [
        name
        for name in set(os.listdir(markers)) - before
        if (markers / name).read_text().split()[1] in pids
    ]
    assert len(ran_again) == (18 - journaled) + 1  # the missing fits, then the refit
    assert f"resumed {journaled}" in rerun.stdout

    reference = RayGridSearchCV(
        SlowRidge(), {"alpha": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]}, cv=3
    ).fit(X, y)
    resumed = RayGridSearchCV(
        SlowRidge(delay=0.4, marker_dir=str(markers)),
        {"alpha": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]},
        cv=3,
        results_dir=str(results),
    ).fit(X, y)
    assert resumed.tasks_["resumed"].all()
    assert_cv_results_equal(scores_only(resumed.cv_results_), scores_only(reference.cv_results_))


@pytest.mark.slow
def test_sigint_cancels_every_task_within_5_seconds(tmp_path):
    script, markers = _driver(tmp_path, delay=2.0)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: not _all_cpus_free(), 60, "the search to start", proc)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        sent = time.time()
        assert proc.stdout.readline().strip() == "interrupted"
        _wait_for(_all_cpus_free, 5 - (time.time() - sent), "every worker to be released")
        assert proc.poll() is None, "the driver must still be alive for this check"
        # Nothing keeps fitting: no marker appears after the workers were released.
        count = len(os.listdir(markers))
        time.sleep(2.5)
        assert len(os.listdir(markers)) == count
    finally:
        proc.kill()
        proc.wait()


NODE_LOSS = textwrap.dedent(
    """
    import json, os, sys, threading, time
    sys.path.insert(0, {tests!r})
    import ray
    from ray.cluster_utils import Cluster
    from sklearn.datasets import make_regression
    from estimators import SlowRidge
    from raygrid import RayGridSearchCV

    cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False,
             runtime_env={{"env_vars": {{"PYTHONPATH": {tests!r}}}}})
    X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
    markers = {markers!r}
    lost = workers[0].node_id

    def remove_a_node():
        while len(os.listdir(markers)) < 6:
            time.sleep(0.05)
        cluster.remove_node(workers[0])

    threading.Thread(target=remove_a_node, daemon=True).start()
    search = RayGridSearchCV(
        SlowRidge(delay=0.5, marker_dir=markers),
        {{"alpha": {alphas!r}}},
        cv=3,
        progress=False,
    ).fit(X, y)
    tasks = search.tasks_
    print(json.dumps({{
        "results": {{k: v.tolist() for k, v in search.cv_results_.items()
                     if k.startswith(("split", "mean_test", "std_test", "rank"))}},
        "nodes": sorted(set(tasks["node_id"])),
        "lost_node": lost,
        "retried": int((tasks["attempts"] > 1).sum()),
    }}))
    ray.shutdown()
    cluster.shutdown()
    """
)


@pytest.mark.slow
def test_lost_node_mid_search_gives_identical_results(tmp_path):
    from sklearn.model_selection import GridSearchCV

    alphas = [0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
    markers = tmp_path / "markers"
    markers.mkdir()
    script = tmp_path / "node_loss.py"
    script.write_text(NODE_LOSS.format(tests=TESTS_DIR, markers=str(markers), alphas=alphas))
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["lost_node"] in out["nodes"], "no task ran on the node that was removed"
    assert len(out["nodes"]) >= 2
    assert out["retried"] >= 1, "the node was removed after every task had finished"

    reference = GridSearchCV(SlowRidge(), {"alpha": alphas}, cv=3).fit(X, y).cv_results_
    for key, values in out["results"].items():
        np.testing.assert_array_equal(np.asarray(values), reference[key], err_msg=key)


def _markers(path):
    return sorted(os.listdir(path))


def test_fit_timeout_stops_a_hanging_fit_and_scores_it_a_failure(tmp_path):
    grid = {"alpha": [0.1, 1.0, 10.0]}
    search = RayGridSearchCV(
        MisbehavingRidge(bad_alpha=1.0, how="hang", marker_dir=str(tmp_path)),
        grid,
        cv=2,
        fit_timeout=3,
        error_score=-1.0,
    )
    start = time.time()
    with pytest.warns(Warning, match="timed out after 3 s"):
        search.fit(X, y)
    assert time.time() - start < 45
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] == -1.0 and scores[0] > 0.9 and scores[2] > 0.9
    failed = search.tasks_[search.tasks_["error"].notna()]
    assert list(failed["candidate"]) == [1, 1]
    assert failed["error"].str.contains("timed out after 3 s").all()
    assert (search.tasks_["attempts"] == 1).all()
    assert len(_markers(tmp_path)) == 2  # each hanging fit ran once: never retried


def test_fit_timeout_under_error_score_raise_raises_timeout_error(tmp_path):
    search = RayGridSearchCV(
        MisbehavingRidge(bad_alpha=1.0, how="hang"),
        {"alpha": [1.0]},
        cv=2,
        fit_timeout=1.5,
        error_score="raise",
    )
    with pytest.raises(TimeoutError, match=r"candidate 0 .* split \d timed out after 1.5 s"):
        search.fit(X, y)


@pytest.mark.parametrize(
    "how, error", [("keyboard_interrupt", KeyboardInterrupt), ("system_exit", SystemExit)]
)
def test_base_exceptions_raised_by_fit_are_user_errors(tmp_path, how, error):
    search = RayGridSearchCV(
        MisbehavingRidge(bad_alpha=1.0, how=how, marker_dir=str(tmp_path)),
        {"alpha": [1.0]},
        cv=2,
        n_jobs=1,
    )
    with pytest.raises(error) as info:
        search.fit(X, y)
    assert "Raised in a Ray worker" in "".join(getattr(info.value, "__notes__", []))
    # At most once per split (both splits' fits may be queued on the worker); a retry
    # (max_retries=3) would run a split's fit again.
    assert 1 <= len(_markers(tmp_path)) <= 2
    # The worker survived: the next search reuses it.
    assert RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, cv=2).fit(X, y).best_score_ > 0.9


def test_process_exit_in_fit_costs_attempts_and_names_candidate_split_cause(tmp_path):
    search = RayGridSearchCV(
        MisbehavingRidge(bad_alpha=1.0, how="exit", marker_dir=str(tmp_path)),
        {"alpha": [1.0]},
        cv=2,
        n_jobs=1,
        max_retries=1,
    )
    with pytest.raises(RuntimeError) as info:
        search.fit(X, y)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(r"candidate 0 \{'alpha': 1.0\}, split [01] was lost 2 times", message)
    assert "max_retries=1" in message and "last cause: its worker process died" in message
    assert isinstance(info.value.__cause__, ray.exceptions.RayError)
    assert len(_markers(tmp_path)) == 2


OUT_OF_MEMORY = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    import ray
    from sklearn.datasets import make_regression
    from estimators import MisbehavingRidge
    from raygrid import RayGridSearchCV
    from raygrid.local.connect import start_local

    start_local(num_cpus=1, log_to_driver=False)
    X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
    search = RayGridSearchCV(
        MisbehavingRidge(bad_alpha=1.0, how="hog", hog_mib={hog_mib}, marker_dir={markers!r}),
        {{"alpha": [1.0]}},
        cv=2,
        max_retries=1,
        progress=False,
    )
    try:
        search.fit(X, y)
    except RuntimeError as exc:
        print("ERROR", exc, flush=True)
        print("CAUSE", type(exc.__cause__).__name__, flush=True)
    """
)


def _run_out_of_memory_script(tmp_path, hog_mib, margin_mib):
    from ray._common.utils import get_system_memory
    from ray._private.utils import get_used_memory

    # Measured as Ray's memory monitor measures (page cache included): the monitor kills
    # once the node's memory passes what is used now + margin, which the hog crosses.
    threshold = (get_used_memory() / 2**20 + margin_mib) / (get_system_memory() / 2**20)
    markers = tmp_path / f"markers-{time.time_ns()}"
    markers.mkdir()
    script = tmp_path / "oom.py"
    script.write_text(OUT_OF_MEMORY.format(tests=TESTS_DIR, markers=str(markers), hog_mib=hog_mib))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYGRID_PARENT_RAY")}
    env.update(RAY_memory_usage_threshold=f"{threshold:.4f}", RAY_memory_monitor_refresh_ms="100")
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    error = next(line for line in run.stdout.splitlines() if line.startswith("ERROR"))
    return error, run.stdout, len(os.listdir(markers))


@pytest.mark.slow
def test_worker_killed_by_ray_memory_monitor_is_retried_and_named(tmp_path):
    for _ in range(2):
        error, out, attempts = _run_out_of_memory_script(tmp_path, hog_mib=4096, margin_mib=2560)
        # Other processes on this machine may cross the threshold before any fit starts.
        if "No Ray worker for this search started" not in error:
            break
    assert re.search(r"candidate 0 \{'alpha': 1.0\}, split \d was lost 2 times", error), error
    assert "last cause: killed by Ray's memory monitor" in error, error
    assert "CAUSE OutOfMemoryError" in out or "CAUSE ActorDiedError" in out
    assert attempts == 2  # the first attempt, and its one retry


@pytest.mark.slow
def test_driver_frozen_then_killed_loses_no_finished_fit(tmp_path):
    script, markers = _driver(tmp_path, delay=0.4)
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(os.listdir(markers)) >= 4, 120, "four fits to finish", proc)
        # A frozen driver collects nothing; the fits already queued on its workers go on.
        proc.send_signal(signal.SIGSTOP)
        count = -1
        while count != len(os.listdir(markers)):
            count = len(os.listdir(markers))
            time.sleep(2.0)
    finally:
        proc.kill()
        proc.wait()
    _wait_for(_all_cpus_free, 30, "the killed driver's workers to go away")
    release_workers()
    finished = len(os.listdir(markers))
    journaled = len(_journal_records(results))
    assert 0 < finished < 18
    assert journaled == finished  # every fit that finished was journaled by its worker

    rerun = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed {journaled}" in rerun.stdout
    assert len(os.listdir(markers)) - finished == (18 - journaled) + 1  # + the refit
