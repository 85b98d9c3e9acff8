"""The shape of the house (issues 17 and 30): the packages sit in the layers written in
``docs/architecture.md`` and no module imports a higher layer; ``cli`` sits on top, nothing below it
imports it back, and the modules of ``src/crowdsafe`` import each other without cycles.

A back-edge or a cycle is how a change in one corner starts breaking another, so a newcomer who
adds one hears about it here, with the offending modules named, rather than from a tangle later.
The imports are read with ``ast`` (nothing is imported), at every depth of the module (function
bodies included: a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
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


def declared_layers(text: str) -> list[list[str]]:
    """The layer order under ``## Layers``: its first fenced block, one layer a line, highest first."""
    section = re.search(r"^## Layers\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    block = re.search(r"^```[^\n]*\n(.*?)^```", section.group(1), re.S | re.M) if section else None
    if block is None:
        raise ValueError("no '## Layers' section with a fenced block of layers")
    return [line.replace(",", " ").split() for line in block.group(1).splitlines() if line.strip()]


def package_of(module: str) -> str | None:
    """``crowdsafe.api.routes.zones`` -> ``api``; the top package itself has none."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def upward_imports(graph: Mapping[str, set[str]], layers: Sequence[Sequence[str]]) -> list[str]:
    """``module -> module`` for every import of a package in a higher layer than the importer's."""
    rank = {pkg: len(layers) - i for i, layer in enumerate(layers) for pkg in layer}  # higher: larger
    found = []
    for module, deps in graph.items():
        here = package_of(module)
        for dep in deps:
            there = package_of(dep)
            if here in rank and there in rank and rank[there] > rank[here]:
                found.append(f"{module} -> {dep}")
    return sorted(found)


def unplaced_packages(src: Path, layers: Sequence[Sequence[str]]) -> list[str]:
    """Packages under ``src/crowdsafe`` the layers do not name, or name more than once."""
    packages = sorted(p.name for p in (src / PACKAGE).iterdir() if (p / "__init__.py").is_file())
    named = [pkg for layer in layers for pkg in layer]
    return [p for p in packages if named.count(p) != 1] + sorted(set(named) - set(packages))


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = import_graph(SRC)
    assert f"{PACKAGE}.cli.main" in found and len(found) > 50, "src/crowdsafe not found or not parsed"
    return found


def test_nothing_outside_cli_imports_cli(graph: dict[str, set[str]]):
    """Runtime, api, store... raise typed errors and take callbacks; only cli turns them into exit
    codes and terminal output."""
    assert not cli_back_edges(graph), "modules outside cli import cli:\n" + "\n".join(cli_back_edges(graph))


def test_no_module_imports_a_module_of_a_higher_layer(graph: dict[str, set[str]]):
    """The order written in docs/architecture.md is the order the code keeps: a new package has to
    be placed in it, and an import that climbs back up fails naming both modules."""
    layers = declared_layers(ARCHITECTURE.read_text())
    assert len(layers) > 5 and layers[0] == ["cli"], f"layers read from {ARCHITECTURE}: {layers}"
    assert not unplaced_packages(SRC, layers), f"packages not placed exactly once in {ARCHITECTURE}'s " \
        f"layers: {unplaced_packages(SRC, layers)}"
    upward = upward_imports(graph, layers)
    assert not upward, "modules importing a higher layer:\n" + "\n".join(upward)


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


def test_the_layer_check_sees_an_upward_import_and_an_unplaced_package(tmp_path: Path):
    """Not vacuous: measuring that imports the counter (a lazy import too) is reported when the
    layers put counting above measuring; a package missing from the layers is named."""
    src = _write(tmp_path, {
        "__init__.py": "",
        "counting/__init__.py": "",
        "counting/counter.py": "from crowdsafe.measure.background import near_empty\n",
        "measure/__init__.py": "",
        "measure/background.py": "",
        "measure/zones.py": "def f():\n    from crowdsafe.counting.counter import DensityResult\n",
        "extra/__init__.py": "",
    })
    doc = "# A\n\n## Layers\n\n```text\ncounting\nmeasure, other\n```\n\n## Next\n```\nx\n```\n"
    layers = declared_layers(doc)
    assert layers == [["counting"], ["measure", "other"]]
    assert upward_imports(import_graph(src), layers) == [
        "crowdsafe.measure.zones -> crowdsafe.counting.counter"]
    assert unplaced_packages(src, layers) == ["extra", "other"]
    with pytest.raises(ValueError):
        declared_layers("## Other\n```\ncli\n```\n")


def calls_of(names: Iterable[str], src: Path) -> dict[str, list[str]]:
    """Where each named function is called in ``src`` (``module:line``), by name or as an attribute."""
    wanted = set(names)
    found: dict[str, list[str]] = {name: [] for name in wanted}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if name in wanted:
                    found[name].append(f"{module_name(path, src)}:{node.lineno}")
    return found


def test_the_site_is_compiled_in_one_place():
    """Line plans, tunings and regions are derived once, by the site plan (``runtime/plan.py``): a
    second caller is a second copy that a reload would have to keep in step."""
    calls = calls_of(("plan_lines", "site_tunings", "plan_region"), SRC)
    assert {name: len(where) for name, where in calls.items()} == \
        {"plan_lines": 1, "site_tunings": 1, "plan_region": 1}, calls


def test_the_call_check_sees_a_second_caller(tmp_path: Path):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "a.py").write_text("from x import plan_lines\nplan_lines(1)\n")
    (pkg / "b.py").write_text("import x\nx.plan_lines(2)\n")
    assert calls_of(("plan_lines",), tmp_path) == {"plan_lines": [f"{PACKAGE}.a:2", f"{PACKAGE}.b:2"]}
