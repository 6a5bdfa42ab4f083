"""The per-process cache of compiled Keras models and their traced functions.

Why a cache
    Tracing costs about half a second. A process keeps the last few compiled models
    (LRU, :data:`CACHE_SIZE_ENV` entries, default 8) keyed by architecture, compile
    configuration (learning rate excluded: it is a variable) and input shape. A fit that
    finds its key reuses the traced graph after resetting every variable to the values a
    freshly built network would have for the fit's seed, restoring the optimizer's
    just-built state and setting its learning rate. Epochs, batch size, data size, seed
    and shuffling are runtime arguments and never retrace; the loop that watches held-out
    data (``early_stopping``) is traced separately, on the first such fit of an architecture.

Caveat
    A user's Sequential or functional model is keyed by its configuration (layer names
    canonicalised). A custom layer whose ``get_config`` leaves out an argument that
    changes its computation could wrongly share a compiled model with a different one:
    give the layer a complete ``get_config``, or set ``RAYGRID_KERAS_CACHE_SIZE=0`` (no
    sharing: every fit builds and traces anew). Subclassed models are never shared.

Used by :mod:`raygrid.keras.training` (sessions and inference) and
:mod:`raygrid.keras.compiled_loop` (the traced loops each entry keeps).
"""

from __future__ import annotations

import copy
import gc
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from raygrid.keras.runtime import note_model_built

#: Environment variable holding the number of compiled models a process keeps.
CACHE_SIZE_ENV = "RAYGRID_KERAS_CACHE_SIZE"
_DEFAULT_CACHE_SIZE = 8


