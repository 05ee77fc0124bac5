"""The structure of src/ichseg: no import cycle between its modules, and no import from a layer above.

Every import statement counts, wherever it stands: at module level, inside a function (it runs on
the first call, and still ties the two modules together) and under ``if TYPE_CHECKING`` (the
module still knows the other's types). ``importlib.import_module`` with a literal name counts too.

Importing ``ichseg.a.b`` first runs the module level of the package ``ichseg.a``: its
module-level imports count as the importer's. Its lazy re-exports (a ``__getattr__`` importing a
submodule on first use, as ``ichseg.io`` and ``ichseg.engine`` have) do not run then and are not
followed. Importing a name from the package itself (``from ichseg.io import load_image``) depends
on all of the package's imports, lazy ones included. ``ichseg`` itself runs before any of its
modules, so its module level may import the foundation only.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ichseg

SOURCE = Path(ichseg.__file__).resolve().parent.parent

#: Lowest first. A module may import its own layer and the layers below; a component is a top-level
#: module or package of ichseg ("" is the package itself, the lazy facade of ``import ichseg``).
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("foundation", frozenset({"version", "errors", "units", "connectivity", "atomic", "layout", "progress",
                              "workspace", "labels", "palette", "jsonfile"})),
    ("domain", frozenset({"io", "preprocessing", "ensemble", "metrics", "clinical", "postprocessing", "recipes",
                          "data"})),
    ("engine", frozenset({"engine"})),
    ("models", frozenset({"model", "segmentation", "report", "crossval"})),
    # testing builds untrained model folders the way training describes them; nothing in ichseg uses it
    ("jobs", frozenset({"batch", "training", "testing"})),
    ("services", frozenset({"distributed", "serve"})),
    ("entry points", frozenset({"commands", "demo", "cli", "__main__", ""})),
)

#: Modules that sit lower than their package, with the reason.
MODULE_LAYERS = {
    # The loss and schedule values recipes read and the trainer applies: plain frozen dataclasses
    # (no torch, only ichseg.errors) kept under the engine's name so that the engine needs nothing
    # from the recipes.
    "ichseg.engine.params": "domain",
    # Draws CT slices with mask outlines into PNG files and needs only ichseg.io.ctimage, like
    # metrics.plots: the synthetic data set's preview, each case's outputs and the DICOM node's
    # key images all use it.
    "ichseg.report.preview": "domain",
}

#: What the engine, the only door to nnU-Net, may import besides itself: the foundation alone.
ENGINE_MAY_IMPORT = dict(LAYERS)["foundation"]

LAYER_INDEX = {name: index for index, (name, _) in enumerate(LAYERS)}


@dataclass(frozen=True)
class Import:
    target: str
    line: int
    eager: bool
    """At module level and not under ``if TYPE_CHECKING``: it runs when the module is imported."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted((SOURCE / "ichseg").rglob("*.py"))}
PACKAGES = {name for name, path in MODULES.items() if path.name == "__init__.py"}


def resolve(module: str, name: str) -> str:
    """``from module import name``: the submodule when ``name`` is one, else ``module``."""
    return f"{module}.{name}" if f"{module}.{name}" in MODULES else module


