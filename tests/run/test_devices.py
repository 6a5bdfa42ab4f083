"""Device truth: a worker that holds GPUs its framework cannot see stops the search.

The session's Ray declares 2 logical GPUs on this CPU machine and conftest sets the
opt-out RAYGRID_ALLOW_LOGICAL_GPUS=1; the tests here remove it to show the error.
"""

import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
from estimators import ProbeRidge
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from raygrid import RayGridSearchCV
from raygrid.keras import KerasClassifier
from raygrid.report.analysis import timeline_tasks
from raygrid.report.figures import timeline_figure
from raygrid.run import devices
from raygrid.store.record import FitRecord
from raygrid.tracking import CandidateResult

X, y = make_classification(n_samples=60, n_features=4, random_state=0)
Xr, yr = make_regression(n_samples=40, n_features=3, random_state=0)


class Sees(Ridge):
    """A Ridge whose framework (pretend) sees the given GPUs."""

    def __init__(self, alpha=1.0, gpus=()):
        super().__init__(alpha=alpha)
        self.gpus = gpus

    def visible_devices(self):
        return {"framework": "FakeNet 1.0", "gpus": list(self.gpus), "built_for": "CUDA 12.5"}


def test_worker_device_answers_without_a_search(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert devices.worker_device(Sees(gpus=[]), [], "n") == "CPU"
    assert devices.worker_device(Ridge(), ["3"], "n") == "GPU:3 (unchecked)"
    assert devices.worker_device(Sees(gpus=["GPU:0 A10G"]), ["3"], "n") == "GPU:0 A10G"
    assert devices.worker_device(Sees(), ["3"], "n", allow_logical=True) == "CPU (logical GPU 3)"
    with pytest.raises(devices.DeviceError) as caught:
        devices.worker_device(make_pipeline(StandardScaler(), Sees()), ["3"], "10.0.0.7 (node ab)")
    message = str(caught.value)
    for part in (
        "node 10.0.0.7 (node ab)",
        "GPU 3",
        "CUDA_VISIBLE_DEVICES='3'",
        "FakeNet 1.0 sees no GPU",
        "built for CUDA 12.5",
        devices.ALLOW_ENV,
    ):
        assert part in message, part


def keras_search(**options):
    return RayGridSearchCV(
        KerasClassifier(units=8, epochs=2, random_state=0),
        {"units": [4, 8]},
        cv=2,
        num_gpus_per_task=1,
        progress=False,
        **options,
    )


def test_keras_search_on_gpus_tensorflow_cannot_see_stops_with_one_error(monkeypatch):
    monkeypatch.delenv(devices.ALLOW_ENV)
    search = keras_search()
    start = time.monotonic()
    with pytest.raises(devices.DeviceError) as caught:
        search.fit(X, y)
    elapsed = time.monotonic() - start
    message = str(caught.value)
    assert "sees no GPU" in message and "TensorFlow 2." in message
    assert "CUDA_VISIBLE_DEVICES='0'" in message or "CUDA_VISIBLE_DEVICES='1'" in message
    assert "built for CUDA" in message
    assert not hasattr(search, "cv_results_")
    print(f"DeviceError after {elapsed:.1f} s (load {os.getloadavg()[0]:.1f})")
    assert elapsed < 180, elapsed  # TensorFlow's import on a shared 2-core machine


def test_opt_out_records_logical_gpus_and_every_fit_its_device(tmp_path):
    search = keras_search().fit(X, y)
    assert set(search.tasks_["device"]) <= {"CPU (logical GPU 0)", "CPU (logical GPU 1)"}
    figure = timeline_figure(timeline_tasks(search.tasks_), n_candidates=2)
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels and all(label.startswith("CPU (logical GPU ") for label in labels), labels
    candidate = CandidateResult(0, {"units": 4}, [FitRecord(0, 0.5, 1.0, 0.1, device="CPU")] * 2)
    assert candidate.devices() == "CPU"
    search.save_results(tmp_path / "keras")
    saved = pd.read_parquet(tmp_path / "keras" / "tasks.parquet")
    assert list(saved["device"]) == list(search.tasks_["device"])

    cpu = RayGridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=2, progress=False).fit(Xr, yr)
    assert set(cpu.tasks_["device"]) == {"CPU"}
    unchecked = RayGridSearchCV(
        ProbeRidge(probe_dir=str(tmp_path)),
        {"alpha": [1.0]},
        cv=2,
        num_gpus_per_task=1,
        progress=False,
    ).fit(Xr, yr)
    assert all(
        d.endswith("(unchecked)") and d.startswith("GPU:") for d in unchecked.tasks_["device"]
    )


MUST_SHOW = textwrap.dedent(
    """
    import ray
    from sklearn.datasets import make_classification
    from raygrid import RayGridSearchCV
    from raygrid.keras import KerasClassifier

    ray.init(address="local", num_cpus=1, num_gpus=1, log_to_driver=False)
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    search = RayGridSearchCV(KerasClassifier(units=8, epochs=2), {"units": [4, 8]}, cv=2,
                             num_gpus_per_task=1)
    search.fit(X, y)
    print("SCORES", search.cv_results_["mean_test_score"])
    """
)


@pytest.mark.slow
def test_must_show_a_local_ray_declaring_one_gpu_fails_in_seconds(tmp_path):
    script = tmp_path / "one_gpu.py"
    script.write_text(MUST_SHOW)
    env = {k: v for k, v in os.environ.items() if k != devices.ALLOW_ENV}
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env
    )
    elapsed = time.monotonic() - start
    assert run.returncode != 0
    assert "SCORES" not in run.stdout
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("raygrid.run.devices.DeviceError: raygrid: a worker on node"), last
    assert "holds GPU 0 (CUDA_VISIBLE_DEVICES='0')" in last
    print(f"must-show: failed after {elapsed:.1f} s (Ray start included): {last}")
    assert elapsed < 120
