"""Searches at once, searches inside Ray and joblib workers, and Ray sessions that change."""

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import ray
from compare import assert_cv_results_equal
from estimators import FailingRidge, SlowRidge
from sklearn.datasets import make_regression

from raygrid import RayGridSearchCV
from raygrid.run import execute, pool
from raygrid.run.execute import release_workers

X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
GRID = {"alpha": [0.1, 1.0, 10.0, 100.0]}
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scores_only(results):
    return {k: v for k, v in results.items() if "_time" not in k}


def _wait_until_cpus_free(timeout=30):
    deadline = time.time() + timeout
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources().get("CPU"):
        assert time.time() < deadline, "the session's CPUs never came free"
        time.sleep(0.1)


def test_concurrent_threaded_searches_keep_their_own_workers():
    reference_long = RayGridSearchCV(SlowRidge(), GRID, cv=3).fit(X, y)
    reference_short = RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, cv=3).fit(X, y)
    # Both CPUs free, so that each search below can hold a worker of its own (warm idle
    # workers of the references, or of earlier tests, would hold them for seconds).
    release_workers()
    _wait_until_cpus_free()
    out, errors = {}, []

    def long_search():
        search = RayGridSearchCV(SlowRidge(delay=0.8), GRID, cv=3, n_jobs=1, max_retries=0)
        out["long"] = search.fit(X, y)

    def short_searches():
        # One search that raises (its pool is shut down), then one that succeeds.
        failing = RayGridSearchCV(FailingRidge(), {"alpha": [50.0]}, cv=3, n_jobs=1)
        try:
            failing.set_params(error_score="raise").fit(X, y)
        except ArithmeticError as exc:
            errors.append(exc)
        short = RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, cv=3, n_jobs=1, max_retries=0)
        out["short"] = short.fit(X, y)

    first = threading.Thread(target=long_search)
    first.start()
    time.sleep(1.0)
    second = threading.Thread(target=short_searches)
    second.start()
    second.join(120)
    first.join(120)
    assert len(errors) == 1
    assert_cv_results_equal(
        scores_only(out["long"].cv_results_), scores_only(reference_long.cv_results_)
    )
    assert_cv_results_equal(
        scores_only(out["short"].cv_results_), scores_only(reference_short.cv_results_)
    )
    assert (out["long"].tasks_["attempts"] == 1).all()
    assert (out["short"].tasks_["attempts"] == 1).all()
    # The two ran side by side (the short search's fits began while the long one was
    # still fitting: it did not wait for the long search's worker), each in its own worker.
    assert out["short"].tasks_["start_time"].min() < out["long"].tasks_["end_time"].max()
    assert not set(out["long"].tasks_["pid"]) & set(out["short"].tasks_["pid"])


@ray.remote(num_cpus=1)
class _SearchInAnActor:
    def search(self):
        from sklearn.linear_model import Ridge

        import raygrid

        search = raygrid.RayGridSearchCV(Ridge(), {"alpha": [0.1, 1.0, 10.0]}, cv=3)
        search.fit(X, y)
        return float(search.best_score_), sorted(set(search.tasks_["pid"]))


def test_search_inside_an_actor_holding_one_of_two_cpus_finishes():
    release_workers()
    _wait_until_cpus_free()
    actor = _SearchInAnActor.remote()
    start = time.time()
    score, pids = ray.get(actor.search.remote(), timeout=60)
    assert time.time() - start < 60
    assert score > 0.9
    assert len(pids) == 1  # the one CPU the actor does not hold
    ray.kill(actor)


def test_no_room_for_any_worker_is_a_clear_error(monkeypatch):
    release_workers()
    _wait_until_cpus_free()
    monkeypatch.setattr(pool, "PLACEMENT_SECONDS", 2.0)
    holder = _SearchInAnActor.remote()
    ray.get(holder.__ray_ready__.remote())
    try:
        search = RayGridSearchCV(SlowRidge(), {"alpha": [1.0]}, cv=2, num_cpus_per_task=2)
        start = time.time()
        with pytest.raises(RuntimeError, match=r"could be placed within 2 s") as info:
            search.fit(X, y)
        assert time.time() - start < 20
        message = str(info.value)
        assert "num_cpus_per_task=2" in message
        assert "CPU 1 of 2" in message
    finally:
        ray.kill(holder)


