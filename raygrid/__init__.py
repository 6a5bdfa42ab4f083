"""raygrid: scikit-learn's GridSearchCV, run as Ray tasks."""

from raygrid.search import RayGridSearchCV

__version__ = "0.1.0"

__all__ = ["RayGridSearchCV", "__version__"]
