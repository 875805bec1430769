"""Differential tests: the real milter-spamc 1.17.1 is the judge.

Every case drives both milters with the same conversation; the outcomes (replies at every
stage, end-of-message reply text, every header and recipient edit, the request given to spamd)
must be identical after the normalisations listed in tests/support/oracle_harness.py, unless
the case names a row of the README's "What changes, deliberately" table, in which case they
must differ.
"""

from __future__ import annotations

import pytest

from tests.support.oracle import PairFactory
from tests.support.oracle_cases import CASES, Case
from tests.support.oracle_harness import converse
from tests.support.spamd_recorder import SpamdRecorder
from tools.stack import REPO_ROOT

pytestmark = [pytest.mark.oracle, pytest.mark.timeout(180)]

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_oracle_case(case: Case, milter_pair: PairFactory, proxy: SpamdRecorder) -> None:
    pair = milter_pair(case.options)
    expected = await converse(pair.oracle_port, case.message, proxy)
    got = await converse(pair.bridge_port, case.message, proxy)
    differences = expected.differences(got)
    if case.documented is None:
        assert not differences, "\n".join(differences)
    else:
        assert f"| {case.documented} |" in README, f"README row {case.documented!r} missing"
        assert differences, f"documented difference {case.documented!r} no longer shows"
        print("\n".join(differences))  # shown with -rP
