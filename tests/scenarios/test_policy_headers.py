"""Header options, milter-spamc parity: which X-Spam-* headers are added, in which format,
the Subject tag, X-Scanned-By, and removal of forged X-Spam-* headers."""

from __future__ import annotations

import base64

from spambridge.milter.messages import AddHeader, ChangeHeader, Continue
from tests.support.policy_messages import (
    HAM_BODY,
    SPAM_BODY,
    headers_with,
    one_message,
    score_body,
    split_scanned_by,
)

REPORT_7 = (
    b' Spam detection software, running on the system "fake-spamd",\n'
    b"  | has identified this incoming email as possible spam.  The original\n"
    b"  | message has been attached to this so you can view it or label\n"
    b"  | similar future email.  If you have any questions, see\n"
    b"  | the administrator of that system for details.\n"
    b"  | \n"
    b"  | Content analysis details:   (7.0 points, 5.0 required)\n"
    b"  | \n"
    b"  |  pts rule name              description\n"
    b"  | ---- ---------------------- --------------------------------------------------\n"
    b"  |  7.0 FAKE_SCORE             Score forced by the X-Fake-Score test line\n"
    b"  | "  # spamd's report ends with a newline: milter-spamc's closing bar (tests/oracle)
)


async def test_spam_default_edits_are_milter_spamc_headers_and_tag() -> None:
    out = await one_message([], body=score_body(7))
    assert out.rest() == [
        AddHeader(b"X-Spam-Flag", b" YES"),
        AddHeader(b"X-Spam-Status", b" YES, hits=7.00 required=5.00"),
        AddHeader(b"X-Spam-Level", b" xxxxxxx"),
        AddHeader(b"X-Spam-Report", REPORT_7),
        ChangeHeader(1, b"Subject", b" [SPAM] hello"),
    ]
    assert out.final == Continue()
    assert out.request.method == "REPORT"


async def test_ham_default_edits_are_status_and_report() -> None:
    out = await one_message([], body=score_body(2))
    assert out.rest() == [
        AddHeader(b"X-Spam-Status", b" NO, hits=2.00 required=5.00"),
        AddHeader(b"X-Spam-Report", REPORT_7.replace(b"7.0", b"2.0")),
    ]
    assert out.final == Continue()


async def test_ham_with_check_gets_status_only() -> None:
    out = await one_message(["spamd-command=CHECK"], body=score_body(2))
    assert out.rest() == [AddHeader(b"X-Spam-Status", b" NO, hits=2.00 required=5.00")]


async def test_report_header_folding_keeps_blank_report_lines_as_bars() -> None:
    out = await one_message([], body=score_body(7))
    (report,) = out.added(b"X-Spam-Report")
    assert report == REPORT_7
    assert b"\r" not in report  # the MTA adds CR to LF folding
    assert all(line.startswith(b"  | ") for line in report.split(b"\n")[1:])


async def test_spamd_command_check_sends_check_and_adds_no_report() -> None:
    out = await one_message(["spamd-command=CHECK"], body=score_body(7))
    assert out.request.method == "CHECK"
    assert out.added(b"X-Spam-Report") == []
    assert out.added(b"X-Spam-Status") == [b" YES, hits=7.00 required=5.00"]


async def test_spamd_command_symbols_reports_the_rule_names() -> None:
    # as the real milter-spamc does (tests/oracle case spam-command-symbols)
    out = await one_message(["spamd-command=SYMBOLS"], body=score_body(7))
    assert out.request.method == "SYMBOLS"
    assert out.added(b"X-Spam-Report") == [b" FAKE_SCORE"]
    assert out.added(b"X-Spam-Flag") == [b" YES"]


async def test_spamd_command_report_ifspam_reports_spam_only() -> None:
    spam = await one_message(["spamd-command=REPORT_IFSPAM"], body=score_body(7))
    assert spam.request.method == "REPORT_IFSPAM"
    assert spam.added(b"X-Spam-Report") == [REPORT_7]
    ham = await one_message(["spamd-command=REPORT_IFSPAM"], body=score_body(1))
    assert ham.added(b"X-Spam-Report") == []
    assert ham.added(b"X-Spam-Status") == [b" NO, hits=1.00 required=5.00"]


