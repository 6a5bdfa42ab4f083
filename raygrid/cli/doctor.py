"""``raygrid doctor``: is this cluster fit to run a search, before any GPU hour is spent?

::

    raygrid doctor [--address ADDR] [--expect-gpus N] [--json]

It joins the cluster at ``ADDR`` (or, without it, the Ray a search from here would use:
the kept-alive one of ``raygrid up``, else a fresh local one) and reports, per node, its
CPUs, GPUs, memory and object store, and the versions of Python, Ray, raygrid,
scikit-learn and TensorFlow there, each compared with this driver's. On every GPU of
every node it runs one task that holds that GPU and asks TensorFlow what it sees: the
device's name and memory, and the CUDA/cuDNN TensorFlow was built for against those it
loaded.

Exit codes: 0 when everything is consistent; 1 with one ``PROBLEM:`` line per problem (a
version that differs from the driver's, a GPU TensorFlow cannot see, fewer usable GPUs
than ``--expect-gpus``); 2 for bad input (an address where nothing answers), one line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

PACKAGES = ("ray", "raygrid", "scikit-learn", "tensorflow")
_PROBE_TIMEOUT = 180.0


@dataclass
class NodeReport:
    """One node as the doctor saw it.

    Attributes
    ----------
    node_id, ip : str
        Ray's id of the node and its address.
    head : bool
        Whether it is the head node.
    cpus, gpus : float
        What Ray counts there.
    memory, object_store : float
        Bytes, as Ray counts them.
    versions : dict
        ``python`` and each of ``PACKAGES`` (None: not installed), as a task there saw them.
    gpu_checks : list of dict
        One per GPU: what :func:`gpu_probe` returned there.
    """

    node_id: str
    ip: str
    head: bool
    cpus: float
    gpus: float
    memory: float
    object_store: float
    versions: dict[str, str | None] = field(default_factory=dict)
    gpu_checks: list[dict[str, Any]] = field(default_factory=list)


def versions() -> dict[str, str | None]:
    """Python's version and that of each of ``PACKAGES`` in this process (None: absent)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def driver_versions() -> dict[str, str | None]:
    """The versions every node is compared with: this process's (see :func:`versions`)."""
    return versions()


