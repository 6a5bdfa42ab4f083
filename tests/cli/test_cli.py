"""The ``raygrid`` command line: run, submit, report; and searches on multi-node clusters.

In-process tests use the session's Ray. The cluster tests start their own clusters in
other processes (a Ray of their own cannot live in this process next to the session's)
and always stop exactly what they started.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV
from sklearn.tree import DecisionTreeClassifier

from raygrid import RayGridSearchCV
from raygrid.cli import main as cli
from raygrid.cli import submit
from raygrid.spec.search_spec import load_spec
from raygrid.store.results import RESULTS_FILE, TASKS_FILE, read_output

REPO = Path(__file__).resolve().parents[2]
PYTHON_BIN = Path(sys.executable).parent

TINY_SPEC = """
[estimator]
class = "sklearn.tree.DecisionTreeClassifier"

[estimator.params]
random_state = 0

[search]
param_grid = {{ max_depth = [1, 2, 3], criterion = ["gini", "entropy"] }}
cv = 3
scoring = ["accuracy", "f1"]
refit = "accuracy"
{search_extra}

[data]
path = "{data}"
target = "label"

[output]
path = "{output}"
"""


def tiny_frame() -> pd.DataFrame:
    X, y = make_classification(
        n_samples=90, n_features=4, n_informative=2, flip_y=0.2, random_state=0
    )
    frame = pd.DataFrame(X, columns=["f0", "f1", "f2", "f3"])
    frame["label"] = y
    return frame


def write_tiny_spec(
    folder: Path, output: str, search_extra: str = "", data: str = "data.parquet"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tiny_frame().to_parquet(folder / "data.parquet")
    spec = folder / "tiny.toml"
    spec.write_text(TINY_SPEC.format(output=output, search_extra=search_extra, data=data))
    return spec


def sklearn_reference() -> GridSearchCV:
    frame = tiny_frame()
    search = GridSearchCV(
        DecisionTreeClassifier(random_state=0),
        {"max_depth": [1, 2, 3], "criterion": ["gini", "entropy"]},
        cv=3,
        scoring=["accuracy", "f1"],
        refit="accuracy",
    )
    return search.fit(frame[["f0", "f1", "f2", "f3"]], frame["label"].to_numpy())


def assert_results_match_sklearn(results: pd.DataFrame) -> None:
    """Rows of a saved results table equal scikit-learn's cv_results_, candidate by candidate."""
    reference = sklearn_reference().cv_results_
    expected = pd.DataFrame(
        {
            "param_max_depth": reference["param_max_depth"].data.astype(int),
            "param_criterion": reference["param_criterion"].data.astype(str),
            "mean_test_accuracy": reference["mean_test_accuracy"],
            "mean_test_f1": reference["mean_test_f1"],
            "rank_test_accuracy": reference["rank_test_accuracy"],
        }
    )
    got = results[list(expected.columns)].copy()
    got["param_max_depth"] = got["param_max_depth"].astype(int)
    # Row i is candidate i, as in scikit-learn's cv_results_.
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


# -- raygrid run ----------------------------------------------------------------------------


