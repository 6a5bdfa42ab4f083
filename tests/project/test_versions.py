"""One source of truth for versions: cluster/constraints.txt, and Ray's private APIs in one place.

Every check here reads files of the repository (the constraints file, pyproject, the
Dockerfile, the manifests, the docs) and compares them with each other, never with the
packages installed in this environment: a new Ray or TensorFlow release changes nothing.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from raygrid.local import ray_private

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
DOCS = [
    CLUSTER / "README.md",
    CLUSTER / "Dockerfile",
    ROOT / "docs" / "guide" / "gpu_clusters.rst",
]


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """Override conftest's session Ray: nothing here needs one."""
    yield


def pins() -> dict[str, str]:
    found = {}
    for line in (CLUSTER / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==" and not req.extras, f"not an exact pin: {line}"
            found[req.name] = spec.version
    return found


def test_constraints_pin_ray_tensorflow_and_every_cuda_wheel_of_and_cuda():
    pinned = pins()
    assert {"ray", "tensorflow"} <= set(pinned)
    wheels = {n for n in pinned if n.startswith("nvidia-")}
    assert wheels and all(n.endswith("-cu12") for n in wheels)
    for must in (
        "nvidia-cuda-runtime-cu12",
        "nvidia-cudnn-cu12",
        "nvidia-cublas-cu12",
        "nvidia-cufft-cu12",
        "nvidia-cusolver-cu12",
        "nvidia-cusparse-cu12",
        "nvidia-nccl-cu12",
        "nvidia-nvjitlink-cu12",
    ):
        assert must in wheels, must


def test_pyproject_ray_bound_is_the_token_auth_release_and_admits_the_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (ray_req,) = [Requirement(r) for r in project["dependencies"] if r.startswith("ray")]
    (spec,) = ray_req.specifier
    assert spec.operator == ">=" and Version(spec.version) == Version(ray_private.MINIMUM_RAY)
    assert Version(spec.version) >= Version("2.52"), "token auth needs Ray 2.52"
    assert Version(pins()["ray"]) in ray_req.specifier
    (tf_req,) = [Requirement(r) for r in project["dependencies"] if r.startswith("tensorflow")]
    assert Version(pins()["tensorflow"]) in tf_req.specifier


def test_manifests_run_the_pinned_ray():
    for name in ("kuberay-raycluster.yaml", "kuberay-rayjob.yaml"):
        (doc,) = [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d]
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        assert spec["rayVersion"] == pins()["ray"], name


def test_docs_name_only_the_pinned_versions():
    pinned = pins()
    cuda = ".".join(pinned["nvidia-cuda-runtime-cu12"].split(".")[:2])
    cudnn = ".".join(pinned["nvidia-cudnn-cu12"].split(".")[:2])
    checked = 0
    for path in DOCS:
        text = path.read_text()
        for ray in re.findall(r"\bRay (\d+\.\d+\.\d+)\b", text):
            assert ray == pinned["ray"], f"{path.name}: Ray {ray}"
            checked += 1
        for tf in re.findall(r"\bTensorFlow (\d+\.\d+\.\d+)\b", text):
            assert tf == pinned["tensorflow"], f"{path.name}: TensorFlow {tf}"
            checked += 1
        for found in re.findall(r"CUDA (\d+\.\d+), cuDNN (\d+\.\d+)", text):
            assert found == (cuda, cudnn), f"{path.name}: CUDA {found[0]}, cuDNN {found[1]}"
            checked += 1
    assert checked >= 3, "the docs should name the pinned versions somewhere"


def private_ray_uses(path: Path) -> list[str]:
    """Imports of, and attribute chains through, ``ray._private`` / ``ray._raylet``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ray._"):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("ray._")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if isinstance(node.value, ast.Name) and node.value.id == "ray":
                found.append(f"ray.{node.attr}")
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"ray\._(private|raylet)(\.\w+)*", node.value)
            and (path.name == "ray_private.py" or "getLogger" not in path.read_text())
        ):
            found.append(node.value)
    return found


def test_private_ray_apis_are_called_from_one_module_only():
    users = {}
    for path in (ROOT / "raygrid").rglob("*.py"):
        uses = private_ray_uses(path)
        if uses:
            users[str(path.relative_to(ROOT))] = uses
    assert set(users) == {"raygrid/local/ray_private.py"}, users


def test_every_private_ray_api_is_there_and_a_missing_one_says_so(monkeypatch):
    assert ray_private.check_all() == []
    import ray._private.state as state

    monkeypatch.delattr(state, "available_resources_per_node")
    with pytest.raises(ray_private.RayApiMissing) as caught:
        ray_private.available_resources_per_node()
    message = str(caught.value)
    assert "ray._private.state.available_resources_per_node" in message
    assert f"ray>={ray_private.MINIMUM_RAY}" in message
    assert len(ray_private.check_all()) == 1
