"""The +help snapshot the unit tests read (tests/support/data) is the real binary's output."""

from __future__ import annotations

import pytest

from tools.stack import REPO_ROOT

pytestmark = pytest.mark.oracle

SNAPSHOT = REPO_ROOT / "tests" / "support" / "data" / "milter-spamc-1.17.1-help.txt"


def test_oracle_help_snapshot_is_the_binarys_output(oracle_help: str) -> None:
    assert SNAPSHOT.read_text(encoding="utf-8") == oracle_help
