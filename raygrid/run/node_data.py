"""Lazy data (:mod:`raygrid.data`) read once per node, shared through its object store.

The first worker of a node that needs a search's data asks that node's holder actor
(created on demand, pinned to the node, named after the search and the node); the holder
reads the file and puts ``(X, y)`` in the node's object store, and every worker of the
node gets the same object from there (zero-copy, read-only arrays). The driver removes
the holders when the search ends (:func:`release`).
"""

from __future__ import annotations

from typing import Any

import ray

_NAMESPACE = "raygrid-data"


@ray.remote(num_cpus=0)
class _NodeData:
    """Holds one node's copy of a search's data in the node's object store."""

    def __init__(self) -> None:
        self._ref: ray.ObjectRef | None = None

    def get(self, handle: Any) -> list:
        if self._ref is None:
            self._ref = ray.put(handle.read())
        return [self._ref]  # in a list, so the caller gets the reference, not the data


def _name(search: str, node: str) -> str:
    return f"{search}-{node}"


def fetch(handle: Any, search: str) -> tuple[Any, Any]:
    """``(X, y)`` of ``handle`` on this worker's node, read there at most once.

    Parameters
    ----------
    handle : raygrid.data.ParquetData
        What to read.
    search : str
        The search's token (each search has its own holders).
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    holder = _NodeData.options(
        name=_name(search, node),
        namespace=_NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote()
    (ref,) = ray.get(holder.get.remote(handle))
    return ray.get(ref)


def release(search: str) -> None:
    """Remove the search's holders on every node (their copies of the data go with them)."""
    for node in ray.nodes():
        try:
            holder = ray.get_actor(_name(search, node["NodeID"]), namespace=_NAMESPACE)
        except ValueError:  # no worker of this search ran on that node
            continue
        ray.kill(holder)
