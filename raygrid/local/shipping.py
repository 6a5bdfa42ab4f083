"""Getting the user's own code to Ray workers that cannot import it.

An estimator, scorer or Keras ``model`` function defined in the user's script or in a
module next to it is pickled *by reference* (module name + class name). A worker of a
local Ray that raygrid started itself imports it, since raygrid gives its workers the
driver's import path, as joblib's workers have. A worker of a Ray the user started
(``ray.init()`` in a script) or of a cluster does not: unpickling fails with "No module
named ...". For those, every module the search's objects need that is neither part of
the standard library nor of an installed distribution is registered with Ray's
cloudpickle to be pickled *by value*, so its code travels with the objects.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import sys
import sysconfig
import types
from functools import cache
from typing import Any

from ray import cloudpickle as ray_pickle


def ship_local_modules(*objects: Any) -> list[str]:
    """Register the local modules ``objects`` need to be pickled by value.

    Returns
    -------
    list of str
        The names of the modules registered.

    Raises
    ------
    TypeError
        If such a module is not Python source (a local compiled extension), which
        cannot travel by value; the message names the module and the fix.
    """
    shipped = []
    for name in sorted(_modules_used(objects)):
        module = sys.modules.get(name)
        if module is None or not _is_local(module):
            continue
        path = getattr(module, "__file__", None) or ""
        if not path.endswith(".py"):
            raise TypeError(
                f"Module {name!r} ({path}) is needed by the Ray workers but is neither "
                "installed nor Python source, so it cannot be sent to them. Install it on "
                "every node (pip install), or pass it to the cluster's runtime environment: "
                "ray.init(runtime_env={'py_modules': [...]})."
            )
        ray_pickle.register_pickle_by_value(module)
        shipped.append(name)
    return shipped


def _modules_used(objects: tuple[Any, ...]) -> set[str]:
    """The modules of every class and function pickling ``objects`` refers to."""
    found: set[str] = set()

    class Finder(ray_pickle.CloudPickler):
        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, type | types.FunctionType):
                module = getattr(obj, "__module__", None)
            else:
                module = type(obj).__module__
            if module:
                found.add(module)
            return super().reducer_override(obj)

    Finder(io.BytesIO()).dump(objects)
    return found


def _is_local(module: types.ModuleType) -> bool:
    """A module loaded from the user's files: not built in, stdlib or installed."""
    name = module.__name__
    if name == "__main__" or name in sys.builtin_module_names:
        return False  # cloudpickle ships __main__'s objects by value already
    path = getattr(module, "__file__", None)
    if not path:
        return False
    if name.partition(".")[0] in _installed_top_level_names():
        return False
    path = os.path.realpath(path)
    return not any(path.startswith(root) for root in _library_roots())


@cache
def _installed_top_level_names() -> frozenset[str]:
    return frozenset(importlib.metadata.packages_distributions())


@cache
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)
