"""spambridge's modules import one another without a cycle: every arrow points one way, so a
module can be read (and imported) knowing only what it imports. Module-level imports count;
imports under `if TYPE_CHECKING:` and inside functions do not, nor a module's import of the
package it belongs to (the package's __init__ re-exporting its modules is not a cycle)."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Set
from pathlib import Path

import spambridge

PACKAGE_DIR = Path(spambridge.__file__).parent


def module_names() -> dict[str, Path]:
    out = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(source: str, modules: Set[str]) -> set[str]:
    """The project modules `source` imports at module level (and the packages on the way)."""
    found: set[str] = set()
    for node in ast.parse(source).body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found & modules


def find_cycle(graph: Mapping[str, Set[str]]) -> list[str]:
    """One import cycle of `graph` (module -> modules it imports), or []."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if node.startswith(f"{nxt}."):
                continue  # its own package
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return []


def test_import_cycles_none_in_spambridge() -> None:
    modules = module_names()
    graph = {
        name: imports_of(path.read_text(), set(modules)) - {name} for name, path in modules.items()
    }
    assert len(graph) > 30
    assert find_cycle(graph) == []


def test_import_cycles_detector_finds_one() -> None:
    modules = {"p", "p.a", "p.b", "p.c"}
    assert imports_of("from p.b import x\nimport p.c\n", modules) == {"p", "p.b", "p.c"}
    assert imports_of("if TYPE_CHECKING:\n    from p.b import x\n", modules) == set()
    graph = {"p": {"p.a"}, "p.a": {"p", "p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}}
    assert find_cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]
    assert find_cycle({"p": {"p.a"}, "p.a": {"p", "p.b"}, "p.b": set()}) == []
