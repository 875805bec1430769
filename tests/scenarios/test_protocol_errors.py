"""An MTA that breaks the protocol loses its own connection, with a clear log line; the
daemon keeps serving everyone else."""

from __future__ import annotations

import logging
import struct

import pytest

from spambridge.milter.messages import AddHeader, Continue
from tests.support.controller import Running
from tests.support.scenario import BODY, HEADERS, ClientFactory, messages, open_session
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(20)


def packet(code: bytes, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload) + 1) + code + payload


@pytest.fixture
def milter_args() -> list[str]:
    return ["spamd-command=CHECK"]


async def served(milter: Running, connect: ClientFactory) -> bool:
    client = await connect(milter.address)
    await open_session(client)
    result = await client.send_message(HEADERS, BODY)
    return result.final == Continue() and any(isinstance(e, AddHeader) for e in result.edits)


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        (packet(b"Z", b"junk"), "unknown code"),
        (struct.pack("!I", 0), "length 0"),
        (packet(b"C", b"host\x00X"), "CONNECT"),
        (packet(b"O", b"\x00\x00\x00\x06"), "OPTNEG"),
    ],
    ids=["unknown-code", "zero-length", "bad-family", "short-optneg"],
)
async def test_protocol_errors_close_connection_and_log(
    milter: Running,
    spamd: FakeSpamd,
    connect: ClientFactory,
    logs: pytest.LogCaptureFixture,
    raw: bytes,
    logged: str,
) -> None:
    bad = await connect(milter.address)
    if not raw.startswith(struct.pack("!I", 0)) and raw[4:5] != b"O":
        await bad.negotiate()
    bad.send_raw(raw)

    assert await bad.at_eof()
    warnings = messages(logs, logging.WARNING)
    assert any("protocol error" in m and logged.lower() in m.lower() for m in warnings), warnings
    assert await served(milter, connect)


@pytest.mark.parametrize("milter_args", [["+skip-body"]])
async def test_protocol_errors_unknown_code_mid_message_keeps_other_sessions(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    busy = await connect(milter.address)
    await open_session(busy)
    await busy.mail(b"<sender@example.net>")
    bad = await connect(milter.address)
    await open_session(bad)
    await bad.mail(b"<sender@example.net>")
    await bad.rcpt(b"<rcpt@example.org>")
    await bad.end_of_headers()
    # Body chunks are answered (SKIP negotiated): the reply proves the message has begun.
    assert await bad.body(b"part of a body\r\n") == Continue()

    bad.send_raw(packet(b"\xfe"))

    assert await bad.at_eof()
    assert any("during a message" in m for m in messages(logs)), messages(logs)
    await busy.rcpt(b"<rcpt@example.org>")
    for name, value in HEADERS:
        await busy.header(name, value)
    await busy.end_of_headers()
    await busy.body(BODY)
    result = await busy.end_of_message()
    assert result.final == Continue()
    assert len(spamd.requests) == 1


async def test_protocol_errors_end_of_message_without_mail_is_not_scanned(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    result = await client.end_of_message()
    assert result.final == Continue() and result.edits == []
    assert spamd.requests == []
