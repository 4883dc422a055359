"""No import cycle between crowdfund's packages.

Each package (and top-level module) of `crowdfund/` is one node; an import anywhere in
its files — at the top, inside a function, or under `if TYPE_CHECKING:` — is an edge to
the package it names. `crowdfund/__init__.py` (create_app, which wires every package) is
left out. A cycle means two packages each need the other: the layering of STYLE.md
("each layer imports only the layers above it") is broken.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "crowdfund"


def _node(module: str) -> str | None:
    """`crowdfund.engine.service` -> "engine"; None for anything outside crowdfund or the root itself."""
    parts = module.split(".")
    if parts[0] != "crowdfund" or len(parts) < 2:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every module `path` imports, absolute, with the line it is imported on."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((module, node.lineno))
            # `from crowdfund import jobs` names a module, not a package attribute.
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def package_graph() -> dict[str, dict[str, list[str]]]:
    """node -> imported node -> ["file:line", …] for every import between two different nodes."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(ROOT.rglob("*.py")):
        if path == ROOT / "__init__.py":
            continue
        source = _node(_module_name(path))
        for module, line in _imported_modules(path):
            target = _node(module)
            if (
                target is None
                or target == source
                or not (ROOT / target).exists()
                and not (ROOT / f"{target}.py").exists()
            ):
                continue
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if where not in graph[source][target]:
                graph[source][target].append(where)
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _explain(component: list[str], graph: dict[str, dict[str, list[str]]]) -> str:
    lines = [" <-> ".join(component)]
    for a in component:
        for b in component:
            if b in graph.get(a, {}):
                lines.append(f"  {a} -> {b}: {', '.join(graph[a][b][:3])}")
    return "\n".join(lines)


def test_the_cycle_finder_finds_a_cycle_and_nothing_else():
    graph = {"a": {"b": ["x:1"]}, "b": {"c": ["x:2"]}, "c": {"a": ["x:3"]}, "d": {"a": ["x:4"]}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": ["x:1"]}, "b": {}}) == []


def test_the_graph_sees_function_level_imports():
    graph = package_graph()
    # The jobs registry imports the packages' jobs inside a function; create_app is left out.
    assert {"campaigns", "engine", "payments"} <= set(graph["jobs"])
    assert "crowdfund" not in graph


def test_web_imports_no_domain_package():
    """`web/` holds shared web helpers only: it may use the foundation modules, no package."""
    packages = {path.name for path in ROOT.iterdir() if (path / "__init__.py").exists()}
    assert "campaigns" in packages and "web" in packages
    assert not set(package_graph().get("web", {})) & packages, dict(package_graph()["web"])


def test_no_import_cycle_between_packages():
    graph = package_graph()
    found = cycles(graph)
    assert not found, "Import cycles between crowdfund's packages:\n" + "\n".join(
        _explain(component, graph) for component in found
    )
