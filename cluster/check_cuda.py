"""Check that TensorFlow can load its CUDA libraries, and that they are the versions it needs.

Run by ``cluster/Dockerfile`` at build time (``python /app/cluster/check_cuda.py``); a
library that does not resolve or a mismatch fails the build instead of the first GPU fit
on the cluster (where TensorFlow would quietly see no GPU).

Loading, as TensorFlow loads: TensorFlow opens its CUDA libraries at run time with
``dlopen("libcudart.so.12")`` and friends (:data:`DLOPENED`: the names its DSO loader asks
for in a CUDA 12 build) from ``libtensorflow_framework.so.2`` and ``libtensorflow_cc.so.2``.
The dynamic loader then looks in ``LD_LIBRARY_PATH``, in the RUNPATH of the calling
library (read from its ELF header: TensorFlow's names the ``nvidia/*/lib`` folders of the
pip wheels), in ``ldconfig``'s cache and in ``/lib``, ``/usr/lib``. Each name is resolved
in that order and the file found is loaded (with its own dependencies); one that is not
found or does not load is a problem. ``libcuda.so.1`` (the driver) is not checked: the
NVIDIA container toolkit mounts it when a container with a GPU starts.

What TensorFlow needs comes from TensorFlow itself:

* ``tf.sysconfig.get_build_info()``: ``cuda_version`` (e.g. ``12.5.1``) and
  ``cudnn_version`` (e.g. ``9``) it was compiled against;
* the lower bounds of its ``and-cuda`` extra (e.g. ``nvidia-cudnn-cu12>=9.3.0.75``),
  when that extra is declared: TensorFlow refuses a cuDNN whose minor version is older
  than the one it was compiled with.

What the image has: every ``libcudart.so.N`` and ``libcudnn.so.N`` found where the
dynamic loader or TensorFlow would look (``LD_LIBRARY_PATH``, the ``nvidia/*/lib``
folders of pip's CUDA wheels that TensorFlow's RUNPATH names, ``ldconfig``'s cache, the
usual system and CUDA toolkit folders, site-packages). Each copy's version is read from
its file name (``libcudart.so.12.1.105``), else from the pip wheel that installed it,
else by loading it and asking (``cudaRuntimeGetVersion``, ``cudnnGetVersion``; neither
needs a GPU).

Every copy must match, not only the one TensorFlow loads first: a second toolkit of
another version is either dead weight or, picked up through ``LD_LIBRARY_PATH``, the
cause of a failure at run time. Exit status: 0 when all load and match, 1 otherwise (each
problem on its own line), 2 when TensorFlow cannot be imported.
"""

from __future__ import annotations

import ctypes
import glob
import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

#: The libraries checked: kind -> (file name prefix, pip wheel name prefix).
LIBRARIES = {
    "cudart": ("libcudart.so.", "nvidia-cuda-runtime-cu"),
    "cudnn": ("libcudnn.so.", "nvidia-cudnn-cu"),
}
#: Where system packages and NVIDIA's images put CUDA libraries.
SYSTEM_DIRS = (
    "/usr/local/cuda*/lib64",
    "/usr/local/cuda*/targets/*/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib64",
    "/lib",
)

Version = tuple[int, ...]

#: The libraries TensorFlow's DSO loader opens in a CUDA 12 build, by soname; ``{cuda}``
#: and ``{cudnn}`` are the major versions in its build info, the others are fixed for
#: CUDA 12 (cuFFT 11.x, cuSOLVER 11.x, NCCL 2.x).
DLOPENED = (
    "libcudart.so.{cuda}",
    "libcublas.so.{cuda}",
    "libcublasLt.so.{cuda}",
    "libcufft.so.11",
    "libcusolver.so.11",
    "libcusparse.so.{cuda}",
    "libcupti.so.{cuda}",
    "libnvJitLink.so.{cuda}",
    "libcudnn.so.{cudnn}",
    "libnccl.so.2",
)
#: TensorFlow's libraries that call dlopen (their RUNPATH is searched).
TF_LOADERS = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")


@dataclass(frozen=True)
class Library:
    """One copy of a CUDA library found in the image.

    Attributes
    ----------
    kind : str
        ``"cudart"`` or ``"cudnn"``.
    path : str
        Where it is (the file the loader would open).
    version : tuple of int or None
        Its version, None if it could not be determined.
    source : str
        How the version was determined.
    """

    kind: str
    path: str
    version: Version | None
    source: str


@dataclass(frozen=True)
class Requirement:
    """What TensorFlow needs of one library: this major version, at least ``minimum``."""

    kind: str
    major: int
    minimum: Version
    why: str


