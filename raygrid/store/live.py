"""Results written while a search runs, so that an output location shows progress.

``raygrid run`` fits inside :func:`live_output`: the search then rewrites the output's
``cv_results.parquet`` (the candidates whose every split has finished) and
``tasks.parquet`` (the finished fits) at most every ``interval`` seconds, and the final
write after the search replaces them. ``search.json`` says ``"partial": true`` until then.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["LiveOutput", "current", "live_output"]


@dataclass
class LiveOutput:
    """Where partial results go, and how often.

    Parameters
    ----------
    path : str
        A directory path or URI (see :mod:`raygrid.store.location`).
    interval : float, default=60
        Seconds between writes.
    """

    path: str
    interval: float = 60.0
    last: float = field(default_factory=time.monotonic)
    writes: int = 0

    def due(self) -> bool:
        """Whether ``interval`` has passed since the last write (or the start)."""
        return time.monotonic() - self.last >= self.interval

    def written(self) -> None:
        """Note a write, now."""
        self.last = time.monotonic()
        self.writes += 1


_current: ContextVar[LiveOutput | None] = ContextVar("raygrid_live_output", default=None)


def current() -> LiveOutput | None:
    """The live output of searches fitted in this context, if any."""
    return _current.get()


@contextlib.contextmanager
def live_output(path: str, interval: float = 60.0) -> Iterator[LiveOutput]:
    """Searches fitted inside write partial results to ``path`` every ``interval`` s."""
    token = _current.set(LiveOutput(path, interval))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
