"""milter-spamc's rules where its code and the real binary (tests/oracle) are the judge.

Expected values come from libsnert (mail/parsePath.c formatPath(), util/option.c) and
milter-spamc.c 1.17.1 (filterRcpt's isLocal, filterBody's truncation).
"""

from __future__ import annotations

import pytest

from spambridge import recipients
from spambridge.options import Config
from spambridge.transaction import Recipient, Transaction
from tests.support.config import make_config


def cfg(*argv: str) -> Config:
    return make_config(*argv)


@pytest.mark.parametrize(
    ("fmt", "rcpt", "expected"),
    [
        ("%A", b"<alice+news@example.org>", "alice+news@example.org"),
        ("%D", b"<alice+news@example.org>", "example.org"),
        ("%L", b"<alice+news@example.org>", "alice"),
        ("%P", b"<alice+news@example.org>", "alice+news"),  # %L+%R
        ("%P", b"<alice@example.org>", "alice"),  # no detail: %L
        ("%R", b"<alice+news@example.org>", "news"),
        ("%S|%T", b"<alice@example.org>", "|"),  # no source route
        ("%S|%T", b"<@relay.example:alice@example.org>", "@relay.example|@relay.example:"),
        ("%L+spam@%D", b"<bob@example.org>", "bob+spam@example.org"),
        ("100%%", b"<bob@example.org>", "100%"),
        ("a%Xb", b"<bob@example.org>", "ab"),  # an unknown escape gives nothing
    ],
)
def test_compat_mail_format_escapes_as_libsnert_format_path(
    fmt: str, rcpt: bytes, expected: str
) -> None:
    assert recipients.format_recipient(fmt, rcpt, b"<sender@example.net>") == expected


@pytest.mark.parametrize(
    ("mailer", "host", "gateway", "local"),
    [
        (b"local", b"", False, True),  # {rcpt_host} empty: Sendmail's local delivery
        (b"esmtp", b"", False, True),
        (b"cyrusv2", b"mbox.example.org", False, True),  # the cyrus special case
        (b"local", b"mx.example.org", False, False),  # not milter-spamc's rule
        (b"esmtp", b"[10.1.2.3]", False, False),
        (b"esmtp", b"[10.1.2.3]", True, True),  # is-gateway
    ],
)
def test_compat_local_recipient_rule(
    mailer: bytes, host: bytes, gateway: bool, local: bool
) -> None:
    config = cfg("+is-gateway" if gateway else "-is-gateway")
    rcpt = Recipient(b"<nobody@example.org>", (), mailer, host, b"nobody")
    assert recipients.is_local(config, rcpt) is local


def test_compat_truncation_takes_whole_chunks_of_body_only() -> None:
    config = cfg("spamd-max-size=1")
    assert config.oversize_action == "truncate"
    limit = config.truncate_bytes
    assert limit == 1024  # 1*1024 - 1/64
    t = Transaction(sender=b"<a@example.net>")
    t.add_header(b"Subject", b" " + b"h" * 2000)  # headers are not counted
    assert t.add_body_chunk(b"x" * 1000, limit)
    assert t.add_body_chunk(b"y" * 1000, limit)  # 1000 < 1024: this chunk goes whole
    assert not t.add_body_chunk(b"z" * 10, limit)
    assert bytes(t.body) == b"x" * 1000 + b"y" * 1000
    assert not t.body_complete and t.body_seen == 2010
    assert cfg("spamd-max-size=64").truncate_bytes == 65535  # one libmilter body chunk