RESTART = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import ray
    from sklearn.datasets import make_regression
    from estimators import SlowRidge
    from raygrid import RayGridSearchCV
    from raygrid.run import execute, pool
    from raygrid.run.execute import release_workers

    pool.IDLE_SECONDS = 1.0
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)
    grid = {{"alpha": [0.1, 1.0]}}
    first = RayGridSearchCV(SlowRidge(), grid, cv=2, progress=False).fit(X, y)
    session = ray.get_runtime_context().get_session_name()
    ray.shutdown()
    time.sleep(2.0)  # the idle timer fires after the shutdown
    release_workers()
    second = RayGridSearchCV(SlowRidge(), grid, cv=2, progress=False).fit(X, y)
    assert ray.get_runtime_context().get_session_name() != session
    assert (second.cv_results_["mean_test_score"] == first.cv_results_["mean_test_score"]).all()
    release_workers()
    print("ok", flush=True)
    """
)


def test_search_after_ray_shutdown_works(tmp_path):
    script = tmp_path / "restart.py"
    script.write_text(RESTART.format(tests=TESTS_DIR))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYGRID_PARENT_RAY")}
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().endswith("ok")
    assert "Exception in thread" not in run.stderr
    assert "ActorHandleNotFound" not in run.stderr


CROSS_VAL = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    import ray
    from sklearn.datasets import make_regression
    from sklearn.model_selection import cross_val_score
    from estimators import SessionProbeRidge
    from raygrid import RayGridSearchCV

    X, y = make_regression(n_samples=60, n_features=3, random_state=0)
    search = RayGridSearchCV(
        SessionProbeRidge(probe_dir={probes!r}), {{"alpha": [0.1, 1.0]}}, cv=2, progress=False
    )
    if sys.argv[1:] == ["parent-first"]:
        # A driver that searched first has a local Ray: its joblib workers search on it.
        search.fit(X, y)
        print("parent", ray.get_runtime_context().get_session_name(), flush=True)
    scores = cross_val_score(search, X, y, cv=4, n_jobs=2)
    assert ray.is_initialized() == (sys.argv[1:] == ["parent-first"])
    print(len(scores), flush=True)
    """
)


def _cross_val_sessions(tmp_path, *args):
    probes = tmp_path / f"probes{len(args)}"
    probes.mkdir()
    script = tmp_path / "cross_val.py"
    script.write_text(CROSS_VAL.format(tests=TESTS_DIR, probes=str(probes)))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYGRID_PARENT_RAY")}
    start = time.time()
    run = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1] == "4"
    print(f"cross_val_score(n_jobs=2) of 4 raygrid searches {args}: {time.time() - start:.1f} s")
    parent = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("parent")]
    return [(probes / name).read_text() for name in os.listdir(probes)], parent


@pytest.mark.slow
def test_cross_val_score_with_n_jobs_runs_on_one_ray(tmp_path):
    # The joblib workers share the local Ray the first of them starts.
    sessions, _ = _cross_val_sessions(tmp_path)
    assert len(sessions) == 4 * (2 * 2 + 1)  # 4 searches: 2 × 2 fits + refit
    assert len(set(sessions)) == 1, set(sessions)
    # With a driver that already runs a local Ray, they all search on the driver's.
    sessions, parent = _cross_val_sessions(tmp_path, "parent-first")
    assert len(sessions) == 5 + 4 * 5
    assert set(sessions) == set(parent), (set(sessions), parent)


def test_searches_in_joblib_workers_take_joblib_s_share_of_the_slots(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what joblib gives each of 2 workers on 2 CPUs
    assert execute.default_slots(2) == 2  # not in a worker process
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())
    assert execute.default_slots(2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert execute.default_slots(2) == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert execute.default_slots(2) == 2
