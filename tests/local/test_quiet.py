"""Quiet workers and a quick exit: what a script using raygrid prints, and what it leaves.

The end-to-end tests run a seed-style search (``ChattySeedWrapper``: a new Keras model
and ``model.fit`` per fit, plus a print and a warning of its own) in a subprocess that
starts its own local Ray, as a user's script does, and read its combined output.
"""

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
import ray

from raygrid.local import quiet

TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS_DIR)

# What TensorFlow and Ray print in a fit worker that imports TensorFlow (captured from
# the seed example's workers on this machine; old-format lines from TensorFlow 2.15).
CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1795932570.419982    4044 port.cc:153] oneDNN custom operations are on. "
    "You may see slightly different numerical results due to floating-point round-off "
    "errors from different computation orders. To turn them off, set the environment "
    "variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1795932570.421153    4044 cudart_stub.cc:31] Could not find cuda drivers "
    "on your machine, GPU will not be used.",
    "I0000 00:00:1795932570.524974    4044 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1795932687.589979    4044 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "WARNING:tensorflow:5 out of the last 11 calls to <function TensorFlowTrainer."
    "make_predict_function.<locals>.one_step_on_data_distributed at 0x7fb06fc119e0> "
    "triggered tf.function retracing. Tracing is expensive and the excessive number of "
    "tracings could be due to (1) creating @tf.function repeatedly in a loop.",
    "2024-03-01 10:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom "
    "operations are on.",
    "2024-03-01 10:00:00.123456: E external/local_xla/xla/stream_executor/cuda/"
    "cuda_dnn.cc:9261] Unable to register cuDNN factory: Attempting to register factory "
    "for plugin cuDNN when one has already been registered",
]
USER_LINES = [
    "chatty wrapper: fitting units=8",
    "/work/tests/estimators.py:170: UserWarning: chatty wrapper: a warning from fit",
    '  warnings.warn("chatty wrapper: a warning from fit", UserWarning, stacklevel=2)',
    "Traceback (most recent call last):",
    "ValueError: Input contains NaN.",
    "E0000 00:00:1795932687.589979    4044 bfc_allocator.cc:485] Allocator (GPU_0_bfc) ran "
    "out of memory trying to allocate 2.00GiB",
    "WARNING:absl:You are saving your model as an HDF5 file via `model.save()`.",
    "I0000 is how my own logger starts a line",
    "",
]
# Substrings of the start-up lines, as they appear in a terminal (prefix and colours).
CHATTER_MARKS = [
    "absl::InitializeLog",
    "oneDNN custom operations",
    "Could not find cuda drivers",
    "cpu_feature_guard",
    "rebuild TensorFlow",
    "tf.function retracing",
    "cuInit",
]


@pytest.mark.parametrize("line", CHATTER)
def test_framework_chatter_is_recognised(line):
    assert quiet.is_chatter(line)


@pytest.mark.parametrize("line", USER_LINES)
def test_user_output_is_not_chatter(line):
    assert not quiet.is_chatter(line)


def batch(lines, actor_name="FitWorker", is_err=True, pid="123"):
    return {"lines": list(lines), "actor_name": actor_name, "is_err": is_err, "pid": pid}


def test_filter_drops_chatter_of_fit_workers_only():
    forwarded = []
    log_filter = quiet._WorkerLogFilter(forwarded.append)
    log_filter(batch(CHATTER[:3] + ["chatty wrapper: fitting units=8"]))
    log_filter(batch(CHATTER[:3]))
    log_filter(batch(CHATTER[:3], actor_name="UsersOwnActor"))
    assert [b["lines"] for b in forwarded] == [["chatty wrapper: fitting units=8"], CHATTER[:3]]
    assert forwarded[1]["actor_name"] == "UsersOwnActor"

    forwarded.clear()
    log_filter.show_all = True
    log_filter(batch(CHATTER))
    assert [b["lines"] for b in forwarded] == [CHATTER]


def test_filter_swallows_drain_markers_and_records_them():
    forwarded = []
    log_filter = quiet._WorkerLogFilter(forwarded.append)
    log_filter(batch(["before", f"{quiet._MARKER}abc", "after"], is_err=False, pid="7"))
    assert [b["lines"] for b in forwarded] == [["before", "after"]]
    assert log_filter.markers == {("abc", "7", False)}


@pytest.fixture
def fake_ray_handler(monkeypatch):
    """Ray's forwarding handler as a driver with ``log_to_driver=True`` has it."""
    dispatcher = quiet._dispatcher()
    assert dispatcher is not None, "Ray's log dispatcher moved: raygrid.local.quiet needs updating"
    forwarded = []
    monkeypatch.setattr(
        dispatcher, "handlers", [*dispatcher.handlers, (quiet._RAY_HANDLER, forwarded.append)]
    )
    return dispatcher, forwarded


