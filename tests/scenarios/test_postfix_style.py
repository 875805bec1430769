"""The milter conversation as Postfix holds it: per-header and per-chunk macros, Abort after
every message, big header packets, EOF anywhere, QuitNewConnection."""

from __future__ import annotations

import logging

import pytest

from spambridge.milter.codec import encode
from spambridge.milter.flags import ActionFlags, Family, ProtocolFlags
from spambridge.milter.messages import (
    AddHeader,
    BodyChunk,
    Command,
    Connect,
    Continue,
    EndOfHeaders,
    Header,
    Helo,
    MailFrom,
    Negotiate,
    RcptTo,
)
from tests.support.controller import Running
from tests.support.scenario import (
    BODY,
    HEADERS,
    SCANNED_BY,
    ClientFactory,
    messages,
    open_session,
)
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(20)

POSTFIX_MACROS = {
    "M": {"i": "4XyZ1", "{mail_addr}": "sender@example.net"},
    "R": {"{rcpt_addr}": "rcpt@example.org"},
    "L": {"i": "4XyZ1"},
    "N": {"i": "4XyZ1"},
    "B": {"i": "4XyZ1"},
    "E": {"i": "4XyZ1", "{msg_id}": "<1@example.net>"},
}
HAM_EDITS = [
    AddHeader(b"X-Scanned-By", SCANNED_BY),
    AddHeader(b"X-Spam-Status", b" NO, hits=0.00 required=5.00"),
]


@pytest.fixture
def milter_args() -> list[str]:
    return ["spamd-command=CHECK"]


async def test_postfix_style_macros_abort_and_several_messages(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)

    results = [
        await client.send_message(HEADERS, BODY, style="postfix", macros=POSTFIX_MACROS)
        for _ in range(3)
    ]

    assert [r.edits for r in results] == [HAM_EDITS] * 3
    assert [r.final for r in results] == [Continue()] * 3
    assert len(spamd.requests) == 3
    assert all(b" id 4XyZ1;" in r.body for r in spamd.requests)


async def test_postfix_style_header_over_64k_is_accepted(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    big = b" " + b"a" * 100_000
    assert len(encode(Header(b"X-Big", big))) > 65536 + 4

    result = await client.send_message([*HEADERS, (b"X-Big", big)], BODY, style="postfix")

    assert result.final == Continue()
    assert result.edits == HAM_EDITS
    assert b"\r\nX-Big:" + big + b"\r\n" in spamd.requests[0].body


@pytest.mark.parametrize("milter_args", [["spamd-command=CHECK", "max-frame-size=70000"]])
async def test_postfix_style_frame_over_limit_closes_only_that_connection(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    bystander = await connect(milter.address)
    await open_session(bystander)
    victim = await connect(milter.address)
    await open_session(victim)
    await victim.mail(b"<sender@example.net>")
    await victim.rcpt(b"<rcpt@example.org>")

    victim.send(Header(b"X-Big", b" " + b"a" * 80_000))

    assert await victim.at_eof()
    assert any("protocol error" in m and "70000" in m for m in messages(logs, logging.WARNING)), (
        messages(logs)
    )
    result = await bystander.send_message(HEADERS, BODY, style="postfix")
    assert result.edits == HAM_EDITS


async def test_postfix_style_65536_byte_body_chunks(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    body = b"x" * 65534 + b"\r\n" + b"y" * 70000 + b"\r\n"

    result = await client.send_message(HEADERS, body, style="postfix", chunk_size=65536)

    assert result.final == Continue()
    assert spamd.requests[0].body.endswith(b"\r\n\r\n" + body)


async def test_postfix_style_repeated_helo(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    await client.helo(b"second.example.net")

    result = await client.send_message(HEADERS, BODY, style="postfix")

    assert result.edits == HAM_EDITS
    assert spamd.requests[0].body.startswith(
        b"Return-Path: <sender@example.net>\r\nReceived: from second.example.net "
    )


STAGES: list[Command] = [
    Negotiate(6, ActionFlags(0x1FF), ProtocolFlags(0x1FFFFF)),
    Connect(b"client.example.net", Family.INET, 25, b"192.0.2.1"),
    Helo(b"client.example.net"),
    MailFrom(b"<sender@example.net>", ()),
    RcptTo(b"<rcpt@example.org>", ()),
    Header(b"Subject", b" hi"),
    EndOfHeaders(),
    BodyChunk(b"half a body"),
]


@pytest.mark.parametrize("stop", range(len(STAGES) + 1))
async def test_postfix_style_eof_at_any_stage_then_next_connection_served(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory, stop: int
) -> None:
    first = await connect(milter.address)
    for command in STAGES[:stop]:
        first.send(command)
    first.send_raw(b"\x00\x00")  # and half a length word
    await first.drain()
    await first.close()

    second = await connect(milter.address)
    await open_session(second)
    result = await second.send_message(HEADERS, BODY, style="postfix")

    assert result.edits == HAM_EDITS
    assert len(spamd.requests) == 1  # the half-sent message was never scanned


async def test_postfix_style_quit_new_connection_then_connect_again(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    await client.send_message(HEADERS, BODY, style="postfix", macros={"M": {"i": "QA"}})
    await client.quit_new_connection()

    await client.connect(
        b"other.example.net", b"4", b"198.51.100.7", 2525, macros={"j": "mx2.example.org"}
    )
    await client.helo(b"other.example.net")
    result = await client.send_message(HEADERS, BODY, style="postfix")

    assert result.final == Continue()
    # Macros of the first connection were cleared: no {if_name}, j of the new one only.
    assert result.edits[0] == AddHeader(
        b"X-Scanned-By",
        SCANNED_BY.replace(b"mx-in.example.org [192.0.2.25]", b"mx2.example.org [0.0.0.0]"),
    )
    assert spamd.requests[1].body.startswith(
        b"Return-Path: <sender@example.net>\r\n"
        b"Received: from other.example.net (other.example.net [198.51.100.7])\r\n"
        b"\tby mx2.example.org (spambridge) with ESMTP;\r\n"
    )
