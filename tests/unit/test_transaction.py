from __future__ import annotations

from datetime import datetime, timedelta, timezone

from spambridge import transaction
from spambridge.milter.flags import Family, Stage
from spambridge.milter.negotiate import value_from_mta
from spambridge.services import MACROS
from spambridge.transaction import (
    Client,
    Macros,
    Transaction,
    header_line,
    message_for_spamd,
    received_header,
)

WHEN = datetime(2026, 11, 25, 10, 0, 0, tzinfo=timezone(timedelta(hours=1)))


def test_transaction_macros_scoped_like_libmilter() -> None:
    m = Macros()
    m.define(b"C", ((b"j", b"mx"), (b"{client_name}", b"c1")))
    m.define(b"M", ((b"i", b"Q1"), (b"{auth_authen}", b"bob")))
    m.define(b"R", ((b"{rcpt_addr}", b"a@x"),))
    assert m.get("client_name") == b"c1" and m.get("{i}") == b"Q1"
    m.enter(b"M")  # a new MAIL forgets RCPT macros but keeps its own (sent just before)
    assert m.get("rcpt_addr") == b"" and m.get("auth_authen") == b"bob"
    m.enter(b"C")
    assert m.get("i") == b"" and m.get("j") == b"mx"


def test_transaction_macros_latest_stage_wins_and_postfix_letters() -> None:
    m = Macros()
    m.define(b"M", ((b"i", b"EARLY"),))
    m.define(b"E", ((b"i", b"LATE"),))
    m.define(b"L", ((b"{x}", b"header-stage"),))
    assert m.get("i") == b"LATE" and m.get("x") == b"header-stage"


def test_transaction_body_limit_stops_buffering() -> None:
    t = Transaction()
    t.add_header(b"Subject", b" x")
    assert t.add_body(b"a" * 50, 100)
    assert not t.add_body(b"b" * 100, 100)
    assert len(t.body) + t.header_bytes == 100 and not t.body_complete
    assert t.header_bytes == len(b"Subject: x\r\n") + 2
    assert not t.add_body(b"c" * 10, 100)
    assert t.body_seen == 160 and t.size == t.header_bytes + 160


def test_transaction_header_line_exact_with_and_without_leading_space() -> None:
    # With HDR_LEADSPC the value arrives as it is; without, the session adds the space back.
    assert header_line(b"Subject", value_from_mta(b"  two spaces", True)) == (
        b"Subject:  two spaces\r\n"
    )
    assert header_line(b"Subject", value_from_mta(b"x", False)) == b"Subject: x\r\n"
    assert header_line(b"To", value_from_mta(b" a,\n\tb", True)) == b"To: a,\r\n\tb\r\n"
    assert header_line(b"X-A", value_from_mta(b"\tv", True)) == b"X-A:\tv\r\n"
    assert header_line(b"Subject", value_from_mta(b"hi\r\n there", False)) == (
        b"Subject: hi\r\n there\r\n"
    )


def test_transaction_header_bytes_equal_the_lines_spamd_gets() -> None:
    t = Transaction()
    t.add_header(b"Subject", b" hi\r\n there")  # CRLF inside a value counted once
    t.add_header(b"To", b" a,\n\tb")
    expected = header_line(b"Subject", b" hi\r\n there") + header_line(b"To", b" a,\n\tb")
    assert t.header_bytes == len(expected) + 2  # + the blank line


def test_transaction_received_ipv4_with_forged_and_auth() -> None:
    m = Macros()
    m.define(b"C", ((b"j", b"mx.example.org"), (b"{client_resolve}", b"FORGED")))
    m.define(b"M", ((b"i", b"4AB12"), (b"{auth_type}", b"PLAIN"), (b"{auth_authen}", b"bob")))
    c = Client(b"host.example.net", Family.INET, 25, b"192.0.2.7", b"helo.example.net")
    line = received_header(c, m, now=WHEN, authenticated=True)
    assert line == (
        b"Received: from helo.example.net (host.example.net [192.0.2.7] (may be forged))\r\n"
        b"\t(authenticated as bob mech=PLAIN)\r\n"
        b"\tby mx.example.org (spambridge) with ESMTPA id 4AB12;\r\n"
        b"\tWed, 25 Nov 2026 10:00:00 +0100"
    )


def test_transaction_received_ipv6_and_unknown_name() -> None:
    c = Client(b"[2001:db8::1]", Family.INET6, 25, b"2001:db8::1", b"h")
    line = received_header(c, Macros(), now=WHEN, authenticated=False)
    assert line.startswith(b"Received: from h ([IPv6:2001:db8::1])\r\n\tby localhost")
    assert b" with ESMTP;" in line


