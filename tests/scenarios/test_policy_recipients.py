"""Recipient options: mail-policy copy/redirect, low-spam split, mail-format, ham/archive
copies, X-Original-Recipient, max-untrusted, and the spamd User chosen per recipient."""

from __future__ import annotations

from pathlib import Path

import pytest

from spambridge.milter.flags import ActionFlags
from spambridge.milter.messages import AddRecipient, Continue, DeleteRecipient, ReplyCode
from tests.support.policy_messages import one_message, score_body

TWO = (b"<alice@example.org>", b"<bob@example.org>")
LOCAL = {"R": {"{rcpt_mailer}": "local", "{rcpt_host}": ""}}
REMOTE = {"R": {"{rcpt_mailer}": "esmtp", "{rcpt_host}": "mx.example.org"}}


async def test_mail_policy_copy_bccs_mail_spam() -> None:
    out = await one_message(["mail-policy=copy", "mail-spam=spam@example.org"], body=score_body(7))
    assert out.final == Continue()
    assert out.edits[-1] == AddRecipient(b"spam@example.org")
    assert not any(isinstance(e, DeleteRecipient) for e in out.edits)
    assert out.added(b"X-Original-Recipient") == []


async def test_mail_policy_copy_leaves_ham_alone() -> None:
    out = await one_message(["mail-policy=copy", "mail-spam=spam@example.org"], body=score_body(2))
    assert not any(isinstance(e, AddRecipient | DeleteRecipient) for e in out.edits)


async def test_mail_policy_redirect_replaces_recipients_and_records_originals() -> None:
    out = await one_message(
        ["mail-policy=redirect", "mail-spam=<spam@example.org>"],
        body=score_body(7),
        rcpts=TWO,
        macros=REMOTE,
    )
    assert out.added(b"X-Original-Recipient") == [b" alice@example.org", b" bob@example.org"]
    assert [e for e in out.edits if isinstance(e, AddRecipient | DeleteRecipient)] == [
        DeleteRecipient(b"alice@example.org"),
        DeleteRecipient(b"bob@example.org"),
        AddRecipient(b"spam@example.org"),
    ]
    assert out.final == Continue()


async def test_mail_policy_none_is_default_and_changes_no_recipient() -> None:
    out = await one_message(["mail-spam=spam@example.org"], body=score_body(9))
    assert not any(isinstance(e, AddRecipient | DeleteRecipient) for e in out.edits)


async def test_extra_low_spam_sends_low_scores_to_mail_low_spam() -> None:
    opts = [
        "mail-policy=copy",
        "mail-spam=spam@example.org",
        "mail-low-spam=maybe@example.org",
        "extra-low-spam=2",
    ]
    low = await one_message(opts, body=score_body(7))
    assert AddRecipient(b"maybe@example.org") in low.edits
    assert AddRecipient(b"spam@example.org") not in low.edits
    high = await one_message(opts, body=score_body(7.1))
    assert AddRecipient(b"spam@example.org") in high.edits
    assert AddRecipient(b"maybe@example.org") not in high.edits


async def test_mail_format_rewrites_each_local_recipient() -> None:
    out = await one_message(
        ["mail-policy=redirect", "mail-spam=spam@example.org", "mail-format=%L+bulk@%D"],
        body=score_body(7),
        rcpts=(b"<alice+news@example.org>", b"<bob@example.org>"),
        macros=LOCAL,
    )
    assert [e for e in out.edits if isinstance(e, AddRecipient | DeleteRecipient)] == [
        DeleteRecipient(b"alice+news@example.org"),
        AddRecipient(b"alice+bulk@example.org"),
        DeleteRecipient(b"bob@example.org"),
        AddRecipient(b"bob+bulk@example.org"),
    ]


async def test_mail_format_ignored_unless_all_recipients_local() -> None:
    out = await one_message(
        ["mail-policy=redirect", "mail-spam=spam@example.org", "mail-format=%L+bulk@%D"],
        body=score_body(7),
        macros=REMOTE,
    )
    assert [e for e in out.edits if isinstance(e, AddRecipient | DeleteRecipient)] == [
        DeleteRecipient(b"rcpt@example.org"),
        AddRecipient(b"spam@example.org"),
    ]


async def test_mail_ham_copies_clean_mail_only() -> None:
    ham = await one_message(["mail-ham=ham@example.org"], body=score_body(1))
    assert ham.edits[-1] == AddRecipient(b"ham@example.org")
    spam = await one_message(["mail-ham=ham@example.org"], body=score_body(8))
    assert AddRecipient(b"ham@example.org") not in spam.edits


async def test_mail_archive_copies_every_message() -> None:
    for score in (1, 8):
        out = await one_message(["mail-archive=archive@example.org"], body=score_body(score))
        assert AddRecipient(b"archive@example.org") in out.edits


