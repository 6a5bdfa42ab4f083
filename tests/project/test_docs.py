"""The API reference: it builds with warnings as errors, every public object has a page,
and every public object passes numpydoc's validation (checks chosen in docs/conf.py)."""

import importlib.util
import inspect
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


def test_docs_build_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(DOCS), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "api" / "raygrid.keras.KerasClassifier.html").exists()


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
