"""header-style=spamassassin spamd-command=PROCESS +spamd-rewrite-body: the message is
delivered as spamd returned it, body included; the body-change action is negotiated only
then, and an MTA that does not grant it gets SpamAssassin's headers only."""

from __future__ import annotations

import pytest

from spambridge import cli
from spambridge.milter.flags import ActionFlags
from spambridge.milter.messages import (
    AddHeader,
    ChangeHeader,
    Continue,
    InsertHeader,
    ReplaceBody,
)
from spambridge.rewrite import split_fields
from tests.support.controller import running_milter
from tests.support.policy_messages import SPAM_BODY, headers_with, one_message
from tools.fake_spamd import FakeSpamd
from tools.milter_client import MilterClient

pytestmark = pytest.mark.timeout(30)

PROCESS = [
    "header-style=spamassassin",
    "spamd-command=PROCESS",
    "+spamd-rewrite-body",
    "-add-scanned-by",
]
REPORT_SAFE_HEAD = (
    b"Received: from localhost by vm\r\n\twith SpamAssassin (version 4.0.1);\r\n"
    b"\tFri, 04 Dec 2026 19:13:27 +0000\r\n"
    b"From: sender@example.net\r\n"
    b"To: rcpt@example.org\r\n"
    b"Subject: hello\r\n"
    b"X-Spam-Flag: YES\r\n"
    b"X-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="----------=_6B1310D7.D60EA544"\r\n'
)
REPORT_SAFE_BODY = (
    b"This is a multi-part message in MIME format.\r\n\r\n"
    b"------------=_6B1310D7.D60EA544\r\nContent-Type: text/plain\r\n\r\nspam\r\n"
    b"------------=_6B1310D7.D60EA544--\r\n"
)


async def negotiated_actions(options: list[str]) -> ActionFlags:
    async with (
        FakeSpamd() as spamd,
        running_milter([f"spamd-socket={spamd.address}", *options]) as m,
    ):
        client = await MilterClient.open(m.address, read_timeout=10)
        try:
            reply = await client.negotiate(actions=0x1FF)
        finally:
            await client.close()
    return reply.actions


async def test_process_negotiates_body_change_only_when_asked() -> None:
    assert await negotiated_actions(PROCESS) & ActionFlags.CHANGE_BODY
    assert not await negotiated_actions([]) & ActionFlags.CHANGE_BODY
    assert (
        not await negotiated_actions(["header-style=spamassassin", "spamd-command=HEADERS"])
        & ActionFlags.CHANGE_BODY
    )


async def test_process_ham_headers_inserted_where_spamassassin_put_them() -> None:
    out = await one_message(PROCESS, headers_with(b" hello", (b"X-Spam-Flag", b" YES")))
    assert out.final == Continue()
    # the fake spamd writes its headers on top, above the Return-Path, so above the MTA's
    # own Received: inserted at the top, last first; the forged flag goes
    inserted = [e for e in out.edits if isinstance(e, InsertHeader)]
    assert [(e.index, e.name) for e in inserted] == [
        (0, b"X-Spam-Status"),
        (0, b"X-Spam-Level"),
        (0, b"X-Spam-Checker-Version"),
    ]
    assert ChangeHeader(1, b"X-Spam-Flag", b"") in out.edits
    assert not any(isinstance(e, (ReplaceBody, AddHeader)) for e in out.edits)


async def test_process_report_safe_replaces_the_body_last() -> None:
    async with FakeSpamd() as spamd:
        spamd.report_override = REPORT_SAFE_HEAD + b"\r\n" + REPORT_SAFE_BODY
        out = await one_message([*PROCESS[:3], "+add-scanned-by"], body=SPAM_BODY, spamd=spamd)
    assert isinstance(out.edits[-1], ReplaceBody)
    assert out.edits[-1].data == REPORT_SAFE_BODY
    assert isinstance(out.edits[-2], AddHeader) and out.edits[-2].name == b"X-Scanned-By"
    # report_safe rebuilt the header section from its first field on: ours are deleted and
    # SpamAssassin's appended in its order (below the MTA's own Received)
    fields, _ = split_fields(REPORT_SAFE_HEAD + b"\r\n")
    appended = [(e.name, e.value) for e in out.edits if isinstance(e, AddHeader)]
    assert appended[:-1] == fields
    deleted = [e.name for e in out.edits if isinstance(e, ChangeHeader) and not e.value]
    assert deleted == [b"Subject", b"To", b"From"]


async def test_process_mta_without_body_change_gets_headers_only() -> None:
    async with FakeSpamd() as spamd:
        spamd.report_override = REPORT_SAFE_HEAD + b"\r\n" + REPORT_SAFE_BODY
        out = await one_message(PROCESS, body=SPAM_BODY, spamd=spamd, actions=0x1FF & ~0x02)
    assert not any(isinstance(e, ReplaceBody) for e in out.edits)
    assert AddHeader(b"X-Spam-Flag", b" YES") in out.edits


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["header-style=spamassassin", "spamd-command=PROCESS"], "spamd-rewrite-body"),
        (["+spamd-rewrite-body"], "spamd-rewrite-body"),
        (["spamd-command=PROCESS", "+spamd-rewrite-body"], "header-style"),
    ],
)
def test_process_option_errors_name_the_option(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["file=", *args, "check"]) == 2
    assert f"error: {option}: " in capsys.readouterr().err


async def test_process_reply_that_is_no_rewritten_message_is_never_delivered() -> None:
    async with FakeSpamd() as spamd:
        spamd.report_override = b""  # e.g. a spamd that answered PROCESS with nothing
        out = await one_message(PROCESS, body=SPAM_BODY, spamd=spamd)
    assert out.final == Continue()
    assert not any(isinstance(e, ReplaceBody) for e in out.edits)
    assert not any(isinstance(e, ChangeHeader) and not e.value for e in out.edits)
