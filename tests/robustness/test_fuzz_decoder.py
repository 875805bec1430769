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
import os
import random
import resource
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spambridge.errors import RemoteProtocolError
from spambridge.milter.codec import CommandDecoder, encode
from spambridge.milter.messages import (
    BodyChunk,
)
from tests.support.fuzz_streams import (
    SEED_STREAMS,
    SMALL_FRAME,
    check_stream,
    conversation,
    decode_all,
    mutate,
    splits,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 300,  # CI is reproducible; long runs explore
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
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
