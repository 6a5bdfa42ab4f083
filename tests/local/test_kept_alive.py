"""The kept-alive local cluster: ``raygrid up``, scripts joining it, idle shutdown, ``down``.

Every cluster here is started by ``python -m raygrid.cli.main up`` in a process of its own,
with its state in a temporary directory, and stopped by ``raygrid down`` (or its idle
timeout); the tests check that nothing of it is left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from raygrid.cli import main as cli
from raygrid.local import kept_alive

REPO = Path(__file__).resolve().parents[2]

# A search script as a user would run it: it joins whatever connect() finds. Its
# estimator notes whether TensorFlow was imported in the worker when its fit began.
JOB = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import psutil
    import ray
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.linear_model import Ridge
    from raygrid import RayGridSearchCV
    from raygrid.local import connect

    class Probe(BaseEstimator, RegressorMixin):
        def __init__(self, alpha=1.0):
            self.alpha = alpha

        def fit(self, X, y):
            self.tf_before_fit_ = "tensorflow" in sys.modules
            self.model_ = Ridge(alpha=self.alpha).fit(X, y)
            return self

        def predict(self, X):
            return self.model_.predict(X)

        def score(self, X, y):
            return float(self.tf_before_fit_)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, 2.0, 3.0]
    start = time.perf_counter()
    own = connect.connect(None)
    connect_seconds = time.perf_counter() - start
    search = RayGridSearchCV(Probe(), {"alpha": [0.1, 1.0, 10.0]}, cv=2, progress=False)
    search.fit(X, y)
    print("RESULT " + json.dumps({
        "connect_seconds": connect_seconds,
        "own_ray": own,
        "gcs_address": ray.get_runtime_context().gcs_address,
        "pids": sorted({int(p) for p in search.tasks_["pid"]}),
        "tf_before_every_fit": bool(search.cv_results_["mean_test_score"].min() == 1.0),
        "children": [p.name() for p in psutil.Process().children(recursive=True)],
    }), flush=True)
    """
)


