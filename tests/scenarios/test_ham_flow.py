"""Ham through the milter as Sendmail speaks it, at protocol versions 6, 4 and 2."""

from __future__ import annotations

import pytest

from spambridge.milter.flags import ProtocolFlags
from spambridge.milter.messages import AddHeader, ChangeHeader, Continue
from tests.support.controller import Running
from tests.support.scenario import (
    BODY,
    HEADERS,
    NOW_TEXT,
    SCANNED_BY,
    ClientFactory,
    open_session,
)
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(20)

NR_ALL = (
    ProtocolFlags.NR_CONNECT
    | ProtocolFlags.NR_HELO
    | ProtocolFlags.NR_MAIL
    | ProtocolFlags.NR_DATA
    | ProtocolFlags.NR_HEADER
    | ProtocolFlags.NR_END_OF_HEADERS
)


@pytest.fixture
def milter_args() -> list[str]:
    return ["spamd-command=CHECK"]


async def test_ham_flow_v6_adds_status_and_scanned_by(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    reply = await client.negotiate()
    assert reply.version == 6
    assert reply.protocol & NR_ALL == NR_ALL
    assert reply.protocol & ProtocolFlags.HEADER_LEADING_SPACE
    await open_session(client)

    result = await client.send_message(HEADERS, BODY, macros={"M": {"i": "4AbCdE1234"}})

    assert result.edits == [
        AddHeader(b"X-Scanned-By", SCANNED_BY),
        AddHeader(b"X-Spam-Status", b" NO, hits=0.00 required=5.00"),
    ]
    assert result.final == Continue()
    assert result.progress == 0
    assert len(spamd.requests) == 1


async def test_ham_flow_spamd_gets_exact_bytes(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    """Return-Path + Received (helo, client, qid) + headers as sent (leading space kept) + body."""
    client = await connect(milter.address)
    await open_session(client)
    headers = [*HEADERS, (b"X-Folded", b" first\n\tsecond"), (b"X-Tight", b"no-space")]

    await client.send_message(headers, BODY, macros={"M": {"i": "4AbCdE1234"}})

    assert spamd.requests[0].body == (
        b"Return-Path: <sender@example.net>\r\n"
        b"Received: from client.example.net (client.example.net [192.0.2.1])\r\n"
        b"\tby mx.example.org (spambridge) with ESMTP id 4AbCdE1234;\r\n"
        b"\t" + NOW_TEXT + b"\r\n"
        b"From: Sender <sender@example.net>\r\n"
        b"To: rcpt@example.org\r\n"
        b"Subject: hello\r\n"
        b"X-Folded: first\r\n\tsecond\r\n"
        b"X-Tight:no-space\r\n"
        b"\r\n" + BODY
    )


async def test_ham_flow_version2_mta_gets_continue_for_every_step(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    reply = await client.negotiate(2, 0x3F, 0x7F)
    assert reply.version == 2
    assert reply.protocol & ~ProtocolFlags(0x7F) == ProtocolFlags(0)
    assert int(reply.actions) & ~0x3F == 0

    assert await client.connect(b"client.example.net", b"4", b"192.0.2.1", 25) == Continue()
    assert await client.helo(b"client.example.net") == Continue()
    assert await client.mail(b"<sender@example.net>") == Continue()
    assert await client.rcpt(b"<rcpt@example.org>") == Continue()
    for name, value in HEADERS:
        # No HDR_LEADSPC at version 2: values arrive without their leading space.
        assert await client.header(name, value.lstrip()) == Continue()
    assert await client.end_of_headers() == Continue()
    assert await client.body(BODY) == Continue()
    result = await client.end_of_message()

    assert result.final == Continue()
    assert AddHeader(b"X-Spam-Status", b"NO, hits=0.00 required=5.00") in result.edits
    assert b"\r\nSubject: hello\r\n" in spamd.requests[0].body


async def test_ham_flow_version4_without_skip_replies_to_data(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    reply = await client.negotiate(4, 0x1FF, 0x3FF)
    assert reply.version == 4
    assert not reply.protocol & ProtocolFlags.SKIP
    assert reply.protocol & ~ProtocolFlags(0x3FF) == ProtocolFlags(0)

    assert await client.connect(b"client.example.net", b"4", b"192.0.2.1", 25) == Continue()
    assert await client.mail(b"<sender@example.net>") == Continue()
    assert await client.rcpt(b"<rcpt@example.org>") == Continue()
    assert await client.data() == Continue()
    for name, value in HEADERS:
        assert await client.header(name, value.lstrip()) == Continue()
    assert await client.end_of_headers() == Continue()
    assert await client.body(BODY) == Continue()
    eom = await client.end_of_message()

    assert eom.final == Continue()
    assert [e.name for e in eom.edits if isinstance(e, AddHeader)] == [
        b"X-Scanned-By",
        b"X-Spam-Status",
    ]
    assert len(spamd.requests) == 1


async def test_ham_flow_forged_status_is_deleted(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    headers = [*HEADERS, (b"X-Spam-Status", b" Yes, forged"), (b"X-Spam-Flag", b" YES")]

    result = await client.send_message(headers, BODY)

    assert result.edits == [
        ChangeHeader(1, b"X-Spam-Flag", b""),
        ChangeHeader(1, b"X-Spam-Status", b""),
        AddHeader(b"X-Scanned-By", SCANNED_BY),
        AddHeader(b"X-Spam-Status", b" NO, hits=0.00 required=5.00"),
    ]
    # spamd does not see the forged verdict headers: they are deleted from the delivery too.
    assert b"forged" not in spamd.requests[0].body
