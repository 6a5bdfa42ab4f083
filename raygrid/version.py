"""raygrid's version: pyproject.toml's, the one source, read from the installed package."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raygrid")
except PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"