def _env(state_dir: Path, **extra: str) -> dict[str, str]:
    """This test's environment for a child process, with its own state directory."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "RAYGRID_PARENT_RAY")
        and not k.startswith(("RAY_AUTH", "RAYGRID_STATE"))
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env[kept_alive.STATE_DIR_ENV] = str(state_dir)
    env.update(extra)
    return env


def _raygrid(state_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raygrid.cli.main", *args],
        env=_env(state_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _state(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir / "cluster.json").read_text())
    except OSError:
        return None


def _run_job(state_dir: Path, script: Path) -> dict:
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(state_dir),
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def _session_left(keeper_pid: int) -> list[str]:
    return [f"{p.pid} {p.name()}" for p in kept_alive.session_processes(keeper_pid)]


def _connect_without_token(state_dir: Path, address: str, **env: str) -> subprocess.Popen:
    """A plain ``ray.init(address=...)``, as any local user could try."""
    code = f"import ray; ray.init(address={address!r}); print('CONNECTED', flush=True)"
    return subprocess.run(
        [sys.executable, "-c", code],
        env=_env(
            state_dir, HOME=str(state_dir / "home"), RAY_gcs_server_port_wait_time_s="3", **env
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- without a cluster ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["up", "--num-cpus", "0"],
        ["up", "--num-cpus", "two"],
        ["up", "--num-gpus", "-1"],
        ["up", "--idle-timeout", "0"],
        ["up", "--idle-timeout", "soon"],
        ["up", "--idle-timeout", "inf"],
        ["up", "extra"],
        ["down", "--force"],
    ],
)
def test_up_and_down_usage_errors_exit_2_and_start_nothing(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(kept_alive.STATE_DIR_ENV, str(tmp_path))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error:" in err and err.strip().count("\n") <= 2
    assert list(tmp_path.iterdir()) == []


def test_down_with_nothing_up_says_so_and_exits_0(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(kept_alive.STATE_DIR_ENV, str(tmp_path))
    assert cli.main(["down"]) == 0
    assert "no kept-alive cluster is up" in capsys.readouterr().out


def test_state_file_is_private_and_a_stale_one_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv(kept_alive.STATE_DIR_ENV, str(tmp_path / "state"))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(gone.stdout)
    kept_alive.write_state({"address": "127.0.0.1:1", "keeper_pid": pid, "keeper_started": 0.0})
    path = kept_alive.state_path()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert kept_alive.read_state()["keeper_pid"] == pid
    assert kept_alive.live_state() is None  # its keeper is gone
    assert not path.exists()


def _dead_pid():
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    return int(gone.stdout)


def test_down_with_a_stale_state_file_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(kept_alive.STATE_DIR_ENV, str(tmp_path))
    kept_alive.write_state(
        {"address": "127.0.0.1:1", "keeper_pid": _dead_pid(), "keeper_started": 0.0}
    )
    assert cli.main(["down"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "raygrid down: the cluster at 127.0.0.1:1 was gone; removed its state file"
    ]
    assert not kept_alive.state_path().exists()


def test_a_lease_wait_names_the_holder_and_has_a_time_limit(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(kept_alive.STATE_DIR_ENV, str(tmp_path))
    monkeypatch.setenv(kept_alive.LEASE_TIMEOUT_ENV, "0.5")
    holder = os.open(tmp_path / "lease", os.O_RDWR | os.O_CREAT, 0o600)
    waiter = os.open(tmp_path / "lease", os.O_RDWR)
    try:
        kept_alive._wait_for_lease(holder)  # takes it, and says who holds it
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=f"still in use by process {os.getpid()} "):
            kept_alive._wait_for_lease(waiter)
        assert 0.5 <= time.monotonic() - started < 5
        err = capsys.readouterr().err
        assert f"in use by process {os.getpid()} (" in err and "at most 0.5 s" in err
    finally:
        os.close(waiter)
        os.close(holder)


def test_a_search_not_on_the_kept_alive_cluster_takes_no_lease(tmp_path, monkeypatch):
    monkeypatch.setenv(kept_alive.STATE_DIR_ENV, str(tmp_path))
    assert kept_alive.lease_workers() is None  # this process runs the session's own Ray
    assert not (tmp_path / "lease").exists()


# -- with a cluster -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A kept-alive cluster of 2 CPUs with a long idle timeout; stopped at the end."""
    state_dir = tmp_path_factory.mktemp("kept-alive-state")
    started = time.perf_counter()
    up = _raygrid(state_dir, "up", "--num-cpus", "2", "--idle-timeout", "600")
    up_seconds = time.perf_counter() - started
    state = _state(state_dir)
    try:
        assert up.returncode == 0, up.stderr
        assert state is not None
        yield {"dir": state_dir, "state": state, "up": up, "up_seconds": up_seconds}
    finally:
        _raygrid(state_dir, "down")
        if state is not None:
            kept_alive.stop_session(state["keeper_pid"])


@pytest.mark.slow
def test_up_starts_a_detached_cluster_and_says_where(cluster):
    state, up = cluster["state"], cluster["up"]
    assert state["address"] in up.stdout and "raygrid down" in up.stdout
    assert state["num_cpus"] == 2 and len(state["warm"]["names"]) == 2
    keeper = psutil.Process(state["keeper_pid"])
    # `raygrid up` has exited; the keeper leads a session of its own, with Ray's processes.
    assert os.getsid(keeper.pid) == keeper.pid
    names = {p.name() for p in kept_alive.session_processes(keeper.pid)}
    assert {"gcs_server", "raylet"} <= names
    again = _raygrid(cluster["dir"], "up")
    assert again.returncode == 0 and "already up" in again.stdout
    assert len(again.stdout.splitlines()) == 1 and again.stderr == ""
    assert _state(cluster["dir"])["keeper_pid"] == keeper.pid


