"""A directory at a local path or at a URI that pyarrow opens (``s3://``, ``gs://``,
``hdfs://``, ``file://``): the one place raygrid's stores read, write and list files.

A URI goes through :meth:`pyarrow.fs.FileSystem.from_uri`, so pyarrow's own options
work in it (``s3://bucket/dir?endpoint_override=host:9000&region=eu-west-1``), as do the
usual environment variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...). A scheme
pyarrow cannot open is an error naming the location, never a local folder named after the
URI. Writes are whole-or-nothing: locally through a renamed temporary file
(:mod:`raygrid.store.files`); on object stores an object appears only once written.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from functools import lru_cache
from typing import Any

from raygrid.store.files import atomic_write, create_exclusive

__all__ = ["Location", "LocationError", "is_uri", "open_location"]

# Environment variables the filesystems read when created.
_ENV = ("AWS_", "GOOGLE_", "GCS_", "HADOOP_", "ARROW_")
# Object stores where a written object appears whole or not at all.
_ATOMIC_PUT = ("s3", "gs", "gcs")


class LocationError(ValueError):
    """A location raygrid cannot use (unknown scheme, unreachable, not writable)."""


def is_uri(path: str) -> bool:
    """Whether ``path`` is a URI (``scheme://...``) rather than a local path."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path))


class Location:
    """A directory of files, local or at a URI.

    Parameters
    ----------
    where : str or path-like
        A local path (made absolute) or a URI.
    option : str
        The option or spec key that named it, used in error messages.

    Raises
    ------
    LocationError
        If ``where`` is a URI whose scheme pyarrow cannot open (or whose options are
        wrong).
    """

    def __init__(self, where: str | os.PathLike, option: str = "path") -> None:
        text = os.fspath(where)
        self.option = option
        self.uri = text if is_uri(text) else os.path.abspath(os.path.expanduser(text))
        self.fs: Any = None
        self.root = self.uri
        if is_uri(text):
            self.fs, self.root = _filesystem(text, option)
            self.root = self.root.rstrip("/")
        self.scheme = text.split("://", 1)[0].lower() if is_uri(text) else ""

    @property
    def is_local(self) -> bool:
        """Whether the location is a plain local directory."""
        return self.fs is None

    def join(self, name: str) -> str:
        """The path of ``name`` inside this directory (for the filesystem)."""
        return os.path.join(self.root, name) if self.is_local else f"{self.root}/{name}"

    def describe(self, name: str = "") -> str:
        """``name`` inside this location as the user would write it."""
        if not name:
            return self.uri
        return os.path.join(self.uri, name) if self.is_local else f"{self.uri.rstrip('/')}/{name}"

    def make(self) -> None:
        """Create the directory if missing (object stores need no folders)."""
        if self.is_local:
            os.makedirs(self.root, exist_ok=True)
        elif self.scheme not in _ATOMIC_PUT:
            self.fs.create_dir(self.root, recursive=True)

    def names(self) -> list[str]:
        """The names of the files directly inside, sorted (none if the directory is missing)."""
        if self.is_local:
            if not os.path.isdir(self.root):
                return []
            return sorted(os.listdir(self.root))
        import pyarrow.fs

        selector = pyarrow.fs.FileSelector(self.root, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.base_name for i in infos if i.type == pyarrow.fs.FileType.File)

    def exists(self, name: str) -> bool:
        """Whether the file ``name`` exists."""
        if self.is_local:
            return os.path.isfile(self.join(name))
        import pyarrow.fs

        return self.fs.get_file_info(self.join(name)).type == pyarrow.fs.FileType.File

    def read(self, name: str) -> bytes:
        """The bytes of the file ``name``."""
        if self.is_local:
            with open(self.join(name), "rb") as f:
                return f.read()
        with self.fs.open_input_stream(self.join(name)) as f:
            return f.read()

    def open_input(self, name: str) -> Any:
        """A seekable file of ``name`` for pyarrow readers (a path when local)."""
        if self.is_local:
            return self.join(name)
        return self.fs.open_input_file(self.join(name))

    def write(self, name: str, data: bytes) -> None:
        """Create or replace ``name`` with ``data``; readers see all of it or nothing."""
        if self.is_local:
            atomic_write(self.join(name), data)
        elif self.scheme in _ATOMIC_PUT:
            with self.fs.open_output_stream(self.join(name)) as f:
                f.write(data)
        else:  # a filesystem (HDFS): write aside, then move into place
            tmp = self.join(f"{name}.{uuid.uuid4().hex}.tmp")
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, self.join(name))

    def create(self, name: str, data: bytes) -> bool:
        """Create ``name`` holding ``data`` unless it exists; whether this call created it.

        Exclusive on local disks; on object stores, checked then written (two processes
        creating the same journal in the same instant may both think they did).
        """
        if self.is_local:
            return create_exclusive(self.join(name), data)
        if self.exists(name):
            return False
        self.write(name, data)
        return True

    def delete(self, name: str) -> None:
        """Delete the file ``name`` (no error if it is already gone)."""
        if self.is_local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.join(name))
            return
        import pyarrow.fs

        try:
            self.fs.delete_file(self.join(name))
        except FileNotFoundError:
            pass
        except OSError:
            if self.fs.get_file_info(self.join(name)).type != pyarrow.fs.FileType.NotFound:
                raise

    def probe(self) -> None:
        """Write and delete a small object here, so that a location raygrid cannot use
        fails now, before any fit, rather than when the first result arrives.

        Raises
        ------
        LocationError
            Naming the location, what failed and what to check.
        """
        name = f".raygrid-probe-{uuid.uuid4().hex}"
        try:
            self.make()
            self.write(name, b"raygrid probe: safe to delete\n")
            self.delete(name)
        except Exception as exc:  # pyarrow raises OSError subclasses, or ArrowInvalid
            if self.is_local:
                raise LocationError(
                    f"{self.option}={self.uri!r} cannot be created or written "
                    f"({_first_line(exc)}). " + _fix_hint(self)
                ) from None
            raise LocationError(
                f"{self.option}={self.uri!r}: cannot write there ({_first_line(exc)}). "
                + _fix_hint(self)
            ) from None


