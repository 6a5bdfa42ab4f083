"""raygrid's import graph, measured: modules, import edges and layers.

``python tests/code_graph.py`` prints the counts (top-level modules, modules, import edges
between modules, layers of the graph); ``tests/project/test_code_shape.py`` holds the
package to its layering with the same functions.

An edge is one module importing another when it is imported (module level, outside
``TYPE_CHECKING``); imports inside functions are counted apart. The layer of a module is
1 + the highest layer of what it imports (a module importing no raygrid module is layer 1).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "raygrid"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of raygrid by dotted name (a package is its ``__init__``)."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, lazy: bool):
    """Import statements of ``tree``: those run at import time, or (``lazy``) all of them."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            continue
        elif lazy:
            pending += list(ast.iter_child_nodes(node))
        elif isinstance(node, ast.If):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                pending += handler.body


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    """For each raygrid module, the raygrid modules it imports.

    ``lazy=False`` counts the imports that run when the module is imported; ``lazy=True``
    also those inside functions.
    """
    known = modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in _imports(ast.parse(path.read_text()), lazy):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
        graph[module] = {t for t in targets if t in known and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """The layer of every module of an acyclic ``graph`` (1 = imports nothing of raygrid)."""
    found: dict[str, int] = {}

    def layer(node: str) -> int:
        if node not in found:
            found[node] = 1 + max((layer(t) for t in graph.get(node, ())), default=0)
        return found[node]

    for node in graph:
        layer(node)
    return found


def counts(graph: dict[str, set[str]]) -> dict[str, int]:
    """Top-level modules, all modules, import edges and layers of ``graph``."""
    paths = modules()
    top = [m for m, p in paths.items() if m.count(".") == 1 and p.name != "__init__.py"]
    return {
        "top-level modules": len(top),
        "modules": len(graph),
        "import edges": sum(len(t) for t in graph.values()),
        "layers": max(layers(graph).values(), default=0),
    }


if __name__ == "__main__":
    graph = import_graph()
    if cycle := find_cycle(graph):
        sys.exit(f"import cycle: {' -> '.join(cycle)}")
    print(", ".join(f"{k} {v}" for k, v in counts(graph).items()))
    with_lazy = import_graph(lazy=True)
    print(f"with imports inside functions: {sum(len(t) for t in with_lazy.values())} edges")
