"""raygrid's layers and seams, checked on its source.

- Nothing climbs back up the layers: a module imports only from its own layer or those
  below (imports inside functions included).
- The core never imports the Keras plugin: it reaches it through hooks on the estimator
  (:mod:`raygrid.run.prefix`, :mod:`raygrid.run.fusion`).
- The scheduler never asks a unit of work its type: units share one protocol
  (:class:`raygrid.run.units.WorkUnit`).
"""

from __future__ import annotations

import ast

import pytest
from code_graph import PACKAGE, import_graph, modules

# From the bottom up. A module's layer is that of the longest entry that is its name or
# a package holding it ("raygrid" is only the package's public names, its __init__).
LAYERS = [
    ["raygrid.text", "raygrid.version", "raygrid.constructors"],  # plain helpers
    ["raygrid.store", "raygrid.data"],  # the fit record, the journal, saved results, lazy data
    ["raygrid.local"],  # the driver's machine: kept-alive cluster, teardown, quiet logs
    ["raygrid.run"],  # units of work, scheduling, workers
    ["raygrid.report"],  # reports built from saved results
    ["raygrid.tracking"],  # trackers the search drives (MLflow logs a report)
    ["raygrid.search"],  # the search classes and the fit that drives the rest
    ["raygrid"],  # the public names
    ["raygrid.spec"],  # the TOML spec names search classes by their public names
    ["raygrid.keras"],  # plugin: imports the core it builds on; no core module imports it
    ["raygrid.cli", "raygrid.__main__"],  # the command line: an application of core and plugins
]

PLUGINS = ("raygrid.keras",)
# Modules above the core that may use a plugin directly, as a user's script would: the
# command line (``raygrid doctor`` asks TensorFlow, through raygrid.keras, what it sees).
APPLICATIONS = ("raygrid.cli", "raygrid.__main__")

# Where units of work are scheduled, collected and assembled into a wave.
SCHEDULING = [
    "run/execute.py",
    "run/pool.py",
    "run/collect.py",
    "run/plan.py",
    "search/mixin.py",
    "search/waves.py",
]
UNIT_CLASSES = {"Task", "PrefixGroup", "FusedGroup", "WorkUnit"}
# Only the planner builds the groups; the scheduler knows no unit class but the protocol
# (and Task, the one fit every record belongs to).
BUILT_BY_THE_PLANNER = {"PrefixGroup", "FusedGroup"}
PLANNER = "run/plan.py"
# Names the scheduling code gives units of work.
UNIT_NAMES = {"unit", "units", "u", "task", "tasks", "t", "batch", "member", "members", "group"}
TYPE_TESTS = {"isinstance", "issubclass", "type", "hasattr", "getattr"}


def layer_of(module: str) -> int:
    """The index in LAYERS of ``module``."""
    best, found = -1, None
    for n, names in enumerate(LAYERS):
        for name in names:
            holds = name != "raygrid" and module.startswith(name + ".")
            if (module == name or holds) and len(name) > best:
                best, found = len(name), n
    if found is None:
        raise KeyError(f"{module} is in no layer: add it to LAYERS")
    return found


def climbs(graph: dict[str, set[str]]) -> list[str]:
    """Every import of ``graph`` from a module to one of a higher layer."""
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(source)
    )


def plugin_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a plugin by a module outside it."""
    inside = lambda module, plugin: module == plugin or module.startswith(plugin + ".")  # noqa: E731
    return sorted(
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in targets
        for plugin in PLUGINS
        if inside(target, plugin)
        and not inside(source, plugin)
        and not any(inside(source, app) for app in APPLICATIONS)
    )


def _names(node: ast.AST) -> set[str]:
    """The bare names and attribute names used in ``node``."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            found.add(child.attr)
    return found


def unit_type_tests(source: str, planner: bool = False) -> list[str]:
    """Where ``source`` tests a unit's type or names a unit class it must not know.

    Flagged: ``isinstance``/``issubclass``/``type``/``hasattr``/``getattr`` calls whose
    arguments name a unit class or whose first argument is a unit (by its usual names),
    ``__class__`` read off a unit, ``match`` on a unit class, and (outside the planner)
    any mention of the group classes.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in TYPE_TESTS and node.args:
                first = _names(node.args[0])
                if first & UNIT_NAMES or _names(node) & UNIT_CLASSES:
                    found.append(f"{where}: {node.func.id}() on a unit")
        elif isinstance(node, ast.Attribute) and node.attr == "__class__":
            if _names(node.value) & UNIT_NAMES:
                found.append(f"{where}: __class__ of a unit")
        elif isinstance(node, ast.MatchClass) and _names(node.cls) & UNIT_CLASSES:
            found.append(f"{where}: match on a unit class")
        elif not planner and isinstance(node, ast.Name | ast.alias):
            name = node.id if isinstance(node, ast.Name) else node.name
            if name in BUILT_BY_THE_PLANNER:
                found.append(f"{where}: names {name}")
    return found


def test_nothing_climbs_back_up_the_layers():
    assert climbs(import_graph(lazy=True)) == []


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)
    with pytest.raises(KeyError, match="raygrid.newcomer is in no layer"):
        layer_of("raygrid.newcomer")


def test_the_layer_check_sees_a_climb():
    graph = {"raygrid.store.journal": {"raygrid.run.units"}, "raygrid.run.plan": {"raygrid.text"}}
    assert climbs(graph) == ["raygrid.store.journal -> raygrid.run.units"]


def test_no_core_module_imports_the_keras_plugin():
    assert plugin_imports(import_graph(lazy=True)) == []


def test_the_plugin_check_sees_an_import_inside_a_function():
    graph = {"raygrid.run.worker": {"raygrid.keras.fused"}, "raygrid.keras.fused": {"raygrid"}}
    assert plugin_imports(graph) == ["raygrid.run.worker -> raygrid.keras.fused"]


def test_the_scheduler_never_tests_a_units_type():
    found = {
        path: unit_type_tests((PACKAGE / path).read_text(), planner=path == PLANNER)
        for path in SCHEDULING
    }
    assert {path: problems for path, problems in found.items() if problems} == {}


def test_the_unit_type_check_sees_each_way_of_asking():
    asked = """
from raygrid.run.units import PrefixGroup
def a(unit): return isinstance(unit, PrefixGroup)
def b(batch): return [u.tasks if hasattr(u, "tasks") else [u] for u in batch]
def c(task): return type(task).__name__
def d(unit): return unit.__class__
def e(x):
    match x:
        case Task(): return 1
"""
    problems = unit_type_tests(asked)
    assert len(problems) == 7, problems
    assert unit_type_tests("def f(error): return isinstance(error, ValueError)") == []
