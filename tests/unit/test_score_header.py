"""score-header: X-Spam-Score with the bare score, for Sieve's spamtest, with every style."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spambridge import pipeline, policy
from spambridge.cli import resolve
from spambridge.milter.messages import AddHeader, ChangeHeader
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Macros, Recipient, Transaction

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
STYLES = {
    "milter-spamc": ("spamd-command=REPORT",),
    "rspamd": ("spamd-command=REPORT",),
    "spamassassin": ("spamd-command=HEADERS",),
}
HEADERS_REPLY = b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=7.3 required=5.0\r\n\r\n"


def decide(style: str, *argv: str, score: float = 7.31) -> policy.Decision:
    config = resolve(["file=", f"header-style={style}", *STYLES[style], *argv])[1].config
    t = Transaction(sender=b"<a@example.net>")
    t.add_header(b"X-Spam-Score", b" -50")  # forged by the sender
    t.recipients.append(Recipient(b"<u@example.org>", (), b"local", b"", b"u"))
    command = STYLES[style][0].partition("=")[2]
    body = HEADERS_REPLY if command == "HEADERS" else b""
    v = Verdict(score >= 5, score, 5.0, body, command, "127.0.0.1:783", 0.1)
    d = policy.decide(config, t, v, macros=Macros(), now=NOW)
    return pipeline.settle(config, d, 0x1FF).decision


@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize(("score", "text"), [(7.31, b"7.31"), (-0.4, b"-0.40"), (1000, b"1000.00")])
def test_score_header_bare_score_with_every_style(style: str, score: float, text: bytes) -> None:
    d = decide(style, "+score-header", score=score)
    scores = [e.value for e in d.edits if isinstance(e, AddHeader) and e.name == b"X-Spam-Score"]
    assert scores == [b" " + text]
    assert ChangeHeader(1, b"X-Spam-Score", b"") in d.edits  # the sender's copy goes


def test_score_header_off_by_default() -> None:
    d = decide("milter-spamc")
    assert not [e for e in d.edits if isinstance(e, AddHeader) and e.name == b"X-Spam-Score"]
    assert ChangeHeader(1, b"X-Spam-Score", b"") not in d.edits  # not ours: left alone
