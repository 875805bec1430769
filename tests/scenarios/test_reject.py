"""Spam over the reject/discard limits: the exact SMTP reply, no header edits."""

from __future__ import annotations

import pytest

from spambridge.milter.messages import Continue, Discard, ReplyCode
from tests.support.controller import Running
from tests.support.scenario import BODY, HEADERS, ClientFactory, open_session
from tools.fake_spamd import GTUBE, FakeSpamd

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("milter_args", [["extra-reject=0", "spamd-command=CHECK"]])
async def test_reject_spam_gets_550_with_score(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, GTUBE + b"\r\n")

    assert result.edits == []
    assert result.final == ReplyCode(
        b"550 5.7.1 message was identified as junk mail, score 1000.00/5.00"
    )


@pytest.mark.parametrize("milter_args", [["extra-reject=0"]])
async def test_reject_detailed_reply_lists_rules(milter: Running, connect: ClientFactory) -> None:
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, GTUBE + b"\r\n")

    assert result.edits == []
    assert result.final == ReplyCode(
        b"550-5.7.1 message was identified as junk mail, score 1000.00/5.00\r\n"
        b"550 5.7.1 1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email"
    )


@pytest.mark.parametrize("milter_args", [["extra-reject=0", "-smtp-detailed-reply"]])
async def test_reject_short_reply(milter: Running, connect: ClientFactory) -> None:
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, GTUBE + b"\r\n")

    assert result.final == ReplyCode(b"550 5.7.1 This looks like spam.")


@pytest.mark.parametrize("milter_args", [["extra-reject=0", "spamd-command=CHECK"]])
async def test_reject_ham_is_not_rejected(milter: Running, connect: ClientFactory) -> None:
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, BODY)

    assert result.final == Continue()
    assert result.edits  # tagged as ham


@pytest.mark.parametrize("milter_args", [["reject-score=7", "spamd-command=CHECK"]])
async def test_reject_score_below_limit_is_tagged(milter: Running, connect: ClientFactory) -> None:
    client = await connect(milter.address)
    await open_session(client)

    tagged = await client.send_message(HEADERS, b"X-Fake-Score: 6.5\r\n")
    rejected = await client.send_message(HEADERS, b"X-Fake-Score: 7\r\n")

    assert tagged.final == Continue()
    assert rejected.final == ReplyCode(
        b"550 5.7.1 message was identified as junk mail, score 7.00/5.00"
    )
    assert rejected.edits == []


@pytest.mark.parametrize("milter_args", [["extra-discard=0"]])
async def test_reject_discard_spam(milter: Running, connect: ClientFactory) -> None:
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, GTUBE + b"\r\n")

    assert result == type(result)(edits=[], final=Discard(), progress=0)


@pytest.mark.parametrize("milter_args", [["extra-reject=0", "spamd-command=CHECK"]])
async def test_reject_postfix_style_then_next_message(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    """After a reject Postfix sends Abort; the next message on the connection is scanned."""
    client = await connect(milter.address)
    await open_session(client)

    rejected = await client.send_message(HEADERS, GTUBE + b"\r\n", style="postfix")
    ham = await client.send_message(HEADERS, BODY, style="postfix")

    assert isinstance(rejected.final, ReplyCode)
    assert rejected.final.text.startswith(b"550 5.7.1 ")
    assert ham.final == Continue()
    assert len(spamd.requests) == 2
