"""Static checks of the cluster configurations in cluster/ (no Ray cluster is started).

* the cluster-launcher YAMLs validate against the JSON schema the installed Ray ships,
  as written and after Ray's own preparation step of `ray up`;
* the KubeRay manifests have the right kinds, a GPU worker group that requests
  ``nvidia.com/gpu`` and declares it to Ray, and token authentication on every container;
* every config turns on token authentication and keeps the dashboard / Jobs API off
  public interfaces;
* ``cluster/local.sh`` parses, offers start/stop/status and refuses bad input before
  starting anything.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHER_YAMLS = ["aws-gpu.yaml", "onprem.yaml"]
KUBERAY_YAMLS = ["kuberay-raycluster.yaml", "kuberay-rayjob.yaml"]
LOCAL_SH = CLUSTER / "local.sh"
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """Override conftest's session Ray: nothing in this module needs a running Ray."""
    yield


def load_yaml(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def start_commands(config: dict, key: str) -> list[str]:
    """The `ray start` invocations among a launcher config's start commands."""
    return [c for c in config.get(key, []) if "ray start" in c]


# --------------------------------------------------------------------------------------
# Ray cluster launcher YAMLs


@pytest.fixture(scope="module")
def ray_schema() -> dict:
    return json.loads(RAY_SCHEMA.read_text())


@pytest.mark.parametrize("name", LAUNCHER_YAMLS)
def test_launcher_yaml_matches_rays_schema(name, ray_schema):
    jsonschema.validate(load_yaml(name), ray_schema)


@pytest.mark.parametrize("name", LAUNCHER_YAMLS)
def test_launcher_yaml_survives_ray_up_preparation(name):
    """`ray up` merges Ray's provider defaults into the config and validates the result.

    Ray's defaults start the dashboard on 0.0.0.0, so the prepared config (not only the
    file) must still bind it to 127.0.0.1.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(load_yaml(name)))
    validate_config(prepared)
    heads = start_commands(prepared, "head_start_ray_commands")
    assert heads and all("--dashboard-host=127.0.0.1" in c for c in heads)
    assert "0.0.0.0" not in json.dumps(prepared)


@pytest.mark.parametrize("name", LAUNCHER_YAMLS)
def test_launcher_yaml_enables_token_auth(name):
    config = load_yaml(name)
    run_options = " ".join(config["docker"]["run_options"])
    assert "--env RAY_AUTH_MODE=token" in run_options
    # Every `ray start` of head and workers runs with token auth and the cluster's token.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        cmds = start_commands(config, key)
        assert cmds, key
        for cmd in cmds:
            assert re.search(r"\bRAY_AUTH_MODE=token\s.*\bray start\b", cmd), cmd
    paths = set(re.findall(r"RAY_AUTH_TOKEN_PATH=(\S+)", run_options))
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        for cmd in start_commands(config, key):
            paths |= set(re.findall(r"RAY_AUTH_TOKEN_PATH=(\S+)", cmd))
    assert len(paths) == 1, paths
    (token_path,) = paths
    # ... and that token file arrives on every node through a file mount.
    mounted = [remote for remote in config["file_mounts"] if token_path.startswith(remote)]
    assert mounted, f"{token_path} is not inside any file_mounts target"


@pytest.mark.parametrize("name", LAUNCHER_YAMLS)
def test_launcher_yaml_keeps_dashboard_private(name):
    config = load_yaml(name)
    heads = start_commands(config, "head_start_ray_commands")
    assert heads
    for cmd in heads:
        assert "--head" in cmd
        assert "--dashboard-host=127.0.0.1" in cmd
    for cmd in start_commands(config, "worker_start_ray_commands"):
        assert "--head" not in cmd
        assert "--address=$RAY_HEAD_IP:6379" in cmd
    assert "0.0.0.0" not in json.dumps(config)  # nowhere in the parsed config


def test_aws_config_has_cpu_head_and_gpu_workers():
    config = load_yaml("aws-gpu.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    gpu_workers = [t for t in workers if t["resources"].get("GPU", 0) >= 1]
    assert gpu_workers
    for t in gpu_workers:
        assert t["resources"]["CPU"] >= 1
        assert 0 <= t["min_workers"] <= t["max_workers"] <= config["max_workers"]
        assert t["node_config"]["InstanceType"].startswith(("g4dn.", "g5.", "g6.", "p3.", "p4"))


def test_onprem_config_uses_local_provider():
    provider = load_yaml("onprem.yaml")["provider"]
    assert provider["type"] == "local"
    assert provider["head_ip"]
    assert isinstance(provider["worker_ips"], list) and provider["worker_ips"]


# --------------------------------------------------------------------------------------
# KubeRay manifests


def kuberay_docs(name: str) -> list[dict]:
    docs = [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]
    assert docs, name
    return docs


def cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def ray_containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def test_kuberay_manifests_have_expected_kinds():
    (raycluster,) = kuberay_docs("kuberay-raycluster.yaml")
    (rayjob,) = kuberay_docs("kuberay-rayjob.yaml")
    assert (raycluster["apiVersion"], raycluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")


@pytest.mark.parametrize("name", KUBERAY_YAMLS)
def test_kuberay_gpu_worker_group(name):
    (doc,) = kuberay_docs(name)
    groups = cluster_spec(doc)["workerGroupSpecs"]
    gpu_groups = 0
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            limits = container.get("resources", {}).get("limits", {})
            gpus = int(limits.get("nvidia.com/gpu", 0))
            if gpus:
                gpu_groups += 1
                # Ray is told how many GPUs the pod has, consistently with the limit.
                assert int(group["rayStartParams"]["num-gpus"]) == gpus
                assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    assert gpu_groups >= 1


@pytest.mark.parametrize("name", KUBERAY_YAMLS)
def test_kuberay_token_auth(name):
    (doc,) = kuberay_docs(name)
    spec = cluster_spec(doc)
    auth = spec["authOptions"]
    assert auth["mode"] == "token"
    secret = auth["secretName"]
    containers = ray_containers(spec)
    if doc["kind"] == "RayJob":
        containers += doc["spec"]["submitterPodTemplate"]["spec"]["containers"]
    for container in containers:
        env = env_of(container)
        assert env["RAY_AUTH_MODE"]["value"] == "token", container["name"]
        # The token comes from the Secret; it is never written in the manifest.
        assert "value" not in env["RAY_AUTH_TOKEN"], container["name"]
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (secret, "auth_token"), container["name"]


@pytest.mark.parametrize("name", KUBERAY_YAMLS)
def test_kuberay_dashboard_not_exposed(name):
    docs = kuberay_docs(name)
    assert {d["kind"] for d in docs} <= {"RayCluster", "RayJob"}  # no Service / Ingress
    (doc,) = docs
    head = cluster_spec(doc)["headGroupSpec"]
    # The dashboard listens on the pod's interfaces (KubeRay needs that for the RayJob
    # submitter and its own status calls); the ClusterIP Service keeps it in-cluster.
    assert head["serviceType"] == "ClusterIP"
    assert not head.get("enableIngress", False)
    data = json.dumps(doc)  # the parsed manifest, comments excluded
    for exposure in ("LoadBalancer", "NodePort", "Ingress", "hostNetwork", "hostPort"):
        assert exposure not in data, exposure


def test_rayjob_runs_the_seed_search():
    (doc,) = kuberay_docs("kuberay-rayjob.yaml")
    entrypoint = doc["spec"]["entrypoint"]
    assert isinstance(entrypoint, str) and entrypoint.strip()
    assert shlex.split(entrypoint)[0] in {"raygrid", "python"}
    assert doc["spec"]["shutdownAfterJobFinishes"] is True


# --------------------------------------------------------------------------------------
# Image and cross-file consistency


def dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", (CLUSTER / "Dockerfile").read_text(), re.M)
    assert match, name
    return match.group(1)


def test_dockerfile_matches_the_development_versions():
    text = (CLUSTER / "Dockerfile").read_text()
    # Nodes and clients of one Ray cluster must share Ray's and Python's versions.
    assert dockerfile_arg("RAY_VERSION") == ray.__version__
    assert dockerfile_arg("PYTHON_TAG") == f"py{sys.version_info.major}{sys.version_info.minor}"
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}-gpu$", text, re.M)
    assert '"tensorflow[and-cuda]==${TF_VERSION}"' in text
    assert re.search(r"^COPY .*\. /app$", text, re.M)
    assert re.search(r"pip install .*/app\b", text)
    ignored = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_all_configs_use_one_image_and_ray_version():
    images = {load_yaml(n)["docker"]["image"] for n in LAUNCHER_YAMLS}
    for name in KUBERAY_YAMLS:
        (doc,) = kuberay_docs(name)
        spec = cluster_spec(doc)
        assert spec["rayVersion"] == dockerfile_arg("RAY_VERSION")
        images |= {c["image"] for c in ray_containers(spec)}
    assert len(images) == 1, images


# --------------------------------------------------------------------------------------
# cluster/local.sh


def run_local_sh(*args: str, state_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["RAYGRID_LOCAL_DIR"] = str(state_dir)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(
        ["bash", str(LOCAL_SH), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_local_sh_parses_and_has_subcommands():
    subprocess.run(["bash", "-n", str(LOCAL_SH)], check=True)
    assert os.access(LOCAL_SH, os.X_OK)
    text = LOCAL_SH.read_text()
    for sub in ("start", "stop", "status"):
        assert re.search(rf"^\s*{sub}\)", text, re.M), sub


def test_local_sh_secure_defaults():
    text = LOCAL_SH.read_text()
    code = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert "--dashboard-host 127.0.0.1" in text
    assert "0.0.0.0" not in text
    # Token auth is the default (`--no-auth` opts out) and is exported to the nodes.
    assert any(re.match(r"\s*local\b.*\bauth=token\b", line) for line in code)
    assert any(re.match(r"\s*export\s+(\S+\s+)*RAY_AUTH_MODE=token\b", line) for line in code)
    for line in code:
        # `ray stop` kills every Ray process on the machine, other users' sessions too.
        assert not re.search(r'(\bray|RAY_BIN"?)\s+stop\b', line), line


def test_local_sh_cli_without_a_cluster(tmp_path):
    assert run_local_sh("--help", state_dir=tmp_path).returncode == 0
    assert run_local_sh("bogus", state_dir=tmp_path).returncode == 2
    status = run_local_sh("status", state_dir=tmp_path)
    assert status.returncode == 3 and "No local cluster" in status.stdout
    assert run_local_sh("stop", state_dir=tmp_path).returncode == 0
    bad = run_local_sh("start", "1", "--gpus-per-worker", "x", state_dir=tmp_path)
    assert bad.returncode == 1 and "not a non-negative integer" in bad.stderr


def test_local_sh_refuses_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            result = run_local_sh("start", "0", "--port", str(port), state_dir=tmp_path)
        finally:
            run_local_sh("stop", state_dir=tmp_path)  # in case it started after all
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"port {port}" in result.stderr and "in use" in result.stderr
    assert not (tmp_path / "pids").exists()
