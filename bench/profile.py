"""Sample spambridge with py-spy under the isolated load and print its hot spots.

    python -m bench.profile [--seconds 20]   # needs `pip install py-spy`

Self time is time in that frame itself (for asyncio's transport write and connect it is the
system call); inclusive time counts a frame and everything it calls.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.loadgen import run_load
from bench.run import fake_spamd
from bench.subjects import start_subject


def hot_spots(raw: Path, top: int = 20) -> str:
    """Self and inclusive shares per frame from py-spy's raw (collapsed stack) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "self time:"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive, spambridge and aiospamc frames:"]
    ours = [(f, n) for f, n in inclusive.most_common() if "spambridge/" in f or "aiospamc/" in f]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in ours[: top * 2]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--per-connection", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = parser.parse_args(argv)
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="spambridge-profile-") as tmp, fake_spamd() as port:
        bridge = start_subject("spambridge", port, Path(tmp) / "logs")
        try:
            address = bridge.address
            asyncio.run(run_load(address, total=200, concurrency=10, per_connection=5))
            raw = Path(tmp) / "profile.raw"
            sampler = subprocess.Popen(
                [
                    pyspy,
                    "record",
                    "-p",
                    str(bridge.pid),
                    "-r",
                    "200",
                    "--format",
                    "raw",
                    "-o",
                    str(raw),
                    "-d",
                    str(args.seconds),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            conc, per_conn = args.concurrency, args.per_connection
            while sampler.poll() is None:  # default c=50: the isolated target's heaviest mix
                asyncio.run(
                    run_load(address, total=20 * conc, concurrency=conc, per_connection=per_conn)
                )
            text = hot_spots(raw)
        finally:
            bridge.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    default = (args.concurrency, args.per_connection) == (50, 20)
    name = "profile.txt" if default else f"profile-c{args.concurrency}-m{args.per_connection}.txt"
    (args.out / name).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
