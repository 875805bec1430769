"""CPU that spambridge's own spamd client spends per scan, measured alone.

    python -m bench.spamdcost --port SPAMDPORT --loop asyncio --total 2000 --concurrency 50

It runs `SpamdPool.scan` (the code spambridge uses: aiospamc with our timeouts) against a
spamd and prints JSON with this process's CPU per scan. Against the instant fake spamd this
is the part of spambridge's isolated CPU per message that the null C filter never pays.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence

from bench.loadgen import make_message
from spambridge.spamd.endpoints import parse_spamd_sockets
from spambridge.spamd.pool import SpamdPool


def _as_spamd_sees_it(size: int) -> bytes:
    message = make_message(size)
    head = b"".join(name + b":" + value + b"\r\n" for name, value in message.headers)
    return head + b"\r\n" + message.body


async def _scans(port: int, total: int, concurrency: int, size: int) -> tuple[int, float]:
    pool = SpamdPool(parse_spamd_sockets((f"127.0.0.1:{port}",)), max_connections=concurrency)
    data = _as_spamd_sees_it(size)
    for _ in range(20):  # warm-up
        await pool.scan(data, command="REPORT")
    remaining = iter(range(total))

    async def worker() -> None:
        while next(remaining, None) is not None:
            await pool.scan(data, command="REPORT")

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return total, time.process_time() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spamdcost", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--total", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--size", type=int, default=5 * 1024)
    args = parser.parse_args(argv)
    factory = None
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        scans, cpu = runner.run(_scans(args.port, args.total, args.concurrency, args.size))
    result = {
        "loop": args.loop,
        "concurrency": args.concurrency,
        "scans": scans,
        "cpu_s_per_1000": round(cpu / scans * 1000, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
