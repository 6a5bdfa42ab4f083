"""Device truth in a worker: the GPUs Ray granted against the GPUs the framework sees.

Ray's GPUs are scheduling labels: a worker holding one sets ``CUDA_VISIBLE_DEVICES``,
but whether the framework inside can use the device is another matter (no driver in the
container, a CUDA library that does not load, a CPU-only build). A fit that silently
runs on the CPU of a GPU node wastes the GPU hours it was billed for, so a worker that
holds GPUs asks the estimator's framework what it sees before its first fit, and stops
the whole search with a :class:`DeviceError` when the answer is "no GPU".

The hook
--------
An estimator declares a check by defining a method ``visible_devices(self)`` that
returns a dict:

``framework`` (str)
    The framework and its version, e.g. ``"TensorFlow 2.21.0"``.
``gpus`` (list of str)
    The GPUs the framework can use in this process, each named as it should appear in
    the ``device`` column of ``tasks_``, e.g. ``"GPU:0 NVIDIA A10G"``; empty if none.
``built_for`` (str, optional)
    What the framework was built against, e.g. ``"CUDA 12.5.1, cuDNN 9"``.

The hook runs in the worker, once per worker process and estimator class, only when the
worker holds GPUs. Meta-estimators are searched too: every estimator among
``get_params(deep=True)`` values (a ``Pipeline``'s steps) that has the hook is asked.
:class:`raygrid.keras.KerasClassifier` and :class:`~raygrid.keras.KerasRegressor` ask
TensorFlow. An estimator without the hook is not checked; its fits' ``device`` is
``"GPU:<ids> (unchecked)"``.

The opt-out
-----------
Ray can declare logical GPUs on machines without any (``ray.init(num_gpus=2)``), which
is how GPU scheduling is tested on CPU machines. With ``RAYGRID_ALLOW_LOGICAL_GPUS=1`` in
the driver's environment when ``fit`` starts, a framework that sees no GPU is accepted
and the fits' ``device`` says ``"CPU (logical GPU <ids>)"``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

ALLOW_ENV = "RAYGRID_ALLOW_LOGICAL_GPUS"
HOOK = "visible_devices"


class DeviceError(RuntimeError):
    """A worker holds GPUs that the estimator's framework cannot see; the search stops."""


def allow_logical_gpus() -> bool:
    """Whether ``RAYGRID_ALLOW_LOGICAL_GPUS`` is set to a true value in this process."""
    return os.environ.get(ALLOW_ENV, "").strip().lower() not in ("", "0", "false", "no")


def framework_reports(estimator: Any) -> list[dict[str, Any]]:
    """The ``visible_devices()`` answers of ``estimator`` and the estimators inside it.

    Parameters
    ----------
    estimator : estimator
        The search's estimator (unfitted).

    Returns
    -------
    list of dict
        One answer per estimator class that defines the hook; empty when none does.
    """
    objects = [estimator]
    with contextlib.suppress(Exception):  # not a scikit-learn estimator: itself only
        objects += list(estimator.get_params(deep=True).values())
    reports, seen = [], set()
    for obj in objects:
        hook = getattr(obj, HOOK, None)
        if isinstance(obj, type) or not callable(hook) or type(obj) in seen:
            continue
        seen.add(type(obj))
        reports.append(dict(hook()))
    return reports


def worker_device(
    estimator: Any, gpu_ids: list[str], where: str, allow_logical: bool = False
) -> str:
    """The device this worker's fits run on, checked against what Ray granted.

    Parameters
    ----------
    estimator : estimator
        The search's estimator; its hook (if any) is asked only when ``gpu_ids``.
    gpu_ids : list of str
        The GPU ids Ray gave this worker.
    where : str
        The node, for the error message (e.g. ``"10.0.0.7 (node 3f2a9c01)"``).
    allow_logical : bool, default=False
        Accept a framework that sees no GPU (logical GPUs on a CPU machine).

    Returns
    -------
    str
        ``"CPU"``, the framework's GPU names (``"GPU:0 NVIDIA A10G"``),
        ``"CPU (logical GPU 0)"`` under ``allow_logical``, or ``"GPU:0 (unchecked)"`` when
        no estimator declares a check.

    Raises
    ------
    DeviceError
        When Ray gave GPUs and a framework sees none (and ``allow_logical`` is False).
    """
    if not gpu_ids:
        return "CPU"
    ids = ",".join(gpu_ids)
    reports = framework_reports(estimator)
    if not reports:
        return f"GPU:{ids} (unchecked)"
    for report in reports:
        if report.get("gpus"):
            continue
        if allow_logical:
            return f"CPU (logical GPU {ids})"
        raise DeviceError(missing_gpu_message(report, gpu_ids, where))
    return ", ".join(reports[0]["gpus"])


def missing_gpu_message(report: dict[str, Any], gpu_ids: list[str], where: str) -> str:
    """The one message of a :class:`DeviceError`: node, GPU ids, CUDA_VISIBLE_DEVICES, build."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    framework = report.get("framework", "the estimator's framework")
    built = report.get("built_for")
    return (
        f"raygrid: a worker on node {where} holds GPU {','.join(gpu_ids)} "
        f"(CUDA_VISIBLE_DEVICES={visible!r}) but {framework} sees no GPU"
        + (f" (built for {built})" if built else "")
        + "; the search stopped before its fits could run on the CPU. Check the node's "
        "NVIDIA driver and the CUDA libraries in its image (`raygrid doctor --expect-gpus "
        f"N` shows what each node sees), or set {ALLOW_ENV}=1 if these GPUs are logical "
        "ones declared on a machine without GPUs."
    )
