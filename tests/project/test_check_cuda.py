"""cluster/check_cuda.py: TensorFlow's real build info against library listings.

The TensorFlow installed here is the Linux pip build, compiled for CUDA; this machine
has no cuDNN and no GPU, so the image's libraries are stood in for by listings (and by
empty files named as the real ones are, for the discovery part).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def ray_session():
    """Override conftest's session Ray: nothing here needs one."""
    yield


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("check_cuda", ROOT / "cluster" / "check_cuda.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_cuda"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["check_cuda"]


@pytest.fixture(scope="module")
def build_info() -> dict:
    import tensorflow as tf

    info = dict(tf.sysconfig.get_build_info())
    assert info["is_cuda_build"] is True, "these tests need TensorFlow's CUDA build info"
    return info


@pytest.fixture(scope="module")
def tf_requires() -> list[str]:
    return importlib.metadata.requires("tensorflow") or []


@pytest.fixture(scope="module")
def needs(check, build_info, tf_requires):
    reqs, problems = check.requirements(build_info, tf_requires)
    assert problems == []
    return {r.kind: r for r in reqs}


def lib(check, kind: str, version: str | None, path: str):
    return check.Library(kind, path, check.parse_version(version) if version else None, "test")


def test_requirements_from_the_real_build_info(check, build_info, needs):
    cuda = check.parse_version(build_info["cuda_version"])
    cudnn = check.parse_version(build_info["cudnn_version"])
    assert needs["cudart"].major == cuda[0]
    assert needs["cudart"].minimum[:2] == cuda[:2]
    assert needs["cudnn"].major == cudnn[0]
    assert needs["cudnn"].minimum[0] == cudnn[0]


def test_and_cuda_bounds_raise_the_minimums(check, build_info, tf_requires, needs):
    """TensorFlow's and-cuda pins are stricter than its build info: they win."""
    declared = [r for r in tf_requires if "and-cuda" in r and "nvidia-cudnn" in r]
    if not declared:
        pytest.skip("this TensorFlow declares no and-cuda extra")
    lower = check.parse_version(declared[0].split(">=")[1].split(",")[0].split(";")[0])
    assert needs["cudnn"].minimum == lower
    assert "and-cuda" in needs["cudnn"].why
    only_build, _ = check.requirements(build_info, [])
    assert {r.kind: r.minimum for r in only_build}["cudnn"] == (lower[0],)


def test_tensorflows_own_wheels_match(check, needs):
    """What `tensorflow[and-cuda]` installs: the versions it pins, nothing else."""
    site = "/home/ray/anaconda3/lib/python3.11/site-packages/nvidia"
    libraries = [
        lib(
            check,
            "cudart",
            check._v(needs["cudart"].minimum),
            f"{site}/cuda_runtime/lib/libcudart.so.12",
        ),
        lib(check, "cudnn", check._v(needs["cudnn"].minimum), f"{site}/cudnn/lib/libcudnn.so.9"),
    ]
    assert check.compare(list(needs.values()), libraries) == []


def test_rays_gpu_image_does_not_match(check, needs):
    """Ray's `-gpu` base (CUDA 12.1, cuDNN 8) next to TensorFlow's wheels: both flagged."""
    site = "/home/ray/anaconda3/lib/python3.11/site-packages/nvidia"
    libraries = [
        lib(
            check,
            "cudart",
            check._v(needs["cudart"].minimum),
            f"{site}/cuda_runtime/lib/libcudart.so.12",
        ),
        lib(check, "cudnn", check._v(needs["cudnn"].minimum), f"{site}/cudnn/lib/libcudnn.so.9"),
        lib(check, "cudart", "12.1.105", "/usr/local/cuda-12.1/lib64/libcudart.so.12"),
        lib(check, "cudnn", "8.9.0", "/usr/lib/x86_64-linux-gnu/libcudnn.so.8"),
    ]
    problems = check.compare(list(needs.values()), libraries)
    assert len(problems) == 2, problems
    assert "/usr/local/cuda-12.1/lib64/libcudart.so.12: cudart 12.1.105 is older" in problems[0]
    assert "libcudnn.so.8: cudnn 8.9.0, major version 8 != 9" in problems[1]


def test_an_older_cudnn_minor_does_not_match(check, needs):
    """A cuDNN of the right major but older than the one TensorFlow was built with."""
    older = (*needs["cudnn"].minimum[:1], max(0, needs["cudnn"].minimum[1] - 1))
    if len(needs["cudnn"].minimum) < 2 or older == needs["cudnn"].minimum[:2]:
        pytest.skip("no minor version to go below")
    libraries = [
        lib(check, "cudart", check._v(needs["cudart"].minimum), "/x/libcudart.so.12"),
        lib(check, "cudnn", check._v(older), "/usr/lib/x86_64-linux-gnu/libcudnn.so.9"),
    ]
    (problem,) = check.compare(list(needs.values()), libraries)
    assert f"cudnn {check._v(older)} is older than" in problem


def test_missing_and_unknown_libraries(check, needs):
    problems = check.compare(list(needs.values()), [])
    assert len(problems) == 2
    assert all("TensorFlow would not use the GPU" in p for p in problems)
    unknown = [lib(check, "cudart", None, "/x/libcudart.so.12")]
    assert any("version unknown" in p for p in check.compare([needs["cudart"]], unknown))


def test_a_cpu_only_build_is_refused(check):
    reqs, problems = check.requirements({"is_cuda_build": False}, [])
    assert reqs == [] and "not a CUDA build" in problems[0]


def test_at_least_compares_common_components(check):
    assert check.at_least((9, 3, 0), (9, 3, 0, 75))
    assert check.at_least((12, 8, 57), (12, 5, 82))
    assert not check.at_least((12, 4, 127), (12, 5, 82))
    assert not check.at_least((9, 2, 1), (9, 3, 0, 75))


def test_find_libraries_reads_versions_from_names_and_wheels(check, tmp_path):
    toolkit = tmp_path / "usr" / "local" / "cuda-12.1" / "lib64"
    toolkit.mkdir(parents=True)
    (toolkit / "libcudart.so.12.1.105").write_bytes(b"")
    os.symlink("libcudart.so.12.1.105", toolkit / "libcudart.so.12")
    os.symlink("libcudart.so.12", toolkit / "libcudart.so")  # dev link: not a runtime
    (toolkit / "libcudnn_ops.so.8").write_bytes(b"")  # a sub-library: not checked
    wheel = tmp_path / "site-packages" / "nvidia" / "cudnn" / "lib"
    wheel.mkdir(parents=True)
    (wheel / "libcudnn.so.9").write_bytes(b"")
    owners = {os.path.realpath(wheel / "libcudnn.so.9"): ("nvidia-cudnn-cu12", "9.3.0.75")}

    found = check.find_libraries([wheel, toolkit, tmp_path / "missing"], owners, load=False)
    assert [(f.kind, f.version, f.path) for f in found] == [
        ("cudnn", (9, 3, 0, 75), str(wheel / "libcudnn.so.9")),
        ("cudart", (12, 1, 105), str(toolkit / "libcudart.so.12")),
    ]
    assert found[0].source == "pip nvidia-cudnn-cu12 9.3.0.75"
    # One library reached twice (two folders, a symlink) is listed once.
    again = check.find_libraries([toolkit, toolkit], owners, load=False)
    assert len(again) == 1
    # A copy whose version nothing tells is reported as such, not guessed.
    (tmp_path / "libcudart.so.12").write_bytes(b"")
    (orphan,) = check.find_libraries([tmp_path], {}, load=False)
    assert orphan.version is None


def test_search_dirs_put_ld_library_path_first(check, monkeypatch, tmp_path):
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{tmp_path}/a:{tmp_path}/b")
    dirs = check.search_dirs()
    assert dirs[:2] == [f"{tmp_path}/a", f"{tmp_path}/b"]
    assert len(dirs) == len(set(dirs))


# -- loading every library TensorFlow opens, the way it opens them ------------------------


@pytest.fixture(scope="module")
def tf_dir() -> Path:
    import tensorflow as tf

    return Path(tf.__file__).parent


def test_runpath_read_from_tensorflows_own_library(check, tf_dir):
    entries = check.elf_runpath(tf_dir / "libtensorflow_framework.so.2")
    assert "$ORIGIN/../nvidia/cudnn/lib" in entries
    assert "$ORIGIN/../nvidia/cuda_runtime/lib" in entries
    dirs = check.loader_dirs(tf_dir)
    assert str(tf_dir.parent / "nvidia" / "cudnn" / "lib") in dirs
    with pytest.raises(ValueError, match="not a 64-bit"):
        check.elf_runpath(ROOT / "cluster" / "check_cuda.py")


def test_every_library_resolves_in_loader_order_and_loads(check, build_info, tmp_path):
    """A stand-in image: each soname TensorFlow opens is a real loadable library."""
    real = check.resolve("libz.so.1", [], check.ldconfig_cache())
    assert real, "this test needs the system's libz"
    first, second = tmp_path / "ld_library_path", tmp_path / "runpath"
    first.mkdir(), second.mkdir()
    cuda = check.parse_version(build_info["cuda_version"])[0]
    cudnn = check.parse_version(build_info["cudnn_version"])[0]
    names = [p.format(cuda=cuda, cudnn=cudnn) for p in check.DLOPENED]
    for name in names:
        (second / name).symlink_to(real)
    (first / names[0]).symlink_to(real)
    loaded, problems = check.load_all(build_info, [str(first), str(second)], {})
    assert problems == []
    assert loaded[0] == f"{names[0]} -> {first / names[0]}"  # LD_LIBRARY_PATH wins
    assert len(loaded) == len(check.DLOPENED)


def test_a_missing_or_broken_library_fails_the_check(check, build_info, tmp_path):
    cudnn = check.parse_version(build_info["cudnn_version"])[0]
    (tmp_path / f"libcudnn.so.{cudnn}").write_bytes(b"not a library")
    loaded, problems = check.load_all(build_info, [str(tmp_path)], {})
    assert loaded == []
    assert len(problems) == len(check.DLOPENED)
    assert any(p.startswith(f"libcudnn.so.{cudnn} -> ") and "does not load" in p for p in problems)
    assert any(p.startswith("libcudart.so.") and "does not resolve" in p for p in problems)


def test_the_build_check_fails_on_this_machine_without_cuda_wheels():
    """Here TensorFlow's CUDA wheels are absent: the check must fail, naming them."""
    import subprocess

    run = subprocess.run(
        [sys.executable, str(ROOT / "cluster" / "check_cuda.py")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if run.returncode == 0:
        pytest.skip("this machine has TensorFlow's CUDA libraries installed")
    assert run.returncode == 1, run.stderr[-2000:]
    assert "CANNOT LOAD: libcudart.so." in run.stderr