def parse_version(text: str) -> Version | None:
    """``"12.5.1"`` -> ``(12, 5, 1)``; None if ``text`` does not start with a number."""
    match = re.match(r"^\d+(\.\d+)*", str(text).strip())
    return tuple(int(p) for p in match.group(0).split(".")) if match else None


def at_least(version: Version, minimum: Version) -> bool:
    """Whether ``version >= minimum``, comparing only the components both have.

    ``libcudnn.so.9.3.0`` satisfies ``>=9.3.0.75``: file names carry three components,
    pip versions four, and they are the same release.
    """
    n = min(len(version), len(minimum))
    return version[:n] >= minimum[:n]


def requirements(
    build_info: Mapping[str, object], tf_requires: Iterable[str] = ()
) -> tuple[list[Requirement], list[str]]:
    """What a TensorFlow build needs of the CUDA runtime and cuDNN.

    Parameters
    ----------
    build_info : mapping
        ``tf.sysconfig.get_build_info()``.
    tf_requires : iterable of str
        TensorFlow's requirement strings (``importlib.metadata.requires("tensorflow")``);
        the ``and-cuda`` extra's lower bounds raise the minimums.

    Returns
    -------
    requirements : list of Requirement
    problems : list of str
        Why nothing can be required (not a CUDA build, versions missing).
    """
    if not build_info.get("is_cuda_build"):
        return [], ["this TensorFlow is not a CUDA build (is_cuda_build is not True)"]
    problems = []
    found: dict[str, Requirement] = {}
    for kind, key, keep in (("cudart", "cuda_version", 2), ("cudnn", "cudnn_version", 1)):
        version = parse_version(str(build_info.get(key, "")))
        if version is None:
            problems.append(f"TensorFlow's build info has no {key}: {build_info.get(key)!r}")
            continue
        found[kind] = Requirement(
            kind, version[0], version[:keep], f"TensorFlow built with {key} {build_info[key]}"
        )
    for kind, lower, name in _and_cuda_bounds(tf_requires):
        req = found.get(kind)
        if req is not None and lower[0] == req.major and at_least(lower, req.minimum):
            found[kind] = Requirement(
                kind, req.major, lower, f"{req.why}; its and-cuda extra asks {name}>={_v(lower)}"
            )
    return list(found.values()), problems


def _and_cuda_bounds(tf_requires: Iterable[str]) -> list[tuple[str, Version, str]]:
    from packaging.requirements import Requirement as PipRequirement

    bounds = []
    for text in tf_requires:
        req = PipRequirement(text)
        if req.marker is None or "and-cuda" not in str(req.marker):
            continue
        for kind, (_, wheel) in LIBRARIES.items():
            if not req.name.lower().startswith(wheel):
                continue
            for spec in req.specifier:
                version = parse_version(spec.version)
                if spec.operator in (">=", "==", "~=") and version is not None:
                    bounds.append((kind, version, req.name))
    return bounds


def compare(requirements: list[Requirement], libraries: list[Library]) -> list[str]:
    """Every way ``libraries`` fail ``requirements``; empty when the image matches.

    Parameters
    ----------
    requirements : list of Requirement
        From :func:`requirements`.
    libraries : list of Library
        From :func:`find_libraries`, in the loader's search order.

    Returns
    -------
    list of str
        One line per problem.
    """
    problems = []
    for req in requirements:
        prefix = LIBRARIES[req.kind][0]
        copies = [lib for lib in libraries if lib.kind == req.kind]
        if not copies:
            problems.append(
                f"no {prefix}{req.major} in the image ({req.why}): TensorFlow would not "
                "use the GPU"
            )
        for lib in copies:
            if lib.version is None:
                problems.append(f"{lib.path}: version unknown ({lib.source})")
            elif lib.version[0] != req.major:
                problems.append(
                    f"{lib.path}: {req.kind} {_v(lib.version)}, major version "
                    f"{lib.version[0]} != {req.major} ({req.why}); TensorFlow cannot use it: "
                    "remove it, or pick a base image without it"
                )
            elif not at_least(lib.version, req.minimum):
                problems.append(
                    f"{lib.path}: {req.kind} {_v(lib.version)} is older than {_v(req.minimum)} "
                    f"({req.why})"
                )
    return problems


