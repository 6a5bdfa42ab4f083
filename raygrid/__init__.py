"""raygrid: scikit-learn's search family (grid, randomized, successive halving) on Ray."""

from raygrid.engine import RaySearchMixin
from raygrid.search import (
    RayGridSearchCV,
    RayHalvingGridSearchCV,
    RayHalvingRandomSearchCV,
    RayRandomizedSearchCV,
)

__version__ = "0.1.0"

__all__ = [
    "RayGridSearchCV",
    "RayHalvingGridSearchCV",
    "RayHalvingRandomSearchCV",
    "RayRandomizedSearchCV",
    "RaySearchMixin",
    "__version__",
]
