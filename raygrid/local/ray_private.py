"""Every private Ray API raygrid uses, reached from here and nowhere else.

Ray's private modules change without notice between releases. raygrid calls them only
through the functions below, each of which raises :class:`RayApiMissing` naming the API,
the Ray installed and the range raygrid supports when the API is not there. Callers that
can do without (log filtering, a faster shutdown) catch it and say so where it matters;
the others let it through.

The APIs, and why:

* ``ray._private.ray_logging.global_worker_stdstream_dispatcher``: the handler through
  which workers' output reaches the driver's terminal (:mod:`raygrid.local.quiet`);
* ``ray._private.worker._global_node`` and ``ray._private.ray_constants``: the local
  node's processes, stopped quickly at exit (:mod:`raygrid.local.teardown`);
* ``ray._private.state.available_resources_per_node``: free resources per node, to size
  a search's slots (:mod:`raygrid.run.pool`);
* ``ray._private.thirdparty.pynvml``: a GPU's memory, for fractional-GPU limits
  (:mod:`raygrid.run.gpu_memory`);
* ``ray._raylet.AuthenticationTokenLoader`` and ``ray._raylet.Config``: token
  authentication of a kept-alive cluster (:mod:`raygrid.local.kept_alive`), which exists
  from Ray 2.52 on: the lower bound in ``pyproject.toml``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The oldest Ray with token authentication and every API below (pyproject's lower bound).
MINIMUM_RAY = "2.52.0"


class RayApiMissing(ImportError):
    """A private Ray API raygrid uses is missing from the installed Ray."""


def _get(module: str, name: str) -> Any:
    try:
        parent = importlib.import_module(module)
        if hasattr(parent, name):
            return getattr(parent, name)
        return importlib.import_module(f"{module}.{name}")  # a submodule, as `from m import n`
    except ImportError:
        import ray

        raise RayApiMissing(
            f"raygrid needs Ray's private API {module}.{name}, which Ray {ray.__version__} "
            f"lacks; install the Ray raygrid supports (ray>={MINIMUM_RAY}, as pinned in "
            "cluster/constraints.txt)."
        ) from None


def stdstream_dispatcher() -> Any:
    """The dispatcher of workers' stdout/stderr lines to the driver."""
    return _get("ray._private.ray_logging", "global_worker_stdstream_dispatcher")


def global_worker() -> Any:
    """Ray's ``global_worker`` of this process (its log filter, its job id)."""
    return _get("ray._private.worker", "global_worker")


def global_node() -> Any:
    """This process's Ray node object (None when not connected)."""
    return getattr(importlib.import_module("ray._private.worker"), "_global_node", None)


def ray_constants() -> Any:
    """``ray._private.ray_constants`` (process type names)."""
    try:
        return importlib.import_module("ray._private.ray_constants")
    except ImportError:
        return _get("ray._private", "ray_constants")


def available_resources_per_node() -> dict[str, dict[str, float]]:
    """Free resources of each alive node, by node id."""
    return _get("ray._private.state", "available_resources_per_node")()


def pynvml() -> Any:
    """Ray's vendored NVML bindings."""
    return _get("ray._private.thirdparty", "pynvml")


def token_auth() -> tuple[Any, Any]:
    """``(AuthenticationTokenLoader, Config)`` from ``ray._raylet``."""
    return (
        _get("ray._raylet", "AuthenticationTokenLoader"),
        _get("ray._raylet", "Config"),
    )


def check_all() -> list[str]:
    """Every private API above that the installed Ray lacks, one message each."""
    problems = []
    for call in (stdstream_dispatcher, global_worker, ray_constants, pynvml, token_auth):
        try:
            call()
        except RayApiMissing as exc:
            problems.append(str(exc))
    try:
        _get("ray._private.state", "available_resources_per_node")
        _get("ray._private.worker", "_global_node")
    except RayApiMissing as exc:
        problems.append(str(exc))
    return problems
