"""The layout's arrows, read from the source (ast), so that no import has to run.

Every import counts, at module level or inside a function: a lazy import is still a dependency
(it only moves the moment it is paid).

- the foundation (``bench.base``) imports nothing else of the project;
- the core API (``bench.api``) imports no command module (``bench.commands``);
- ``methods``, ``datasets_registry`` and ``results`` import from bench only ``bench.base``;
- no two modules import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bench", "methods", "datasets_registry", "results", "configs")


def _modules(root: Path) -> dict[str, Path]:
    found = {}
    for top in PACKAGES:
        for path in (root / top).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name ``path`` imports (``from a import b`` gives ``a`` and ``a.b``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the project's modules it imports (a name resolves to its longest module)."""
    modules = _modules(root)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        targets = {resolve(n) for n in _imported_names(path, module)
                   if n.split(".")[0] in PACKAGES}
        graph[module] = {t for t in targets if t and t != module}
    return graph


GRAPH = import_graph()


def _edges(source_prefix: str):
    return [(a, b) for a, targets in sorted(GRAPH.items())
            if a == source_prefix or a.startswith(source_prefix + ".") for b in sorted(targets)]


def test_the_graph_is_read():
    """Guards the test itself: known edges are found."""
    assert "bench.base.errors" in GRAPH["bench.base.registry"]
    assert "bench.base.registry" in GRAPH["methods"]


def test_the_foundation_imports_nothing_above_it():
    bad = [(a, b) for a, b in _edges("bench.base")
           if not (b == "bench" or b.startswith("bench.base"))]
    assert bad == []


def test_the_core_api_imports_no_command_module():
    bad = [(a, b) for a, b in _edges("bench.api") if b.startswith("bench.commands")]
    assert bad == []


@pytest.mark.parametrize("package", ["methods", "datasets_registry", "results"])
def test_plugins_and_results_import_only_the_foundation_of_bench(package):
    bad = [(a, b) for a, b in _edges(package)
           if b.split(".")[0] == "bench" and b != "bench" and not b.startswith("bench.base")]
    assert bad == []


def test_no_two_modules_import_each_other():
    cycles = sorted((a, b) for a, targets in GRAPH.items() for b in targets
                    if a < b and a in GRAPH.get(b, ()))
    assert cycles == []


def test_a_cycle_would_be_seen(tmp_path):
    """The cycle check sees a lazy import inside a function."""
    pkg = tmp_path / "bench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from bench.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from bench import a\n")
    graph = import_graph(tmp_path)
    assert "bench.b" in graph["bench.a"] and "bench.a" in graph["bench.b"]
