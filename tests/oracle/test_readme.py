"""The README's migration section states the differential suite's figure and has a row for
every documented difference; this check needs no oracle, so it runs everywhere."""

from __future__ import annotations

from tests.support.oracle_cases import CASES
from tests.support.oracle_harness import NORMALISATIONS
from tools.stack import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def summary() -> str:
    identical = sum(c.documented is None for c in CASES)
    return (
        f"{identical}/{len(CASES)} cases identical, "
        f"the other {len(CASES) - identical} documented below"
    )


def test_oracle_readme_states_the_suites_figure() -> None:
    assert f"**{summary()}**" in README


def test_oracle_readme_has_a_row_for_every_documented_difference() -> None:
    rows = {c.documented for c in CASES if c.documented}
    missing = [row for row in rows if f"| {row} |" not in README]
    assert not missing


def test_oracle_normalisations_are_named_once() -> None:
    names = [name for name, _ in NORMALISATIONS]
    assert len(names) == len(set(names))
