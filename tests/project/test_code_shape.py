"""The shape of raygrid's code: no import cycles between its modules, no overlong functions.

Complexity (ruff's C901, max-complexity 15) is checked by ``ruff check``; see pyproject.toml.
"""

from __future__ import annotations

import ast

from code_graph import find_cycle, import_graph, modules

MAX_LINES = 60


def _functions(node: ast.AST, prefix: str):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}.{child.name}"
            yield name, child.end_lineno - child.lineno + 1
            yield from _functions(child, name)
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}.{child.name}")


def long_functions() -> dict[str, int]:
    """Every function of raygrid longer than MAX_LINES, by qualified name."""
    found = {}
    for module, path in modules().items():
        for name, lines in _functions(ast.parse(path.read_text()), module):
            if lines > MAX_LINES:
                found[name] = lines
    return found


def test_no_import_cycle_between_raygrid_modules():
    assert find_cycle(import_graph()) is None


def test_the_cycle_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_sees_module_level_imports():
    graph = import_graph()
    assert "raygrid.store.results" in graph["raygrid.spec.search_spec"]
    assert "raygrid.report.build" in graph["raygrid.cli.main"]


def test_no_function_longer_than_the_limit():
    assert long_functions() == {}
