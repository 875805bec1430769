"""Drift: docs/layout.md, the map of the repository, names every module and top-level
directory there is, so a new module cannot land without its line on that page."""

from __future__ import annotations

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
    for package in ("spambridge", "tools"):
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
