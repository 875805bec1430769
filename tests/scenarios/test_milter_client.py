"""The MTA-side test client itself, against a minimal milter built on the codec."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from spambridge.milter.codec import CommandDecoder, encode
from spambridge.milter.flags import ActionFlags, ProtocolFlags
from spambridge.milter.messages import (
    Abort,
    AddHeader,
    BodyChunk,
    Command,
    Continue,
    EndOfMessage,
    Macro,
    Negotiate,
    Progress,
    Skip,
)
from spambridge.milter.negotiate import Negotiated, Wanted, negotiate
from tools.milter_client import MilterClient, Style


async def tiny_milter(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, want: Wanted, log: list[Command]
) -> None:
    decoder = CommandDecoder()
    agreed: Negotiated | None = None
    while data := await reader.read(65536):
        for cmd in decoder.feed(data):
            log.append(cmd)
            if isinstance(cmd, Negotiate):
                reply, agreed = negotiate(cmd, want)
                writer.write(encode(reply))
            elif isinstance(cmd, EndOfMessage):
                writer.write(
                    encode(Progress())
                    + encode(AddHeader(b"X-Spam-Status", b" No"))
                    + encode(Continue())
                )
            elif isinstance(cmd, BodyChunk) and agreed is not None and agreed.can_skip:
                writer.write(encode(Skip()))
            elif agreed is not None and agreed.expects_reply(cmd):
                writer.write(encode(Continue()))
        await writer.drain()
    writer.close()


@pytest.mark.parametrize("style", ["sendmail", "postfix"])
@pytest.mark.parametrize(
    "proto",
    [
        ProtocolFlags(0),
        ProtocolFlags.NR_HEADER | ProtocolFlags.NR_BODY | ProtocolFlags.NR_END_OF_HEADERS,
        ProtocolFlags.SKIP,
    ],
)
async def test_milter_client_follows_negotiated_flags(
    style: Style, proto: ProtocolFlags, tmp_path: Path
) -> None:
    log: list[Command] = []
    want = Wanted(ActionFlags.ADD_HEADERS, proto)
    path = str(tmp_path / "s")
    server = await asyncio.start_unix_server(lambda r, w: tiny_milter(r, w, want, log), path)
    async with server:
        client = await MilterClient.open(path, read_timeout=2)
        reply = await client.negotiate()
        assert reply.protocol == proto
        assert await client.connect(b"h", "4", b"192.0.2.4", port=25, macros={"j": "mx"}) == (
            Continue()
        )
        result = await client.send_message(
            [(b"Subject", b" hi"), (b"From", b" a@b")],
            b"x" * 150000,
            style=style,
            macros={"L": {"i": "Q1"}, "B": {"i": "Q1"}},
        )
        assert result.final == Continue() and result.progress == 1
        assert result.edits == [AddHeader(b"X-Spam-Status", b" No")]
        await client.quit()
        await client.close()
        await asyncio.sleep(0.05)
    bodies = [m for m in log if isinstance(m, BodyChunk)]
    assert len(bodies) == (1 if proto & ProtocolFlags.SKIP else 3)
    stages = [m.stage for m in log if isinstance(m, Macro)]
    if style == "postfix":
        assert b"L" in stages and b"B" in stages and isinstance(log[-2], Abort)
    else:
        assert b"L" not in stages
