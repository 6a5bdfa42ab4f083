"""Static checks of the cluster configurations in cluster/ (no Ray cluster is started).

* the cluster-launcher YAMLs validate against the JSON schema the installed Ray ships,
  as written and after Ray's own preparation step of `ray up`;
* the KubeRay manifests have the right kinds, a GPU worker group that requests
  ``nvidia.com/gpu`` and declares it to Ray, and token authentication on every container;
* every config turns on token authentication and keeps the dashboard / Jobs API off
  public interfaces;
* the GPU pods' requests fit below the stated allocatable of their node type (itself
  checked against EKS's reservation formula), and the GPU slots of the spec each
  manifest runs fill at most the GPUs of a pod;
* the RayJob writes its results to a durable URI, through the real command line;
* the image build installs TensorFlow's CUDA and runs cluster/check_cuda.py;
* ``cluster/local.sh`` parses, offers start/stop/status and refuses bad input (a busy
  port, a state directory too long for Ray's Unix sockets) before starting anything.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
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


def test_dockerfile_installs_the_pinned_versions():
    """Versions come from cluster/constraints.txt, never from what pip installed here."""
    text = (CLUSTER / "Dockerfile").read_text()
    pins = dict(
        line.split("==")
        for line in (CLUSTER / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    # Nodes and clients of one Ray cluster must share Ray's and Python's versions.
    assert dockerfile_arg("RAY_VERSION") == pins["ray"]
    assert dockerfile_arg("PYTHON_TAG") == "py311"
    # One CUDA in the image, TensorFlow's own: no system toolkit from the base image.
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-\$\{PYTHON_TAG\}-cpu$", text, re.M)
    assert "COPY cluster/constraints.txt /home/ray/raygrid-constraints.txt" in text
    installs = re.findall(r"pip install --no-cache-dir[^\n]*", text)
    assert installs and all("-c /home/ray/raygrid-constraints.txt" in i for i in installs)
    assert '"tensorflow[and-cuda]"' in text
    assert re.search(r"^COPY .*\. /app$", text, re.M)
    assert re.search(r"pip install .*/app\b", text)
    # The CUDA check runs after the last install, in a RUN step that fails the build.
    runs = re.findall(r"^RUN (?:.*\\\n)*.*$", text, re.M)
    assert "python /app/cluster/check_cuda.py" in runs[-1]
    assert (ROOT / "cluster" / "check_cuda.py").is_file()
    assert re.search(r"^ENV NVIDIA_VISIBLE_DEVICES=all\b", text, re.M)


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: a path is excluded if it or a parent folder matches a pattern.

    Patterns are Go ``filepath.Match`` globs plus ``**``; ``!`` exceptions are not used
    in this project's file and not supported here.
    """
    regexes = []
    for pattern in patterns:
        assert not pattern.startswith("!"), pattern
        out = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern.strip("/")):
            if part == "**/":
                out += "(?:.*/)?"
            elif part == "**":
                out += ".*"
            elif part == "*":
                out += "[^/]*"
            elif part == "?":
                out += "[^/]"
            elif part.startswith("["):
                out += part
            else:
                out += re.escape(part)
        regexes.append(re.compile(out + "$"))
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(r.match(prefix) for r in regexes for prefix in prefixes)


def test_dockerignore_works_for_every_builder():
    # The classic builder, Podman/Buildah and Kaniko read only <context>/.dockerignore;
    # BuildKit prefers <Dockerfile>.dockerignore when one exists, so none may.
    assert not list(CLUSTER.glob("*.dockerignore"))
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    excluded = [
        ".git/HEAD",
        ".venv/bin/python",
        "raygrid/__pycache__/cli.cpython-311.pyc",
        "results/seed/cv_results.parquet",
        "benchmarks/results/seed_grid.json",
        ".pytest_cache/v/cache/nodeids",
    ]
    kept = [
        "pyproject.toml",
        "README.md",
        "raygrid/cli/main.py",
        "raygrid/store/results.py",
        "raygrid/keras/__init__.py",
        "examples/seed_gpu.toml",
        "cluster/check_cuda.py",
    ]
    for path in excluded:
        assert dockerignore_excludes(patterns, path), path
    for path in kept:
        assert (ROOT / path).exists(), path
        assert not dockerignore_excludes(patterns, path), path


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


@pytest.fixture
def short_dir():
    """A state directory short enough for Ray's socket paths (pytest's tmp_path is not)."""
    with tempfile.TemporaryDirectory(prefix="rg-", dir="/tmp") as path:
        yield Path(path)


def test_local_sh_refuses_a_port_in_use(short_dir):
    tmp_path = short_dir
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