async def test_spamd_command_headers_copies_spamassassin_headers() -> None:
    out = await one_message(
        ["spamd-command=HEADERS", "header-style=spamassassin"], body=score_body(7)
    )
    assert out.request.method == "HEADERS"
    names = [e.name for e in out.rest() if isinstance(e, AddHeader)]
    assert names == [b"X-Spam-Checker-Version", b"X-Spam-Flag", b"X-Spam-Level", b"X-Spam-Status"]
    assert out.added(b"X-Spam-Flag") == [b" YES"]
    assert out.added(b"X-Spam-Level") == [b" *******"]
    (status,) = out.added(b"X-Spam-Status")
    assert status.startswith(b" Yes, score=7.0 required=5.0 tests=FAKE_SCORE")
    assert b"\r" not in status and b"\n\t" in status  # folded with LF for the MTA
    # no milter-spamc subject tag in spamassassin style (SpamAssassin decides the subject)
    assert not any(isinstance(e, ChangeHeader) and e.name == b"Subject" for e in out.edits)


async def test_spamd_command_headers_removes_every_forged_x_spam_header() -> None:
    headers = headers_with(
        b" hi",
        (b"X-Spam-Checker-Version", b" forged"),
        (b"x-spam-prev-status", b" kept"),
        (b"X-Spam-Custom", b" forged"),
    )
    out = await one_message(
        ["spamd-command=HEADERS", "header-style=spamassassin"], headers, score_body(2)
    )
    deletions = [e for e in out.edits if isinstance(e, ChangeHeader)]
    assert deletions == [
        ChangeHeader(1, b"X-Spam-Custom", b""),
        ChangeHeader(1, b"X-Spam-Checker-Version", b""),
    ]


async def test_always_add_flag_adds_flag_no_to_ham() -> None:
    out = await one_message(["spamd-command=CHECK", "+always-add-flag"], body=score_body(2))
    assert out.rest() == [
        AddHeader(b"X-Spam-Flag", b" NO"),
        AddHeader(b"X-Spam-Status", b" NO, hits=2.00 required=5.00"),
    ]


async def test_always_add_level_adds_level_to_ham() -> None:
    out = await one_message(["spamd-command=CHECK", "+always-add-level"], body=score_body(3.9))
    assert out.rest() == [
        AddHeader(b"X-Spam-Status", b" NO, hits=3.90 required=5.00"),
        AddHeader(b"X-Spam-Level", b" xxx"),
    ]


async def test_always_add_level_with_score_below_one_adds_an_empty_level() -> None:
    # milter-spamc (and SpamAssassin) keep the header, with an empty value, below 1 point
    out = await one_message(["+always-add-level"], body=score_body(0.5))
    assert out.added(b"X-Spam-Level") == [b" "]
    out = await one_message([], body=score_body(0.5))
    assert out.added(b"X-Spam-Level") == []  # ham without always-add-level: no header


async def test_level_character_is_repeated() -> None:
    out = await one_message(["level-character=*"], body=score_body(6))
    assert out.added(b"X-Spam-Level") == [b" ******"]


async def test_level_character_empty_disables_level_header() -> None:
    out = await one_message(["level-character="], body=score_body(6))
    assert out.added(b"X-Spam-Level") == []
    assert out.added(b"X-Spam-Flag") == [b" YES"]


async def test_level_is_capped_so_the_line_fits_1000_octets() -> None:
    out = await one_message([], body=SPAM_BODY)
    (level,) = out.added(b"X-Spam-Level")
    assert level == b" " + b"x" * 982


async def test_scanned_by_names_if_name_and_if_addr() -> None:
    out = await one_message(
        [], body=HAM_BODY, connect_macros={"{if_name}": "mx1.example.org", "{if_addr}": "192.0.2.9"}
    )
    value, _ = split_scanned_by(out.edits)
    assert value.startswith(b" spambridge/")
    assert b" (mx1.example.org [192.0.2.9]); " in value


