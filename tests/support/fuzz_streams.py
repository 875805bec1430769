"""MTA byte streams for the fuzz tests: valid conversations, their mutations and splits, and
the oracle every decoder fuzz run checks (fed whole, in pieces or byte by byte, a stream
parses alike or fails alike, with RemoteProtocolError only)."""

from __future__ import annotations

import itertools
import random

from spambridge.errors import RemoteProtocolError
from spambridge.milter.codec import CommandDecoder, encode
from spambridge.milter.flags import ActionFlags, Family, ProtocolFlags
from spambridge.milter.messages import (
    Abort,
    BodyChunk,
    Command,
    Connect,
    Data,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    Macro,
    MailFrom,
    Negotiate,
    Quit,
    QuitNewConnection,
    RcptTo,
    Unknown,
)

SMALL_FRAME = 4096  # a small limit so oversize frames are easy to hit

# ------------------------------------------------------------------ valid conversations


def conversation(body: bytes = b"Hello.\r\n", rcpts: int = 1) -> list[Command]:
    """One Sendmail-like session with one message, as commands."""
    commands: list[Command] = [
        Negotiate(6, ActionFlags(0x1FF), ProtocolFlags(0x1FFFFF)),
        Macro(b"C", ((b"j", b"mx.example.org"), (b"{daemon_name}", b"MTA"))),
        Connect(b"client.example.net", Family.INET, 40000, b"192.0.2.7"),
        Helo(b"client.example.net"),
        Macro(b"M", ((b"i", b"4ABC123"), (b"{mail_addr}", b"s@example.net"))),
        MailFrom(b"<s@example.net>", (b"SIZE=100",)),
    ]
    commands += [RcptTo(b"<r%d@example.org>" % i) for i in range(rcpts)]
    commands += [
        Data(),
        Header(b"From", b" s@example.net"),
        Header(b"Subject", b" hi\r\n\tthere"),
        Header(b"X-Spam-Flag", b" YES"),
        EndOfHeaders(),
        BodyChunk(body),
        EndOfMessage(),
        Abort(),
        Unknown(b"NOOP"),
        QuitNewConnection(),
        Connect(b"[IPv6:2001:db8::1]", Family.INET6, 25, b"IPv6:2001:db8::1"),
        Connect(b"localhost", Family.UNIX, 0, b"/run/sock"),
        Connect(b"unknown", Family.UNKNOWN),
        Quit(),
    ]
    return commands


def conversation_bytes(body: bytes = b"Hello.\r\n", rcpts: int = 1) -> bytes:
    return b"".join(encode(c) for c in conversation(body, rcpts))


SEED_STREAMS: tuple[bytes, ...] = (
    conversation_bytes(),
    conversation_bytes(b"", 3),
    conversation_bytes(b"x" * 3000 + b"\r\n.\r\n", 2),
)

# ------------------------------------------------------------------ mutation


def mutate(data: bytes, rng: random.Random, rounds: int = 4) -> bytes:
    """Flip, insert, delete, duplicate and overwrite-with-interesting-values bytes."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, rounds)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and buf:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 3 and buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start : start + rng.randint(1, 64)]
        elif op == 4 and len(buf) >= 4:
            i = rng.randrange(len(buf) - 3)  # an interesting 32-bit length somewhere
            value = rng.choice((0, 1, 2, 5, 12, 0x7FFFFFFF, 0xFFFFFFFF, SMALL_FRAME + 1))
            buf[i : i + 4] = value.to_bytes(4, "big")
        elif op == 5 and buf:
            i = min(pos, len(buf) - 1)
            buf[i] = rng.choice(b"\x00\xff\r\nODCHMRTLNBEAQKUcapys")
        else:
            del buf[pos:]  # truncation
    return bytes(buf)


def splits(data: bytes, rng: random.Random) -> list[bytes]:
    """`data` cut at random points (sometimes byte by byte)."""
    if rng.random() < 0.1:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(0, 6))))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# ------------------------------------------------------------------ the oracle


Outcome = tuple[list[Command], bool]


def decode_all(pieces: list[bytes], max_frame: int = SMALL_FRAME) -> Outcome:
    """Feed pieces; return (messages, failed). Any exception but RemoteProtocolError escapes.

    Checks on the way: the buffer never holds a whole frame plus its prefix, and a failed
    decoder refuses further input.
    """
    decoder = CommandDecoder(max_frame)
    out: list[Command] = []
    for piece in pieces:
        try:
            out.extend(decoder.feed(piece))
        except RemoteProtocolError:
            try:
                decoder.feed(b"")
            except RemoteProtocolError:
                return out, True
            raise AssertionError("decoder accepted input after an error") from None
        assert decoder.buffered <= max_frame + 4, decoder.buffered
    return out, False


def check_stream(data: bytes, rng: random.Random, *, bytewise: bool = True) -> None:
    """The oracle: fed whole, in random pieces or byte by byte, the stream fails or not
    alike, and yields the same messages (a feed that fails returns none of its own, so on
    failure a coarser feed sees a prefix of what a finer one saw)."""
    if bytewise:
        ref, ref_failed = decode_all([data[i : i + 1] for i in range(len(data))])
    else:
        ref, ref_failed = decode_all(splits(data, rng))
    for pieces in ([data], splits(data, rng)):
        got, failed = decode_all(pieces)
        assert failed == ref_failed, (failed, ref_failed)
        if not failed:
            assert got == ref
        elif bytewise:
            assert got == ref[: len(got)]
