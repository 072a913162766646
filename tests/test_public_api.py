"""Each package's ``__all__`` is exactly its public names, and every private module declares
``__all__``; imports point one way
(cli -> cluster -> agents -> models -> kernel -> transport -> actors)."""

from __future__ import annotations

import ast
import importlib
import re
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["actors", "transport", "kernel", "models", "agents", "cluster", "cli"]
LAYER = {name: i for i, name in enumerate(PACKAGES)}


@pytest.mark.parametrize("pkg", PACKAGES)
def test_all_equals_public_names(pkg: str) -> None:
    module = importlib.import_module(f"llmos.{pkg}")
    public = {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    }
    public.discard("annotations")  # `from __future__ import annotations`
    assert sorted(module.__all__) == sorted(public)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_private_modules_declare_all_and_import_downward(pkg: str) -> None:
    for path in sorted((ROOT / pkg).glob("_*.py")):
        if path.name.startswith("__"):
            continue
        tree = ast.parse(path.read_text())
        names = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        assert "__all__" in names, f"{pkg}/{path.name} has no __all__"
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[0] in LAYER:
                    pytest.fail(f"{pkg}/{path.name} imports bare {node.module}; use llmos.")
                if parts[0] == "llmos" and len(parts) > 1 and parts[1] in LAYER:
                    assert LAYER[parts[1]] <= LAYER[pkg], (
                        f"{pkg}/{path.name} imports llmos.{parts[1]}: imports point "
                        "cli -> cluster -> agents -> models -> kernel -> transport -> actors"
                    )


SOURCE_PACKAGES = ["transport", "kernel", "models", "agents", "cluster", "cli"]


@pytest.mark.parametrize("pkg", SOURCE_PACKAGES)
def test_no_module_outside_actors_uses_a_private_name_of_llmos_actors(pkg: str) -> None:
    """Packages meet the core only through its public names (ruff's SLF001 guards attributes)."""
    for path in sorted((ROOT / pkg).glob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            where = f"{pkg}/{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.ImportFrom) and node.module:
                parts = node.module.split(".")
                if parts[:2] == ["llmos", "actors"]:
                    assert not any(p.startswith("_") for p in parts[2:]), (
                        f"{where} imports the private module {node.module}"
                    )
                    for alias in node.names:
                        assert not alias.name.startswith("_"), f"{where} imports {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("llmos.actors._"), f"{where} imports it"
            elif isinstance(node, ast.Attribute):
                # The core's private state on objects it hands out (_llmos_cell, ...), and
                # private names reached through the package (actors._cell).
                assert not node.attr.startswith("_llmos_"), f"{where} reads {node.attr}"
                if isinstance(node.value, ast.Name) and node.value.id == "actors":
                    assert not node.attr.startswith("_"), f"{where} reads actors.{node.attr}"


def _runtime_imports(pkg: str, path: Path, *, typing: bool = False) -> set[str]:
    """The modules of ``pkg`` that ``path`` imports when it runs (function-local imports
    included, ``if TYPE_CHECKING:`` blocks left out unless ``typing``)."""
    tree = ast.parse(path.read_text())
    typing_only = (
        set()
        if typing
        else {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.ImportFrom):
            continue
        parts = (node.module or "").split(".")
        if node.level == 1:
            parts = ["llmos", pkg, *[p for p in parts if p]]
        if parts[:2] != ["llmos", pkg]:
            continue
        if len(parts) > 2:
            found.add(parts[2])
        else:
            found.update(a.name for a in node.names if (ROOT / pkg / f"{a.name}.py").exists())
    found.discard(path.stem)
    return found


@pytest.mark.parametrize("pkg", PACKAGES)
def test_no_import_cycle_inside_a_package(pkg: str) -> None:
    _no_cycle(pkg, typing=False)


@pytest.mark.parametrize(
    "pkg", ["actors", "transport", "kernel", "models", "agents", "cluster", "cli"]
)
def test_no_import_cycle_even_through_type_checking_imports(pkg: str) -> None:
    _no_cycle(pkg, typing=True)


def _no_cycle(pkg: str, *, typing: bool) -> None:
    graph = {p.stem: _runtime_imports(pkg, p, typing=typing) for p in (ROOT / pkg).glob("*.py")}
    graph = {m: deps for m, deps in graph.items() if not m.startswith("__")}

    def visit(module: str, path: list[str]) -> None:
        for dep in sorted(graph.get(module, ())):
            assert dep not in path, f"{pkg}: import cycle {' -> '.join([*path, dep])}"
            visit(dep, [*path, dep])

    for module in graph:
        visit(module, [module])


def test_the_drawn_error_tree_lists_every_error_class() -> None:
    import pkgutil

    import llmos.actors._errors as errors

    for pkg in ["actors", "transport", "kernel", "models", "agents", "cluster"]:
        module = importlib.import_module(f"llmos.{pkg}")
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith("__"):
                importlib.import_module(f"llmos.{pkg}.{info.name}")
    drawing = errors.__doc__ or ""
    pending = [errors.LlmosError]
    while pending:
        cls = pending.pop()
        drawn = re.search(rf"(^|[─ ]){cls.__name__}( |$)", drawing, re.M)
        assert drawn, f"{cls.__module__}.{cls.__name__} is not drawn in llmos.actors._errors"
        pending.extend(cls.__subclasses__())


def test_internals_are_low_level_not_top_level() -> None:
    import llmos.actors as actors
    import llmos.actors.lowlevel as lowlevel

    for name in ["Cell", "CellSupervisor", "Envelope", "Mailbox", "envelope", "AsyncReply"]:
        assert name not in actors.__all__ and name in lowlevel.__all__
    assert sorted(lowlevel.__all__) == sorted(n for n in dir(lowlevel) if not n.startswith("_"))
