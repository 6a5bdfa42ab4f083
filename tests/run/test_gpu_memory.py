"""A worker holding a fraction of a GPU gives TensorFlow that fraction of its memory.

This machine has no GPU: TensorFlow's device listing is replaced by fake devices and its
configuration calls are recorded, while the configuration objects are TensorFlow's own.
"""

import pytest
from sklearn.datasets import make_regression
from sklearn.linear_model import Ridge

from raygrid import RayGridSearchCV
from raygrid.run import gpu_memory

tf = pytest.importorskip("tensorflow")


class FakeGPU:
    def __init__(self, name):
        self.name = name
        self.device_type = "GPU"


@pytest.fixture
def fake_gpus(monkeypatch):
    """Two fake GPUs of 16000 and 8000 MiB; what TensorFlow was asked to configure."""
    gpus = [FakeGPU("/physical_device:GPU:0"), FakeGPU("/physical_device:GPU:1")]
    configured = {}

    def list_physical_devices(kind=None):
        return gpus if kind == "GPU" else []

    def set_logical_device_configuration(device, logical_devices):
        configured[device.name] = logical_devices

    monkeypatch.setattr(tf.config, "list_physical_devices", list_physical_devices)
    monkeypatch.setattr(
        tf.config, "set_logical_device_configuration", set_logical_device_configuration
    )
    monkeypatch.setattr(gpu_memory, "current_limit", None)
    return configured, {0: 16000, 1: 8000}.get


def test_quarter_gpu_gets_a_quarter_of_each_devices_memory(fake_gpus):
    configured, memory = fake_gpus
    limits = gpu_memory.limit_tensorflow_memory(0.25, tf=tf, device_memory=memory)
    assert limits == [4000, 2000]
    first = configured["/physical_device:GPU:0"]
    assert len(first) == 1
    assert isinstance(first[0], tf.config.LogicalDeviceConfiguration)
    assert first[0].memory_limit == 4000
    assert configured["/physical_device:GPU:1"][0].memory_limit == 2000


def test_unknown_device_memory_or_initialised_gpu_sets_no_limit(fake_gpus, monkeypatch, caplog):
    configured, _ = fake_gpus
    assert gpu_memory.limit_tensorflow_memory(0.5, tf=tf, device_memory=lambda i: None) == []
    assert configured == {}

    def already_initialised(device, logical_devices):
        raise RuntimeError("Virtual devices cannot be modified after being initialized")

    monkeypatch.setattr(tf.config, "set_logical_device_configuration", already_initialised)
    assert gpu_memory.limit_tensorflow_memory(0.5, tf=tf, device_memory=lambda i: 1000) == []
    assert "already initialised" in caplog.text


def test_whole_gpus_and_cpu_workers_get_no_limit(fake_gpus):
    configured, _ = fake_gpus
    assert gpu_memory.limit_if_shared(1) == []
    assert gpu_memory.limit_if_shared(0) == []
    assert configured == {}


def test_out_of_memory_failure_names_the_limit(fake_gpus):
    gpu_memory.limit_tensorflow_memory(0.25, tf=tf, device_memory=lambda i: 16000)
    text = gpu_memory.explain_out_of_memory(
        "Traceback...\ntensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM "
        "when allocating tensor with shape[4096,4096]\n"
    )
    assert "limited to 4000 MiB" in text
    assert "num_gpus_per_task=0.25 of a 16000 MiB device" in text
    other = "Traceback...\nValueError: bad input\n"
    assert gpu_memory.explain_out_of_memory(other) == other


def test_fractional_gpu_workers_start_and_fit_without_a_gpu():
    X, y = make_regression(n_samples=40, n_features=3, random_state=0)
    search = RayGridSearchCV(
        Ridge(), {"alpha": [0.1, 1.0]}, cv=2, num_cpus_per_task=0.5, num_gpus_per_task=0.5
    ).fit(X, y)
    assert search.best_score_ > 0.9
