"""The shape of the house (issue 17): ``cli`` sits on top, nothing below it imports it back, and
the modules of ``src/crowdsafe`` import each other without cycles.

A back-edge or a cycle is how a change in one corner starts breaking another, so a newcomer who
adds one hears about it here, with the offending modules named, rather than from a tangle later.
The imports are read with ``ast`` (nothing is imported), at every depth of the module (function
bodies included: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "crowdsafe"


def module_name(path: Path, src: Path) -> str:
    """``src/crowdsafe/api/__init__.py`` -> ``crowdsafe.api``; ``.../api/app.py`` -> ``crowdsafe.api.app``."""
    return ".".join(path.relative_to(src).with_suffix("").parts).removesuffix(".__init__")


def imported_modules(tree: ast.AST, modules: Iterable[str]) -> set[str]:
    """The crowdsafe modules one module imports.

    ``from crowdsafe.x import y`` depends on ``crowdsafe.x`` (its ``__init__`` runs) and, where
    ``crowdsafe.x.y`` is a module, on that module too: so a package ``__init__`` re-exporting from a
    submodule that imports the package back is a cycle, as it is for Python.
    """
    known = set(modules)
    deps: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == PACKAGE:
            deps.add(node.module)
            deps |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
    return deps


def import_graph(src: Path) -> dict[str, set[str]]:
    """Module -> the crowdsafe modules it imports (only modules that exist, never itself)."""
    files = {module_name(p, src): p for p in sorted((src / PACKAGE).rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        deps = imported_modules(ast.parse(path.read_text()), files)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def cli_back_edges(graph: Mapping[str, set[str]]) -> list[str]:
    """``module -> crowdsafe.cli...`` for every module outside ``cli`` that imports ``cli``."""
    def in_cli(name: str) -> bool:
        return name == f"{PACKAGE}.cli" or name.startswith(f"{PACKAGE}.cli.")

    return sorted(f"{m} -> {d}" for m, deps in graph.items() if not in_cli(m) for d in deps if in_cli(d))


def import_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge a depth-first walk meets (empty exactly when the graph is acyclic)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = import_graph(SRC)
    assert f"{PACKAGE}.cli.main" in found and len(found) > 50, "src/crowdsafe not found or not parsed"
    return found


def test_nothing_outside_cli_imports_cli(graph: dict[str, set[str]]):
    """Runtime, api, store... raise typed errors and take callbacks; only cli turns them into exit
    codes and terminal output."""
    assert not cli_back_edges(graph), "modules outside cli import cli:\n" + "\n".join(cli_back_edges(graph))


def test_src_modules_import_each_other_without_cycles(graph: dict[str, set[str]]):
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _write(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_see_a_back_edge_and_cycles(tmp_path: Path):
    """The checks are not vacuous: a runtime module importing cli (even lazily, inside a function),
    two modules importing each other, and an ``__init__`` re-exporting from a submodule that
    imports the package back are all reported."""
    src = _write(tmp_path, {
        "__init__.py": "",
        "cli/__init__.py": "",
        "cli/errors.py": "def fail(): ...\n",
        "cli/main.py": "from crowdsafe.runtime.launch import go\n",
        "runtime/__init__.py": "",
        "runtime/launch.py": "def go():\n    from crowdsafe.cli.errors import fail\n    fail()\n",
        "forecast/__init__.py": "",
        "forecast/model.py": "from crowdsafe.forecast.ets import ets\n",
        "forecast/ets.py": "from crowdsafe.forecast.model import Error\n",
        "api/__init__.py": "from crowdsafe.api.app import create_app\n",
        "api/app.py": "from crowdsafe.api import queries\n",
        "api/queries.py": "",
    })
    graph = import_graph(src)
    assert cli_back_edges(graph) == ["crowdsafe.runtime.launch -> crowdsafe.cli.errors"]
    cycles = {frozenset(c) for c in import_cycles(graph)}
    assert frozenset({"crowdsafe.forecast.model", "crowdsafe.forecast.ets"}) in cycles
    assert frozenset({"crowdsafe.api", "crowdsafe.api.app"}) in cycles


def test_the_checks_pass_a_layered_tree(tmp_path: Path):
    """Importing downwards, and siblings by their full module name, is fine."""
    src = _write(tmp_path, {
        "__init__.py": "",
        "cli/__init__.py": "",
        "cli/main.py": "from crowdsafe.runtime.launch import go\nimport crowdsafe.api.queries as queries\n",
        "runtime/__init__.py": "",
        "runtime/launch.py": "from crowdsafe.forecast.errors import Error\n",
        "forecast/__init__.py": "from crowdsafe.forecast.errors import Error\n",
        "forecast/errors.py": "class Error(Exception): ...\n",
        "api/__init__.py": "from crowdsafe.api.app import create_app\n",
        "api/app.py": "import crowdsafe.api.queries as queries\n",
        "api/queries.py": "",
    })
    graph = import_graph(src)
    assert cli_back_edges(graph) == []
    assert import_cycles(graph) == []


def test_test_modules_share_code_only_through_support():
    """A test module imports helpers from ``tests.support`` (or gets fixtures from conftest), never
    from another test module or conftest, so each test file can move with its package or run alone."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                parts = name.split(".")
                if parts[0] == "tests" and "support" not in parts[1:2]:
                    offenders.append(f"{path.relative_to(tests)}: {name}")
    assert not offenders, "test modules importing tests outside tests.support:\n" + "\n".join(offenders)
