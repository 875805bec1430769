"""The MTA side of the libmilter differential suite: plays one script of raw milter frames
to a milter and records what came back, step by step, in a form two milters can be compared in.

A script is a list of `Step`s, each some bytes (usually one frame, possibly malformed) and
whether an MTA would wait for a reply to it. Replies are read only at steps that wait and at
probes (frames no MTA sends, listened to briefly), and each such step takes the replies up to
and including the first final one (Continue, Reject, ...); whatever else was read stays
queued for the next. So which step a reply is recorded at depends on the bytes the milter
wrote and the script, not on timing: a milter that answers a step nobody waits for shows that
answer at the next recorded step. A step that gets no final reply in time is recorded as
unanswered; after the last step the driver listens `quiet` seconds more for late replies and
for the milter closing.

Replies are recorded as short tokens, normalised where two correct milters legitimately
differ (see `token`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from spambridge.errors import RemoteProtocolError
from spambridge.milter.codec import ReplyDecoder
from spambridge.milter.messages import (
    FINAL_REPLIES,
    AddHeader,
    ChangeHeader,
    InsertHeader,
    Negotiate,
    Reply,
    ReplyCode,
    Skip,
)

_FINAL = (*FINAL_REPLIES, Skip, Negotiate)
_HEADER_EDITS = (AddHeader, InsertHeader, ChangeHeader)


@dataclass(frozen=True)
class Step:
    data: bytes
    label: str
    waits: bool  # an MTA waits for a reply to this step
    pieces: int = 1  # written in this many pieces (1: at once; len(data): byte by byte)
    # A frame no MTA sends (a mutation): listened to for `probe` seconds, so that a reply
    # to it, or none, is recorded at it rather than at the next step that waits.
    probe: float = 0.0
    tag: str = ""  # what the script's author knows about this frame (for the comparison)


@dataclass(frozen=True)
class Observed:
    label: str
    replies: tuple[str, ...]
    closed: bool = False  # the milter closed the connection: this step went unanswered
    unanswered: bool = False  # no final reply came within patience (the connection open)


def token(reply: Reply) -> str:
    """A reply as the comparison sees it.

    Normalised: the negotiation reply's macro lists are compared as a set of (stage, names)
    (libmilter writes them in stage-number order, spambridge in the order it declares them;
    the MTA reads them into a table either way); every header edit is the word
    `header-edit`, and `collapse` merges a run of them into one (the two milters add
    different headers: the reference filter one, spambridge its X-Spam-* set). Everything
    else is compared as it came: the reply type, a ReplyCode's text.
    """
    if isinstance(reply, Negotiate):
        lists = sorted((int(stage), names.decode("latin-1")) for stage, names in reply.macro_lists)
        return (
            f"OPTNEG v={reply.version} actions={int(reply.actions):#x} "
            f"protocol={int(reply.protocol):#x} macros={lists}"
        )
    if isinstance(reply, _HEADER_EDITS):
        return "header-edit"
    if isinstance(reply, ReplyCode):
        return f"ReplyCode {reply.text!r}"
    return type(reply).__name__


def collapse(tokens: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for item in tokens:
        if not (item == "header-edit" and out and out[-1] == "header-edit"):
            out.append(item)
    return tuple(out)


class _Reader:
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.decoder = ReplyDecoder(max_frame=1 << 24)
        self.queued: deque[tuple[str, bool]] = deque()  # (token, final)
        self.finals_queued = 0
        self.closed = False

    def _take(self, data: bytes) -> None:
        try:
            for reply in self.decoder.feed(data):
                final = isinstance(reply, _FINAL)
                self.queued.append((token(reply), final))
                self.finals_queued += final
        except RemoteProtocolError as exc:
            self.queued.append((f"undecodable reply ({exc})", False))
            self.closed = True  # nothing after it can be framed

    async def _read(self, within: float) -> bool:
        """Read once; False when nothing came within `within` seconds."""
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 16), within)
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.closed = True
        else:
            self._take(data)
        return True

    async def until_final(self, patience: float) -> tuple[list[str], bool]:
        """The queued replies up to and including one final reply; (tokens, answered)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while not self.finals_queued and not self.closed:
            left = deadline - loop.time()
            if left <= 0 or not await self._read(left):
                break
        out: list[str] = []
        if not self.finals_queued:
            out.extend(item for item, _ in self.queued)
            self.queued.clear()
            return out, False
        while self.queued:
            item, final = self.queued.popleft()
            out.append(item)
            if final:
                self.finals_queued -= 1
                break
        return out, True

    async def rest(self, quiet: float) -> list[str]:
        """Whatever comes until `quiet` seconds pass with nothing (or the milter closes)."""
        while not self.closed and await self._read(quiet):
            pass
        out = [item for item, _ in self.queued]
        self.queued.clear()
        self.finals_queued = 0
        return out


async def play(
    address: str, steps: list[Step], *, quiet: float = 0.1, patience: float = 2.0
) -> tuple[Observed, ...]:
    """Play `steps` to the milter at unix socket `address`; what came back, step by step.

    Only steps an MTA waits on, and probes, are recorded (a reply to another step is read at
    the next one recorded). When the milter closes the connection, the close is recorded at the
    first waiting step it stops (the write of a frame fails, or the read finds the end) and
    nothing more is sent; else a last record, `end`, holds what came after the last step.
    """
    stream, writer = await asyncio.open_unix_connection(address)
    reader = _Reader(stream)
    out: list[Observed] = []
    stopped_at: str | None = None  # the step the close was met at
    left: list[str] = []
    try:
        for index, step in enumerate(steps):
            try:
                await _write(writer, step)
            except (ConnectionError, OSError):
                reader.closed = True
            if reader.closed:
                waiting = [s.label for s in steps[index:] if s.waits or s.probe]
                stopped_at = waiting[0] if waiting else "end"
                break
            if step.waits or step.probe:
                tokens, answered = await reader.until_final(step.probe or patience)
                if reader.closed and not answered:
                    stopped_at, left = step.label, tokens
                    break
                out.append(Observed(step.label, collapse(tokens), unanswered=not answered))
        tail = left + await reader.rest(quiet)
        if stopped_at is None and reader.closed:
            stopped_at = "end"
        out.append(Observed(stopped_at or "end", collapse(tail), closed=stopped_at is not None))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 2)
    return tuple(out)


async def _write(writer: asyncio.StreamWriter, step: Step) -> None:
    if step.pieces <= 1:
        writer.write(step.data)
        await writer.drain()
        return
    size = max(1, -(-len(step.data) // step.pieces))
    for start in range(0, len(step.data), size):
        writer.write(step.data[start : start + size])
        await writer.drain()
        await asyncio.sleep(0.001)  # let the milter read each piece on its own