def find_libraries(
    search_dirs: Iterable[str | os.PathLike],
    wheel_files: Mapping[str, tuple[str, str]] | None = None,
    load: bool = True,
) -> list[Library]:
    """Every ``libcudart.so.N`` / ``libcudnn.so.N`` in ``search_dirs``, once each, in order.

    Parameters
    ----------
    search_dirs : iterable of path-like
        Folders to look in, in the loader's order; missing ones are skipped.
    wheel_files : mapping, default=None
        Real path of a file -> (distribution name, version) of the pip wheel that
        installed it; see :func:`pip_wheel_files`.
    load : bool, default=True
        Whether a library whose version neither its file name nor a wheel tells may be
        loaded to ask it.

    Returns
    -------
    list of Library
    """
    wheel_files = wheel_files or {}
    found: list[Library] = []
    seen: set[str] = set()
    for folder in search_dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for kind, (prefix, _) in LIBRARIES.items():
            for path in sorted(folder.glob(prefix + "*")):
                suffix = path.name[len(prefix) :]
                if not re.fullmatch(r"\d+(\.\d+)*", suffix) or not path.is_file():
                    continue
                real = os.path.realpath(path)
                if real in seen:
                    continue
                seen.add(real)
                found.append(_identify(kind, path, real, wheel_files, load))
    return found


def _identify(
    kind: str, path: Path, real: str, wheel_files: Mapping[str, tuple[str, str]], load: bool
) -> Library:
    prefix = LIBRARIES[kind][0]
    name = os.path.basename(real)
    if name.startswith(prefix):
        version = parse_version(name[len(prefix) :])
        if version is not None and len(version) >= 2:
            return Library(kind, str(path), version, f"file name {name}")
    if real in wheel_files:
        dist, dist_version = wheel_files[real]
        return Library(kind, str(path), parse_version(dist_version), f"pip {dist} {dist_version}")
    if load:
        try:
            return Library(kind, str(path), _ask(kind, real), "loaded and asked")
        except OSError as exc:
            return Library(kind, str(path), None, f"cannot load it: {exc}")
    return Library(kind, str(path), None, "no version in its name or wheel")


def _ask(kind: str, path: str) -> Version:
    lib = ctypes.CDLL(path)
    if kind == "cudart":
        value = ctypes.c_int()
        status = lib.cudaRuntimeGetVersion(ctypes.byref(value))
        if status != 0:
            raise OSError(f"cudaRuntimeGetVersion returned {status}")
        return (value.value // 1000, value.value % 1000 // 10)
    lib.cudnnGetVersion.restype = ctypes.c_size_t
    value = lib.cudnnGetVersion()
    return (value // 10000, value % 10000 // 100, value % 100)


def pip_wheel_files() -> dict[str, tuple[str, str]]:
    """Real path -> (distribution, version) for the libraries of installed NVIDIA wheels."""
    files = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"] or ""
        if not any(name.lower().startswith(w) for _, w in LIBRARIES.values()):
            continue
        for file in dist.files or ():
            if ".so" in file.name:
                files[os.path.realpath(dist.locate_file(file))] = (name, dist.version)
    return files


def search_dirs(tf_dir: str | os.PathLike | None = None) -> list[str]:
    """Where the loader and TensorFlow look for CUDA libraries, in that order, then more.

    ``LD_LIBRARY_PATH`` first (it overrides RUNPATH), then the pip wheels' folders
    TensorFlow's RUNPATH names (``site-packages/nvidia/*/lib``), then ``ldconfig``'s
    cache, then the usual system folders and any other site-packages folder holding one.
    """
    dirs: list[str] = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    site = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    if tf_dir is not None:
        site.insert(0, str(Path(tf_dir).parent))
    for root in dict.fromkeys(site):
        dirs += sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib")))
    try:
        cache = subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, check=False, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        cache = ""
    for line in cache.splitlines():
        if any(f" {prefix}" in line or f"\t{prefix}" in line for prefix, _ in LIBRARIES.values()):
            dirs.append(os.path.dirname(line.rsplit("=>", 1)[-1].strip()))
    for pattern in SYSTEM_DIRS:
        dirs += sorted(glob.glob(pattern))
    for root in dict.fromkeys(site):
        for prefix, _ in LIBRARIES.values():
            dirs += sorted({str(p.parent) for p in Path(root).rglob(prefix + "*")})
    return list(dict.fromkeys(dirs))


def elf_runpath(path: str | os.PathLike) -> list[str]:
    """The DT_RUNPATH (else DT_RPATH) folders of a 64-bit little-endian ELF file.

    Parameters
    ----------
    path : path-like
        A shared library.

    Returns
    -------
    list of str
        Its entries as written (``$ORIGIN`` not expanded); empty if it has none.
    """
    import struct

    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", data, 0x20)[0],
        *struct.unpack_from("<HH", data, 0x36),
    )
    loads, dynamic = [], None
    for i in range(phnum):
        kind, _, offset, vaddr, _, filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if kind == 1:
            loads.append((vaddr, offset, filesz))
        elif kind == 2:
            dynamic = (offset, filesz)
    if dynamic is None:
        return []
    entries = {}
    for at in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, at)
        if tag == 0:
            break
        entries.setdefault(tag, value)
    strtab = next(off + entries[5] - va for va, off, size in loads if va <= entries[5] < va + size)
    name = entries.get(29, entries.get(15))  # DT_RUNPATH, else DT_RPATH
    if name is None:
        return []
    end = data.index(b"\0", strtab + name)
    return [d for d in data[strtab + name : end].decode().split(":") if d]


