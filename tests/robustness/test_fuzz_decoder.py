"""Fuzz the CommandDecoder with random and mutated MTA byte streams.

Properties (as h11's fuzz/afl-server.py): any input either decodes or raises
RemoteProtocolError, never anything else; a stream parses the same fed whole or in
pieces; a failed decoder stays failed; the buffer never holds more than one frame.

CI runs FUZZ_EXAMPLES (default 300) Hypothesis examples per property. The long run is a
plain loop without Hypothesis overhead:

    python -m tests.robustness.test_fuzz_decoder --inputs 1000000
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import resource
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 300,  # CI is reproducible; long runs explore
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
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


# ------------------------------------------------------------------ Hypothesis properties


@FUZZ
@given(st.binary(max_size=2048), st.randoms(use_true_random=False))
def test_decoder_random_bytes_decode_or_raise_remote_error(data: bytes, rng: random.Random) -> None:
    check_stream(data, rng)


@FUZZ
@given(st.sampled_from(SEED_STREAMS), st.randoms(use_true_random=False))
def test_decoder_mutated_conversations_decode_or_raise_remote_error(
    seed: bytes, rng: random.Random
) -> None:
    check_stream(mutate(seed, rng), rng)


@FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(b"ODCHMRTLNBEAQKU"), st.binary(max_size=64)),
        max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_decoder_well_framed_random_payloads_decode_or_raise_remote_error(
    frames: list[tuple[int, bytes]], rng: random.Random
) -> None:
    """Correct framing with garbage payloads: reaches every payload parser."""
    data = b"".join((len(p) + 1).to_bytes(4, "big") + bytes((c,)) + p for c, p in frames)
    check_stream(data, rng)


@FUZZ
@given(st.binary(min_size=1, max_size=512), st.integers(1, 40))
def test_decoder_valid_conversation_survives_any_split(body: bytes, rcpts: int) -> None:
    commands = conversation(body, rcpts % 5)
    data = b"".join(encode(c) for c in commands)
    rng = random.Random(len(body) * 41 + rcpts)
    messages, failed = decode_all(splits(data, rng), max_frame=1 << 20)
    assert not failed
    assert len(messages) == len(commands)
    assert messages[0] == commands[0]
    assert BodyChunk(body) in messages


def test_decoder_oversize_length_refused_before_payload_arrives() -> None:
    decoder = CommandDecoder(SMALL_FRAME)
    head = (SMALL_FRAME + 1).to_bytes(4, "big")
    try:
        decoder.feed(head)
    except RemoteProtocolError as exc:
        assert "exceeds" in str(exc)
    else:
        raise AssertionError("an oversize length was accepted")
    assert decoder.buffered == 0


# ------------------------------------------------------------------ the long run


def run(inputs: int, seed: int) -> dict[str, float]:
    """The plain loop: `inputs` mutated or random streams through the oracle."""
    rng = random.Random(seed)
    started = time.monotonic()
    for i in range(inputs):
        if i % 8 == 0:
            data = rng.randbytes(rng.randint(0, 512))
        else:
            data = mutate(rng.choice(SEED_STREAMS), rng, rounds=8)
        check_stream(data, rng, bytewise=i % 16 == 0)
    elapsed = time.monotonic() - started
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"inputs": inputs, "seconds": elapsed, "crashes": 0, "max_rss_kib": maxrss_kib}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="long decoder fuzz run (no Hypothesis)")
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    figures = run(args.inputs, args.seed)  # an oracle failure raises with a traceback
    print(
        " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
