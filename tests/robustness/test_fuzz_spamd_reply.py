"""Fuzz the spamd reply parser: any bytes give a Verdict or SpamdBadResponse, nothing else.

A Verdict's score and threshold are finite numbers, and its body is bytes. Inputs: random
bytes, and real spamd replies (CHECK, SYMBOLS, REPORT, REPORT_IFSPAM, HEADERS, EX_* errors)
mutated with the decoder fuzz's operators, plus 8-bit and non-finite Spam headers.

CI runs FUZZ_EXAMPLES (default 300) Hypothesis examples. The long run is a plain loop:

    python -m tests.robustness.test_fuzz_spamd_reply --inputs 1000000
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import random
import resource
import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spambridge.errors import SpamdBadResponse
from spambridge.spamd.protocol import Verdict, parse_reply
from tests.support.fuzz_streams import mutate
from tools.fake_spamd import GTUBE, build_reply

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
COMMANDS = ("CHECK", "SYMBOLS", "REPORT", "REPORT_IFSPAM", "HEADERS")
MESSAGE = b"Subject: hi\r\nX-Spam-Flag: YES\r\n\r\n" + GTUBE + b"\r\n"

SEED_REPLIES: tuple[bytes, ...] = (
    *(build_reply(command, MESSAGE) for command in COMMANDS),
    *(build_reply(command, b"Subject: ham\r\n\r\nhello\r\n") for command in COMMANDS),
    b"SPAMD/1.0 76 Bad header line: (Content-Length mismatch: 10 vs. 5)\r\n",
    b"SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled\r\n",
    b"SPAMD/1.5 0 PONG\r\n",
    b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; nan / 5.0\r\n\r\n",
    b"SPAMD/1.1 0 EX_OK\r\nSp\xe4m: True ; 5.0 / 5.0\r\n\r\n",
    b"SPAMD/1.1 0 EX_OK\r\nContent-length: 3\r\nSpam: No ; 1e999 / -inf\r\n\r\nabc",
)


def check_reply(raw: bytes, command: str) -> str:
    """The oracle: 'verdict' or 'bad'; anything else raises and is a crash."""
    try:
        verdict = parse_reply(raw, command=command, host="fuzz")
    except SpamdBadResponse as exc:
        assert exc.host == "fuzz"
        return "bad"
    assert isinstance(verdict, Verdict)
    assert math.isfinite(verdict.score) and math.isfinite(verdict.threshold)
    assert isinstance(verdict.body, bytes) and verdict.command == command
    return "verdict"


@FUZZ
@given(raw=st.binary(max_size=1024), command=st.sampled_from(COMMANDS))
def test_fuzz_spamd_reply_random_bytes(raw: bytes, command: str) -> None:
    check_reply(raw, command)


@FUZZ
@given(
    seed=st.sampled_from(SEED_REPLIES),
    rng_seed=st.integers(0, 2**32),
    command=st.sampled_from(COMMANDS),
)
def test_fuzz_spamd_reply_mutated_replies(seed: bytes, rng_seed: int, command: str) -> None:
    check_reply(mutate(seed, random.Random(rng_seed), rounds=8), command)


def test_fuzz_spamd_reply_seeds_parse_as_spamd_meant() -> None:
    commands = [*COMMANDS, *COMMANDS] + ["REPORT"] * (len(SEED_REPLIES) - 2 * len(COMMANDS))
    outcomes = [
        check_reply(raw, command) for raw, command in zip(SEED_REPLIES, commands, strict=True)
    ]
    assert outcomes == ["verdict"] * 10 + ["bad"] * 6


def run(inputs: int, seed: int) -> dict[str, float]:
    """The plain loop: `inputs` random or mutated replies through the oracle."""
    rng = random.Random(seed)
    counts: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    for i in range(inputs):
        if i % 8 == 0:
            raw = rng.randbytes(rng.randint(0, 512))
        else:
            raw = mutate(rng.choice(SEED_REPLIES), rng, rounds=8)
        counts[check_reply(raw, rng.choice(COMMANDS))] += 1
    elapsed = time.monotonic() - started
    return {
        "inputs": inputs,
        "seconds": elapsed,
        "verdicts": counts["verdict"],
        "bad_responses": counts["bad"],
        "crashes": 0,  # a crash raises out of this loop with its traceback
        "max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="long spamd reply parser fuzz run")
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    figures = run(args.inputs, args.seed)
    print(
        " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