class Entry:
    """One compiled model of the cache, with its traced functions."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.lock = threading.RLock()
        self.fit_loops: dict[tuple, Callable] = {}
        self.fit_calls: dict[tuple, Callable] = {}
        # Every tf.function traced for this model, by kind, for trace_counts().
        self.functions: list[tuple[str, Any]] = []
        self.forward: Callable | None = None
        self.fast_failed = False
        self.loaded_token: str | None = None
        optimizer = model.optimizer
        optimizer.build(model.trainable_variables)
        self.optimizer_state = [v.numpy() for v in optimizer.variables]
        self.lr_index = next(
            (
                i
                for i, v in enumerate(optimizer.variables)
                if v.path.rsplit("/", 1)[-1] == "learning_rate"
            ),
            None,
        )
        self.targets = list(model.variables) + list(optimizer.variables)
        positions = {id(v): i for i, v in enumerate(self.targets)}
        # Where each of model.weights (get_weights' order) sits among the targets.
        self.weight_positions = [positions[id(w)] for w in model.weights]
        self.assign_all: Callable | None = None
        self.assign_weights: Callable | None = None
        self.read_all: Callable | None = None

    def reset(self, values: list[np.ndarray], learning_rate: float | None) -> None:
        """Put the model and its optimizer back in their just-built state."""
        optimizer_values = list(self.optimizer_state)
        if learning_rate is not None and self.lr_index is not None:
            optimizer_values[self.lr_index] = np.asarray(
                learning_rate, dtype=optimizer_values[self.lr_index].dtype
            )
        if self.assign_all is None:
            function = _make_assign_all(self.targets)
            self.functions.append(("assign", function))
            self.assign_all = function.get_concrete_function()
        self.assign_all(*values, *optimizer_values)
        self.loaded_token = None

    def load(self, weights: list[np.ndarray]) -> None:
        """Assign ``weights`` (``model.get_weights()``'s order) in one compiled call."""
        if self.assign_weights is None:
            function = _make_assign_all(list(self.model.weights))
            self.functions.append(("load", function))
            self.assign_weights = function.get_concrete_function()
        self.assign_weights(*weights)

    def read(self) -> list[np.ndarray]:
        """The values of every variable of the model and its optimizer, in one call."""
        if self.read_all is None:
            function = _make_read_all(self.targets)
            self.functions.append(("read", function))
            self.read_all = function.get_concrete_function()
        return [value.numpy() for value in self.read_all()]


def _make_assign_all(variables: list[Any]) -> Callable:
    """One compiled call that assigns every variable (instead of one eager op each)."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    @tf.function(
        input_signature=[tf.TensorSpec(v.shape, v.dtype) for v in variables], autograph=False
    )
    def assign_all(*values):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)

    return assign_all


def _make_read_all(variables: list[Any]) -> Callable:
    """One compiled call that reads every variable (instead of one eager read each)."""
    import tensorflow as tf  # heavy: TensorFlow loads on first use

    @tf.function(input_signature=[], autograph=False)
    def read_all():
        return [tf.identity(variable.value) for variable in variables]

    return read_all


_cache: OrderedDict[str, Entry] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_size() -> int:
    """Number of compiled models a process keeps (``RAYGRID_KERAS_CACHE_SIZE``, default 8)."""
    try:
        return max(0, int(os.environ.get(CACHE_SIZE_ENV, _DEFAULT_CACHE_SIZE)))
    except ValueError:
        return _DEFAULT_CACHE_SIZE


def cached_keys() -> list[str]:
    """Keys of the cached compiled models, least recently used first."""
    with _cache_lock:
        return list(_cache)


def trace_counts() -> dict[str, dict[str, int]]:
    """How many times each cached model's compiled functions were traced.

    Returns
    -------
    dict
        ``{cache key: {kind: traces}}``, kinds being ``"fit_loop"``, ``"train_step"``,
        ``"test_step"``, ``"forward"``, ``"assign"``, ``"read"`` and ``"load"`` (summed
        over the entry's functions of that kind: one fit loop per input signature and
        stopping kind).
    """
    with _cache_lock:
        entries = list(_cache.items())
    counts: dict[str, dict[str, int]] = {}
    for key, entry in entries:
        per_kind: dict[str, int] = {}
        for kind, function in list(entry.functions):
            traced = function.experimental_get_tracing_count()
            per_kind[kind] = per_kind.get(kind, 0) + traced
        counts[key] = per_kind
    return counts


def clear_cache() -> None:
    """Forget every cached model and traced function of this process."""
    with _cache_lock:
        _cache.clear()


def clear_tensorflow_state() -> None:
    """Drop the cached compiled training loops, reset Keras' global state, collect garbage.

    Call it between unrelated workloads in a long-lived process; the wrappers do not
    need it between fits (they keep a bounded cache and hold no other state).

    Examples
    --------
    >>> from raygrid.keras import clear_tensorflow_state
    >>> clear_tensorflow_state()
    """
    import keras  # heavy: TensorFlow loads on first use

    clear_cache()
    keras.backend.clear_session(free_memory=True)
    gc.collect()


def cache_get(key: str) -> Entry | None:
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None:
            _cache.move_to_end(key)
        return entry


def cache_put(key: str, entry: Entry) -> None:
    with _cache_lock:
        _cache[key] = entry
        _cache.move_to_end(key)
        while len(_cache) > _cache_size():
            _cache.popitem(last=False)


# -- keys -----------------------------------------------------------------------------


def _canonical_names(config: Any) -> Any:
    """Replace every name found in a config by its order of appearance.

    Keras names layers ``dense``, ``dense_1``, ... from a process-wide counter, so two
    builds of one architecture differ only by names; functional configs refer to layers
    by name, so every occurrence of a name is replaced consistently.
    """
    names: dict[str, str] = {}

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for k in sorted(node):
                if k == "name" and isinstance(node[k], str) and node[k] not in names:
                    names[node[k]] = f"#{len(names)}"
                collect(node[k])
        elif isinstance(node, list | tuple):
            for item in node:
                collect(item)

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: rename(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [rename(v) for v in node]
        if isinstance(node, str):
            return names.get(node, node)
        return node

    collect(config)
    return rename(config)


def structural_key(model: Any, input_shape: tuple[int, ...]) -> str | None:
    """A key equal for two builds of the same Sequential or functional model, or None.

    Subclassed models are not keyed: their configs need not describe their structure.

    Parameters
    ----------
    model : keras.Model
        A built, compiled model.
    input_shape : tuple of int
        Shape of one sample.

    Returns
    -------
    str or None
    """
    import keras  # heavy: TensorFlow loads on first use

    kind = type(model)
    if kind is not keras.Sequential and not (
        kind.__name__ == "Functional" and kind.__module__.startswith("keras.")
    ):
        return None
    try:
        compile_config = copy.deepcopy(model.get_compile_config())
        optimizer_config = compile_config.get("optimizer", {}).get("config", {})
        if _lr_variable(model.optimizer) is not None:
            optimizer_config.pop("learning_rate", None)
        config = {
            "class": kind.__name__,
            "model": _canonical_names(model.get_config()),
            "compile": _canonical_names(compile_config),
            "input_shape": list(input_shape),
        }
        return "user:" + json.dumps(config, sort_keys=True)
    except (TypeError, ValueError, NotImplementedError, AttributeError):
        return None


def _lr_variable(optimizer: Any) -> Any:
    if optimizer is None:
        return None
    return next(
        (v for v in optimizer.variables if v.path.rsplit("/", 1)[-1] == "learning_rate"), None
    )


def learning_rate_of(model: Any) -> float | None:
    variable = _lr_variable(model.optimizer)
    return None if variable is None else float(variable.numpy())


def build_model(build: Callable[[], Any], x_sample: np.ndarray) -> Any:
    model = build()
    if not model.built:
        model(x_sample, training=False)
    note_model_built()
    return model
