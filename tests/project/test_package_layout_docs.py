"""The package describes its own layout: each package's docstring names every module and
subpackage in it (the README keeps no hand-written list that could fall behind)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "raygrid"
PACKAGES = sorted(init.parent for init in PACKAGE.rglob("__init__.py"))


def _members(package: Path) -> list[str]:
    modules = [path.stem for path in package.glob("*.py") if not path.stem.startswith("__")]
    subpackages = [path.parent.name for path in package.glob("*/__init__.py")]
    return sorted(modules + subpackages)


def _dotted(package: Path) -> str:
    return ".".join(package.relative_to(PACKAGE.parent).parts)


def test_packages_are_found():
    names = {_dotted(package) for package in PACKAGES}
    assert {"raygrid", "raygrid.run", "raygrid.keras"} <= names
    assert "text" in _members(PACKAGE) and "run" in _members(PACKAGE)


@pytest.mark.parametrize("package", PACKAGES, ids=_dotted)
def test_package_docstring_names_every_member(package):
    docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    dotted = _dotted(package)
    missing = [name for name in _members(package) if f"{dotted}.{name}" not in docstring]
    assert not missing, (
        f"{dotted}'s docstring (its __init__.py) does not name: "
        + ", ".join(f"{dotted}.{name}" for name in missing)
        + "; say in a line what each holds"
    )
