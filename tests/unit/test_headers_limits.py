"""What we generate always fits the milter protocol: capped reports, no tag that would not
fit a packet, RFC 2047 encoded words of at most 75 characters, valid field names only."""

from __future__ import annotations

import base64
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spambridge import headers, policy, subject
from spambridge.milter.messages import AddHeader, ChangeHeader
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Macros, Transaction
from tests.support.config import make_config

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WORD = re.compile(rb"=\?([^?]+)\?B\?([^?]*)\?=")


def test_headers_report_over_the_limit_is_cut_at_a_line_boundary() -> None:
    rules = b"".join(b" 0.1 RULE_%04d  a rule that hit\n" % i for i in range(1400))
    value = headers.format_report(rules)
    assert len(value) <= headers.MAX_REPORT
    lines = value.split(b"\n")
    assert lines[-1].startswith(b"  | [truncated: ")
    assert all(line.endswith(b"a rule that hit") for line in lines[:-1])
    assert headers.format_report(rules[:2000]) == headers.format_report(rules[:2000])
    short = headers.format_report(b"1.0 A  x\n2.0 B  y\n")
    assert b"truncated" not in short


def test_headers_cap_lines_keeps_short_values_and_always_fits() -> None:
    assert headers.cap_lines(b"a\n b", 100) == b"a\n b"
    capped = headers.cap_lines(b"x" * 5000, 1000)  # no line boundary at all
    assert len(capped) <= 1000 and capped.endswith(b"bytes shown]")


def test_headers_spamassassin_values_are_capped() -> None:
    block = b"X-Spam-Report: " + b"\r\n\t* 0.1 RULE text".join(b"l%d" % i for i in range(9000))
    [(name, value)] = headers.spamassassin_headers(block + b"\r\n\r\n")
    assert name == b"X-Spam-Report" and len(value) <= headers.MAX_REPORT
    assert value.split(b"\n")[-1].startswith(b"\t[truncated")


@pytest.mark.parametrize(
    "name",
    [b"X-Spam-Bad Name", b"X-Spam-\x01Ctl", b"X-Spam-\xe4", b"X-Spam-\x7f"],
)
def test_headers_bad_field_names_from_spamd_are_dropped_and_logged(
    name: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spambridge")
    logging.getLogger("spambridge").propagate = True
    block = b"X-Spam-Flag: YES\r\n" + name + b": 1\r\nX-Spam-Level: **\r\n\r\n"
    found = headers.spamassassin_headers(block)
    assert [n for n, _ in found] == [b"X-Spam-Flag", b"X-Spam-Level"]
    assert any("bad name" in r.getMessage() for r in caplog.records)


def test_headers_subject_too_long_for_a_packet_is_not_tagged() -> None:
    assert subject.tag_subject(b" " + b"w " * 40000, b"[SPAM]") is None
    fits = subject.tag_subject(b" " + b"w " * 400, b"[SPAM]")
    assert fits is not None and fits.startswith(b" [SPAM] w")
    block = b"Subject: " + b"s " * 40000 + b"\r\nX-Spam-Prev-Subject: s\r\n\r\n"
    assert headers.spamassassin_subject(block) is None


def decoded_words(value: bytes) -> tuple[list[bytes], str]:
    words = WORD.findall(value)
    assert words, value
    text = "".join(base64.b64decode(payload).decode(charset.decode()) for charset, payload in words)
    return [m.group(0) for m in WORD.finditer(value)], text


def test_headers_long_utf8_tag_with_score_is_split_into_short_words() -> None:
    tag = "[Спам-подозрение Ŝpamo]".encode()
    value = subject.tag_subject(b" hello", tag, detail=b"(1000.00/5.00)")
    assert value is not None
    words, text = decoded_words(value)
    assert len(words) > 1
    assert all(len(word) <= 75 for word in words)
    assert text == "[Спам-подозрение Ŝpamo] (1000.00/5.00)"
    assert value.endswith(b"?= hello")


def test_headers_latin1_tag_is_an_iso_8859_1_encoded_word() -> None:
    value = subject.tag_subject(b" hello", b"[SP\xc4M]")
    assert value == b" =?ISO-8859-1?B?" + base64.b64encode(b"[SP\xc4M]") + b"?= hello"


def test_headers_latin1_subject_tag_from_an_option_file_tags_spam(tmp_path: Path) -> None:
    path = tmp_path / "spambridge.cf"
    path.write_bytes(b"subject-tag=[SP\xc4M]\nlevel-character=\xe4\n")
    config = make_config(option_file=path)
    txn = Transaction(sender=b"<a@example.net>")
    txn.add_header(b"Subject", b" hello")
    verdict = Verdict(True, 1000.0, 5.0, b"", "REPORT", "h", 0.0)
    decision = policy.decide(config, txn, verdict, macros=Macros(), now=NOW)
    level = next(
        e for e in decision.edits if isinstance(e, AddHeader) and e.name == b"X-Spam-Level"
    )
    assert level.value.strip() == b"\xe4" * 982
    subject = next(e for e in decision.edits if isinstance(e, ChangeHeader))
    assert subject.value == b" =?ISO-8859-1?B?" + base64.b64encode(b"[SP\xc4M]") + b"?= hello"
