"""Exact bytes for every header formatter."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from spambridge.headers import (
    MILTER_SPAMC_HEADERS,
    fold,
    forged_header_deletions,
    format_flag,
    format_level,
    format_report,
    format_scanned_by,
    format_status,
    sanitize_value,
    spamassassin_headers,
    spamassassin_subject,
)
from spambridge.milter.messages import ChangeHeader
from spambridge.subject import tag_subject

# ---------------------------------------------------------------- simple values


def test_headers_status_spam_gtube() -> None:
    assert format_status(True, 1000.0, 5.0) == b"YES, hits=1000.00 required=5.00"


def test_headers_status_ham_negative_score() -> None:
    assert format_status(False, -1.7, 5.0) == b"NO, hits=-1.70 required=5.00"


def test_headers_flag() -> None:
    assert (format_flag(True), format_flag(False)) == (b"YES", b"NO")


def test_headers_level_gtube_is_capped_at_982() -> None:
    level = format_level(1000.0)
    assert level == b"x" * 982
    # "X-Spam-Level: " + level + CRLF stays within 1000 octets.
    assert len(b"X-Spam-Level: " + level + b"\r\n") <= 1000


@pytest.mark.parametrize(
    ("score", "expected"),
    [(-3.2, b""), (0.0, b""), (0.99, b""), (1.0, b"x"), (5.9, b"xxxxx"), (981.5, b"x" * 981)],
)
def test_headers_level_counts_whole_points(score: float, expected: bytes) -> None:
    assert format_level(score) == expected


def test_headers_level_uses_first_byte_of_character() -> None:
    assert format_level(3.0, b"*") == b"***"
    assert format_level(3.0, b"ab") == b"aaa"
    assert format_level(3.0, b"") == b""
    assert format_level(float("nan")) == b""
    assert format_level(float("inf")) == b"x" * 982


def test_headers_scanned_by_matches_milter_spamc_shape() -> None:
    when = datetime(2008, 4, 22, 16, 4, 7, tzinfo=timezone(timedelta(hours=2)))
    value = format_scanned_by("0.1.0", b"mx.example.com", b"192.0.2.1", when)
    assert value == (
        b"spambridge/0.1.0 (mx.example.com [192.0.2.1]); Tue, 22 Apr 2008 16:04:07 +0200"
    )


def test_headers_scanned_by_missing_macros_and_utc() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    value = format_scanned_by("1.2", b"", None, when, product="milter-spamc")
    assert value == b"milter-spamc/1.2 (undefined [0.0.0.0]); Tue, 02 Jan 2024 03:04:05 +0000"


def test_headers_scanned_by_strips_line_breaks_from_macros() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    value = format_scanned_by("1", b"evil\r\nX-Spam-Flag: YES", b"1.2.3.4", when)
    assert b"\r" not in value and b"\n" not in value
    assert value.startswith(b"spambridge/1 (evil X-Spam-Flag: YES [1.2.3.4]); ")


# ---------------------------------------------------------------- report

GTUBE_REPORT = (
    b'Spam detection software, running on the system "vm",\r\n'
    b"has identified this incoming email as possible spam.   \r\n"
    b"\r\n"
    b"Content analysis details:   (1000.0 points, 5.0 required)\r\n"
    b"\r\n"
    b" pts rule name              description\r\n"
    b"---- ---------------------- --------------------------------------------------\r\n"
    b"1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\r\n"
    b"\r\n"
)


def test_headers_report_joins_lines_and_keeps_blank_lines_inside() -> None:
    assert format_report(GTUBE_REPORT) == (
        b'Spam detection software, running on the system "vm",\n'
        b"  | has identified this incoming email as possible spam.\n"
        b"  | \n"
        b"  | Content analysis details:   (1000.0 points, 5.0 required)\n"
        b"  | \n"
        b"  |  pts rule name              description\n"
        b"  | ---- ---------------------- --------------------------------------------------\n"
        b"  | 1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\n"
        b"  | "  # the report ends with a newline: milter-spamc's closing bar (tests/oracle)
    )


def test_headers_report_drops_leading_and_trailing_blank_lines_lf_input() -> None:
    # one closing bar stays, as milter-spamc writes it
    assert format_report(b"\n\n  \nfirst\n\nsecond  \n\n") == b"first\n  | \n  | second\n  | "
    assert format_report(b"first\nsecond") == b"first\n  | second"


def test_headers_report_empty() -> None:
    assert format_report(b"") == b""
    assert format_report(b"\r\n\r\n") == b""


def test_headers_report_removes_controls_and_8bit() -> None:
    assert format_report(b"a\x00b\x07c\rd\te\xe9") == b"abcd\te?"


def test_headers_report_long_line_is_hard_wrapped() -> None:
    words = b" ".join([b"word%03d" % n for n in range(200)])  # 1599 octets
    value = format_report(b"first\n" + words)
    lines = value.split(b"\n")
    assert lines[0] == b"first"
    assert lines[1].startswith(b"  | word000 ")
    assert all(len(line) <= 998 for line in lines)
    assert all(line[:1] in (b" ", b"\t") for line in lines[1:])
    # Breaking before a space means unfolding gives back the words.
    assert b"".join(lines[1:]) == b"  | " + words


def test_headers_report_first_line_counts_header_name() -> None:
    value = format_report(b"y" * 2000)
    first, *rest = value.split(b"\n")
    assert len(b"X-Spam-Report: " + first) == 998
    assert all(len(line) <= 998 and line[:1] == b" " for line in rest)


# ---------------------------------------------------------------- sanitize and fold


def test_headers_sanitize_folds_bare_lf_and_drops_empty_continuations() -> None:
    value = b"  first\r\nsecond\n\n \t \n\tthird\x00\r"
    assert sanitize_value(value, 7) == b"first\n second\n\tthird"


def test_headers_sanitize_replaces_8bit_unless_kept() -> None:
    assert sanitize_value("caf\u00e9".encode(), 7) == b"caf??"
    assert sanitize_value("caf\u00e9".encode(), 7, keep_8bit=True) == "caf\u00e9".encode()
    assert sanitize_value(b"=?UTF-8?B?Y2Fmw6k=?=", 7) == b"=?UTF-8?B?Y2Fmw6k=?="


def test_headers_sanitize_hard_folds_unbroken_text() -> None:
    value = sanitize_value(b"x" * 3000, len(b"X-Spam-Foo"))
    lines = value.split(b"\n")
    assert [len(line) for line in lines] == [986, 998, 998, 21]
    assert all(line.startswith(b" ") for line in lines[1:])


def test_headers_sanitize_squeezes_huge_whitespace_runs() -> None:
    assert sanitize_value(b"a" + b" " * 2000 + b"b", 4) == b"a b"


def test_headers_fold_spamassassin_status() -> None:
    value = (
        b"Yes, score=1000.0 required=5.0 tests=GTUBE,MISSING_DATE,MISSING_HEADERS,"
        b"MISSING_MID,MISSING_SUBJECT,NO_RECEIVED,NO_RELAYS autolearn=no "
        b"autolearn_force=no version=4.0.1"
    )
    assert fold(b"X-Spam-Status", value) == (
        b"Yes, score=1000.0 required=5.0 tests=GTUBE,MISSING_DATE,\n"
        b"\tMISSING_HEADERS,MISSING_MID,MISSING_SUBJECT,NO_RECEIVED,NO_RELAYS\n"
        b"\tautolearn=no autolearn_force=no version=4.0.1"
    )


def test_headers_fold_short_value_unchanged_and_refolds_existing() -> None:
    assert fold(b"X-A", b"one two") == b"one two"
    assert fold(b"X-A", b"one\r\n two\n\tthree") == b"one two three"


def test_headers_fold_long_word_is_kept_whole_under_998() -> None:
    word = b"w" * 200
    assert fold(b"X-A", b"a " + word + b" b") == b"a\n\t" + word + b"\n\tb"


# ---------------------------------------------------------------- subject


def test_headers_tag_subject_plain() -> None:
    assert tag_subject(b" Hello", b"[SPAM]") == b" [SPAM] Hello"
    assert tag_subject(b"Hello", b"[SPAM]") == b"[SPAM] Hello"


def test_headers_tag_subject_with_score_detail() -> None:
    assert tag_subject(b" Hi", b"[SPAM]", detail=b"(1000.00/5.00)") == (
        b" [SPAM] (1000.00/5.00) Hi"
    )


def test_headers_tag_subject_keeps_exactly_one_leading_space() -> None:
    assert tag_subject(b"   \tHello", b"[SPAM]") == b" [SPAM] Hello"


def test_headers_tag_subject_never_twice() -> None:
    assert tag_subject(b" [spam] Hello", b"[SPAM]") is None
    assert tag_subject(b"  [SPAM]Hello", b"[SPAM]") is None


def test_headers_tag_subject_missing_subject_and_empty_tag() -> None:
    assert tag_subject(None, b"[SPAM]") == b"[SPAM]"
    assert tag_subject(None, b"[SPAM]", detail=b"(6.00/5.00)") == b"[SPAM] (6.00/5.00)"
    assert tag_subject(b" Hello", b"") is None


def test_headers_tag_subject_before_encoded_word_is_separate_token() -> None:
    subject = b" =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?="
    assert tag_subject(subject, b"[SPAM]") == b" [SPAM] =?ISO-8859-1?Q?Gr=FC=DFe_aus_K=F6ln?="


def test_headers_tag_subject_folded_encoded_subject() -> None:
    subject = (
        b" =?UTF-8?B?0J/RgNC40LLQtdGCLCDRjdGC0L4g0L/RgNC+0LLQtdGA0LrQsCDRgdCy0Y/Qt9C4?=\n"
        b" =?UTF-8?B?INC4INC60L7QtNC40YDQvtCy0LrQuA==?="
    )
    tagged = tag_subject(subject, b"[SPAM]")
    assert tagged == b" [SPAM]" + subject
    # The encoded words are untouched and the folding stays LF + SP.
    assert tagged is not None and tagged.split(b"\n")[1] == subject.split(b"\n")[1]


def test_headers_tag_subject_non_ascii_tag_becomes_encoded_word() -> None:
    tag = "[SP\u00c4M]".encode()
    assert tag_subject(b" Hello", tag) == b" =?UTF-8?B?W1NQw4RNXQ==?= Hello"


def test_headers_tag_subject_non_ascii_tag_before_encoded_word_keeps_space() -> None:
    tag = "[SP\u00c4M]".encode()
    tagged = tag_subject(b" =?UTF-8?B?w6lsw6k=?=", tag)
    expected_word = b"=?UTF-8?B?" + base64.b64encode("[SP\u00c4M] ".encode()) + b"?="
    assert tagged == b" " + expected_word + b" =?UTF-8?B?w6lsw6k=?="
    # Tagging the result again changes nothing.
    assert tag_subject(tagged, tag) is None


def test_headers_tag_subject_detects_tag_inside_leading_encoded_word() -> None:
    assert tag_subject(b" =?utf-8?q?=5BSPAM=5D_Hello?=", b"[SPAM]") is None
    assert tag_subject(b" =?utf-8?b?W1NQQU1dIEhlbGxv?=", b"[spam]") is None


def test_headers_tag_subject_crlf_folding_becomes_lf() -> None:
    assert tag_subject(b" Hello\r\n world", b"[SPAM]") == b" [SPAM] Hello\n world"


def test_headers_tag_subject_long_first_line_moves_subject_to_continuation() -> None:
    subject = b" " + b"s" * 985
    tagged = tag_subject(subject, b"[SPAM]")
    assert tagged == b" [SPAM]\n " + b"s" * 985


# ---------------------------------------------------------------- forged headers


def test_headers_forged_deletions_mixed_case_and_repeats() -> None:
    headers = [
        (b"Received", b" from a"),
        (b"X-Spam-Flag", b" YES"),
        (b"x-spam-status", b" Yes, score=99"),
        (b"Subject", b" hi"),
        (b"X-SPAM-FLAG", b" YES"),
        (b"X-Spam-Level", b" ****"),
        (b"X-Spam-Checker-Version", b" SA"),
    ]
    assert forged_header_deletions(headers, MILTER_SPAMC_HEADERS) == [
        ChangeHeader(1, b"X-Spam-Level", b""),
        ChangeHeader(2, b"X-SPAM-FLAG", b""),
        ChangeHeader(1, b"x-spam-status", b""),
        ChangeHeader(1, b"X-Spam-Flag", b""),
    ]


def test_headers_forged_deletions_none_present() -> None:
    assert forged_header_deletions([(b"Subject", b" hi")], MILTER_SPAMC_HEADERS) == []


def test_headers_forged_deletions_spamassassin_prefix_spares_prev() -> None:
    headers = [
        (b"X-Spam-Checker-Version", b" x"),
        (b"X-Spam-Prev-Subject", b" old"),
        (b"X-Spammy", b" not ours"),
        (b"x-spam-checker-version", b" y"),
        (b"X-Spam-Foo", b" z"),
    ]
    result = forged_header_deletions(
        headers, prefixes=(b"X-Spam-",), exempt_prefixes=(b"X-Spam-Prev-",)
    )
    assert result == [
        ChangeHeader(1, b"X-Spam-Foo", b""),
        ChangeHeader(2, b"x-spam-checker-version", b""),
        ChangeHeader(1, b"X-Spam-Checker-Version", b""),
    ]


# ---------------------------------------------------------------- spamd HEADERS reply

HEADERS_REPLY = (
    b"Return-Path: <a@example.com>\r\n"
    b"X-Spam-Flag: YES\r\n"
    b"X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on vm\r\n"
    b"X-Spam-Level: **************************************************\r\n"
    b"X-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE,MISSING_DATE,\r\n"
    b"\tMISSING_MID,NO_RECEIVED autolearn=no autolearn_force=no version=4.0.1\r\n"
    b"X-Spam-Report: \r\n"
    b"\t*  1000 GTUBE BODY: Generic Test for Unsolicited Bulk Email\r\n"
    b"\t*  0.0 NO_RELAYS Informational: message was not relayed via SMTP\r\n"
    b"Subject: *****SPAM***** hello\r\n"
    b"X-Spam-Prev-Subject: hello\r\n"
    b"\r\n"
    b"X-Spam-Flag: NO\r\n"
)


def test_headers_spamassassin_headers_takes_only_x_spam() -> None:
    assert spamassassin_headers(HEADERS_REPLY) == [
        (b"X-Spam-Flag", b"YES"),
        (b"X-Spam-Checker-Version", b"SpamAssassin 4.0.1 (2024-03-25) on vm"),
        (b"X-Spam-Level", b"*" * 50),
        (
            b"X-Spam-Status",
            b"Yes, score=1000.0 required=5.0 tests=GTUBE,MISSING_DATE,\n"
            b"\tMISSING_MID,NO_RECEIVED autolearn=no autolearn_force=no version=4.0.1",
        ),
        (
            b"X-Spam-Report",
            b"\n\t*  1000 GTUBE BODY: Generic Test for Unsolicited Bulk Email\n"
            b"\t*  0.0 NO_RELAYS Informational: message was not relayed via SMTP",
        ),
    ]


def test_headers_spamassassin_headers_refolds_unfolded_long_value() -> None:
    rules = b",".join([b"RULE_%d" % n for n in range(20)])
    reply = b"X-Spam-Status: No, score=0.1 required=5.0 tests=" + rules + b"\nX-Spam-Level: \n\n"
    assert spamassassin_headers(reply) == [
        (
            b"X-Spam-Status",
            b"No, score=0.1 required=5.0 tests=RULE_0,RULE_1,RULE_2,RULE_3,\n"
            b"\tRULE_4,RULE_5,RULE_6,RULE_7,RULE_8,RULE_9,RULE_10,RULE_11,RULE_12,RULE_13,\n"
            b"\tRULE_14,RULE_15,RULE_16,RULE_17,RULE_18,RULE_19",
        ),
        (b"X-Spam-Level", b""),
    ]


def test_headers_spamassassin_subject() -> None:
    assert spamassassin_subject(HEADERS_REPLY) == b"*****SPAM***** hello"
    assert spamassassin_subject(b"Subject: hi\r\nX-Spam-Flag: NO\r\n\r\n") is None


def test_headers_spamassassin_subject_keeps_8bit() -> None:
    reply = "Subject: [SPAM] caf\u00e9\nX-Spam-Prev-Subject: caf\u00e9\n\n".encode()
    assert spamassassin_subject(reply) == "[SPAM] caf\u00e9".encode()
