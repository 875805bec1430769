"""Messages over spamd-max-size: skip (Skip reply, delivered unscanned) or truncate."""

from __future__ import annotations

import logging

import pytest

from spambridge.milter.flags import ProtocolFlags
from spambridge.milter.messages import ChangeHeader, Continue, Skip
from tests.support.controller import Running
from tests.support.scenario import HEADERS, NOW_TEXT, ClientFactory, messages, open_session
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(20)

CHUNK = b"z" * 510 + b"\r\n"  # 512 bytes


@pytest.mark.parametrize(
    "milter_args", [["spamd-max-size=1", "oversize-action=skip", "+skip-body"]]
)
async def test_oversize_skip_body_replies_skip_and_delivers_unscanned(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    await client.mail(b"<sender@example.net>", macros={"i": "QBIG"})
    await client.rcpt(b"<rcpt@example.org>")
    for name, value in [*HEADERS, (b"X-Spam-Flag", b" YES")]:
        await client.header(name, value)
    await client.end_of_headers()

    replies: list[object] = []
    while not replies or replies[-1] == Continue():  # an MTA stops sending at Skip
        replies.append(await client.body(CHUNK))
        assert len(replies) < 5
    result = await client.end_of_message()

    # The headers (~100 bytes) and one 512-byte chunk fit in 1 KB; the second chunk does not.
    assert replies == [Continue(), Skip()]
    assert result.edits == [ChangeHeader(1, b"X-Spam-Flag", b"")]  # forged flag still goes
    assert result.final == Continue()
    assert spamd.requests == []
    assert any("spamd-max-size" in m for m in messages(logs, logging.INFO)), messages(logs)


@pytest.mark.parametrize("milter_args", [["spamd-max-size=1", "oversize-action=skip"]])
async def test_oversize_skip_by_default_reads_the_body_without_replies_and_delivers_unscanned(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    """Without skip-body no body chunk is answered (NR_BODY): the MTA streams the whole body
    with no round trip, and the part over spamd-max-size is read and dropped."""
    client = await connect(milter.address)
    await open_session(client)
    assert client.negotiated is not None
    assert client.negotiated.protocol & ProtocolFlags.NR_BODY
    assert not client.negotiated.protocol & ProtocolFlags.SKIP
    await client.mail(b"<sender@example.net>", macros={"i": "QBIG"})
    await client.rcpt(b"<rcpt@example.org>")
    for name, value in [*HEADERS, (b"X-Spam-Flag", b" YES")]:
        await client.header(name, value)
    await client.end_of_headers()

    replies = [await client.body(CHUNK) for _ in range(200)]  # 100 KB into a 1 KB limit
    result = await client.end_of_message()

    assert replies == [None] * 200
    assert result.edits == [ChangeHeader(1, b"X-Spam-Flag", b"")]  # forged flag still goes
    assert result.final == Continue()
    assert spamd.requests == []
    assert any("spamd-max-size" in m for m in messages(logs, logging.INFO)), messages(logs)
    (session,) = milter.server.sessions.values()
    assert session.txn is None  # the message is done and nothing of it is kept


@pytest.mark.parametrize("milter_args", [["spamd-max-size=1", "oversize-action=skip"]])
async def test_oversize_skip_small_message_still_scanned(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, CHUNK)

    assert result.final == Continue()
    assert len(spamd.requests) == 1


TRUNCATE = ["spamd-max-size=1", "oversize-action=truncate", "spamd-command=CHECK"]


@pytest.mark.parametrize("milter_args", [TRUNCATE])
async def test_oversize_truncate_scans_whole_chunks_up_to_the_limit(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    """milter-spamc's rule (checked against the real binary in tests/oracle): body bytes only
    are counted, and whole body chunks are sent until 1 KB (1*1024 - 1/64) is reached."""
    client = await connect(milter.address)
    await open_session(client)
    body = CHUNK * 8

    result = await client.send_message(HEADERS, body, chunk_size=len(CHUNK))

    assert result.final == Continue()
    assert result.edits  # scanned and tagged
    sent = spamd.requests[0].body
    headers = b"".join(n + b":" + v + b"\r\n" for n, v in HEADERS) + b"\r\n"
    assert sent[sent.index(b"From: ") :] == headers + CHUNK * 2


@pytest.mark.parametrize("milter_args", [TRUNCATE])
async def test_oversize_truncate_sends_a_first_chunk_over_the_limit_whole(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    body = CHUNK * 8  # one 4 KB body chunk: over the limit, but it is the first

    await client.send_message(HEADERS, body)

    sent = spamd.requests[0].body
    assert sent.endswith(b"\r\n\r\n" + body)


@pytest.mark.parametrize("milter_args", [TRUNCATE])
async def test_oversize_truncate_sends_first_kilobyte(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    body = CHUNK * 8

    result = await client.send_message(
        HEADERS, body, macros={"M": {"i": "QT"}}, chunk_size=len(CHUNK)
    )

    assert result.final == Continue()
    trace = (
        b"Return-Path: <sender@example.net>\r\n"
        b"Received: from client.example.net (client.example.net [192.0.2.1])\r\n"
        b"\tby mx.example.org (spambridge) with ESMTP id QT;\r\n"
        b"\t" + NOW_TEXT + b"\r\n"
    )
    message = (
        b"From: Sender <sender@example.net>\r\nTo: rcpt@example.org\r\nSubject: hello\r\n"
        b"\r\n" + body
    )
    # Our own trace headers come on top of the headers and the first KB of the body.
    assert spamd.requests[0].body == trace + message[: message.index(b"\r\n\r\n") + 4 + 1024]