def test_local_sh_refuses_a_state_dir_too_long_for_ray_sockets():
    state_dir = Path("/tmp") / ("s" * 55)  # 60 characters
    assert len(str(state_dir)) == 60 and not state_dir.exists()
    started = time.monotonic()
    result = run_local_sh("start", "1", "--gpus-per-worker", "1", state_dir=state_dir)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert "107-byte limit" in result.stderr and "Unix socket" in result.stderr
    assert f"{state_dir} (60 characters) is too long" in result.stderr
    assert elapsed < 5, elapsed  # at once: before Ray is even looked for
    assert not state_dir.exists()


def test_local_sh_socket_allowance_covers_rays_dashboard_modules():
    """local.sh's longest socket name is the longest `dash_<module>` Ray's head creates."""
    text = LOCAL_SH.read_text()
    allowed = int(re.search(r"^HEAD_SOCKET_NAME_LEN=(\d+)", text, re.M).group(1))
    dashboard = Path(ray.__file__).parent / "dashboard"
    modules = set()
    for source in dashboard.rglob("*.py"):
        if "tests" in source.parts:
            continue
        modules |= set(
            re.findall(r"^class (\w+)\([^)]*\bSubprocessModule\b", source.read_text(), re.M)
        )
    assert modules, "no dashboard SubprocessModule found: Ray's layout changed"
    assert max(len("dash_" + m) for m in modules) <= allowed, sorted(modules)


def test_local_sh_default_state_dir_passes_the_socket_check():
    """A state directory as long as the default (/tmp/raygrid-local-<uid>) passes the check.

    ``start`` then stops at the next check, a busy port, before creating anything.
    """
    default = Path(f"/tmp/raygrid-local-{os.getuid()}")
    same_length = Path("/tmp") / ("r" * len(default.name))
    assert not same_length.exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_local_sh("start", "4", "--port", str(port), state_dir=same_length)
    assert result.returncode == 1
    assert "in use" in result.stderr and "Unix socket" not in result.stderr
    assert not same_length.exists()


# --------------------------------------------------------------------------------------
# GPU slots, pod sizing and durable results


def quantity(text) -> float:
    """A Kubernetes quantity in base units: CPU cores, memory bytes, device counts."""
    text = str(text)
    units = {
        "m": 1e-3,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
    }
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def stated(annotation: str) -> dict[str, float]:
    return {k: quantity(v) for k, v in (item.split("=") for item in annotation.split(","))}


# Instance shapes (AWS): vCPUs, the least memory the kubelet reports as capacity for the
# instance (MemTotal of a 16 GiB instance is at least 15 GiB), pods per node with the
# VPC CNI (ENIs x (IPs per ENI - 1) + 2).
INSTANCES = {
    "g5.xlarge": {"cpus": 4, "memory_mi": 15 * 1024, "max_pods": 4 * (15 - 1) + 2},
    "m5.xlarge": {"cpus": 4, "memory_mi": 15 * 1024, "max_pods": 4 * (15 - 1) + 2},
}


def eks_allocatable(instance: str) -> dict[str, float]:
    """Allocatable CPU and memory of an EKS node: capacity minus kube-reserved and eviction.

    kube-reserved CPU: 6% of the first core, 1% of the second, 0.5% of the third and
    fourth, 0.25% of the others; memory: 255 MiB + 11 MiB per pod; eviction: 100 MiB.
    """
    shape = INSTANCES[instance]
    shares = [0.06, 0.01, 0.005, 0.005] + [0.0025] * max(0, shape["cpus"] - 4)
    reserved_cpu = sum(shares[: shape["cpus"]])
    reserved_mi = 255 + 11 * shape["max_pods"] + 100
    return {
        "cpu": shape["cpus"] - reserved_cpu,
        "memory": (shape["memory_mi"] - reserved_mi) * 2**20,
    }


def pod_templates(name: str) -> list[tuple[str, dict, dict | None]]:
    """(role, pod template, rayStartParams) of every Ray pod of a KubeRay manifest."""
    (doc,) = kuberay_docs(name)
    spec = cluster_spec(doc)
    pods = [("head", spec["headGroupSpec"]["template"], spec["headGroupSpec"]["rayStartParams"])]
    pods += [
        (g["groupName"], g["template"], g["rayStartParams"]) for g in spec["workerGroupSpecs"]
    ]
    return pods


@pytest.mark.parametrize("name", KUBERAY_YAMLS)
def test_kuberay_requests_fit_below_node_allocatable(name):
    for role, template, _ in pod_templates(name):
        notes = template["metadata"]["annotations"]
        node_type = notes["raygrid/node-type"]
        # The pods go to the node type whose allocatable is stated...
        selector = template["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"]
        assert selector == node_type, role
        allocatable = stated(notes["raygrid/node-allocatable"])
        reserve = stated(notes["raygrid/daemonset-reserve"])
        # ... and that statement is EKS's arithmetic for the node type, or below it.
        derived = eks_allocatable(node_type)
        assert allocatable["cpu"] <= derived["cpu"] + 1e-9, role
        assert allocatable["memory"] <= derived["memory"], role
        (container,) = template["spec"]["containers"]
        requests = container["resources"]["requests"]
        for resource in ("cpu", "memory"):
            asked = quantity(requests[resource])
            assert asked + reserve[resource] <= allocatable[resource], (role, resource)
            assert asked < allocatable[resource], (role, resource)
        gpus = int(requests.get("nvidia.com/gpu", 0))
        assert gpus <= allocatable.get("nvidia.com/gpu", 0), role


