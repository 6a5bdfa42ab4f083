"""raygrid: scikit-learn's search family (grid, randomized, successive halving) on Ray.

The search classes are drop-in replacements for scikit-learn's. The subpackages follow one
search from ``fit()`` down:

- :mod:`raygrid.search`: the search classes, validation, and the ``fit`` that drives the rest;
- :mod:`raygrid.run`: planning units of work, scheduling them on warm Ray workers, collecting
  their records;
- :mod:`raygrid.store`: the fit record, the journal of finished fits, saved results;
- :mod:`raygrid.local`: the driver's machine (a local Ray, the kept-alive cluster, teardown);
- :mod:`raygrid.spec`, :mod:`raygrid.cli`, :mod:`raygrid.report`: the TOML spec, the command
  line and the reports built from saved results;
- plugins the core reaches only through hooks on the estimator: :mod:`raygrid.keras` (the
  Keras wrappers and their compiled training) and :mod:`raygrid.tracking` (MLflow,
  TensorBoard);
- :mod:`raygrid.data`: lazy data handles (``read_parquet``) that workers read where the
  fits run;
- :mod:`raygrid.text`: short text for terminals and error messages, used throughout;
  :mod:`raygrid.version`: the installed version; :mod:`raygrid.constructors`: estimator
  constructors that extend their parents' signatures.

``python -m raygrid`` is the ``raygrid`` command. The user guide (``docs/guide/``) says how
to use all of this.
"""

from raygrid.run.pool import release_workers, set_worker_idle_time
from raygrid.search.family import (
    RayGridSearchCV,
    RayHalvingGridSearchCV,
    RayHalvingRandomSearchCV,
    RayRandomizedSearchCV,
)
from raygrid.search.mixin import RaySearchMixin
from raygrid.version import __version__

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
