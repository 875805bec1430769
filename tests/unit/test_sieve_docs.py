"""The README's Sieve rules are the files in deploy/sieve/, and the e2e test runs each."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIEVE = ROOT / "deploy" / "sieve"


def test_sieve_docs_readme_quotes_every_shipped_rule() -> None:
    readme = (ROOT / "README.md").read_text()
    shipped = sorted(SIEVE.iterdir())
    assert shipped
    for path in shipped:
        assert path.read_text().rstrip("\n") in readme, path.name


def test_sieve_docs_every_shipped_rule_is_run_by_sieve_test() -> None:
    e2e = (ROOT / "tests" / "e2e" / "test_sieve.py").read_text()
    for path in sorted(SIEVE.iterdir()):
        assert f'"{path.name}"' in e2e, path.name
