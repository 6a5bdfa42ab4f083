"""scikit-learn callbacks (``search.set_callbacks(...)``) across Ray workers.

scikit-learn's callbacks run inside the processes that fit, and ship what they record back
to the main process through ``sklearn.callback._transport``: a listener on a local socket
that only processes on the driver's host can reach. raygrid relays those messages
through Ray instead:

* on the driver, :func:`listener_handles` finds the listeners the search's callbacks
  opened; each wave ships them to the workers with the pickled callback contexts;
* in a worker, :class:`Relay` registers itself as the consumer of each of those
  listeners in that process, so a callback's ``send`` lands in the relay's buffer (the
  transport's in-process path) instead of on a socket; it also answers at the
  listener's address when the driver's socket is out of reach (another node), so
  callbacks that check their listener on unpickling keep it;
* the buffered messages come back inside the fit's record, and :func:`deliver` hands
  each one, on the driver, to the consumer the listener was opened with: the same call
  the transport would have made for a fit in the driver's own process.
"""

from __future__ import annotations

import os
import threading
from typing import Any


def search_callbacks(search: Any) -> list[Any]:
    """The callbacks set on ``search`` and on any estimator inside it (fold fits copy those)."""
    found = list(getattr(search, "_skl_callbacks", []))
    estimators = [search.estimator, *search.estimator.get_params(deep=True).values()]
    for estimator in estimators:
        found.extend(getattr(estimator, "_skl_callbacks", []))
    return found


def listener_handles(callbacks: list[Any]) -> list[Any]:
    """The transport listener handles held by ``callbacks`` (attributes, one level deep)."""
    try:
        from sklearn.callback._transport import ListenerHandle
    except ImportError:  # scikit-learn without callbacks
        return []
    found: dict[str, Any] = {}

    def visit(value: Any) -> None:
        if isinstance(value, ListenerHandle):
            found[value.address] = value
        elif isinstance(value, dict):
            for item in value.values():
                if isinstance(item, ListenerHandle):
                    found[item.address] = item
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, ListenerHandle):
                    found[item.address] = item

    for callback in callbacks:
        for value in getattr(callback, "__dict__", {}).values():
            visit(value)
    return list(found.values())


def deliver(messages: list[tuple[str, Any]]) -> None:
    """Hand relayed messages to their listeners' consumers in this (the driver's) process."""
    if not messages:
        return
    from sklearn.callback import _transport

    for address, message in messages:
        consumer = _transport._message_consumers.get(address)
        if consumer is not None:
            consumer(message)


class Relay:
    """Worker side: collects what callbacks send to the driver's listeners.

    Parameters
    ----------
    handles : list of ListenerHandle
        The driver's listeners, from :func:`listener_handles`.
    """

    def __init__(self, handles: list[Any]) -> None:
        from sklearn.callback import _transport

        self._transport = _transport
        self.handles = handles
        self.messages: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        for handle in handles:
            _transport._message_consumers[handle.address] = self._consumer(handle.address)
            _answer_at(handle)

    def _consumer(self, address: str):
        def consume(message: Any) -> None:
            with self._lock:
                self.messages.append((address, message))

        return consume

    def take(self) -> list[tuple[str, Any]]:
        """The messages collected since the last call."""
        with self._lock:
            taken, self.messages = self.messages, []
        return taken

    def close(self) -> None:
        """Stop relaying (the worker moves on to another wave or search)."""
        for handle in self.handles:
            self._transport._message_consumers.pop(handle.address, None)


# Listeners this process opened at addresses the driver's socket was missing from.
_stand_ins: dict[str, Any] = {}


def _answer_at(handle: Any) -> None:
    """Make ``handle``'s address connectable from this host, if the driver's is not.

    Callbacks such as ``ScoringMonitor`` check on unpickling that their listener answers,
    and open a process-local one otherwise (whose messages would never reach the
    driver). On the driver's host its socket answers; elsewhere a stand-in listener with
    the same address and key accepts and closes connections, and every message still
    goes through the relay's consumer.
    """
    from multiprocessing.connection import Client, Listener

    if handle.address in _stand_ins:
        return
    try:
        Client(handle.address, authkey=handle.authkey).close()
        return
    except OSError:
        pass
    directory = os.path.dirname(handle.address)
    try:
        if directory:
            os.makedirs(directory, exist_ok=True)
        listener = Listener(handle.address, authkey=handle.authkey)
    except OSError:
        return  # another worker on this host answers there already, or it cannot be made
    _stand_ins[handle.address] = listener

    def accept() -> None:
        while True:
            try:
                listener.accept().close()
            except OSError:
                return
            except Exception:  # a client that failed authentication
                continue

    threading.Thread(target=accept, daemon=True).start()
