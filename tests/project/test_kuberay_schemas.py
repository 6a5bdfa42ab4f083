"""The KubeRay manifests in cluster/ against KubeRay's own CRD schemas (v1.7.0).

Each manifest is walked through its CRD's ``openAPIV3Schema`` as ``kubectl apply
--validate=strict`` has the API server do it: a field the schema does not declare, a
value of the wrong type, a missing required field or a value outside an enum fails.
Object metadata (which CRD schemas leave as a bare ``type: object``) is checked against
ObjectMeta's fields.

The CRDs are data kept beside the repository, in ``../shared/kuberay-crds-v1.7.0/``
(CI gets a copy of ``shared/`` next to its clone); without that folder the tests skip and
say so.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRDS_NAME = "kuberay-crds-v1.7.0"
MANIFESTS = {
    "kuberay-raycluster.yaml": "ray.io_rayclusters.yaml",
    "kuberay-rayjob.yaml": "ray.io_rayjobs.yaml",
}
OBJECT_META = {
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "finalizers",
    "ownerReferences",
}
INT_FORMATS = {"int32": 2**31, "int64": 2**63}


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """Override conftest's session Ray: nothing here needs one."""
    yield


def crds_dir() -> Path | None:
    """``shared/`` beside the repository root (for a git worktree: beside the main clone)."""
    roots = [ROOT]
    git = ROOT / ".git"
    if git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(git.read_text().split(":", 1)[1].strip())
        roots.append(gitdir.parents[2])
    for root in roots:
        folder = root.parent / "shared" / CRDS_NAME
        if folder.is_dir():
            return folder
    return None


def schema_of(crd_file: str) -> dict:
    folder = crds_dir()
    if folder is None:
        pytest.skip(
            f"../shared/{CRDS_NAME}/ is absent beside the repository: KubeRay's CRDs "
            "are data kept outside the repo; copy shared/ next to the clone to run this"
        )
    crd = yaml.safe_load((folder / crd_file).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def problems(value: Any, schema: dict, path: str = "") -> list[str]:
    """Every way ``value`` fails ``schema`` under strict field validation."""
    where = path or "."
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null is not allowed"]
    if "anyOf" in schema and schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        return [] if ok else [f"{where}: {value!r} is neither an integer nor a string"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    kind = schema.get("type")
    if kind == "object":
        return _object_problems(value, schema, path)
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {type(value).__name__}"]
        return [
            p
            for i, item in enumerate(value)
            for p in problems(item, schema.get("items", {}), f"{path}[{i}]")
        ]
    return _scalar_problems(value, schema, where)


def _object_problems(value: Any, schema: dict, path: str) -> list[str]:
    where = path or "."
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {type(value).__name__}"]
    found = [
        f"{where}: required field {name!r} missing"
        for name in schema.get("required", [])
        if name not in value
    ]
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        here = f"{path}.{key}"
        if properties is not None and key in properties:
            found += problems(item, properties[key], here)
        elif isinstance(extra, dict):
            found += problems(item, extra, here)
        elif path.endswith("metadata") and properties is None and extra is None:
            if key not in OBJECT_META:
                found.append(f"{here}: unknown field (not in ObjectMeta)")
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            found.append(f"{here}: unknown field")
    return found


def _scalar_problems(value: Any, schema: dict, where: str) -> list[str]:
    kind = schema.get("type")
    if kind == "string" and not isinstance(value, str):
        return [f"{where}: expected a string, got {value!r}"]
    if kind == "boolean" and not isinstance(value, bool):
        return [f"{where}: expected a boolean, got {value!r}"]
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: expected an integer, got {value!r}"]
        bound = INT_FORMATS.get(schema.get("format", ""))
        if bound is not None and not -bound <= value < bound:
            return [f"{where}: {value} out of {schema['format']} range"]
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return [f"{where}: expected a number, got {value!r}"]
    return []


def manifest(name: str) -> dict:
    (doc,) = [d for d in yaml.safe_load_all((ROOT / "cluster" / name).read_text()) if d]
    return doc


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_is_valid_against_kuberays_crd(name):
    schema = schema_of(MANIFESTS[name])
    assert problems(manifest(name), schema) == []


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_manifest_sets_a_namespace_and_a_bounded_dev_shm(name):
    doc = manifest(name)
    assert doc["metadata"].get("namespace"), "no namespace: kubectl would use the context's"
    spec = doc["spec"].get("rayClusterSpec", doc["spec"])
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        volumes = {v["name"]: v for v in group["template"]["spec"].get("volumes", [])}
        for container in group["template"]["spec"]["containers"]:
            shm = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
            assert shm, f"{container['name']}: no /dev/shm volume"
            dir_ = volumes[shm[0]["name"]]["emptyDir"]
            assert dir_.get("medium") == "Memory" and dir_.get("sizeLimit"), dir_


BREAKAGES = [
    ("unknown field", lambda d: d["spec"].__setitem__("entrypointt", "x"), ".spec.entrypointt"),
    (
        "mistyped field",
        lambda d: _cluster(d)["workerGroupSpecs"][0].__setitem__("replicas", "2"),
        "replicas: expected an integer",
    ),
    (
        "unknown container field",
        lambda d: _cluster(d)["headGroupSpec"]["template"]["spec"]["containers"][0].__setitem__(
            "imagePullPolicyy", "Always"
        ),
        "imagePullPolicyy: unknown field",
    ),
    (
        "bad enum",
        lambda d: d["spec"].__setitem__("deletionStrategy", {"onSuccess": {"policy": "Keep"}}),
        "policy: 'Keep' is not one of",
    ),
    (
        "unknown metadata field",
        lambda d: d["metadata"].__setitem__("lables", {}),
        ".metadata.lables: unknown field (not in ObjectMeta)",
    ),
    (
        "missing required",
        lambda d: _cluster(d)["headGroupSpec"].pop("template"),
        "required field 'template' missing",
    ),
]


def _cluster(doc: dict) -> dict:
    return doc["spec"].get("rayClusterSpec", doc["spec"])


@pytest.mark.parametrize("what, breakage, expected", BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_the_walker_fails_what_kubectl_strict_refuses(what, breakage, expected):
    schema = schema_of(MANIFESTS["kuberay-rayjob.yaml"])
    doc = copy.deepcopy(manifest("kuberay-rayjob.yaml"))
    breakage(doc)
    found = problems(doc, schema)
    assert any(expected in line for line in found), found