def open_location(where: str | os.PathLike, option: str = "path") -> Location:
    """A :class:`Location` for ``where``; see there."""
    return Location(where, option)


def _fix_hint(location: Location) -> str:
    if location.is_local:
        return "Check that the folder can be created and written by this user."
    if location.scheme == "s3":
        return (
            "Check that the bucket exists, the credentials (AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY or the instance's role) may write to it, and the "
            "endpoint (AWS_ENDPOINT_URL, or ?endpoint_override=host:port in the URI) and "
            "region (AWS_DEFAULT_REGION or ?region=...) are right."
        )
    if location.scheme in ("gs", "gcs"):
        return (
            "Check that the bucket exists and the credentials "
            "(GOOGLE_APPLICATION_CREDENTIALS) may write to it."
        )
    return "Check that the location exists and this process may write to it."


@lru_cache(maxsize=64)
def _cached_filesystem(uri: str, environment: tuple) -> tuple[Any, str]:
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(uri)


def _filesystem(uri: str, option: str) -> tuple[Any, str]:
    """pyarrow's filesystem and path for ``uri`` (one per URI and environment and process)."""
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV)))
    try:
        return _cached_filesystem(uri, environment)
    except Exception as exc:  # ArrowInvalid: unknown scheme; ArrowNotImplementedError...
        scheme = uri.split("://", 1)[0]
        raise LocationError(
            f"{option}={uri!r}: pyarrow cannot open a {scheme}:// location "
            f"({_first_line(exc)}). Use a local path or a URI with a scheme pyarrow "
            "supports: s3://, gs://, hdfs://, file://."
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
