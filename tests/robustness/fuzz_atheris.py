"""Coverage-guided fuzzing of the CommandDecoder with atheris (optional; not a test).

    pip install atheris
    python -m tests.robustness.fuzz_atheris -atheris_runs=1000000

Same oracle as test_fuzz_decoder: fed whole, in pieces or byte by byte, the input decodes
alike or raises only RemoteProtocolError. Any other exception is reported as a crash.
"""

from __future__ import annotations

import random
import sys

import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

with atheris.instrument_imports():
    from spambridge.milter import codec  # noqa: F401  (instrumented for coverage)

from tests.support.fuzz_streams import SEED_STREAMS, check_stream


def one_input(data: bytes) -> None:
    rng = random.Random(len(data))
    check_stream(data, rng)
    if data:
        # Also splice the input into a valid conversation: reaches later parser states.
        seed = SEED_STREAMS[data[0] % len(SEED_STREAMS)]
        at = int.from_bytes(data[:2], "big") % (len(seed) + 1)
        check_stream(seed[:at] + data[1:] + seed[at:], rng, bytewise=False)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