def test_transaction_message_for_spamd_is_exact() -> None:
    t = Transaction(sender=b"<a@example.net>")
    t.add_header(b"Subject", b" hello \xe9")
    t.add_header(b"X-Spam-Flag", b" YES")
    t.add_header(b"X-Folded", b" one\n\ttwo")
    t.add_body(b"line 1\r\n\r\n.line 3  \r\n", 0)
    c = Client(b"c", Family.INET, 1, b"192.0.2.1", b"c")
    out = message_for_spamd(
        t,
        c,
        Macros(),
        drop=frozenset({b"x-spam-flag"}),
        now=WHEN,
        authenticated=False,
    )
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"Return-Path: <a@example.net>\r\nReceived: from c (c [192.0.2.1])")
    assert head.endswith(b"\r\nSubject: hello \xe9\r\nX-Folded: one\r\n\ttwo")
    assert b"X-Spam-Flag" not in out
    assert body == b"line 1\r\n\r\n.line 3  \r\n"


def _spamd_copy(t: Transaction) -> bytes:
    c = Client(b"c", Family.INET, 1, b"192.0.2.1", b"c")
    return message_for_spamd(t, c, Macros(), drop=frozenset(), now=WHEN, authenticated=False)


def test_transaction_message_for_spamd_leaves_out_headers_the_mta_drops() -> None:
    """Postfix's message_drop_headers default; Sendmail drops the same four at delivery."""
    t = Transaction(sender=b"<a@example.net>")
    for name in (b"Return-Path", b"return-path", b"Content-Length", b"Bcc", b"Resent-Bcc"):
        t.add_header(name, b" <x@elsewhere.example>")
    t.add_header(b"Subject", b" kept")
    t.add_body(b"body\r\n", 0)
    head = _spamd_copy(t).partition(b"\r\n\r\n")[0].lower()
    assert head.count(b"return-path:") == 1
    assert head.startswith(b"return-path: <a@example.net>\r\nreceived: ")
    for name in (b"content-length:", b"\nbcc:", b"resent-bcc:", b"elsewhere"):
        assert head.find(name) < 0, name
    assert head.endswith(b"\r\nsubject: kept")


def test_transaction_message_for_spamd_envelope_cannot_inject_header_lines() -> None:
    t = Transaction(sender=b"<a@example.net>\r\nX-Injected: yes\r\n\x00")
    t.add_body(b"body\r\n", 0)
    head = _spamd_copy(t).partition(b"\r\n\r\n")[0]
    lines = head.split(b"\r\n")
    assert lines[0] == b"Return-Path: <a@example.net>X-Injected: yes"
    assert not [line for line in lines if line.startswith(b"X-Injected")]


def test_transaction_message_for_spamd_keeps_only_rfc5322_field_names() -> None:
    t = Transaction(sender=b"<>")
    t.add_header(b"Bad Name", b" space in the name")
    t.add_header(b"", b" empty name")
    t.add_header(b"X-8bit-\xe9", b" eight-bit name")
    t.add_header(b"X-Ctl\x01", b" control byte")
    t.add_header(b"X-Tilde~!#$%&'*+-/=?^_`{|}", b" every other printable is ftext")
    t.add_body(b"body\r\n", 0)
    head = _spamd_copy(t).partition(b"\r\n\r\n")[0]
    names = [line.partition(b":")[0] for line in head.split(b"\r\n") if line[:1] not in b" \t"]
    assert names == [b"Return-Path", b"Received", b"X-Tilde~!#$%&'*+-/=?^_`{|}"]
    assert head.startswith(b"Return-Path: <>\r\n")


def test_transaction_message_for_spamd_name_decisions_per_drop_set_and_bounded() -> None:
    t = Transaction(sender=b"<>")
    t.add_header(b"X-A", b" 1")
    c = Client(b"c", Family.INET, 1, b"192.0.2.1", b"c")

    def copy(drop: frozenset[bytes]) -> bytes:
        return message_for_spamd(t, c, Macros(), drop=drop, now=WHEN, authenticated=False)

    assert b"\r\nX-A: 1\r\n" not in copy(frozenset({b"x-a"}))
    assert b"\r\nX-A: 1\r\n" in copy(frozenset())
    many = Transaction(sender=b"<>")
    for i in range(10_000):
        many.add_header(b"X-%d" % i, b" v")
    out = message_for_spamd(many, c, Macros(), drop=frozenset(), now=WHEN, authenticated=False)
    assert out.count(b": v\r\n") == 10_000
    copy(frozenset())  # the next message starts a fresh table: memory stays bounded
    assert len(transaction._KEEP[frozenset()]) == 1


