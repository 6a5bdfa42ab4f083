"""`raygrid plan`: counts, probe fits and estimates of a spec, without running the search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed.toml"


def raygrid(*args, timeout=300, cwd=None):
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "raygrid", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(os.environ),
    )
    return run, time.monotonic() - start


@pytest.mark.slow
def test_plan_of_the_seed_grid_counts_and_estimates_without_running(tmp_path):
    run, _ = raygrid("plan", str(SEED), "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    est = json.loads(run.stdout)
    assert (est["candidates"], est["folds"], est["fits"]) == (36, 3, 108)
    # epochs [10, 20]: each 20-epoch training is scored at 10 on the way.
    assert (est["trainings"], est["shared_trainings"], est["fused_groups"]) == (54, 54, 0)
    assert est["architectures"] == 3  # units 32, 64, 128
    assert est["estimated_wall_s"] > 0 and est["work_s"] > 0
    assert est["slot_hours"] == pytest.approx(est["slots"] * est["estimated_wall_s"] / 3600)
    assert est["gpu_hours"] == 0.0
    assert 0 < est["busy"] <= 1
    assert not (tmp_path / "results").exists(), "plan must not run the search"


def spec_file(tmp_path, search_extra):
    text = SEED.read_text().replace(
        "num_cpus_per_task = 1", f"num_cpus_per_task = 1\n{search_extra}"
    )
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_more_gpus_per_fit_than_any_node_has_is_one_line_and_exit_2(tmp_path):
    run, _ = raygrid("plan", str(spec_file(tmp_path, "num_gpus_per_task = 1")), cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    assert run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("raygrid plan: num_cpus_per_task=1.0, num_gpus_per_task=1.0: no node")


def test_run_with_more_gpus_per_fit_than_any_node_has_exits_2_before_any_fit(tmp_path):
    run, _ = raygrid("run", str(spec_file(tmp_path, "num_gpus_per_task = 1")), cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    last = run.stderr.strip().splitlines()[-1]
    assert "num_gpus_per_task=1.0: no node" in last and "Traceback" not in run.stderr
    assert "Fitting" not in run.stderr + run.stdout


def test_an_address_that_does_not_answer_is_one_line_and_exit_2(tmp_path):
    run, elapsed = raygrid("plan", str(SEED), "--address", "127.0.0.1:1", cwd=tmp_path)
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("raygrid plan: ") and "127.0.0.1:1" in line
    assert elapsed < 30