@pytest.mark.slow
def test_two_scripts_join_in_turn_and_the_second_finds_the_workers_warm(cluster, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(JOB)
    first = _run_job(cluster["dir"], script)
    second = _run_job(cluster["dir"], script)
    for run in (first, second):
        assert run["gcs_address"] == cluster["state"]["address"]
        assert run["own_ray"] is False
        assert not {"gcs_server", "raylet"} & set(run["children"])  # no Ray of its own
        assert run["connect_seconds"] < 1.0
        assert run["tf_before_every_fit"]  # TensorFlow was imported before any fit
    # The second script's fits ran in the very processes of the first: warm.
    assert second["pids"] == first["pids"]
    warm = {p.pid for p in kept_alive.session_processes(cluster["state"]["keeper_pid"])}
    assert set(first["pids"]) <= warm


# A search whose fits each take a while and mark, in the folder MARKS (set in the
# script: the kept-alive workers do not share the script's environment), that fits began.
SLOW_JOB = textwrap.dedent(
    """
    import json, os, time
    import numpy as np
    from sklearn.base import BaseEstimator, RegressorMixin
    from raygrid import RayGridSearchCV

    class Slow(BaseEstimator, RegressorMixin):
        def __init__(self, alpha=1.0):
            self.alpha = alpha

        def fit(self, X, y):
            open(os.path.join(MARKS, "fits-began"), "a").close()
            deadline = time.time() + 120  # the test says "go" once the second script waits
            while not os.path.exists(os.path.join(MARKS, "go")) and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            self.mean_ = float(np.mean(y)) * self.alpha
            return self

        def predict(self, X):
            return np.full(len(X), self.mean_)

    X, y = np.arange(40.0).reshape(20, 2), np.arange(20.0)
    search = RayGridSearchCV(Slow(), {"alpha": [0.5, 1.0, 2.0]}, cv=2, progress=False)
    search.fit(X, y)
    print("RESULT " + json.dumps({
        "starts": [t.timestamp() for t in search.tasks_["start_time"]],
        "ends": [t.timestamp() for t in search.tasks_["end_time"]],
        "pids": sorted({int(p) for p in search.tasks_["pid"]}),
        "best": search.best_params_,
    }), flush=True)
    """
)


@pytest.mark.slow
def test_a_second_script_waits_for_the_first_to_give_the_workers_back(cluster, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(f"MARKS = {str(tmp_path)!r}\n" + SLOW_JOB)
    env = _env(cluster["dir"])
    command = [sys.executable, str(script)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (tmp_path / "fits-began").exists():  # the first search holds the lease
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
        time.sleep(0.05)
    with open(tmp_path / "second.err", "w+") as second_err:
        second = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=second_err, text=True
        )
        while "waiting for them" not in (tmp_path / "second.err").read_text():
            assert second.poll() is None and time.monotonic() < deadline + 120
            time.sleep(0.05)
        (tmp_path / "go").touch()  # the first search's fits end; it gives the workers back
        second_out, _ = second.communicate(timeout=240)
        second_err.seek(0)
        second_stderr = second_err.read()
    out, err = first.communicate(timeout=240)
    runs = []
    for code, stdout, stderr in (
        (first.returncode, out.decode(), err.decode()),
        (second.returncode, second_out, second_stderr),
    ):
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        assert code == 0 and lines, stderr[-3000:]
        runs.append(json.loads(lines[-1].removeprefix("RESULT ")))
    waited = [line for line in second_stderr.splitlines() if "waiting for them" in line]
    assert len(waited) == 1 and f"in use by process {first.pid} (" in waited[0], second_stderr
    # The second search's fits all began after the first's had ended, on the same workers.
    assert min(runs[1]["starts"]) >= max(runs[0]["ends"])
    warm = {p.pid for p in kept_alive.session_processes(cluster["state"]["keeper_pid"])}
    assert set(runs[0]["pids"]) <= warm and set(runs[1]["pids"]) <= warm
    assert runs[0]["best"] == runs[1]["best"] == {"alpha": 0.5}


# A search whose fits print and warn; with FAIL, the fit with alpha=10 raises.
TALKING_JOB = textwrap.dedent(
    """
    import sys, warnings
    import numpy as np
    from sklearn.linear_model import Ridge
    from raygrid import RayGridSearchCV

    class Talking(Ridge):
        def fit(self, X, y):
            print(f"fit says alpha={self.alpha}", flush=True)
            warnings.warn(f"fit warns alpha={self.alpha}", UserWarning)
            if FAIL and self.alpha == 10.0:
                raise ValueError("planned failure")
            return super().fit(X, y)

    X, y = np.arange(40.0).reshape(20, 2), np.arange(20.0)
    search = RayGridSearchCV(Talking(), {"alpha": [0.1, 10.0]}, cv=2, error_score="raise",
                             progress=False, refit=False)
    search.fit(X, y)
    """
)


@pytest.mark.slow
def test_fit_prints_and_warnings_reach_the_scripts_terminal(cluster, tmp_path):
    script = tmp_path / "talking.py"
    script.write_text("FAIL = False\n" + TALKING_JOB)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(cluster["dir"]),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = sorted(line for line in done.stdout.splitlines() if line.startswith("fit says"))
    assert printed == ["fit says alpha=0.1"] * 2 + ["fit says alpha=10.0"] * 2, done.stdout
    assert done.stderr.count("UserWarning: fit warns alpha=") == 4, done.stderr


@pytest.mark.slow
def test_a_failing_search_leaves_the_warm_workers_warm(cluster, tmp_path):
    job = tmp_path / "train.py"
    job.write_text(JOB)
    before = _run_job(cluster["dir"], job)
    failing = tmp_path / "failing.py"
    failing.write_text("FAIL = True\n" + TALKING_JOB)
    done = subprocess.run(
        [sys.executable, str(failing)],
        env=_env(cluster["dir"]),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode != 0 and "planned failure" in done.stderr
    after = _run_job(cluster["dir"], job)
    assert after["pids"] == before["pids"]  # the same processes: still warm
    assert after["tf_before_every_fit"]


@pytest.mark.slow
def test_a_warm_worker_killed_between_scripts_is_replaced(cluster, tmp_path):
    job = tmp_path / "train.py"
    job.write_text(JOB)
    before = _run_job(cluster["dir"], job)
    killed = before["pids"][0]
    psutil.Process(killed).kill()
    deadline = time.monotonic() + 120
    while True:  # the keeper checks its workers every few seconds and starts a new one
        time.sleep(3)
        after = _run_job(cluster["dir"], job)
        replaced = killed not in after["pids"] and len(after["pids"]) == 2
        if (replaced and after["tf_before_every_fit"]) or time.monotonic() > deadline:
            break
    assert replaced and after["tf_before_every_fit"], after
    warm = {p.pid for p in kept_alive.session_processes(cluster["state"]["keeper_pid"])}
    assert set(after["pids"]) <= warm


@pytest.mark.slow
def test_a_client_without_the_token_is_refused(cluster):
    address = cluster["state"]["address"]
    refused = _connect_without_token(cluster["dir"], address)
    assert refused.returncode != 0 and "CONNECTED" not in refused.stdout
    assert "InvalidAuthToken" in refused.stderr or "Unauthenticated" in refused.stderr
    wrong = _connect_without_token(
        cluster["dir"], address, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 64
    )
    assert wrong.returncode != 0 and "CONNECTED" not in wrong.stdout
    # The same client with the cluster's token gets in: the refusals were the token's.
    right = _connect_without_token(
        cluster["dir"], address, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=cluster["state"]["token"]
    )
    assert right.returncode == 0 and "CONNECTED" in right.stdout, right.stderr[-2000:]


@pytest.mark.slow
def test_down_stops_every_process_and_removes_the_state_file(cluster):
    pid = cluster["state"]["keeper_pid"]
    assert _session_left(pid)
    down = _raygrid(cluster["dir"], "down")
    assert down.returncode == 0 and "stopped" in down.stdout, down.stderr
    assert _state(cluster["dir"]) is None
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _session_left(pid) == []
    again = _raygrid(cluster["dir"], "down")
    assert again.returncode == 0 and "no kept-alive cluster is up" in again.stdout


@pytest.mark.slow
def test_idle_cluster_stops_itself(tmp_path):
    up = _raygrid(tmp_path, "up", "--num-cpus", "1", "--idle-timeout", "5")
    assert up.returncode == 0, up.stderr
    pid = _state(tmp_path)["keeper_pid"]
    try:
        deadline = time.monotonic() + 60
        while _state(tmp_path) is not None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _state(tmp_path) is None, "still up after 60 s with a 5 s idle timeout"
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(timeout=30)
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert _session_left(pid) == []
        assert "idle for" in (tmp_path / "keeper.log").read_text()
    finally:
        kept_alive.stop_session(pid)
