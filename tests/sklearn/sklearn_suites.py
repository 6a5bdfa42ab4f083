"""scikit-learn's own search test modules, loaded with its search classes rebound to raygrid's.

The modules are read from the installed scikit-learn, so they are the contract of the
very version raygrid runs with. While a module is imported, ``sklearn.model_selection``'s
search classes are raygrid's; the names the module binds (including those used in
``pytest.mark.parametrize`` lists) therefore refer to raygrid's classes. scikit-learn's
own classes are restored right after.
"""

import importlib.util
import sys
from pathlib import Path

import pytest
import sklearn
import sklearn.model_selection as model_selection
import sklearn.model_selection._search as search_module
from ray import cloudpickle as ray_pickle
from sklearn.experimental import enable_halving_search_cv  # noqa: F401

from raygrid import (
    RayGridSearchCV,
    RayHalvingGridSearchCV,
    RayHalvingRandomSearchCV,
    RayRandomizedSearchCV,
    RaySearchMixin,
)

# (module, attribute) -> raygrid's class. BaseSearchCV becomes the engine's mixin, so the
# modules' own BaseSearchCV subclasses (custom _run_search) run on Ray too.
REBOUND = {
    (model_selection, "GridSearchCV"): RayGridSearchCV,
    (model_selection, "RandomizedSearchCV"): RayRandomizedSearchCV,
    (model_selection, "HalvingGridSearchCV"): RayHalvingGridSearchCV,
    (model_selection, "HalvingRandomSearchCV"): RayHalvingRandomSearchCV,
    (search_module, "BaseSearchCV"): RaySearchMixin,
}


def load_rebound(
    name: str, expected_failures: dict[str, str], scheduling_dependent: frozenset = frozenset()
) -> dict:
    """The namespace of ``sklearn/model_selection/tests/<name>.py`` with raygrid's classes.

    ``expected_failures`` maps test names to the reason they cannot pass on Ray; they
    are marked strict xfail, so one that starts passing is reported, except those in
    ``scheduling_dependent``: whether they fail depends on which worker runs which fit,
    so they pass now and then (seen in CI) and are marked non-strict.
    """
    path = Path(sklearn.__file__).parent / "model_selection" / "tests" / f"{name}.py"
    originals = {key: getattr(*key) for key in REBOUND}
    module_name = f"sklearn_suite_{name}"
    try:
        for (owner, attr), cls in REBOUND.items():
            setattr(owner, attr, cls)
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        # Importable by name in this process (plain pickle), sent by value to workers.
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    finally:
        for (owner, attr), cls in originals.items():
            setattr(owner, attr, cls)
    ray_pickle.register_pickle_by_value(module)
    for (_, attr), cls in REBOUND.items():
        assert getattr(module, attr, cls) is cls, f"{attr} was not rebound in {name}"
    namespace = {k: v for k, v in vars(module).items() if not k.startswith("__")}
    for test, reason in expected_failures.items():
        strict = test not in scheduling_dependent
        namespace[test] = pytest.mark.xfail(strict=strict, reason=reason)(namespace[test])
    return namespace
