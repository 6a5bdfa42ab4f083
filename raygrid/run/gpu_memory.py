"""Enforce a worker's share of a GPU's memory on TensorFlow.

Ray's fractional GPUs are scheduling labels: a worker holding 0.25 of a GPU can still let
TensorFlow take the whole device's memory as its model grows, starving the other workers
on that device. A worker holding a fraction ``f`` of a GPU therefore gives TensorFlow one
logical device of ``f`` × the device's memory, before TensorFlow initialises the GPU.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
from collections.abc import Callable
from typing import Any

from raygrid.local import ray_private

logger = logging.getLogger(__name__)

# The limit this process set, for error messages: (limit MiB, fraction, device MiB).
current_limit: tuple[int, float, int] | None = None


def device_memory_mib(index: int) -> int | None:
    """Total memory of the process's ``index``-th visible NVIDIA GPU, in MiB (None if unknown)."""
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v]
    device = visible[index] if index < len(visible) else str(index)
    try:
        pynvml = ray_private.pynvml()
        pynvml.nvmlInit()
        try:
            if device.isdigit():
                handle = pynvml.nvmlDeviceGetHandleByIndex(int(device))
            else:
                handle = pynvml.nvmlDeviceGetHandleByUUID(device)
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=memory.total",
                "--format=csv,noheader,nounits",
                "-i",
                device,
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(float(out.split()[0]))
    except Exception:
        return None


def limit_tensorflow_memory(
    fraction: float,
    tf: Any = None,
    device_memory: Callable[[int], int | None] = device_memory_mib,
) -> list[int]:
    """Give TensorFlow one logical device of ``fraction`` × memory on each visible GPU.

    Parameters
    ----------
    fraction : float
        The share of one GPU this worker holds, in (0, 1).
    tf : module, optional
        The ``tensorflow`` module (imported when None).
    device_memory : callable, default=device_memory_mib
        Total memory in MiB of the process's i-th visible GPU.

    Returns
    -------
    list of int
        The limit set on each GPU, in MiB (empty without GPUs, or when TensorFlow had
        already initialised them).
    """
    global current_limit
    if tf is None:
        import tensorflow as tf
    limits = []
    for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        total = device_memory(i)
        if total is None:
            logger.warning("raygrid: memory of GPU %s unknown; no memory limit set", gpu)
            continue
        limit = max(1, int(fraction * total))
        try:
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)]
            )
        except RuntimeError:  # TensorFlow already initialised this GPU
            logger.warning("raygrid: GPU %s already initialised; no memory limit set", gpu)
            continue
        limits.append(limit)
        current_limit = (limit, fraction, total)
    return limits


def limit_if_shared(num_gpus: float) -> list[int]:
    """In a worker holding a fraction of a GPU, limit TensorFlow's share (if installed)."""
    if not 0 < num_gpus < 1 or importlib.util.find_spec("tensorflow") is None:
        return []
    return limit_tensorflow_memory(num_gpus)


def explain_out_of_memory(error_text: str | None) -> str | None:
    """``error_text`` with the worker's GPU memory limit named, if it ran out of it."""
    if error_text is None or current_limit is None:
        return error_text
    if "ResourceExhausted" not in error_text and "OOM" not in error_text:
        return error_text
    limit, fraction, total = current_limit
    return (
        f"{error_text}\nraygrid: this worker's TensorFlow GPU memory is limited to {limit} MiB "
        f"(num_gpus_per_task={fraction:g} of a {total} MiB device); the model does not fit "
        "in it. Give each fit a larger share of a GPU, or a smaller model or batch.\n"
    )
