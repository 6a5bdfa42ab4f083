"""Writing files that readers see whole or not at all (journal parts, results, reports)."""

from __future__ import annotations

import os
import uuid


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see all of it or nothing.

    The data goes to a temporary file in the same directory, is flushed to disk and
    renamed over ``path``; the directory entry is synced too.

    Parameters
    ----------
    path : str
        The file to create or replace; its directory must exist.
    data : bytes

    Examples
    --------
    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> atomic_write(target, b"done")
    >>> open(target, "rb").read()
    b'done'
    """
    tmp = _write_temporary(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _sync_directory(path)


def create_exclusive(path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; readers see all of it or none.

    Parameters
    ----------
    path : str
    data : bytes

    Returns
    -------
    bool
        Whether this call created the file.
    """
    tmp = _write_temporary(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)
    _sync_directory(path)
    return True


def _write_temporary(path: str, data: bytes) -> str:
    tmp = f"{path}.{os.getpid()}-{uuid.uuid4().hex}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _sync_directory(path: str) -> None:
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
