"""An MTA-side milter client for tests and the load generator, built on the codec.

It speaks like Sendmail (style="sendmail") or like Postfix (style="postfix": macro packets
with the letters L and B before each header and body chunk, and an Abort after every
message). It honours the NR/NO flags the milter negotiated, and every read has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from spambridge.errors import RemoteProtocolError
from spambridge.milter.codec import ReplyDecoder, encode
from spambridge.milter.flags import ActionFlags, Family, ProtocolFlags
from spambridge.milter.messages import (
    FINAL_REPLIES,
    Abort,
    BodyChunk,
    Command,
    Connect,
    Continue,
    Data,
    EndOfHeaders,
    EndOfMessage,
    FinalReply,
    Header,
    Helo,
    Macro,
    MailFrom,
    Negotiate,
    Progress,
    Quit,
    QuitNewConnection,
    RcptTo,
    Reply,
    Skip,
    Unknown,
)

Address = tuple[str, int] | str
Macros = Mapping[str, str] | Mapping[bytes, bytes] | None
Style = Literal["sendmail", "postfix"]
StepReply = FinalReply | Skip | None

# For each replied step: the flag that says "don't send it" and the one that says "no reply".
_STEP_FLAGS: dict[type, tuple[ProtocolFlags, ProtocolFlags | None]] = {
    Connect: (ProtocolFlags.NO_CONNECT, ProtocolFlags.NR_CONNECT),
    Helo: (ProtocolFlags.NO_HELO, ProtocolFlags.NR_HELO),
    MailFrom: (ProtocolFlags.NO_MAIL, ProtocolFlags.NR_MAIL),
    RcptTo: (ProtocolFlags.NO_RCPT, ProtocolFlags.NR_RCPT),
    Data: (ProtocolFlags.NO_DATA, ProtocolFlags.NR_DATA),
    Unknown: (ProtocolFlags.NO_UNKNOWN, ProtocolFlags.NR_UNKNOWN),
    Header: (ProtocolFlags.NO_HEADERS, ProtocolFlags.NR_HEADER),
    EndOfHeaders: (ProtocolFlags.NO_END_OF_HEADERS, ProtocolFlags.NR_END_OF_HEADERS),
    BodyChunk: (ProtocolFlags.NO_BODY, ProtocolFlags.NR_BODY),
}
_MACRO_LETTER: dict[type, bytes] = {
    Connect: b"C",
    Helo: b"H",
    MailFrom: b"M",
    RcptTo: b"R",
    Data: b"T",
    EndOfHeaders: b"N",
    EndOfMessage: b"E",
    Unknown: b"U",
    Header: b"L",  # Postfix only
    BodyChunk: b"B",  # Postfix only
}


@dataclass(slots=True)
class EomResult:
    """What the milter answered at end of message (or at the step that ended the message)."""

    edits: list[Reply] = field(default_factory=list)
    final: FinalReply = field(default_factory=Continue)
    progress: int = 0
    stage: str = "eom"


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def _macro_pairs(macros: Macros) -> tuple[tuple[bytes, bytes], ...]:
    if not macros:
        return ()
    return tuple((_as_bytes(k), _as_bytes(v)) for k, v in macros.items())


class MilterClient:
    """One MTA-to-milter connection. Create it with `await MilterClient.open(address)`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float = 10.0,
        strict: bool = True,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._decoder = ReplyDecoder()
        self._pending: deque[Reply] = deque()
        self.timeout = timeout
        self.strict = strict  # Sendmail's rule: no Progress or edits before end of message
        self.negotiated: Negotiate | None = None
        self.progress_before_eom = 0

    @classmethod
    async def open(
        cls, address: Address, *, read_timeout: float = 10.0, strict: bool = True
    ) -> MilterClient:
        """Connect to ("host", port) or a unix socket path; every later read waits read_timeout."""
        async with asyncio.timeout(read_timeout):
            if isinstance(address, str):
                reader, writer = await asyncio.open_unix_connection(address)
            else:
                reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer, read_timeout, strict)

    # ------------------------------------------------------------ raw access

    @property
    def protocol(self) -> ProtocolFlags:
        """The protocol flags the milter asked for (none before negotiation)."""
        return self.negotiated.protocol if self.negotiated else ProtocolFlags(0)

    def send_raw(self, data: bytes) -> None:
        self._writer.write(data)

    def send(self, message: Command) -> None:
        self._writer.write(encode(message))

    async def drain(self) -> None:
        async with asyncio.timeout(self.timeout):
            await self._writer.drain()

    async def receive(self, read_timeout: float | None = None) -> Reply:
        """The next packet from the milter, whatever it is."""
        async with asyncio.timeout(self.timeout if read_timeout is None else read_timeout):
            await self._writer.drain()
            while not self._pending:
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionError("milter closed the connection")
                self._pending.extend(self._decoder.feed(data))
        return self._pending.popleft()

    async def at_eof(self, read_timeout: float | None = None) -> bool:
        """Wait until the milter closes the connection; False if it sends anything instead."""
        async with asyncio.timeout(self.timeout if read_timeout is None else read_timeout):
            await self._writer.drain()
            if self._pending:
                return False
            return await self._reader.read(1) == b""

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            async with asyncio.timeout(self.timeout):
                await self._writer.wait_closed()

    # ------------------------------------------------------------ steps

    async def negotiate(
        self, version: int = 6, actions: int = 0x1FF, protocol: int = 0x1FFFFF
    ) -> Negotiate:
        self.send(Negotiate(version, ActionFlags(actions), ProtocolFlags(protocol)))
        reply = await self.receive()
        if not isinstance(reply, Negotiate):
            raise RemoteProtocolError(f"expected a negotiation reply, got {reply!r}")
        self.negotiated = reply
        return reply

    def _send_macros(self, letter: bytes, macros: Macros) -> None:
        pairs = _macro_pairs(macros)
        if pairs:
            self.send(Macro(letter, pairs))

    async def _step(self, command: Command, macros: Macros = None) -> StepReply:
        """Send macros and a command the way an MTA does; return the reply if one is due."""
        self._send_macros(_MACRO_LETTER[type(command)], macros)
        not_sent, no_reply = _STEP_FLAGS[type(command)]
        if self.protocol & not_sent:
            return None  # MTAs still send the macros of a step the milter turned off
        self.send(command)
        if no_reply is not None and self._version >= 6 and self.protocol & no_reply:
            return None
        return await self._step_reply(type(command))

    @property
    def _version(self) -> int:
        return self.negotiated.version if self.negotiated else 6

    async def _step_reply(self, after: type) -> FinalReply | Skip:
        while True:
            reply = await self.receive()
            if isinstance(reply, FINAL_REPLIES):
                return reply
            if isinstance(reply, Skip) and after is BodyChunk:
                return reply
            if isinstance(reply, Progress) and not self.strict:
                self.progress_before_eom += 1
                continue
            raise RemoteProtocolError(f"{reply!r} is not a legal reply to {after.__name__}")

    async def connect(
        self,
        hostname: bytes,
        family: str | bytes | Family = Family.INET,
        address: bytes = b"",
        port: int = 0,
        macros: Macros = None,
    ) -> StepReply:
        fam = Family(_as_bytes(family)) if not isinstance(family, Family) else family
        return await self._step(Connect(hostname, fam, port, address), macros)

    async def helo(self, name: bytes, macros: Macros = None) -> StepReply:
        return await self._step(Helo(name), macros)

    async def mail(self, address: bytes, *esmtp: bytes, macros: Macros = None) -> StepReply:
        return await self._step(MailFrom(address, esmtp), macros)

    async def rcpt(self, address: bytes, *esmtp: bytes, macros: Macros = None) -> StepReply:
        return await self._step(RcptTo(address, esmtp), macros)

    async def data(self, macros: Macros = None) -> StepReply:
        if self._version < 4:
            return None  # DATA exists from version 4
        return await self._step(Data(), macros)

    async def unknown(self, command: bytes, macros: Macros = None) -> StepReply:
        if self._version < 3:
            return None
        return await self._step(Unknown(command), macros)

    async def header(
        self, name: bytes, value: bytes, *, style: Style = "sendmail", macros: Macros = None
    ) -> StepReply:
        return await self._step(Header(name, value), macros if style == "postfix" else None)

    async def end_of_headers(self, macros: Macros = None) -> StepReply:
        return await self._step(EndOfHeaders(), macros)

    async def body(
        self,
        data: bytes,
        *,
        chunk_size: int = 65535,
        style: Style = "sendmail",
        macros: Macros = None,
    ) -> StepReply:
        """Send the body in chunks; stops early on Skip or a non-Continue reply, returning it."""
        last: StepReply = None
        view = memoryview(data)
        for start in range(0, len(data), chunk_size):
            chunk = BodyChunk(bytes(view[start : start + chunk_size]))
            last = await self._step(chunk, macros if style == "postfix" else None)
            if last is not None and not isinstance(last, Continue):
                break
        return last

    async def end_of_message(self, data: bytes = b"", macros: Macros = None) -> EomResult:
        self._send_macros(b"E", macros)
        self.send(EndOfMessage(data))
        result = EomResult()
        while True:
            reply = await self.receive()
            if isinstance(reply, Progress):
                result.progress += 1
            elif isinstance(reply, FINAL_REPLIES):
                result.final = reply
                return result
            elif isinstance(reply, (Negotiate, Skip)):
                raise RemoteProtocolError(f"{reply!r} is not a legal reply to EndOfMessage")
            else:
                result.edits.append(reply)

    async def abort(self) -> None:
        self.send(Abort())
        await self.drain()

    async def quit(self) -> None:
        self.send(Quit())
        await self.drain()

    async def quit_new_connection(self) -> None:
        self.send(QuitNewConnection())
        await self.drain()

    # ------------------------------------------------------------ whole messages

    async def send_message(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        sender: bytes = b"<sender@example.net>",
        rcpts: Iterable[bytes] = (b"<rcpt@example.org>",),
        *,
        style: Style = "sendmail",
        macros: Mapping[str, Macros] | None = None,
        chunk_size: int = 65535,
    ) -> EomResult:
        """MAIL through end of message. `macros` maps a stage letter ("M", "R", ...) to macros.

        Returns the end-of-message result, or the reply of the step that ended the message
        early (with `stage` naming that step).
        """
        m = macros or {}
        postfix = style == "postfix"

        async def early(stage: str, reply: StepReply) -> EomResult | None:
            if reply is None or isinstance(reply, (Continue, Skip)):
                return None
            if postfix:
                await self.abort()
            return EomResult(final=reply, stage=stage)

        if done := await early("mail", await self.mail(sender, macros=m.get("M"))):
            return done
        for rcpt in rcpts:
            if done := await early("rcpt", await self.rcpt(rcpt, macros=m.get("R"))):
                return done
        if done := await early("data", await self.data(macros=m.get("T"))):
            return done
        for name, value in headers:
            reply = await self.header(name, value, style=style, macros=m.get("L"))
            if done := await early("header", reply):
                return done
        if done := await early("eoh", await self.end_of_headers(macros=m.get("N"))):
            return done
        reply = await self.body(body, chunk_size=chunk_size, style=style, macros=m.get("B"))
        if done := await early("body", reply):
            return done
        result = await self.end_of_message(macros=m.get("E"))
        if postfix:
            await self.abort()  # Postfix sends Abort after every transaction
        return result
