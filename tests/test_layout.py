"""The layout tells the architecture: imports run one way, and only the store modules touch pyoxigraph's store.

api -> the flows (decisions, audit, models) -> the knowledge layer; nothing imports the API;
the knowledge layer imports no flow; and no module imports another that imports it back.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.paths import ROOT

FLOWS = ("service.decisions", "service.audit", "service.models")
TREE = [p for root in ("service", "embeddings") for p in sorted((ROOT / root).rglob("*.py"))]


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_of(p): p for p in TREE}


def top_imports(path: Path) -> set[str]:
    """The project modules a module imports at its top (``from a import b`` counts a.b when that is a module)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name in MODULES}


def every_import(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {name for name in found if name in MODULES}


def under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: top_imports(path) - {name} for name, path in MODULES.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                cycles.append(trail[trail.index(other) :] + [other])
            elif other not in state:
                visit(other, [*trail, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


# The console is a front like the API and the command line: it signs people in with the API's credentials.
@pytest.mark.parametrize(
    "name", sorted(n for n in MODULES if not under(n, "service.api", "service.cli", "service.console"))
)
def test_nothing_outside_the_api_and_the_command_line_imports_the_api(name):
    assert not {m for m in every_import(MODULES[name]) if under(m, "service.api")}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not under(n, "service.api", "service.console")))
def test_nothing_but_the_api_that_mounts_it_imports_the_console(name):
    assert not {m for m in every_import(MODULES[name]) if under(m, "service.console")}


@pytest.mark.parametrize("name", sorted(n for n in MODULES if under(n, "service.knowledge")))
def test_the_knowledge_layer_imports_no_flow(name):
    assert not {m for m in every_import(MODULES[name]) if under(m, *FLOWS, "service.runtime")}


def test_only_the_store_modules_reach_into_pyoxigraph_stores():
    reach = re.compile(r"(?<!args)\.oxigraph\b|getattr\([^)]*[\"'](url|oxigraph)[\"']")
    found = [
        f"{path.relative_to(ROOT)}:{i}"
        for root in ("service", "embeddings", "bench", "tests")
        for path in sorted((ROOT / root).rglob("*.py"))
        if "node_modules" not in path.parts and path.name != "test_layout.py"
        for i, line in enumerate(path.read_text().splitlines(), start=1)
        if reach.search(line) and not under(module_of(path), "service.knowledge")
    ]
    assert found == []
