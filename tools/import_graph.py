"""Print which packages of exporter/ import which, lowest layer first, and fail on a cycle.

``make arch`` runs it before import-linter, whose contracts (pyproject.toml) say which of these
arrows may exist. Modules directly in exporter/ (errors, db, …) count as packages of their own.
"""

from __future__ import annotations

import sys
from graphlib import CycleError, TopologicalSorter

import grimp

ROOTS = ("exporter", "handlers")


def package_of(module: str) -> str:
    """``exporter.tasks.runner`` → ``exporter.tasks``; ``handlers.account`` → ``handlers``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "exporter" and len(parts) > 1 else parts[0]


def package_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph(*ROOTS)
    imports: dict[str, set[str]] = {}
    for module in graph.modules:
        source = package_of(module)
        imports.setdefault(source, set())
        for imported in graph.find_modules_directly_imported_by(module):
            target = package_of(imported)
            if target != source:
                imports[source].add(target)
    return imports


def main() -> int:
    imports = package_graph()
    try:
        order = list(TopologicalSorter(imports).static_order())
    except CycleError as exc:
        print(f"cycle between packages: {' -> '.join(exc.args[1])}", file=sys.stderr)
        return 1
    width = max(map(len, order))
    for package in order:
        print(f"{package:<{width}}  imports  {', '.join(sorted(imports[package])) or '-'}")
    print(f"\n{len(order)} packages, no cycle: each imports only packages listed before it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