def test_install_wraps_rays_handler_once(fake_ray_handler, monkeypatch, capsys):
    dispatcher, forwarded = fake_ray_handler
    monkeypatch.delenv(quiet.SHOW_ENV, raising=False)
    quiet.install()
    quiet.install()
    wrapped = [h for n, h in dispatcher.handlers if n == quiet._RAY_HANDLER]
    assert len(wrapped) == 1 and isinstance(wrapped[0], quiet._WorkerLogFilter)
    dispatcher.emit(batch([CHATTER[0], "mine"]))
    assert capsys.readouterr().err == "mine\n"  # a fit's line, printed as the fit wrote it
    dispatcher.emit(batch(["theirs"], actor_name="UsersOwnActor"))
    assert forwarded[-1]["lines"] == ["theirs"]  # other lines: Ray's own printing

    monkeypatch.setenv(quiet.SHOW_ENV, "1")
    quiet.install()
    dispatcher.emit(batch([CHATTER[0], "mine"]))
    assert capsys.readouterr().err == f"{CHATTER[0]}\nmine\n"


def test_fit_lines_carry_a_prefix_only_from_other_nodes(capsys):
    local = {**batch(["fitting", "done"], is_err=False), "ip": "10.0.0.1", "localhost": "10.0.0.1"}
    quiet.print_fit_lines(local)
    assert capsys.readouterr().out == "fitting\ndone\n"
    quiet.print_fit_lines({**local, "ip": "10.0.0.2"})
    out = capsys.readouterr().out  # not a terminal: no colour codes
    assert (
        out == "(FitWorker pid=123, ip=10.0.0.2) fitting\n(FitWorker pid=123, ip=10.0.0.2) done\n"
    )


def test_drain_without_forwarding_returns_at_once():
    assert not ray.is_initialized() or quiet._installed() is None
    start = time.monotonic()
    assert quiet.drain([object()], timeout=5)
    assert time.monotonic() - start < 1


SCRIPT = textwrap.dedent(
    """
    import sys
    import time

    import psutil
    from estimators import ChattySeedWrapper
    from sklearn.datasets import make_classification

    from raygrid import RayGridSearchCV
    from raygrid.local.connect import start_local

    gpu = sys.argv[1] == "gpu"
    start_local(num_gpus=1 if gpu else None)
    X, y = make_classification(
        n_samples=120, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    grid = {"units": [4, 8, 16], "learning_rate": [0.01, 0.1]}
    RayGridSearchCV(ChattySeedWrapper(), grid, cv=3, refit=False).fit(X, y)
    if gpu:
        RayGridSearchCV(
            ChattySeedWrapper(), {"units": [4, 8]}, cv=2, refit=False, num_gpus_per_task=1
        ).fit(X, y)
    assert "tensorflow" not in sys.modules
    pids = [p.pid for p in psutil.Process().children(recursive=True)]
    print("RAY_PIDS", *pids, flush=True)
    print("SCRIPT_END", time.time(), flush=True)
    """
)


def run_script(tmp_path, mode, **env):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([ROOT, TESTS_DIR]),
        "RAY_DEDUP_LOGS": "1",
        **env,
    }
    env.pop("RAY_ADDRESS", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    # Output to a file, not a pipe: the script counts as ended when its process has
    # exited, not when every process that inherited its output has closed it.
    with open(tmp_path / "output.txt", "w+") as output:
        proc = subprocess.Popen(
            [sys.executable, str(script), mode],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            proc.wait(timeout=300)
        finally:
            proc.kill()
        output.seek(0)
        out = output.read()
    assert proc.returncode == 0, out
    pids = [int(p) for p in out.split("RAY_PIDS")[1].splitlines()[0].split()]
    return out, pids, alive(pids)


def alive(pids):
    left = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.append(pid)
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory):
    return run_script(tmp_path_factory.mktemp("quiet"), "gpu")


@pytest.mark.slow
def test_seed_style_search_prints_the_users_lines_and_no_framework_chatter(quiet_run):
    out, _, _ = quiet_run
    found = [mark for mark in CHATTER_MARKS if mark in out]
    assert not found, f"start-up chatter reached the terminal: {found}\n{out}"
    assert "chatty wrapper: fitting units=" in out, out
    assert "UserWarning: chatty wrapper: a warning from fit" in out, out


@pytest.mark.slow
def test_nothing_is_left_running_after_the_script_exits(quiet_run):
    out, pids, alive_at_exit = quiet_run
    assert len(pids) >= 4, out  # gcs_server, raylet, monitor, log monitor, workers...
    assert alive_at_exit == []


@pytest.mark.slow
def test_framework_logs_come_back_on_request(tmp_path):
    out, _, alive_at_exit = run_script(tmp_path, "cpu", **{quiet.SHOW_ENV: "1"})
    # TensorFlow's start-up lines (the oneDNN one only appears on CPUs where oneDNN's
    # custom operations are on by default, so it is not asked for).
    assert "absl::InitializeLog" in out, out
    assert "chatty wrapper: fitting units=" in out
    assert alive_at_exit == []


def test_other_lines_lose_rays_colour_codes_when_not_a_terminal(capsys, monkeypatch):
    from ray._private.worker import print_to_stdstream

    monkeypatch.delenv(quiet._COLOR_ENV, raising=False)
    log_filter = quiet._WorkerLogFilter(lambda data: print_to_stdstream(data, False))
    log_filter({**batch(["crashed"], actor_name="", pid="9"), "ip": "a", "localhost": "a"})
    assert capsys.readouterr().err == "(pid=9) crashed\n"
    assert quiet._COLOR_ENV not in os.environ