def spec_run_by(name: str) -> Path:
    """The search spec a manifest runs: the RayJob's entrypoint, or the documented one."""
    (doc,) = kuberay_docs(name)
    if doc["kind"] == "RayJob":
        args = shlex.split(doc["spec"]["entrypoint"])
        spec = next(a for a in args if a.endswith(".toml"))
        assert spec.startswith("/app/"), spec  # the repository's copy inside the image
        return ROOT / spec.removeprefix("/app/")
    match = re.search(r"raygrid submit (\S+\.toml)", (CLUSTER / name).read_text())
    assert match, "the manifest's comments name no spec"
    return ROOT / match.group(1)


def slots_per_node(num_cpus: float, num_gpus: float, cpu_per_fit: float, gpu_per_fit: float):
    return min(
        math.floor(num_cpus / cpu_per_fit + 1e-9), math.floor(num_gpus / gpu_per_fit + 1e-9)
    )


@pytest.mark.parametrize("name", KUBERAY_YAMLS)
def test_kuberay_gpu_slots_match_the_spec_they_run(name):
    search = tomllib.loads(spec_run_by(name).read_text())["search"]
    cpu_per_fit, gpu_per_fit = search["num_cpus_per_task"], search["num_gpus_per_task"]
    assert gpu_per_fit > 0, "the GPU cluster runs a spec that asks for no GPU"
    gpu_groups = 0
    for role, template, params in pod_templates(name):
        (container,) = template["spec"]["containers"]
        gpus = int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
        if role == "head":
            assert params["num-cpus"] == "0" and gpus == 0  # fits never land on the head
            continue
        if not gpus:
            continue
        gpu_groups += 1
        assert int(params["num-gpus"]) == gpus
        # Ray's CPUs for the pod are the pod's request, not more.
        assert float(params["num-cpus"]) <= quantity(container["resources"]["requests"]["cpu"])
        slots = slots_per_node(float(params["num-cpus"]), gpus, cpu_per_fit, gpu_per_fit)
        assert slots >= 1
        assert gpu_per_fit * slots <= gpus + 1e-9
        assert gpu_per_fit * slots == pytest.approx(gpus)  # and no GPU share left idle
    assert gpu_groups >= 1


def test_aws_gpu_workers_match_the_gpu_spec():
    search = tomllib.loads((ROOT / "examples" / "seed_gpu.toml").read_text())["search"]
    config = load_yaml("aws-gpu.yaml")
    for name, node in config["available_node_types"].items():
        gpus = node["resources"].get("GPU", 0)
        if not gpus:
            continue
        cpus = node["resources"]["CPU"]
        slots = slots_per_node(
            cpus, gpus, search["num_cpus_per_task"], search["num_gpus_per_task"]
        )
        assert slots >= 1 and search["num_gpus_per_task"] * slots <= gpus + 1e-9, name
        # A vCPU of the instance stays with Ray's own processes.
        assert cpus <= INSTANCES[node["node_config"]["InstanceType"]]["cpus"] - 1, name
        # raygrid uses the nodes alive at the start of a search: a fixed GPU group.
        assert node["min_workers"] == node["max_workers"], name


def test_aws_config_logs_in_to_the_private_registry():
    config = load_yaml("aws-gpu.yaml")
    registry = config["docker"]["image"].split("/")[0]
    logins = [c for c in config["initialization_commands"] if "docker login" in c]
    assert logins and all(registry in c and "--password-stdin" in c for c in logins)
    assert any("aws ecr get-login-password" in c for c in logins)
    for node in config["available_node_types"].values():
        assert "IamInstanceProfile" in node["node_config"]  # ECR read on every node


def test_rayjob_writes_results_to_a_durable_uri():
    from raygrid.cli import main as cli
    from raygrid.spec.search_spec import OUTPUT_SCHEMES, is_uri

    (doc,) = kuberay_docs("kuberay-rayjob.yaml")
    args = shlex.split(doc["spec"]["entrypoint"])
    assert args[0] == "raygrid"
    parsed = cli._parser().parse_args(args[1:])  # the real command line accepts it
    assert parsed.command == "run" and parsed.output
    assert is_uri(parsed.output)
    scheme = parsed.output.split("://")[0]
    # Object storage, not the pod's own disk (file:// would vanish with the cluster).
    assert scheme in OUTPUT_SCHEMES and scheme not in ("file",), parsed.output
    assert spec_run_by("kuberay-rayjob.yaml").is_file()
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    head = cluster_spec(doc)["headGroupSpec"]["template"]["spec"]
    assert head.get("serviceAccountName"), "the driver needs credentials for the bucket"
