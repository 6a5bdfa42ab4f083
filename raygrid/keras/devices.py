"""What TensorFlow sees in this process: the answer of the wrappers' device hook.

:func:`tensorflow_devices` is what :meth:`KerasClassifier.visible_devices` returns (see
:mod:`raygrid.run.devices` for the hook); :func:`loaded_cuda` says which CUDA runtime and
cuDNN the process actually mapped, for ``raygrid doctor``.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

from raygrid.keras.runtime import configure_tensorflow

_LOADED = {
    "cuda": re.compile(r"/libcudart\.so[.\d]*$"),
    "cudnn": re.compile(r"/libcudnn\.so[.\d]*$"),
}


def tensorflow_devices() -> dict[str, Any]:
    """The GPUs TensorFlow can use in this process, and what it was built for.

    Lists physical devices only (TensorFlow's runtime is not initialised by it).

    Returns
    -------
    dict
        ``framework`` (``"TensorFlow 2.21.0"``), ``gpus`` (``["GPU:0 NVIDIA A10G"]``, empty
        when it sees none) and ``built_for`` (``"CUDA 12.5.1, cuDNN 9"``, or that the build
        has no CUDA).
    """
    configure_tensorflow()
    import tensorflow as tf

    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        name = device.name.removeprefix("/physical_device:")
        try:
            details = tf.config.experimental.get_device_details(device)
        except Exception:  # details are a nicety; the device is what counts
            details = {}
        gpus.append(f"{name} {details.get('device_name', '')}".strip())
    info = dict(tf.sysconfig.get_build_info())
    if info.get("is_cuda_build"):
        built_for = f"CUDA {info.get('cuda_version', '?')}, cuDNN {info.get('cudnn_version', '?')}"
    else:
        built_for = "no CUDA (a CPU-only TensorFlow build)"
    return {"framework": f"TensorFlow {tf.__version__}", "gpus": gpus, "built_for": built_for}


def loaded_cuda(maps: str = "/proc/self/maps") -> dict[str, str]:
    """The CUDA runtime and cuDNN versions mapped into this process (after a GPU op).

    Parameters
    ----------
    maps : str, default="/proc/self/maps"
        The process's memory map.

    Returns
    -------
    dict
        ``{"cuda": "12.9", "cudnn": "9.27.0"}`` for those loaded; missing keys: not loaded.
    """
    try:
        with open(maps) as f:
            paths = {line.split()[-1] for line in f if "/lib" in line}
    except OSError:
        return {}
    found = {}
    for kind, pattern in _LOADED.items():
        for path in sorted(p for p in paths if pattern.search(p)):
            try:
                found[kind] = _ask_version(kind, path)
            except (OSError, AttributeError):
                continue
            break
    return found


def _ask_version(kind: str, path: str) -> str:
    lib = ctypes.CDLL(path)
    if kind == "cuda":
        value = ctypes.c_int()
        if lib.cudaRuntimeGetVersion(ctypes.byref(value)) != 0:
            raise OSError("cudaRuntimeGetVersion failed")
        return f"{value.value // 1000}.{value.value % 1000 // 10}"
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    value = lib.cudnnGetVersion()
    return f"{value // 10000}.{value % 10000 // 100}.{value % 100}"
