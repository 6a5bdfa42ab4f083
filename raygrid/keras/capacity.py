"""How many models one fused stack may hold: the worker's free memory over a model's needs.

Fused training (:mod:`raygrid.keras.fused`) trains a group's models as one stack in one
compiled loop; a group larger than the memory the worker can spare trains as several
stacks, one after the other. The free memory is measured, not guessed:

- on a GPU, TensorFlow's own count of the bytes it holds on the device
  (``tf.config.experimental.get_memory_info``) against the memory it may use there: the
  logical-device limit raygrid set for a worker holding a fraction of the GPU
  (:mod:`raygrid.run.gpu_memory`), else the device's total memory (NVML or ``nvidia-smi``);
- on CPUs, the machine's available memory (psutil) times this worker's share of the
  machine's CPUs.

A stack is given :data:`HEADROOM` of that: TensorFlow's temporaries and its allocator's
slack need the rest.
"""

from __future__ import annotations

import os
from typing import Any

import psutil

from raygrid.keras.runtime import thread_count_from_env
from raygrid.run import gpu_memory

#: The share of the measured free memory one stack may take.
HEADROOM = 0.5


def free_memory(tf: Any = None) -> tuple[int | None, str]:
    """Bytes this worker may still use for training, and the device they were measured on.

    Parameters
    ----------
    tf : module, optional
        The ``tensorflow`` module (imported when None).

    Returns
    -------
    bytes : int or None
        None when a GPU's memory cannot be read.
    device : str
        The TensorFlow device name (``"/device:GPU:0"``) or ``"CPU"``.
    """
    if tf is None:
        import tensorflow as tf  # heavy: TensorFlow loads on first use
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        device = gpus[0].name
        limit = gpu_memory.current_limit
        total_mib = limit[0] if limit is not None else gpu_memory.device_memory_mib(0)
        if total_mib is None:
            return None, device
        used = int(tf.config.experimental.get_memory_info(device)["current"])
        return max(0, total_mib * 2**20 - used), device
    cpus = os.cpu_count() or 1
    share = min(1.0, (thread_count_from_env() or cpus) / cpus)
    return int(psutil.virtual_memory().available * share), "CPU"


def model_bytes(
    n_params: int,
    n_rows: int,
    row_width: int,
    target_width: int,
    batch_size: int,
    widest_layer: int,
    n_kept: int,
) -> int:
    """Memory one stacked model needs during fused training, in bytes (float32).

    Parameters
    ----------
    n_params : int
        The network's trainable parameters.
    n_rows, row_width, target_width : int
        Its training rows, the values per row, the targets per row.
    batch_size : int
    widest_layer : int
        The most units of a layer (activations are kept for the backward pass).
    n_kept : int
        States kept on the way (one per epoch count a fit stops at).

    Returns
    -------
    int
    """
    floats = (
        n_params * (6 + n_kept)  # weights, Adam's moments, gradient, new values, kept states
        + n_rows * (row_width + target_width + 1)  # its rows, targets and sample weights
        + batch_size * (row_width + 4 * widest_layer)  # a batch, activations and their grads
    )
    return 4 * floats


def stack_capacity(per_model: int, tf: Any = None) -> int:
    """How many models of ``per_model`` bytes one stack may hold here (at least one).

    Parameters
    ----------
    per_model : int
        :func:`model_bytes` of the group's models.
    tf : module, optional
        The ``tensorflow`` module (imported when None).

    Returns
    -------
    int
        Unbounded (a very large number) when the memory cannot be read.
    """
    free, _ = free_memory(tf)
    if free is None:
        return 2**31
    return max(1, int(free * HEADROOM) // max(1, per_model))
