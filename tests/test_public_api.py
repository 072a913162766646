"""Each package's ``__all__`` is exactly its public names, and every private module declares
``__all__``; imports point one way (cli -> agents -> models -> kernel -> transport -> actors)."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["actors", "transport", "kernel", "models", "agents", "cli"]
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
                        "cli -> agents -> models -> kernel -> transport -> actors"
                    )