def test_transaction_received_envelope_values_cannot_inject_header_lines() -> None:
    m = Macros()
    m.define(b"M", ((b"i", b"Q1\r\nX-Injected: qid"), (b"{auth_authen}", b"bob\nX-Injected: a")))
    c = Client(b"c\r\nX-Injected: name", Family.INET, 1, b"192.0.2.1", b"h\r\nX-Injected: helo")
    line = received_header(c, m, now=WHEN, authenticated=True)
    assert all(not part.startswith(b"X-Injected") for part in line.split(b"\r\n")), line
    assert all(part[:1] == b"\t" for part in line.split(b"\r\n")[1:]), line


# Sendmail's own Received template (cf/m4/cfhead.m4, confRECEIVED_HEADER): after the by-line,
# when {tls_version} is set, `(version=${tls_version} cipher=${cipher} bits=${cipher_bits}
# verify=${verify})` on a line of its own; $r is ESMTPS (ESMTPSA when authenticated).
TLS_HELO = (
    (b"{tls_version}", b"TLSv1.3"),
    (b"{cipher}", b"TLS_AES_256_GCM_SHA384"),
    (b"{cipher_bits}", b"256"),
    (b"{verify}", b"NO"),
)


def test_transaction_received_carries_sendmails_starttls_details() -> None:
    m = Macros()
    m.define(b"C", ((b"j", b"mx.example.org"),))
    m.define(b"H", TLS_HELO)
    m.define(b"M", ((b"i", b"4AB12"),))
    c = Client(b"host.example.net", Family.INET, 25, b"192.0.2.7", b"helo.example.net")
    line = received_header(c, m, now=WHEN, authenticated=False)
    assert line == (
        b"Received: from helo.example.net (host.example.net [192.0.2.7])\r\n"
        b"\tby mx.example.org (spambridge) with ESMTPS id 4AB12\r\n"
        b"\t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 verify=NO);\r\n"
        b"\tWed, 25 Nov 2026 10:00:00 +0100"
    )


def test_transaction_received_starttls_and_auth_is_esmtpsa() -> None:
    m = Macros()
    m.define(b"H", TLS_HELO)
    m.define(b"M", ((b"{auth_type}", b"PLAIN"), (b"{auth_authen}", b"bob")))
    c = Client(b"h.example.net", Family.INET, 25, b"192.0.2.7", b"h.example.net")
    lines = received_header(c, m, now=WHEN, authenticated=True).split(b"\r\n")
    assert lines[2:] == [
        b"\tby localhost (spambridge) with ESMTPSA",
        b"\t(version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 verify=NO);",
        b"\tWed, 25 Nov 2026 10:00:00 +0100",
    ]


def test_transaction_received_without_starttls_has_no_tls_comment() -> None:
    m = Macros()
    m.define(b"H", ((b"{cipher}", b"ignored without a version"),))  # as Sendmail's $?{tls_version}
    c = Client(b"h", Family.INET, 25, b"192.0.2.7", b"h")
    line = received_header(c, m, now=WHEN, authenticated=False)
    assert b"with ESMTP;" in line and b"version=" not in line


def test_transaction_received_tls_values_cannot_inject_header_lines() -> None:
    m = Macros()
    m.define(b"H", ((b"{tls_version}", b"TLSv1.3\r\nX-Injected: v"), (b"{verify}", b"OK\nX: y")))
    c = Client(b"h", Family.INET, 25, b"192.0.2.7", b"h")
    line = received_header(c, m, now=WHEN, authenticated=False)
    assert all(part[:1] == b"\t" for part in line.split(b"\r\n")[1:]), line
    assert b"(version=TLSv1.3??X-Injected: v cipher= bits= verify=OK?X: y);" in line


def test_transaction_tls_macros_are_requested_at_helo() -> None:
    """Sendmail sends {tls_version}, {cipher}, {cipher_bits} at HELO by default (cfhead.m4
    confMILTER_MACROS_HELO) but not {verify}: spambridge asks for all four at negotiation."""
    helo = dict(MACROS)[Stage.HELO]
    assert {"{tls_version}", "{cipher}", "{cipher_bits}", "{verify}"} <= set(helo)
