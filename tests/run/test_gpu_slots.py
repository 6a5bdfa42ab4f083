"""GPU slots with logical GPUs: what each task was given and saw.

The session's Ray declares 2 logical GPUs on this CPU machine; Ray hands out GPU ids and
sets CUDA_VISIBLE_DEVICES for the workers that hold them exactly as on real devices.
"""

import json
import os

import pytest
from estimators import ProbeRidge
from sklearn.datasets import make_regression

from raygrid import RayGridSearchCV

X, y = make_regression(n_samples=40, n_features=3, random_state=0)


def probes(path):
    return [json.loads((path / name).read_text()) for name in os.listdir(path)]


def most_at_once(intervals):
    """The largest number of (start, end) intervals that overlap at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_half_gpu_tasks_share_each_gpu_at_most_two_at_a_time(tmp_path):
    search = RayGridSearchCV(
        ProbeRidge(probe_dir=str(tmp_path), delay=0.2),
        {"alpha": [0.1, 1.0, 10.0, 100.0]},
        cv=4,
        num_cpus_per_task=0.5,
        num_gpus_per_task=0.5,
    ).fit(X, y)
    tasks = search.tasks_
    assert len(tasks) == 16
    # Each task was given exactly one GPU id, and its process saw exactly that id.
    assert (tasks["gpu_ids"].str.split(",").str.len() == 1).all()
    seen = probes(tmp_path)
    assert all(p["cuda"] in {"0", "1"} for p in seen)
    by_pid = {row.pid: row.gpu_ids for row in tasks.itertuples()}
    assert all(by_pid[p["pid"]] == p["cuda"] for p in seen if p["pid"] in by_pid)
    # No GPU id ever ran more than two tasks at once; together they ran more than two.
    for gpu, group in tasks.groupby("gpu_ids"):
        intervals = list(zip(group["start_time"], group["end_time"], strict=True))
        assert most_at_once(intervals) <= 2, gpu
    all_intervals = list(zip(tasks["start_time"], tasks["end_time"], strict=True))
    assert most_at_once(all_intervals) > 2
    assert set(tasks["gpu_ids"]) == {"0", "1"}


def test_cpu_only_tasks_see_no_gpu(tmp_path):
    search = RayGridSearchCV(ProbeRidge(probe_dir=str(tmp_path)), {"alpha": [0.1, 1.0]}, cv=3).fit(
        X, y
    )
    assert (search.tasks_["gpu_ids"] == "").all()
    assert {p["cuda"] for p in probes(tmp_path)} == {""}


@pytest.mark.parametrize("num_gpus", [0, 1])
def test_tensorflow_imported_once_per_worker_not_per_task(tmp_path, num_gpus):
    search = RayGridSearchCV(
        ProbeRidge(probe_dir=str(tmp_path), import_tf=True),
        {"alpha": [0.1, 0.3, 1.0, 3.0, 10.0]},
        cv=4,
        num_gpus_per_task=num_gpus,
    ).fit(X, y)
    seen = probes(tmp_path)
    assert len(seen) == 20 + 1  # 20 fold fits and the refit
    pids = {p["pid"] for p in seen}
    assert len(pids) <= 2  # one warm worker per slot, not one process per task
    # TensorFlow was loaded at most once in each process (earlier searches of this
    # session may already have loaded it in a warm worker).
    for pid in pids:
        assert sum(not p["tf_loaded"] for p in seen if p["pid"] == pid) <= 1
    assert set(search.tasks_["pid"]) <= pids