def test_run_end_to_end_writes_parquet(tmp_path: Path, capsys) -> None:
    output = tmp_path / "results" / "tiny"
    spec = write_tiny_spec(tmp_path, str(output))
    code = cli.main(["run", str(spec), "--top", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "Fitting 3 folds for each of 6 candidates, totalling 18 fits" in out
    assert "Ranked results (top 3 of 6):" in out
    assert f"results written to {output}" in out

    table = pq.read_table(output / RESULTS_FILE).to_pandas()
    assert len(table) == 6
    assert list(table.columns) == list(sklearn_reference().cv_results_)
    assert_results_match_sklearn(table)
    tasks = pq.read_table(output / TASKS_FILE).to_pandas()
    assert len(tasks) == 18 and tasks["node_id"].notna().all()
    _, _, summary = read_output(str(output))
    assert summary["best_params"] == sklearn_reference().best_params_


def test_run_writes_to_a_uri(tmp_path: Path, capsys) -> None:
    uri = f"file://{tmp_path / 'bucket' / 'run1'}"
    spec = write_tiny_spec(tmp_path, uri, search_extra="verbose = 0")
    assert cli.main(["run", str(spec)]) == 0
    capsys.readouterr()
    results, tasks, _ = read_output(uri)
    assert len(results) == 6 and len(tasks) == 18
    assert (tmp_path / "bucket" / "run1" / RESULTS_FILE).is_file()


def test_spec_errors_exit_2_with_one_line_each(tmp_path: Path, capsys) -> None:
    spec = write_tiny_spec(tmp_path, "out", search_extra='verbose = "loud"')
    spec.write_text(spec.read_text().replace("cv = 3", 'cv = "three"'))
    assert cli.main(["run", str(spec)]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        f'raygrid run: {spec}: [search].cv: expected an int >= 2 or a table, got "three"',
        f'raygrid run: {spec}: [search].verbose: expected an int >= 0, got "loud"',
    ]
    assert "Traceback" not in out + err


def test_missing_spec_and_usage_errors_exit_2(tmp_path: Path, capsys) -> None:
    assert cli.main(["run", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err == f"raygrid run: {tmp_path / 'nope.toml'}: no such file\n"
    assert cli.main([]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["run"]) == 2
    assert cli.main(["run", "x.toml", "--top", "many"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage: raygrid" in err
    assert cli.main(["--help"]) == 0
    assert cli.main(["submit", "--help"]) == 0
    assert "--no-wait" in capsys.readouterr().out


def test_search_failure_exits_1(tmp_path: Path, capsys) -> None:
    spec = write_tiny_spec(tmp_path, "out", search_extra='error_score = "raise"')
    spec.write_text(spec.read_text().replace("max_depth = [1, 2, 3]", "max_depth = [-1]"))
    assert cli.main(["run", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("raygrid run: search failed: InvalidParameterError: ")
    assert "Traceback" not in err


def test_load_error_of_data_file_exits_2(tmp_path: Path, capsys) -> None:
    spec = write_tiny_spec(tmp_path, "out")
    frame = tiny_frame()
    frame.loc[3, "label"] = np.nan
    frame.to_parquet(tmp_path / "data.parquet")
    assert cli.main(["run", str(spec)]) == 2
    assert "[data].target: column 'label' has missing values" in capsys.readouterr().err


# -- raygrid report -------------------------------------------------------------------------


def test_report_passes_its_options_to_run_report(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(cli.report, "run_report", lambda *args: seen.append(args))
    assert cli.main(["report", "results/a", "--top", "3"]) == 0
    assert seen == [("results/a", None, None, None, None, 3)]


def test_report_bad_input_is_a_clear_error(tmp_path, capsys) -> None:
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raygrid report: ") and "Traceback" not in err


# -- raygrid submit (without a cluster) -----------------------------------------------------


def test_stage_job_dir_ships_spec_and_data(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "elsewhere").mkdir()
    journal = "results_dir" in inspect.signature(RayGridSearchCV).parameters
    spec_path = write_tiny_spec(
        tmp_path / "project",
        "results/x",
        data="../data/d.parquet",
        search_extra='results_dir = "journal"' if journal else "",
    )
    (tmp_path / "project" / "data.parquet").rename(tmp_path / "data.parquet")
    (tmp_path / "data").mkdir()
    (tmp_path / "data.parquet").rename(tmp_path / "data" / "d.parquet")
    monkeypatch.chdir(tmp_path / "elsewhere")
    spec = load_spec(spec_path)
    workdir = tmp_path / "job"
    workdir.mkdir()
    staged = submit.stage_job_dir(spec, workdir, "tiny.toml")
    assert sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*")) == [
        "data",
        "data/d.parquet",
        "tiny.toml",
    ]
    monkeypatch.chdir("/")
    again = load_spec(staged)
    assert again.data.path == str(workdir / "data" / "d.parquet")
    assert again.output == str(tmp_path / "elsewhere" / "results" / "x")
    assert again.search_params == spec.search_params
    if journal:
        assert again.search_params["results_dir"] == str(tmp_path / "elsewhere" / "journal")
    assert again.raw["estimator"] == spec.raw["estimator"]


def test_submit_needs_an_output(tmp_path: Path, capsys) -> None:
    spec = write_tiny_spec(tmp_path, "out")
    spec.write_text(spec.read_text().split("[output]")[0])
    assert cli.main(["submit", str(spec), "--address", "http://127.0.0.1:9"]) == 2
    assert "[output].path: missing; `raygrid submit` reads the results back" in (
        capsys.readouterr().err
    )


def test_submit_to_nothing_exits_1(tmp_path: Path, capsys) -> None:
    spec = write_tiny_spec(tmp_path, "out")
    code = cli.main(["submit", str(spec), "--address", f"http://127.0.0.1:{free_port()}"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("raygrid submit: cannot reach the Ray Jobs API: ")
    assert len(err.splitlines()) == 1


# -- clusters in other processes ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment of a test cluster's processes: its own temp dir and marker."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN")
    }
    env.update(
        PATH=f"{PYTHON_BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_TMPDIR=str(root),  # keeps ray_current_cluster out of /tmp/ray
        RAY_USAGE_STATS_ENABLED="0",
        RAYGRID_TEST_CLUSTER=str(root),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env.update(extra)
    return env


def marked_pids(root: Path) -> list[int]:
    """Processes of this user carrying the cluster's marker (nodes, workers, drivers)."""
    marker = f"RAYGRID_TEST_CLUSTER={root}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def stop_processes(pids: list[int], timeout: float) -> list[int]:
    """SIGTERM, then SIGKILL what is left after ``timeout``; return what still lives."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + timeout
        while time.time() < deadline:
            pids = [p for p in pids if _alive(p)]
            if not pids:
                return []
            time.sleep(0.2)
    return [p for p in pids if _alive(p)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):  # reap a child of ours: not alive
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


class RayStartCluster:
    """A head and one worker node started with ``ray start --block``, token auth on."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rgc-", dir="/tmp"))
        self.token_file = self.root / "token"
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        self.env = cluster_env(
            self.root, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_file)
        )
        self.gcs_port, self.dashboard_port = free_port(), free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.procs: list[subprocess.Popen] = []

    def start(self, timeout: float = 120.0) -> None:
        common = ["--block", "--disable-usage-stats", "--num-cpus", "1", "--num-gpus", "0"]
        common += ["--object-store-memory", str(100 * 1024 * 1024)]
        self._node(
            "head",
            [
                "--head",
                "--port",
                str(self.gcs_port),
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(self.dashboard_port),
                "--ray-client-server-port",
                str(free_port()),
                *common,
            ],
            timeout,
        )
        self._node("worker", ["--address", f"127.0.0.1:{self.gcs_port}", *common], timeout)

    def _node(self, name: str, args: list[str], timeout: float) -> None:
        log = self.root / f"{name}.log"
        command = [str(PYTHON_BIN / "ray"), "start", *args]
        command += ["--dashboard-agent-listen-port", str(free_port())]
        command += ["--temp-dir", str(self.root / name)]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        deadline = time.time() + timeout
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"ray start ({name}) failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> list[int]:
        """Stop exactly this cluster's processes; return any that survived."""
        for proc in reversed(self.procs):  # worker first, then head
            stop_processes([proc.pid], timeout=30)
            proc.wait(timeout=5)
        left = stop_processes(marked_pids(self.root), timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
        return left


@pytest.mark.slow
def test_submit_to_a_real_cluster_with_token_auth(tmp_path: Path) -> None:
    output = tmp_path / "results"
    spec = write_tiny_spec(tmp_path / "project", str(output))
    cluster = RayStartCluster()
    try:
        cluster.start()

        # Without the token, the Jobs API refuses: no header, a wrong token, our CLI.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{cluster.address}/api/jobs/", timeout=10)
        assert refused.value.code == 401
        wrong = urllib.request.Request(
            f"{cluster.address}/api/jobs/", headers={"Authorization": "Bearer nope"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(wrong, timeout=10)
        assert refused.value.code == 403
        no_token = {k: v for k, v in cluster.env.items() if not k.startswith("RAY_AUTH_TOKEN")}
        no_token["RAY_AUTH_MODE"] = "disabled"
        denied = subprocess.run(
            [
                sys.executable,
                "-m",
                "raygrid.cli.main",
                "submit",
                str(spec),
                "--address",
                cluster.address,
            ],
            env=no_token,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert denied.returncode == 1, denied.stderr
        assert "the cluster refused this client: AuthenticationError" in denied.stderr
        assert not output.exists()

        # With the token (RAY_AUTH_TOKEN_PATH), the job runs and results come back.
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "raygrid.cli.main",
                "submit",
                str(spec),
                "--address",
                cluster.address,
            ],
            env=cluster.env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Running entrypoint for job" in done.stdout  # the job's own log, streamed
        assert "SUCCEEDED; reading results from" in done.stdout
        assert done.stdout.count("Ranked results:") == 2  # the job's, and ours
        results = pq.read_table(output / RESULTS_FILE).to_pandas()
        assert_results_match_sklearn(results)
        tasks = pq.read_table(output / TASKS_FILE).to_pandas()
        assert tasks["node_id"].nunique() == 2, tasks["node_id"].value_counts()

        # --no-wait: the job id, at once.
        quick = subprocess.run(
            [sys.executable, "-m", "raygrid.cli.main", "submit", str(spec)]
            + ["--address", cluster.address, "--no-wait", "--job-id", "raygrid-test-nowait"]
            + ["--auth-token-file", str(cluster.token_file)],
            env=no_token,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert quick.returncode == 0, quick.stderr
        assert quick.stdout.splitlines()[-1] == "raygrid-test-nowait"
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(
            cluster.address,
            headers={"Authorization": f"Bearer {cluster.token_file.read_text()}"},
        )
        deadline = time.time() + 180
        while (status := client.get_job_status("raygrid-test-nowait")) not in (
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.STOPPED,
        ) and time.time() < deadline:
            time.sleep(1)
        assert status == JobStatus.SUCCEEDED, client.get_job_logs("raygrid-test-nowait")
    finally:
        left = cluster.stop()
    assert left == []


CLUSTER_SEARCH = textwrap.dedent(
    """
    import json, socket
    import ray
    from ray.cluster_utils import Cluster
    from sklearn.datasets import make_classification
    from sklearn.tree import DecisionTreeClassifier
    from raygrid import RayGridSearchCV

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    head = {"num_cpus": 1, "include_dashboard": False, "gcs_server_port": free_port(),
            "dashboard_agent_listen_port": free_port()}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1, num_gpus=1, dashboard_agent_listen_port=free_port())
        cluster.wait_for_nodes()
        X, y = make_classification(n_samples=120, n_features=6, random_state=0)
        search = RayGridSearchCV(
            DecisionTreeClassifier(random_state=0),
            {"max_depth": [1, 2, 3], "min_samples_leaf": [1, 5]},
            cv=3,
            num_gpus_per_task=1,
            ray_address=cluster.address,
        )
        search.fit(X, y)
        results = {k: v.tolist() for k, v in search.cv_results_.items()
                   if k.startswith(("split", "mean_test", "std_test", "rank_test"))}
        print("RESULT " + json.dumps({
            "cv_results": results,
            "node_ids": sorted(set(search.tasks_["node_id"])),
            "gpu_ids": sorted(set(search.tasks_["gpu_ids"])),
            "alive_nodes": sum(n["Alive"] for n in ray.nodes()),
        }))
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


@pytest.mark.slow
def test_search_spreads_over_cluster_utils_nodes(tmp_path: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="rgu-", dir="/tmp"))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLUSTER_SEARCH],
            env=cluster_env(root),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            stop_processes([proc.pid], timeout=10)
            raise
        assert proc.returncode == 0, stderr[-3000:]
        line = next(ln for ln in stdout.splitlines() if ln.startswith("RESULT "))
        got = json.loads(line.removeprefix("RESULT "))
    finally:
        left = stop_processes(marked_pids(root), timeout=10)
        shutil.rmtree(root, ignore_errors=True)
    assert left == []

    assert got["alive_nodes"] == 3
    assert len(got["node_ids"]) >= 2  # both GPU nodes ran fits
    assert got["gpu_ids"] == ["0"]  # one logical GPU per node, each fit holding it

    X, y = make_classification(n_samples=120, n_features=6, random_state=0)
    reference = GridSearchCV(
        DecisionTreeClassifier(random_state=0),
        {"max_depth": [1, 2, 3], "min_samples_leaf": [1, 5]},
        cv=3,
    ).fit(X, y)
    for key, values in got["cv_results"].items():
        np.testing.assert_allclose(values, reference.cv_results_[key], rtol=0, atol=1e-12)
    assert set(got["cv_results"]) == {
        k
        for k in reference.cv_results_
        if k.startswith(("split", "mean_test", "std_test", "rank_test"))
    }


def test_train_script_quick(tmp_path: Path, capsys) -> None:
    import runpy

    script = runpy.run_path(str(REPO / "examples" / "train_script.py"))
    script["main"](["--quick", "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "Best cross-validation accuracy:" in out
    assert (tmp_path / "out" / RESULTS_FILE).is_file()


def test_huge_grid_is_announced_with_its_cost_and_never_expanded(tmp_path: Path, capsys) -> None:
    import tracemalloc

    spec = write_tiny_spec(tmp_path, "out", search_extra="fit_timeout = 30")
    values = ", ".join(str(v) for v in range(1, 1001))
    text = spec.read_text().replace(
        'max_depth = [1, 2, 3], criterion = ["gini", "entropy"]',
        f"max_depth = [{values}], min_samples_leaf = [{values}]",
    )
    spec.write_text(text)
    stopped = RuntimeError("stopped before fitting")

    def no_fit(self, X, y=None, **params):
        raise stopped

    tracemalloc.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(RayGridSearchCV, "fit", no_fit)
            code = cli.main(["run", str(spec)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    assert code == 1 and "stopped before fitting" in err
    assert "1000000 candidates" in out
    assert "warning: 1,000,000 candidates × 3 folds = 3,000,000 fits" in err
    assert peak < 50 * 2**20  # a million candidates as dicts would take hundreds of MB
    assert load_spec(spec).search_params["fit_timeout"] == 30