async def test_scanned_by_without_macros_says_undefined() -> None:
    out = await one_message([], body=HAM_BODY, connect_macros={})
    value, _ = split_scanned_by(out.edits)
    assert b" (undefined [0.0.0.0]); " in value


async def test_subject_tag_custom_text() -> None:
    out = await one_message(["subject-tag=***SPAM***"], body=score_body(8))
    assert ChangeHeader(1, b"Subject", b" ***SPAM*** hello") in out.edits


async def test_subject_tag_score_adds_score_and_threshold() -> None:
    out = await one_message(["+subject-tag-score"], body=score_body(8))
    assert ChangeHeader(1, b"Subject", b" [SPAM] (8.00/5.00) hello") in out.edits


async def test_subject_tag_not_added_twice() -> None:
    out = await one_message([], headers_with(b" [spam] hello again"), score_body(8))
    assert not any(isinstance(e, ChangeHeader) and e.name == b"Subject" for e in out.edits)
    assert out.added(b"Subject") == []


async def test_subject_tag_added_when_subject_missing() -> None:
    out = await one_message([], headers_with(None), score_body(8))
    assert out.added(b"Subject") == [b" [SPAM]"]


async def test_subject_tag_empty_disables_tagging() -> None:
    out = await one_message(["subject-tag="], body=score_body(8))
    assert not any(isinstance(e, ChangeHeader) for e in out.edits)
    assert out.added(b"Subject") == []


async def test_subject_tag_on_ham_is_never_added() -> None:
    out = await one_message([], body=score_body(4.9))
    assert not any(isinstance(e, ChangeHeader) for e in out.edits)


async def test_subject_tag_before_rfc2047_subject_keeps_encoded_word_intact() -> None:
    subject = b" =?UTF-8?B?" + base64.b64encode("Grüße".encode()) + b"?="
    out = await one_message([], headers_with(subject), score_body(8))
    assert ChangeHeader(1, b"Subject", b" [SPAM] " + subject[1:]) in out.edits


async def test_subject_tag_with_8bit_tag_is_encoded_word() -> None:
    out = await one_message(["subject-tag=[SPÄM]"], body=score_body(8))
    (change,) = [e for e in out.edits if isinstance(e, ChangeHeader)]
    encoded = b"=?UTF-8?B?" + base64.b64encode("[SPÄM]".encode()) + b"?="
    assert change == ChangeHeader(1, b"Subject", b" " + encoded + b" hello")


async def test_forged_headers_removed_in_any_case_and_folded_form() -> None:
    headers = headers_with(
        b" hi",
        (b"x-spam-STATUS", b" YES, hits=99.00 required=5.00"),
        (b"X-Spam-Report", b" forged\r\n\t  | more forged"),
        (b"X-SPAM-FLAG", b" YES"),
        (b"X-Spam-Status", b" second copy"),
        (b"X-Spam-Level", b" xxxxx"),
        (b"X-Spam-Checker-Version", b" not ours, kept"),
    )
    out = await one_message([], headers, score_body(1))
    deletions = [e for e in out.edits if isinstance(e, ChangeHeader)]
    assert deletions == [
        ChangeHeader(1, b"X-Spam-Level", b""),
        ChangeHeader(2, b"X-Spam-Status", b""),
        ChangeHeader(1, b"X-SPAM-FLAG", b""),
        ChangeHeader(1, b"X-Spam-Report", b""),
        ChangeHeader(1, b"x-spam-STATUS", b""),
    ]
    # deletions come before our own headers, so index 1 never hits a header we added
    first_add = next(i for i, e in enumerate(out.edits) if isinstance(e, AddHeader))
    assert all(out.edits.index(d) < first_add for d in deletions)
    # spamd never sees the forged verdict headers
    body = out.request.body
    assert b"hits=99.00" not in body and b"forged" not in body
    assert b"not ours, kept" in body


async def test_forged_headers_removed_even_when_not_scanned() -> None:
    headers = headers_with(b" hi", (b"X-Spam-Flag", b" NO"))
    out = await one_message([], headers, SPAM_BODY, macros={"M": {"{auth_authen}": "alice"}})
    assert out.edits == [ChangeHeader(1, b"X-Spam-Flag", b"")]
    assert out.requests == []
