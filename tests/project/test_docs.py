"""The docs: the user guide and the API reference build with warnings as errors, every
page is reachable from the index, every public object has a page, and every public object
passes numpydoc's validation (checks chosen in docs/conf.py)."""

import importlib.util
import inspect
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from numpydoc.validate import validate

import raygrid
import raygrid.keras
import raygrid.tracking

DOCS = Path(__file__).resolve().parents[2] / "docs"
PACKAGES = (raygrid, raygrid.keras, raygrid.tracking)
# The guide's first pages, in reading order; pages added later follow them.
GUIDE_FIRST = ["drop_in", "keras", "clusters", "specs_cli", "results", "reliability"]


def _conf():
    spec = importlib.util.spec_from_file_location("raygrid_docs_conf", DOCS / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _public_names():
    return [
        f"{package.__name__}.{name}"
        for package in PACKAGES
        for name in package.__all__
        if not name.startswith("__")
    ]


def _public_methods():
    """``(name, defined in raygrid)`` of every public method and property of the public classes.

    Inherited ones count too (``score``, ``get_params``, ...): they are part of the class's API.
    """
    found = []
    for qualified in _public_names():
        module, _, name = qualified.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        if not inspect.isclass(cls):
            continue
        for attr in sorted(dir(cls)):
            if attr.startswith("_"):
                continue
            raw = inspect.getattr_static(cls, attr)
            function = raw.fget if isinstance(raw, property) else getattr(raw, "__func__", raw)
            if not (isinstance(raw, property) or inspect.isfunction(function)):
                continue
            ours = (getattr(function, "__module__", "") or "").startswith("raygrid")
            found.append((f"{qualified}.{attr}", ours))
    return found


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The docs built once as HTML with warnings as errors: ``(result, html dir, doctrees)``."""
    out = tmp_path_factory.mktemp("docs")
    doctrees = out / ".doctrees"
    command = [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", "-d", str(doctrees)]
    result = subprocess.run([*command, str(DOCS), str(out)], capture_output=True, text=True)
    return result, out, doctrees


def _toctree_includes(doctrees: Path) -> dict[str, list[str]]:
    with open(doctrees / "environment.pickle", "rb") as file:
        return pickle.load(file).toctree_includes


def _reachable(includes: dict[str, list[str]], root: str = "index") -> set[str]:
    seen, todo = set(), [root]
    while todo:
        page = todo.pop()
        if page not in seen:
            seen.add(page)
            todo.extend(includes.get(page, []))
    return seen


def test_docs_build_without_warnings(built):
    result, out, _ = built
    assert result.returncode == 0, result.stderr
    assert (out / "api" / "raygrid.keras.KerasClassifier.html").exists()
    assert (out / "guide" / "index.html").exists()


def test_every_guide_page_is_built_and_reachable_from_the_index(built):
    result, out, doctrees = built
    assert result.returncode == 0, result.stderr
    pages = {f"guide/{path.stem}" for path in (DOCS / "guide").glob("*.rst")}
    assert {"guide/index", *(f"guide/{name}" for name in GUIDE_FIRST)} <= pages
    reachable = _reachable(_toctree_includes(doctrees))
    assert pages - reachable == set()
    for page in pages:
        assert (out / f"{page}.html").exists(), page


def test_guide_lists_its_first_pages_first_then_every_other_page(built):
    result, _, doctrees = built
    assert result.returncode == 0, result.stderr
    listed = _toctree_includes(doctrees)["guide/index"]
    assert listed[: len(GUIDE_FIRST)] == [f"guide/{name}" for name in GUIDE_FIRST]
    others = {f"guide/{path.stem}" for path in (DOCS / "guide").glob("*.rst")}
    others -= {"guide/index", *listed[: len(GUIDE_FIRST)]}
    assert sorted(listed[len(GUIDE_FIRST) :]) == sorted(others)


def test_every_public_object_has_a_page():
    pages = {path.stem for path in (DOCS / "api").glob("*.rst")}
    assert pages == set(_public_names())


@pytest.mark.parametrize("name", _public_names())
def test_numpydoc_validation(name):
    conf = _conf()
    ignored = conf.NUMPYDOC_IGNORED_CHECKS | conf.NUMPYDOC_IGNORED_PER_OBJECT.get(name, set())
    errors = [f"{code}: {message}" for code, message in validate(name)["errors"]]
    errors = [error for error in errors if error.split(":")[0] not in ignored]
    assert not errors, "\n".join(errors)


def test_public_methods_are_found():
    names = dict(_public_methods())
    assert names["raygrid.keras.KerasClassifier.fit"] is True
    assert names["raygrid.keras.KerasClassifier.score"] is False
    assert names["raygrid.tracking.Tracker.open"] is True
    assert "raygrid.keras.KerasClassifier.model_" in names


@pytest.mark.parametrize(("name", "ours"), _public_methods())
def test_numpydoc_validation_of_methods(name, ours):
    conf = _conf()
    ignored = conf.NUMPYDOC_IGNORED_CHECKS | conf.NUMPYDOC_IGNORED_FOR_METHODS
    if not ours:
        ignored = ignored | conf.NUMPYDOC_IGNORED_FOR_INHERITED
    errors = [f"{code}: {message}" for code, message in validate(name)["errors"]]
    errors = [error for error in errors if error.split(":")[0] not in ignored]
    assert not errors, "\n".join(errors)
