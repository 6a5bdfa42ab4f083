"""`raygrid doctor`: nodes, versions and GPUs, checked before a search.

On this GPU-less machine: plain `raygrid doctor` exits 0 and prints the versions;
`--expect-gpus 1` exits 1. A two-node `ray.cluster_utils.Cluster` with one (logical) GPU
node shows the problem lines: a GPU TensorFlow cannot see and a faked version mismatch.
What the doctor prints on a real GPU node is shown with faked device info.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from raygrid.cli import doctor

DRIVER = {
    "python": "3.11.7",
    "ray": "2.60.0",
    "raygrid": "0.1.0",
    "scikit-learn": "1.9.1",
    "tensorflow": "2.21.0",
}
# What gpu_probe returns on a g5.xlarge node whose image works (faked: no GPU here).
A10G = {
    "ray_gpu_ids": ["0"],
    "cuda_visible_devices": "0",
    "framework": "TensorFlow 2.21.0",
    "gpus": ["GPU:0 NVIDIA A10G"],
    "built_for": "CUDA 12.5.1, cuDNN 9",
    "memory_mib": 23028,
    "loaded": {"cuda": "12.9", "cudnn": "9.27.0"},
}


def node(ip, gpus=0.0, head=False, versions=None, checks=()):
    return doctor.NodeReport(
        node_id=("3f2a9c01" if head else "b81e4d27") + ip.replace(".", ""),
        ip=ip,
        head=head,
        cpus=4.0,
        gpus=gpus,
        memory=14.0 * 2**30,
        object_store=4.0 * 2**30,
        versions=dict(versions or DRIVER),
        gpu_checks=list(checks),
    )


def test_a_gpu_node_whose_tensorflow_sees_its_gpu_is_ok():
    nodes = [node("10.0.0.5", head=True), node("10.0.0.7", gpus=1, checks=[A10G])]
    found = doctor.problems(DRIVER, nodes, expect_gpus=1)
    assert found == []
    text = doctor.format_report(DRIVER, nodes, found)
    print(text)  # the README's GPU-node example
    assert (
        "  GPU 0: TensorFlow sees GPU:0 NVIDIA A10G, 22.5 GiB; built for CUDA 12.5.1, "
        "cuDNN 9; loaded CUDA 12.9, cuDNN 9.27.0"
    ) in text.splitlines()
    assert (
        text.splitlines()[-1]
        == "OK: 2 node(s), 1 GPU(s) TensorFlow can use, versions as the driver"
    )


def test_problem_lines_one_per_problem():
    blind = {**A10G, "gpus": [], "memory_mib": None, "loaded": {}}
    old = {**DRIVER, "ray": "2.59.0"}
    nodes = [node("10.0.0.5", head=True), node("10.0.0.7", gpus=1, versions=old, checks=[blind])]
    found = doctor.problems(DRIVER, nodes, expect_gpus=2)
    assert found == [
        "node 2 10.0.0.7: ray 2.59.0, driver 2.60.0",
        "node 2 10.0.0.7 GPU 0: TensorFlow 2.21.0 sees no GPU (CUDA_VISIBLE_DEVICES='0'; "
        "built for CUDA 12.5.1, cuDNN 9)",
        "--expect-gpus 2: the cluster has 0 GPU(s) TensorFlow can use (Ray counts 1 GPU(s) on "
        "2 node(s))",
    ]
    text = doctor.format_report(DRIVER, nodes, found)
    assert [line for line in text.splitlines() if line.startswith("PROBLEM: ")] == [
        f"PROBLEM: {line}" for line in found
    ]


def raygrid(*args, timeout=240):
    env = {k: v for k, v in os.environ.items() if k != "RAYGRID_ALLOW_LOGICAL_GPUS"}
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "raygrid", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return run, time.monotonic() - start


def test_doctor_here_exits_0_with_the_versions():
    run, _ = raygrid("doctor")
    assert run.returncode == 0, run.stderr[-2000:]
    print(run.stdout)
    lines = run.stdout.splitlines()
    assert lines[0].startswith("driver: Python 3.")
    assert "Ray 2." in lines[0] and "TensorFlow 2." in lines[0] and "scikit-learn 1." in lines[0]
    assert lines[-1].startswith("OK: 1 node(s), 0 GPU(s)")


def test_doctor_expecting_a_gpu_here_exits_1_naming_it():
    run, _ = raygrid("doctor", "--expect-gpus", "1", "--json")
    assert run.returncode == 1, run.stderr[-2000:]
    out = json.loads(run.stdout)
    assert out["problems"] == [
        "--expect-gpus 1: the cluster has 0 GPU(s) TensorFlow can use (Ray counts 0 GPU(s) on "
        "1 node(s))"
    ]
    assert out["driver"]["ray"] == out["nodes"][0]["versions"]["ray"]


@pytest.mark.parametrize("address", ["127.0.0.1:1", "http://127.0.0.1:8265"])
def test_an_address_that_does_not_answer_is_one_line_and_exit_2(address):
    run, elapsed = raygrid("doctor", "--address", address, timeout=60)
    assert run.returncode == 2
    assert run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("raygrid doctor: ") and address in line
    assert elapsed < 30


TWO_NODES = textwrap.dedent(
    """
    import json, sys
    import ray
    from ray.cluster_utils import Cluster
    from sklearn.datasets import make_classification
    from raygrid import RayGridSearchCV
    from raygrid.cli import doctor, main
    from raygrid.keras import KerasClassifier

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    real = doctor.driver_versions
    doctor.driver_versions = lambda: {**real(), "scikit-learn": "0.0.fake"}
    code = main.main(["doctor", "--address", cluster.address])
    print("EXIT", code, flush=True)
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    search = RayGridSearchCV(KerasClassifier(units=4, epochs=1), {"units": [4]}, cv=2,
                             num_gpus_per_task=1, progress=False)
    try:
        search.fit(X, y)
    except Exception as exc:
        print("RAISED", type(exc).__name__, gpu_node.node_id[:8], str(exc), flush=True)
    ray.shutdown()
    cluster.shutdown()
    """
)


@pytest.mark.slow
def test_two_node_cluster_gpu_node_problems_and_the_search_stops(tmp_path):
    script = tmp_path / "two_nodes.py"
    script.write_text(TWO_NODES)
    env = {k: v for k, v in os.environ.items() if k != "RAYGRID_ALLOW_LOGICAL_GPUS"}
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=400, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    print(out)
    problems = [line for line in out.splitlines() if line.startswith("PROBLEM: ")]
    assert "EXIT 1" in out
    assert re.search(r"^PROBLEM: node 1 \S+: scikit-learn 1\.\S+, driver 0\.0\.fake$", out, re.M)
    assert len([p for p in problems if "scikit-learn" in p]) == 2
    assert any(
        "GPU 0: TensorFlow 2." in p and "sees no GPU (CUDA_VISIBLE_DEVICES='0'" in p
        for p in problems
    )
    (raised,) = [line for line in out.splitlines() if line.startswith("RAISED")]
    _, kind, node_id, message = raised.split(" ", 3)
    assert kind == "DeviceError"
    assert f"(node {node_id})" in message and "holds GPU 0" in message
