"""One Ray instance for the whole test session: 2 CPUs and 2 logical GPUs.

Logical GPUs let the GPU scheduling paths run on machines without one: Ray hands out
GPU ids and sets CUDA_VISIBLE_DEVICES exactly as it would on real devices.
"""

import os
import tempfile

import pytest
import ray

from raygrid.local.connect import start_local

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Searches in test subprocesses must not join a kept-alive cluster of `raygrid up`.
os.environ["RAYGRID_STATE_DIR"] = tempfile.mkdtemp(prefix="raygrid-test-state-")


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """Start the session's Ray once; tests that need another cluster use subprocesses."""
    if not ray.is_initialized():
        start_local(num_cpus=2, num_gpus=2, log_to_driver=False)
    yield
    ray.shutdown()