def loader_dirs(tf_dir: str | os.PathLike) -> list[str]:
    """Where ``dlopen`` from TensorFlow looks, in order: LD_LIBRARY_PATH, then RUNPATH."""
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for name in TF_LOADERS:
        library = Path(tf_dir) / name
        if library.is_file():
            origin = str(library.parent)
            dirs += [os.path.normpath(d.replace("$ORIGIN", origin)) for d in elf_runpath(library)]
    return list(dict.fromkeys(dirs))


def ldconfig_cache() -> dict[str, str]:
    """``ldconfig -p``: soname -> path (the first, as the loader takes it)."""
    try:
        out = subprocess.run(
            ["ldconfig", "-p"], capture_output=True, text=True, check=False, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    cache: dict[str, str] = {}
    for line in out.splitlines()[1:]:
        if "=>" in line:
            cache.setdefault(line.split()[0], line.rsplit("=>", 1)[1].strip())
    return cache


def resolve(soname: str, dirs: Iterable[str], cache: Mapping[str, str]) -> str | None:
    """The file the dynamic loader opens for ``soname``, or None when none is found."""
    for folder in dirs:
        candidate = os.path.join(folder, soname)
        if os.path.isfile(candidate):
            return candidate
    if soname in cache:
        return cache[soname]
    for folder in ("/lib", "/usr/lib", "/lib64", "/usr/lib64"):
        candidate = os.path.join(folder, soname)
        if os.path.isfile(candidate):
            return candidate
    return None


def load_all(
    build_info: Mapping[str, object], dirs: list[str], cache: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """Resolve and load every library in :data:`DLOPENED`, as TensorFlow would.

    Returns
    -------
    loaded : list of str
        ``"<soname> -> <path>"`` for each library that loaded.
    problems : list of str
        One line for each library that did not resolve or did not load.
    """
    cuda = parse_version(str(build_info.get("cuda_version", "")))
    cudnn = parse_version(str(build_info.get("cudnn_version", "")))
    if not build_info.get("is_cuda_build") or cuda is None or cudnn is None:
        return [], ["TensorFlow's build info names no CUDA and cuDNN: nothing to load"]
    loaded, problems = [], []
    for pattern in DLOPENED:
        soname = pattern.format(cuda=cuda[0], cudnn=cudnn[0])
        path = resolve(soname, dirs, cache)
        if path is None:
            problems.append(
                f"{soname} does not resolve (looked in LD_LIBRARY_PATH, TensorFlow's RUNPATH "
                f"({len(dirs)} folders), ldconfig's cache, /lib, /usr/lib): TensorFlow would see "
                "no GPU"
            )
            continue
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            problems.append(f"{soname} -> {path} does not load: {exc}")
            continue
        loaded.append(f"{soname} -> {path}")
    return loaded, problems


def _v(version: Version) -> str:
    return ".".join(map(str, version))


def main() -> int:
    """Check this environment's TensorFlow against its CUDA libraries; print the findings."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        print(f"check_cuda: cannot import tensorflow: {exc}", file=sys.stderr)
        return 2
    build_info = dict(tf.sysconfig.get_build_info())
    try:
        tf_requires = importlib.metadata.requires("tensorflow") or []
    except importlib.metadata.PackageNotFoundError:
        tf_requires = []
    reqs, problems = requirements(build_info, tf_requires)
    libraries = find_libraries(search_dirs(Path(tf.__file__).parent), pip_wheel_files())
    print(f"check_cuda: TensorFlow {tf.__version__}")
    for req in reqs:
        print(f"  needs {req.kind} {req.major}.x >= {_v(req.minimum)}: {req.why}")
    for lib in libraries:
        version = _v(lib.version) if lib.version else "?"
        print(f"  found {lib.kind} {version} at {lib.path} ({lib.source})")
    problems += compare(reqs, libraries)
    loaded, unloadable = load_all(
        build_info, loader_dirs(Path(tf.__file__).parent), ldconfig_cache()
    )
    for line in loaded:
        print(f"  loads {line}")
    for line in unloadable:
        print(f"check_cuda: CANNOT LOAD: {line}", file=sys.stderr)
    problems += unloadable
    for line in problems:
        print(f"check_cuda: MISMATCH: {line}", file=sys.stderr)
    if problems:
        return 1
    print(
        "check_cuda: every CUDA library TensorFlow opens loads, and every CUDA runtime and "
        "cuDNN in the image matches TensorFlow's build"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
