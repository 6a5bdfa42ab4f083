"""The API reference: it builds with warnings as errors, every public object has a page,
and every public object passes numpydoc's validation (checks chosen in docs/conf.py)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from numpydoc.validate import validate

import raygrid
import raygrid.keras
import raygrid.tracking

DOCS = Path(__file__).resolve().parent.parent / "docs"
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
