"""Drift: every option in the table shows in --help, +help, the README table and the man page,
and the committed README table and man page are what scripts/gen_docs.py generates."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from spambridge.options import OPTIONS, help_text, option_file_text

ROOT = Path(__file__).resolve().parents[2]


def gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_table_text() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = text.index("<!-- options:start -->"), text.index("<!-- options:end -->")
    return text[start:end]


@pytest.mark.parametrize("name", [o.name for o in OPTIONS])
def test_docs_every_option_is_documented_everywhere(name: str) -> None:
    assert re.search(rf"^  --{re.escape(name)}\b", help_text(), re.M), "--help"
    assert re.search(rf"^[+-]?{re.escape(name)}\b", option_file_text(), re.M), "+help"
    assert f"| `{name}` |" in readme_table_text(), "README.md option table"
    man = (ROOT / "docs" / "spambridge.8").read_text(encoding="utf-8")
    roff_name = re.escape(name.replace("-", "\\-"))
    assert re.search(rf"^\.B[IR] \+?{roff_name}[= ]", man, re.M), "docs/spambridge.8"


def test_docs_committed_files_match_the_generator() -> None:
    module = gen_docs()
    for path, text in module.expected().items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.relative_to(ROOT)} is stale: run python scripts/gen_docs.py"
        )


def test_docs_generator_check_mode_passes_on_committed_files() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_docs_readme_markers_are_appended_when_missing() -> None:
    module = gen_docs()
    out = module.render_readme("# Title\n\nText.\n")
    assert out.startswith("# Title\n\nText.\n\n<!-- options:start -->\n")
    assert out.rstrip().endswith("<!-- options:end -->")
    assert "| `spamd-socket` |" in out
    assert module.render_readme(out) == out  # idempotent


def test_docs_man_page_is_valid_roff_with_every_section() -> None:
    page = gen_docs().man_page()
    assert page.startswith(".TH SPAMBRIDGE 8 ")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "EXIT STATUS"):
        assert f"\n.SH {section}\n" in page
    # no line may start with a quote or a stray dot-less control character sequence
    assert not any(line.startswith("'") for line in page.splitlines())
