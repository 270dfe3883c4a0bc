"""The project's own modules import each other without cycles.

The graph is built from the source with ``ast``: every ``import`` and ``from ... import``, wherever it
stands (a function-level import hides a cycle from Python, not from this test). An edge goes to the
module named, or, for ``from package import name``, to the submodule ``package.name`` when there is
one. A strongly connected component of more than one module is a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("shared", "services", "hookstatus_client", "bench", "scripts")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _known(name: str, modules: Mapping[str, Path]) -> str | None:
    """``name`` if it is one of ours, else its longest prefix that is (``a.b.func`` -> ``a.b``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, node.module] if node.module else package)


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path, node)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        targets.update(t for t in (_known(n, modules) for n in names) if t is not None and t != module)
    return targets


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: every strongly connected component of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph.get(root, ())))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph.get(nxt, ()))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    return [c for c in strongly_connected(graph) if len(c) > 1]


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": [], "e": ["d"], "f": ["g"], "g": ["f"]}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["f", "g"]]
    assert cycles({"a": ["b"], "b": ["c"], "c": []}) == []


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    source = "def f():\n    from shared.providers import core\n    from . import base\n    import shared.keys\n"
    fake = tmp_path / "diagnosis.py"
    fake.write_text(source)
    found = imports_of("shared.providers.diagnosis", fake, project_modules())
    assert found == {"shared.providers.core", "shared.providers.base", "shared.keys"}


def test_no_import_cycles_among_the_projects_modules() -> None:
    modules = project_modules()
    assert len(modules) > 50, "the scan found too few modules to mean anything"
    graph = {name: sorted(imports_of(name, path, modules)) for name, path in modules.items()}
    found = cycles(graph)
    assert not found, "import cycles (each a group of modules that import each other):\n" + "\n".join(
        " <-> ".join(c) for c in found
    )
