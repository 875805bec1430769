"""The MTA timeouts written in the shipped snippets and the numbers the start-up check uses
must agree, or the warning would check against the wrong budget."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spambridge import cli

ROOT = Path(__file__).resolve().parents[2]
UNITS = {"s": 1, "m": 60, "h": 3600}


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+)([smh]?)", text)
    assert m, text
    return int(m[1]) * UNITS[m[2] or "s"]


@pytest.mark.parametrize("name", ["spambridge.mc", "spambridge-failclosed.mc"])
def test_snippets_sendmail_timeouts_match_startup_check(name: str) -> None:
    text = (ROOT / "sendmail" / name).read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("INPUT_MAIL_FILTER(")]
    m = re.search(r"T=([^,']+)", line)
    assert m, line
    fields = dict(field.split(":", 1) for field in m[1].split(";"))
    assert seconds(fields["R"]) == cli.SNIPPET_SENDMAIL_READ
    assert seconds(fields["E"]) == cli.SNIPPET_SENDMAIL_END


@pytest.mark.parametrize("name", ["postfix-main.cf", "postfix-main-failclosed.cf"])
def test_snippets_postfix_content_timeout_matches_startup_check(name: str) -> None:
    text = (ROOT / "sendmail" / name).read_text()
    m = re.search(r"^milter_content_timeout\s*=\s*(\S+)", text, re.M)
    assert m and seconds(m[1]) == cli.SNIPPET_POSTFIX_CONTENT


def test_snippets_defaults_fit_the_shipped_budgets() -> None:
    _, resolved = cli.resolve(["file="])
    assert not resolved.warnings
    assert resolved.config.progress_interval * 2 <= cli.SNIPPET_SENDMAIL_READ
    end = resolved.config.spamd_timeouts.end
    assert end < min(cli.SNIPPET_SENDMAIL_END, cli.SNIPPET_POSTFIX_CONTENT)
