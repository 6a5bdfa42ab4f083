"""One Ray instance for the whole test session: 2 CPUs and 2 logical GPUs.

Logical GPUs let the GPU scheduling paths run on machines without one: Ray hands out
GPU ids and sets CUDA_VISIBLE_DEVICES exactly as it would on real devices.

Those GPUs are not real, so a raygrid.keras search holding them would stop at its first
fit with a DeviceError (TensorFlow sees no GPU; see raygrid.run.devices). Every test here
therefore runs with the documented opt-out RAYGRID_ALLOW_LOGICAL_GPUS=1 (searches in test
subprocesses inherit it). tests/run/test_devices.py removes it to show the error fires.
"""

import os
import tempfile

import pytest
import ray
from s3_server import configure_environment

from raygrid.local.connect import start_local

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# MLflow's client telemetry sends usage events off the machine and, from threads, races on
# its session variable (a KeyError that stops a tracker mid-test); the tests need neither.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["RAYGRID_ALLOW_LOGICAL_GPUS"] = "1"
# Searches in test subprocesses must not join a kept-alive cluster of `raygrid up`.
os.environ["RAYGRID_STATE_DIR"] = tempfile.mkdtemp(prefix="raygrid-test-state-")
# The test S3 endpoint (tests/s3_server.py), set before Ray starts so that its workers,
# which take the environment of the process starting Ray, reach it too.
configure_environment()


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """Start the session's Ray once; tests that need another cluster use subprocesses."""
    if not ray.is_initialized():
        start_local(num_cpus=2, num_gpus=2, log_to_driver=False)
    yield
    ray.shutdown()