def gpu_probe() -> dict[str, Any]:
    """In a task holding one GPU: what TensorFlow sees of it (run on the node itself).

    Returns
    -------
    dict
        ``ray_gpu_ids``, ``cuda_visible_devices``, and from TensorFlow ``framework``,
        ``gpus``, ``built_for``, plus ``memory_mib`` and ``loaded`` (CUDA/cuDNN versions
        mapped into the process after one op on the GPU) when it sees the GPU; ``error``
        when TensorFlow could not be asked.
    """
    import os

    import ray

    out: dict[str, Any] = {
        "ray_gpu_ids": [str(g) for g in ray.get_runtime_context().get_accelerator_ids()["GPU"]],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        from raygrid.keras.devices import loaded_cuda, tensorflow_devices

        out.update(tensorflow_devices())
        if out["gpus"]:
            import tensorflow as tf

            with tf.device("/GPU:0"):
                tf.linalg.matmul(tf.ones((8, 8)), tf.ones((8, 8))).numpy()
            from raygrid.run.gpu_memory import device_memory_mib

            out["memory_mib"] = device_memory_mib(0)
            out["loaded"] = loaded_cuda()
    except Exception as exc:  # TensorFlow missing or broken on that node: a finding
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def collect() -> list[NodeReport]:
    """Every alive node of the connected cluster, with its versions and GPU checks."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote_versions = ray.remote(num_cpus=0)(versions)
    remote_probe = ray.remote(num_cpus=0, num_gpus=1, max_calls=1)(gpu_probe)
    nodes, pending = [], []
    for info in sorted(ray.nodes(), key=lambda n: n["NodeManagerAddress"]):
        if not info["Alive"]:
            continue
        res = info["Resources"]
        node = NodeReport(
            node_id=info["NodeID"],
            ip=info["NodeManagerAddress"],
            head="node:__internal_head__" in res,
            cpus=res.get("CPU", 0.0),
            gpus=res.get("GPU", 0.0),
            memory=res.get("memory", 0.0),
            object_store=res.get("object_store_memory", 0.0),
        )
        here = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        pending.append(
            (node, "versions", remote_versions.options(scheduling_strategy=here).remote())
        )
        for _ in range(int(node.gpus)):
            probe = remote_probe.options(scheduling_strategy=here).remote()
            pending.append((node, "gpu", probe))
        nodes.append(node)
    for node, kind, ref in pending:
        try:
            answer = ray.get(ref, timeout=_PROBE_TIMEOUT)
        except Exception as exc:  # a node that does not answer is itself a finding
            answer = {"error": f"no answer in {_PROBE_TIMEOUT:.0f} s ({type(exc).__name__})"}
        if kind == "versions":
            node.versions = answer
        else:
            node.gpu_checks.append(answer)
    return sorted(nodes, key=lambda n: (not n.head, n.ip))


def problems(
    driver: dict[str, str | None], nodes: list[NodeReport], expect_gpus: int | None
) -> list[str]:
    """One line per inconsistency: versions, GPUs TensorFlow cannot see, too few GPUs."""
    found = []
    for number, node in enumerate(nodes, 1):
        name = f"node {number} {node.ip}"
        if "error" in node.versions:
            found.append(f"{name}: {node.versions['error']}")
        else:
            found += [
                f"{name}: {package} {node.versions.get(package)}, driver {version}"
                for package, version in driver.items()
                if node.versions.get(package) != version
            ]
        for check in node.gpu_checks:
            if not check.get("gpus"):
                found.append(
                    f"{name} GPU {','.join(check.get('ray_gpu_ids', [])) or '?'}: "
                    f"{_missing_gpu(check)}"
                )
    usable = sum(len(c.get("gpus") or []) for n in nodes for c in n.gpu_checks)
    if expect_gpus is not None and usable < expect_gpus:
        counted = sum(n.gpus for n in nodes)
        found.append(
            f"--expect-gpus {expect_gpus}: the cluster has {usable} GPU(s) TensorFlow can use "
            f"(Ray counts {counted:g} GPU(s) on {len(nodes)} node(s))"
        )
    return found


def _missing_gpu(check: dict[str, Any]) -> str:
    if "error" in check:
        return f"could not ask TensorFlow ({check['error']})"
    return (
        f"{check.get('framework', 'TensorFlow')} sees no GPU (CUDA_VISIBLE_DEVICES="
        f"{check.get('cuda_visible_devices')!r}; built for {check.get('built_for', '?')})"
    )


def format_report(driver: dict[str, str | None], nodes: list[NodeReport], found: list[str]) -> str:
    """The doctor's text output: the driver, each node, its GPUs, then problems or OK."""
    lines = ["driver: " + _versions_text(driver)]
    for number, node in enumerate(nodes, 1):
        role = "head" if node.head else "worker"
        lines.append(
            f"node {number} {node.ip} ({role}, {node.node_id[:8]}): {node.cpus:g} CPUs, "
            f"{node.gpus:g} GPUs, {_gib(node.memory)} memory, {_gib(node.object_store)} object store"
        )
        same = all(node.versions.get(k) == v for k, v in driver.items())
        lines.append("  versions: " + ("as the driver" if same else _versions_text(node.versions)))
        for check in node.gpu_checks:
            lines.append("  " + _gpu_line(check))
    lines += [f"PROBLEM: {line}" for line in found]
    if not found:
        usable = sum(len(c.get("gpus") or []) for n in nodes for c in n.gpu_checks)
        lines.append(
            f"OK: {len(nodes)} node(s), {usable} GPU(s) TensorFlow can use, versions as the driver"
        )
    return "\n".join(lines)


def _gpu_line(check: dict[str, Any]) -> str:
    ids = ",".join(check.get("ray_gpu_ids", [])) or "?"
    if not check.get("gpus"):
        return f"GPU {ids}: {_missing_gpu(check)}"
    memory = check.get("memory_mib")
    loaded = check.get("loaded") or {}
    return (
        f"GPU {ids}: TensorFlow sees {', '.join(check['gpus'])}"
        + (f", {memory / 1024:.1f} GiB" if memory else "")
        + f"; built for {check.get('built_for', '?')}; loaded CUDA {loaded.get('cuda', '?')}, "
        f"cuDNN {loaded.get('cudnn', '?')}"
    )


def _versions_text(found: dict[str, Any]) -> str:
    names = {
        "python": "Python",
        "ray": "Ray",
        "raygrid": "raygrid",
        "scikit-learn": "scikit-learn",
        "tensorflow": "TensorFlow",
    }
    return ", ".join(
        f"{names.get(k, k)} {v or 'not installed'}" for k, v in found.items() if k in names
    )


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f} GiB"


def run(args: argparse.Namespace) -> int:
    """Run ``raygrid doctor``; see the module docstring for the exit codes."""
    from raygrid.local import connect

    address = args.address
    if address and "://" in address and not address.startswith("ray://"):
        print(
            f"raygrid doctor: --address {address!r}: give the cluster's Ray address "
            "(HOST:6379 or ray://HOST:10001), not its dashboard; or run `raygrid doctor` on "
            "the head node itself",
            file=sys.stderr,
        )
        return 2
    try:
        connect.connect(address)
    except (ConnectionError, ValueError) as exc:
        print(f"raygrid doctor: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    driver = driver_versions()
    nodes = collect()
    found = problems(driver, nodes, args.expect_gpus)
    if args.json:
        out = {"driver": driver, "nodes": [asdict(n) for n in nodes], "problems": found}
        print(json.dumps(out, indent=2))
    else:
        print(format_report(driver, nodes, found))
    return 1 if found else 0


def add_parser(sub: Any, non_negative_int: Any) -> None:
    """Register ``raygrid doctor`` on the command line's subparsers."""
    doctor = sub.add_parser(
        "doctor",
        help="check a cluster's nodes, versions and GPUs before a search",
        description="Check every node of a Ray cluster (or the local Ray a search would "
        "use): resources, versions against this driver, and whether TensorFlow sees each GPU.",
    )
    doctor.add_argument(
        "--address", metavar="ADDR", help="the cluster's Ray address (default: as a search)"
    )
    doctor.add_argument(
        "--expect-gpus",
        type=non_negative_int,
        metavar="N",
        help="a problem unless TensorFlow can use at least N GPUs in the cluster",
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(func=run)
