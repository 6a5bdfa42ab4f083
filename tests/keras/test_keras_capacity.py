"""How many models a fused stack holds: measured free memory over a model's needs; a group
larger than that trains as several stacks with the same results."""

import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from raygrid.keras import KerasClassifier, capacity
from raygrid.keras import fused as fused_module
from raygrid.keras.fused import fit_fused
from raygrid.run import gpu_memory

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples"))
from seed_grid_search import seed_data  # noqa: E402

X, _, y, _ = seed_data()


def fake_tf(used_bytes: int, gpus: int = 1):
    """A stand-in for the tensorflow module's device API: ``gpus`` logical GPUs, of which
    the first holds ``used_bytes``."""
    calls = []

    def memory_info(device):
        calls.append(device)
        return {"current": used_bytes, "peak": used_bytes}

    names = [SimpleNamespace(name=f"/device:GPU:{i}") for i in range(gpus)]
    config = SimpleNamespace(
        list_logical_devices=lambda kind: names if kind == "GPU" else [],
        experimental=SimpleNamespace(get_memory_info=memory_info),
    )
    return SimpleNamespace(config=config), calls


def test_on_a_gpu_free_memory_is_the_workers_limit_less_what_tensorflow_holds(monkeypatch):
    tf, calls = fake_tf(used_bytes=40 * 2**20)
    monkeypatch.setattr(gpu_memory, "current_limit", (100, 0.25, 400))  # 0.25 of 400 MiB
    assert capacity.free_memory(tf) == (60 * 2**20, "/device:GPU:0")
    assert calls == ["/device:GPU:0"]
    # 60 MiB free, half of it for the stack, 3 MiB a model: 10 models.
    assert capacity.stack_capacity(3 * 2**20, tf) == 10


def test_on_a_whole_gpu_free_memory_is_the_devices_less_what_tensorflow_holds(monkeypatch):
    tf, _ = fake_tf(used_bytes=2**30)
    monkeypatch.setattr(gpu_memory, "current_limit", None)
    monkeypatch.setattr(gpu_memory, "device_memory_mib", lambda index: 16 * 1024)
    assert capacity.free_memory(tf) == (15 * 2**30, "/device:GPU:0")
    monkeypatch.setattr(gpu_memory, "device_memory_mib", lambda index: None)
    assert capacity.free_memory(tf) == (None, "/device:GPU:0")
    assert capacity.stack_capacity(2**20, tf) == 2**31  # unknown: no split


def test_on_cpus_free_memory_is_this_workers_share_of_the_available(monkeypatch):
    tf, _ = fake_tf(used_bytes=0, gpus=0)
    available = 8 * 2**30
    monkeypatch.setattr(
        capacity.psutil, "virtual_memory", lambda: SimpleNamespace(available=available)
    )
    monkeypatch.setattr(capacity.os, "cpu_count", lambda: 4)
    monkeypatch.setenv("RAYGRID_TF_THREADS", "1")
    assert capacity.free_memory(tf) == (available // 4, "CPU")
    assert capacity.stack_capacity(available, tf) == 1  # never less than one model


def test_model_bytes_grow_with_the_network_the_rows_and_the_kept_states():
    small = capacity.model_bytes(100, 200, 20, 1, 32, 64, 1)
    assert capacity.model_bytes(200, 200, 20, 1, 32, 64, 1) > small
    assert capacity.model_bytes(100, 400, 20, 1, 32, 64, 1) > small
    assert capacity.model_bytes(100, 200, 20, 1, 32, 64, 3) > small


@pytest.mark.parametrize("size", [1, 3])
def test_a_group_larger_than_memory_trains_as_several_stacks_with_the_same_results(
    monkeypatch, size
):
    base = KerasClassifier(units=8, batch_size=32, random_state=0)
    rows = [np.arange(0, 300, 1 + k % 2)[: 120 + 10 * k] for k in range(5)]
    jobs = [
        ({"learning_rate": 0.01 * (k + 1), "epochs": 3 + k % 3}, r) for k, r in enumerate(rows)
    ]
    whole = fit_fused(base, X, y, jobs)
    stacks = []
    original = fused_module._train_stack
    monkeypatch.setattr(
        fused_module,
        "_train_stack",
        lambda stacked, *args: stacks.append(len(stacked)) or original(stacked, *args),
    )
    monkeypatch.setattr(capacity, "stack_capacity", lambda per_model, tf=None: size)
    split = fit_fused(base, X, y, jobs)
    assert stacks == ([1] * 5 if size == 1 else [3, 2])
    # Stacks of any size run the architecture's one trace.
    assert all(count == 1 for count in fused_module.trace_counts().values())
    for one, other in zip(whole, split, strict=True):
        assert one.n_iter_ == other.n_iter_
        np.testing.assert_array_equal(one.loss_curve_, other.loss_curve_)
        np.testing.assert_array_equal(one.predict_proba(X), other.predict_proba(X))