def absolute(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer if importer in PACKAGES else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_by(node: ast.AST, importer: str) -> Iterator[tuple[str, int]]:
    """The ichseg modules one statement or call names."""
    if isinstance(node, ast.Import):
        yield from ((alias.name, node.lineno) for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        module = absolute(importer, node)
        yield from ((resolve(module, alias.name), node.lineno) for alias in node.names)
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
          and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        yield node.args[0].value, node.lineno


def imports(module: str) -> list[Import]:
    """Every import of an ichseg module in ``module``, wherever it stands."""
    found: list[Import] = []

    def visit(node: ast.AST, eager: bool) -> None:
        for child in ast.iter_child_nodes(node):
            for target, line in imported_by(child, module):
                if target == "ichseg" or target.startswith("ichseg."):
                    found.append(Import(target, line, eager))
            if isinstance(child, ast.If) and is_type_checking(child):
                visit(ast.Module(body=child.body, type_ignores=[]), eager=False)
                visit(ast.Module(body=child.orelse, type_ignores=[]), eager)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, eager=False)
            else:
                visit(child, eager)

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8")), eager=True)
    return list(dict.fromkeys(found))  # one per module named, not per name imported


IMPORTS = {module: imports(module) for module in MODULES}


def packages_run(importer: str, target: str) -> list[str]:
    """The packages whose module level runs when ``importer`` imports ``target`` (not its own,
    which ran before it)."""
    parts = target.split(".")
    ancestors = [".".join(parts[:n]) for n in range(1, len(parts))]
    return [p for p in ancestors if p in PACKAGES and not (importer == p or importer.startswith(p + "."))]


def dependencies(module: str) -> Iterator[tuple[str, str]]:
    """What ``module`` depends on, and how: its imports, and the module-level imports of the
    packages those imports run."""
    for found in IMPORTS[module]:
        yield found.target, f"line {found.line}"
        for package in packages_run(module, found.target):
            for inner in IMPORTS[package]:
                if inner.eager:
                    yield inner.target, f"line {found.line}, through {package}/__init__.py line {inner.line}"


def component(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def layer(module: str) -> str:
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    for name, components in LAYERS:
        if component(module) in components:
            return name
    raise AssertionError(f"{module} has no layer: add its component to LAYERS in {Path(__file__).name}")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in graph.get(node, ()):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_every_import_names_an_existing_module():
    missing = [f"{module} line {found.line}: {found.target}" for module, found_list in IMPORTS.items()
               for found in found_list if found.target not in MODULES]
    assert not missing


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)
    assert set(MODULE_LAYERS) <= set(MODULES)


def test_no_import_cycle_between_modules():
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for module in MODULES:
        graph[module].update(target for target, _ in dependencies(module) if target != module)
    assert cycles(graph) == []


def test_no_module_imports_a_layer_above_its_own():
    upward = [f"{module} ({layer(module)}) imports {target} ({layer(target)}), {where}"
              for module in MODULES for target, where in dict.fromkeys(dependencies(module))
              if LAYER_INDEX[layer(target)] > LAYER_INDEX[layer(module)]]
    assert not upward, "\n".join(upward)


def test_import_ichseg_runs_only_the_foundation():
    """Every module's import runs the package's module level first: the facade stays lazy."""
    eager = {found.target for found in IMPORTS["ichseg"] if found.eager}
    assert {component(target) for target in eager} <= dict(LAYERS)["foundation"], eager


def test_the_engine_imports_only_the_foundation():
    """nnU-Net's door needs no recipe, data set or model folder: callers hand it plain values."""
    outside = [f"{module} imports {target}, {where}" for module in MODULES if component(module) == "engine"
               for target, where in dependencies(module)
               if component(target) not in ENGINE_MAY_IMPORT | {"engine"}]
    assert not outside, "\n".join(outside)


def test_the_domain_packages_import_each_other_without_a_cycle():
    """io, metrics, postprocessing, recipes... use one another: one way only, so that each can be
    read (and tested) with only the packages below it."""
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        if layer(module) != "domain":
            continue
        for target, _ in dependencies(module):
            if layer(target) == "domain" and component(target) != component(module):
                graph.setdefault(component(module), set()).add(component(target))
    assert cycles(graph) == []


def test_the_rules_see_what_a_cycle_and_a_lazy_package_are():
    """The checks above on known shapes: a cycle is found, a package's lazy imports are not
    followed through the door a submodule import opens, and its module-level ones are."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    assert "ichseg.io.dicom" in {found.target for found in IMPORTS["ichseg.io"] if not found.eager}
    direct = {found.target for found in IMPORTS["ichseg.report.preview"]}
    seen = {target for target, _ in dependencies("ichseg.report.preview")}
    assert "ichseg.io.ctimage" in direct and "ichseg.io.image" not in direct
    assert "ichseg.io.image" in seen  # ichseg.io's module level imports it...
    assert "ichseg.io.dicom" not in seen  # ...and this one only in its __getattr__
    typed = {found.target for found in IMPORTS["ichseg.model.networks"] if not found.eager}
    assert "ichseg.segmentation.settings" in typed  # under TYPE_CHECKING
