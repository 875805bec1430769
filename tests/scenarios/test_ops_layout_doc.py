"""Drift: docs/layout.md, the map of the repository, names every module and top-level
directory there is, so a new module cannot land without its line on that page."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "docs" / "layout.md"
# Top-level directories that are not part of the project's layout (caches, local state).
NOT_LAYOUT = {"var", "build", "dist"}


def layout_text() -> str:
    return LAYOUT.read_text(encoding="utf-8")


def test_layout_doc_names_every_module() -> None:
    text = layout_text()
    missing = []
    for package in ("spambridge", "tools", "tests/support"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__init__.py":
                # A package is named by its directory, e.g. `spambridge/milter/`.
                name = f"{path.parent.relative_to(ROOT).as_posix()}/"
            else:
                name = path.name
            if name not in text:
                missing.append(path.relative_to(ROOT).as_posix())
    assert not missing, f"docs/layout.md does not mention: {', '.join(missing)}"


def test_layout_doc_names_every_top_level_directory() -> None:
    text = layout_text()
    missing = [
        path.name
        for path in sorted(ROOT.iterdir())
        if path.is_dir()
        and not path.name.startswith((".", "_"))
        and not path.name.endswith(".egg-info")
        and path.name not in NOT_LAYOUT
        and f"{path.name}/" not in text
    ]
    assert not missing, f"docs/layout.md does not mention: {', '.join(missing)}"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_tests_import_shared_code_from_tests_support_only() -> None:
    """One home for test scaffolding: no test module, conftest or support module imports
    another tier's module (tests.scenarios.test_x, tests.e2e.conftest, ...); what two tests
    share lives in tests/support/."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for module in _imported_modules(path):
            if module.startswith("tests.") and not module.startswith("tests.support"):
                offenders.append(f"{path.relative_to(ROOT).as_posix()} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_conftest_files_hold_fixtures_and_hooks_only() -> None:
    """A conftest defines fixtures and pytest hooks; a plain function or constant another
    test needs belongs in tests/support/ (a conftest cannot be imported cleanly)."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("conftest.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                fixture = any(
                    "fixture" in ast.unparse(decorator) for decorator in node.decorator_list
                )
                if not (fixture or node.name.startswith(("pytest_", "_"))):
                    offenders.append(f"{path.relative_to(ROOT).as_posix()}: {node.name}")
            elif isinstance(node, ast.ClassDef):
                offenders.append(f"{path.relative_to(ROOT).as_posix()}: class {node.name}")
    assert not offenders, "\n".join(offenders)
