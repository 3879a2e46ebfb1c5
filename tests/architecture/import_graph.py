"""The import graph of a package, read from its source: every import counts.

Top-level, lazy (inside a function) and ``TYPE_CHECKING`` imports are all edges: a cycle
through any of them is still two modules that each need the other to be understood, and
a lazy import is only a cycle postponed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

Graph = dict[str, set[str]]


def module_files(package_dir: Path, package: str) -> dict[str, Path]:
    """Map every module of the package under ``package_dir`` to its file."""
    out: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join((package, *parts))] = path
    return out


def _targets(module: str, is_package: bool, node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    # ``from pkg import mod`` imports the module ``pkg.mod`` when there is one
    return [f"{target}.{alias.name}" for alias in node.names] + [target]


def import_graph(files: Mapping[str, Path]) -> Graph:
    """Return ``{module: modules of the package it imports}`` (any import, anywhere)."""
    graph: Graph = {}
    for module, path in files.items():
        edges: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _targets(module, is_package, node)
            hits = [n for n in names if n in files]
            if isinstance(node, ast.ImportFrom) and len(hits) > 1:
                hits = [h for h in hits if h != names[-1]]  # the submodules, not the package
            for name in hits:
                if name != module:
                    edges.add(name)
        graph[module] = edges
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """Return the import circles: strongly connected groups of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # iterative Tarjan: no recursion limit to hit
        nonlocal counter
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def upward(graph: Graph, lower: str, allowed: Iterable[str]) -> list[str]:
    """Return ``"a -> b"`` for every import from under ``lower`` to outside ``allowed``.

    A module is under a prefix when its name equals it or starts with it and a dot.
    """
    keep = tuple(allowed)

    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    return sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if under(a, lower)
        for b in targets
        if not any(under(b, p) for p in keep)
    )
