"""embeddings/ is a pure ML library: of the service it imports only the vocabulary, and never lazily from it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.paths import ROOT

LIBRARY = sorted((ROOT / "embeddings").glob("*.py"))
SERVICE = sorted((ROOT / "service").rglob("*.py"))


def imported(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import of a module with the dotted names it imports (``from a.b import c`` -> ``a.b.c``)."""
    found: list[tuple[ast.Import | ast.ImportFrom, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def nested_imports(tree: ast.Module) -> set[ast.AST]:
    """The imports that are not at the top of the module (inside a function, a class or a block)."""
    top = {node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)}
    return {node for node, _ in imported(tree) if node not in top}


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_the_library_imports_only_the_vocabulary_of_the_service(path: Path):
    names = {name for _, name in imported(ast.parse(path.read_text()))}
    assert {name for name in names if name.split(".")[0] == "service"} <= {"service.knowledge.vocab"}


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_the_library_imports_the_service_at_the_top_of_a_module(path: Path):
    tree = ast.parse(path.read_text())
    lazy = [name for node, name in imported(tree) if node in nested_imports(tree) and name.startswith("service")]
    assert lazy == []


def test_the_service_imports_the_library_at_the_top_of_a_module():
    lazy = []
    for path in SERVICE:
        tree = ast.parse(path.read_text())
        nested = nested_imports(tree)
        lazy += [
            f"{path.relative_to(ROOT)}: {name}"
            for node, name in imported(tree)
            if node in nested and name.split(".")[0] == "embeddings"
        ]
    assert lazy == []
