"""header-style=rspamd: the headers rspamd's milter writes, judged by rspamd's own code.

Expected values are built the way rspamd builds them, quoted from its source:

- src/plugins/lua/milter_headers.lua, routine x-spamd-result:
  `string.format('default: %s [%.2f / %.2f]', ...)`, then per symbol
  `string.format('%s(%.2f)[%s]', s.name, s.score, table.concat(s.options or {}, ','))`,
  sorted with `math.abs(s1.score) > math.abs(s2.score)` (sort_by = 'score'), joined with
  '; ' and folded by `lua_util.fold_header(task, hname, value, ';')`, which folds after every
  stop character (rspamd_header_value_fold: "\\n\\t", the space after the ';' skipped).
- the same file, routine x-spamd-bar: `string.rep(positive, math.floor(score))` for
  score >= 1, `string.rep(negative, math.floor(score * -1))` for score <= -1, else neutral
  '/'; defaults positive '+', negative '-'.
- src/libserver/milter.c, METRIC_ACTION_ADD_HEADER: removes every incoming
  RSPAMD_MILTER_SPAM_HEADER ("X-Spam", src/libserver/milter.h) and sets it to "Yes".
- src/rspamd.h: `#define SPAM_SUBJECT "*** SPAM *** %s"`, applied with the original subject
  as %s (rspamd's functional test check_subject_rw: `string.format(tmpl, subj)`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from spambridge import pipeline, policy
from spambridge.cli import resolve
from spambridge.errors import ConfigError
from spambridge.milter.messages import AddHeader, ChangeHeader
from spambridge.options import Config
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Macros, Recipient, Transaction

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
# A SpamAssassin REPORT body as spamd sends it (the rules with their points)
REPORT = (
    b'Spam detection software, running on the system "mx",\r\n'
    b"has identified this incoming email as possible spam.\r\n\r\n"
    b"Content analysis details:   (1002.6 points, 5.0 required)\r\n\r\n"
    b" pts rule name              description\r\n"
    b"---- ---------------------- --------------------------------------------------\r\n"
    b"-0.0 NO_RELAYS              Informational: message was not relayed\r\n"
    b"1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\r\n"
    b" 2.5 MISSING_DATE           Missing Date: header\r\n"
    b"-0.1 DKIM_VALID             Message has at least one valid DKIM or DK signature\r\n"
    b"                            with a description wrapped onto a second line\r\n"
)
RULES = [("NO_RELAYS", -0.0), ("GTUBE", 1000.0), ("MISSING_DATE", 2.5), ("DKIM_VALID", -0.1)]


def cfg(*argv: str) -> Config:
    return resolve(["file=", "header-style=rspamd", "-add-scanned-by", *argv])[1].config


def txn(*headers: tuple[bytes, bytes]) -> Transaction:
    t = Transaction(sender=b"<a@example.net>")
    for name, value in headers:
        t.add_header(name, value)
    t.recipients.append(Recipient(b"<u@example.org>", (), b"local", b"", b"u"))
    return t


def verdict(spam: bool, score: float, body: bytes = REPORT) -> Verdict:
    return Verdict(spam, score, 5.0, body, "REPORT", "127.0.0.1:783", 0.1)


def decide(config: Config, t: Transaction, v: Verdict) -> policy.Decision:
    d = policy.decide(config, t, v, macros=Macros(), now=NOW)
    return pipeline.settle(config, d, 0x1FF).decision


def added(d: policy.Decision) -> dict[bytes, bytes]:
    return {e.name: e.value for e in d.edits if isinstance(e, AddHeader)}


def rspamd_result(is_reject: bool, score: float, required: float) -> bytes:
    """milter_headers.lua's x-spamd-result, written out in Python, then its fold."""
    verdict = "True" if is_reject else "False"
    buf = ["default: %s [%.2f / %.2f]" % (verdict, score, required)]  # noqa: UP031 (Lua)
    for name, points in sorted(RULES, key=lambda s: -abs(s[1])):
        buf.append("%s(%.2f)[%s]" % (name, points, ""))  # noqa: UP031 (as in the Lua)
    value = "; ".join(buf)
    return value.replace("; ", ";\n\t").encode()  # fold_header with stop chars ';'


def rspamd_bar(score: float) -> bytes:
    if score <= -1:
        return b"-" * math.floor(score * -1)
    if score >= 1:
        return b"+" * math.floor(score)
    return b"/"


def test_style_rspamd_spam_headers_as_rspamd_writes_them() -> None:
    h = added(decide(cfg(), txn((b"Subject", b" hi")), verdict(True, 12.6)))
    assert h[b"X-Spam"] == b" Yes"
    assert h[b"X-Spamd-Result"] == b" " + rspamd_result(True, 12.6, 5.0)
    assert h[b"X-Spamd-Bar"] == b" " + rspamd_bar(12.6) == b" " + b"+" * 12
    assert not any(name.startswith(b"X-Spam-") for name in h)  # no milter-spamc header


@pytest.mark.parametrize("score", [-3.7, -1.0, -0.99, 0.0, 0.5, 0.99, 1.0, 4.2])
def test_style_rspamd_ham_bar_and_result(score: float) -> None:
    h = added(decide(cfg(), txn(), verdict(False, score)))
    assert b"X-Spam" not in h  # rspamd adds it only at its "add header" action
    assert h[b"X-Spamd-Bar"] == b" " + rspamd_bar(score)
    assert h[b"X-Spamd-Result"] == b" " + rspamd_result(False, score, 5.0)


def test_style_rspamd_bar_is_capped_at_the_line_limit() -> None:
    h = added(decide(cfg(), txn(), verdict(True, 1000.0)))
    assert h[b"X-Spamd-Bar"] == b" " + b"+" * 982  # rspamd would write 1000 (over 998)


def test_style_rspamd_without_a_report_has_the_verdict_alone() -> None:
    v = Verdict(True, 7.0, 5.0, b"", "CHECK", "127.0.0.1:783", 0.1)
    h = added(decide(cfg("spamd-command=CHECK"), txn(), v))
    assert h[b"X-Spamd-Result"] == b" default: True [7.00 / 5.00]"


def test_style_rspamd_subject_rewrite_with_rspamd_default_template() -> None:
    template = "*** SPAM *** %s"  # SPAM_SUBJECT, src/rspamd.h
    d = decide(cfg(f"subject-tag={template}"), txn((b"Subject", b" cheap pills")), verdict(True, 9))
    (change,) = [e for e in d.edits if isinstance(e, ChangeHeader) and e.name == b"Subject"]
    assert change == ChangeHeader(1, b"Subject", b" " + (template % "cheap pills").encode())


def test_style_rspamd_deletes_incoming_rspamd_headers() -> None:
    t = txn((b"X-Spam", b" Yes"), (b"X-Spamd-Result", b" default: True"), (b"x-spamd-bar", b" +"))
    d = decide(cfg(), t, verdict(False, 0.0))
    deleted = {(e.name, e.index) for e in d.edits if isinstance(e, ChangeHeader) and not e.value}
    assert deleted == {(b"X-Spam", 1), (b"X-Spamd-Result", 1), (b"x-spamd-bar", 1)}


def test_style_rspamd_goes_with_report_or_check() -> None:
    for command in ("REPORT", "REPORT_IFSPAM", "CHECK"):
        assert cfg(f"spamd-command={command}").header_style == "rspamd"
    with pytest.raises(ConfigError, match="header-style"):
        cfg("spamd-command=HEADERS")
    with pytest.raises(ConfigError, match="header-style"):
        cfg("spamd-command=SYMBOLS")