async def test_recipient_edits_skipped_when_mta_withholds_the_actions() -> None:
    actions = 0x1FF & ~int(ActionFlags.ADD_RECIPIENT | ActionFlags.DELETE_RECIPIENT)
    out = await one_message(
        ["mail-policy=redirect", "mail-spam=spam@example.org"], body=score_body(8), actions=actions
    )
    assert out.final == Continue()
    assert not any(isinstance(e, AddRecipient | DeleteRecipient) for e in out.edits)
    assert out.added(b"X-Spam-Flag") == [b" YES"]


async def test_max_untrusted_answers_452_for_the_recipient_over_the_limit() -> None:
    out = await one_message(
        ["max-untrusted=1"],
        body=score_body(1),
        rcpts=(b"<a@example.org>", b"<b@example.org>"),
    )
    assert out.result.stage == "rcpt"
    assert out.final == ReplyCode(b"452 4.5.3 too many untrusted recipients")
    assert out.requests == []


async def test_max_untrusted_allows_up_to_the_limit() -> None:
    out = await one_message(
        ["max-untrusted=2"], body=score_body(1), rcpts=(b"<a@example.org>", b"<b@example.org>")
    )
    assert out.result.stage == "eom"
    assert out.final == Continue()


@pytest.mark.parametrize("limit", ["0", "-1"])
async def test_max_untrusted_zero_or_negative_is_off_as_in_milter_spamc(limit: str) -> None:
    out = await one_message(
        [f"max-untrusted={limit}"],
        body=score_body(1),
        rcpts=(b"<a@example.org>", b"<b@example.org>", b"<c@example.org>"),
    )
    assert out.result.stage == "eom"
    assert out.final == Continue()


async def test_max_untrusted_does_not_count_white_listed_recipients(tmp_path: Path) -> None:
    amap = tmp_path / "access"
    amap.write_text("To:a@example.org OK\n")
    out = await one_message(
        ["max-untrusted=1", f"access-db=text!{amap}"],
        body=score_body(1),
        rcpts=(b"<a@example.org>", b"<b@example.org>"),
    )
    assert out.result.stage == "eom"


async def test_spamd_user_sent_for_several_recipients() -> None:
    out = await one_message(["spamd-user=spamuser"], rcpts=TWO, macros=LOCAL)
    assert out.request.header(b"User") == b"spamuser"


async def test_per_recipient_local_user_is_the_spamd_user() -> None:
    out = await one_message(["spamd-user=spamuser"], rcpts=(b"<daemon@localhost>",), macros=LOCAL)
    assert out.request.header(b"User") == b"daemon"


async def test_unknown_local_user_falls_back_to_spamd_user() -> None:
    out = await one_message(
        ["spamd-user=spamuser"], rcpts=(b"<no-such-user-xyz@localhost>",), macros=LOCAL
    )
    assert out.request.header(b"User") == b"spamuser"


async def test_remote_recipient_uses_spamd_user() -> None:
    out = await one_message(
        ["spamd-user=spamuser"], rcpts=(b"<daemon@example.org>",), macros=REMOTE
    )
    assert out.request.header(b"User") == b"spamuser"


async def test_no_user_config_always_sends_spamd_user() -> None:
    out = await one_message(
        ["spamd-user=spamuser", "+no-user-config"], rcpts=(b"<daemon@localhost>",), macros=LOCAL
    )
    assert out.request.header(b"User") == b"spamuser"


async def test_is_gateway_uses_local_part_at_local_use_literal() -> None:
    macros = {"R": {"{rcpt_mailer}": "esmtp", "{rcpt_host}": "[10.1.2.3]"}}
    rcpts = (b"<carol@[10.1.2.3]>",)
    off = await one_message(["spamd-user=spamuser"], rcpts=rcpts, macros=macros)
    assert off.request.header(b"User") == b"spamuser"
    on = await one_message(["spamd-user=spamuser", "+is-gateway"], rcpts=rcpts, macros=macros)
    assert on.request.header(b"User") == b"carol"


async def test_no_spamd_user_sends_no_user_header() -> None:
    out = await one_message([], rcpts=TWO)
    assert out.request.header(b"User") is None


async def test_spamd_user_with_crlf_cannot_inject_spamd_headers() -> None:
    out = await one_message(["spamd-user=bob\r\nContent-length: 0"], rcpts=TWO)
    assert out.request.header(b"Content-length") != b"0"
    assert all(b"\r" not in v and b"\n" not in v for _, v in out.request.headers)
    assert out.added(b"X-Spam-Status") == [b" NO, hits=0.00 required=5.00"]


async def test_several_recipients_without_spamd_user_use_the_last_local_one() -> None:
    out = await one_message([], rcpts=(b"<daemon@localhost>", b"<nobody@localhost>"), macros=LOCAL)
    assert out.request.header(b"User") == b"nobody"
