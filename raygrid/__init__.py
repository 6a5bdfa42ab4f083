"""raygrid: scikit-learn's search family (grid, randomized, successive halving) on Ray.

The search classes are drop-in replacements for scikit-learn's; :mod:`raygrid.keras`
holds the Keras wrappers and :mod:`raygrid.tracking` the experiment trackers.
"""

from importlib.metadata import PackageNotFoundError, version

from raygrid.engine import RaySearchMixin
from raygrid.pool import release_workers, set_worker_idle_time
from raygrid.search import (
    RayGridSearchCV,
    RayHalvingGridSearchCV,
    RayHalvingRandomSearchCV,
    RayRandomizedSearchCV,
)

try:
    __version__ = version("raygrid")  # pyproject.toml's version, the one source
except PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "RayGridSearchCV",
    "RayHalvingGridSearchCV",
    "RayHalvingRandomSearchCV",
    "RayRandomizedSearchCV",
    "RaySearchMixin",
    "__version__",
    "release_workers",
    "set_worker_idle_time",
]
