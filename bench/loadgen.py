"""MTA-side load generator that speaks the milter protocol directly (no MTA in front).

`concurrency` workers each open connections one after another and send
`per_connection` messages on each, until `total` messages have been sent. The latency of a
message is the time from sending end-of-message to receiving the final reply, which is where
a milter does its work.

    python -m bench.loadgen inet:PORT@127.0.0.1 --total 2000 --concurrency 50 --per-connection 20
    python -m bench.loadgen inet:PORT@127.0.0.1 --total 2000 --concurrency 50 --rate 150
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import random
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from spambridge.milter.messages import Continue
from tools.milter_client import MilterClient

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
_LINE = b"The quarterly figures are attached below; please check the totals before Friday.\r\n"

CONNECT_MACROS = {
    "j": "mx.example.test",
    "_": "client.example.org [127.0.0.1]",
    "{daemon_name}": "MTA",
    "{client_addr}": "127.0.0.1",
    "{client_name}": "client.example.org",
}
MAIL_MACROS = {"{mail_addr}": "sender@example.net", "{mail_mailer}": "esmtp"}
RCPT_MACROS = {"{rcpt_addr}": "rcpt@example.test", "{rcpt_mailer}": "local"}


@dataclass(frozen=True, slots=True)
class Message:
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    @property
    def size(self) -> int:
        head = sum(len(n) + len(v) + 4 for n, v in self.headers)
        return head + 2 + len(self.body)


def make_message(size: int, *, spam: bool = False, serial: int = 0) -> Message:
    """A plain-text message of about `size` bytes (headers included); GTUBE in it if spam."""
    headers = (
        (
            b"Received",
            b" from client.example.org (client.example.org [127.0.0.1])\r\n\tby "
            b"mx.example.test with ESMTP id 5AQB1x; Wed, 25 Nov 2026 11:00:00 +0000",
        ),
        (b"From", b" Alice <sender@example.net>"),
        (b"To", b" Bob <rcpt@example.test>"),
        (b"Subject", b" Budget notes " + str(serial).encode()),
        (b"Date", b" Wed, 25 Nov 2026 11:00:00 +0000"),
        (b"Message-ID", b" <" + str(serial).encode() + b".bench@example.net>"),
        (b"MIME-Version", b" 1.0"),
        (b"Content-Type", b" text/plain; charset=us-ascii"),
    )
    head = sum(len(n) + len(v) + 4 for n, v in headers) + 2
    first = b"Hi Bob,\r\n\r\n" + (GTUBE + b"\r\n\r\n" if spam else b"")
    remaining = max(0, size - head - len(first))
    body = first + _LINE * (remaining // len(_LINE)) + b"x" * (remaining % len(_LINE))
    return Message(headers, body)


@dataclass(slots=True)
class LoadResult:
    messages: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    finals: dict[str, int] = field(default_factory=dict)
    # Open loop only: the longest the generator's own event loop ran late. A latency
    # outlier of about this size is the machine (or the generator) stalling, not the milter.
    max_stall: float | None = None

    def add(self, other: LoadResult) -> None:
        """Fold in a later run against the same subject (one longer measurement)."""
        self.messages += other.messages
        self.errors += other.errors
        self.elapsed += other.elapsed
        self.latencies += other.latencies
        for final, count in other.finals.items():
            self.finals[final] = self.finals.get(final, 0) + count
        if other.max_stall is not None:
            self.max_stall = max(self.max_stall or 0.0, other.max_stall)

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        return {
            "messages": self.messages,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed, 4),
            "msgs_per_s": round(self.rate, 2),
            "p50_ms": round(self.percentile(50) * 1000, 3),
            "p90_ms": round(self.percentile(90) * 1000, 3),
            "p99_ms": round(self.percentile(99) * 1000, 3),
            "finals": dict(self.finals),
            **(
                {"loadgen_stall_ms": round(self.max_stall * 1000, 3)}
                if self.max_stall is not None
                else {}
            ),
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def open_session(address: str | tuple[str, int], read_timeout: float) -> MilterClient:
    """Connect, negotiate, and send the connect and HELO steps as Sendmail does."""
    client = await MilterClient.open(address, read_timeout=read_timeout)
    await client.negotiate()
    await client.connect(
        b"client.example.org", address=b"127.0.0.1", port=40000, macros=CONNECT_MACROS
    )
    await client.helo(b"client.example.org", macros={"{tls_version}": ""})
    return client


async def send_one(client: MilterClient, message: Message, serial: int) -> tuple[float, str]:
    """One transaction; returns (EOM-to-final-reply seconds, name of the final reply)."""
    mail = dict(MAIL_MACROS, i=f"5AQB{serial:06d}")
    early = await client.mail(b"<sender@example.net>", macros=mail)
    if early is not None and not isinstance(early, Continue):
        return 0.0, type(early).__name__
    await client.rcpt(b"<rcpt@example.test>", macros=RCPT_MACROS)
    await client.data()
    for name, value in message.headers:
        await client.header(name, value)
    await client.end_of_headers()
    await client.body(message.body)
    started = time.perf_counter()
    result = await client.end_of_message(macros={"i": f"5AQB{serial:06d}"})
    return time.perf_counter() - started, type(result.final).__name__


def parse_address(spec: str) -> str | tuple[str, int]:
    """inet:PORT@HOST, unix:/path or a bare path."""
    if spec.startswith("inet:"):
        port, _, host = spec[5:].partition("@")
        return (host or "127.0.0.1", int(port))
    return spec.split(":", 1)[1] if spec.startswith(("unix:", "local:")) else spec


async def run_load(
    address: str | tuple[str, int],
    *,
    total: int,
    concurrency: int,
    per_connection: int,
    size: int = 5 * 1024,
    spam_ratio: float = 0.0,
    read_timeout: float = 60.0,
    seed: int = 1,
    rate: float | None = None,
) -> LoadResult:
    """Closed loop by default (each worker sends as soon as its last reply came back).

    With `rate` (messages/s in all) the load is open loop: message k is due at k / rate
    seconds after the start, whichever worker takes it, so latency is not just queueing
    behind the generator's own concurrency. Latency is still end-of-message to final reply.
    """
    result = LoadResult()
    rng = random.Random(seed)
    ham, spam = make_message(size), make_message(size, spam=True)
    counter = iter(range(total))
    loop = asyncio.get_running_loop()
    origin = loop.time()

    async def worker() -> None:
        while True:
            client: MilterClient | None = None
            try:
                for sent in range(per_connection):
                    serial = next(counter, None)
                    if serial is None:
                        return
                    if client is None:
                        client = await open_session(address, read_timeout)
                    if rate:
                        await asyncio.sleep(max(0.0, origin + serial / rate - loop.time()))
                    message = spam if rng.random() < spam_ratio else ham
                    try:
                        latency, final = await send_one(client, message, serial)
                    except (OSError, TimeoutError, ConnectionError) as exc:
                        result.errors += 1
                        print(f"loadgen: message {serial}: {exc!r}", file=sys.stderr)
                        break
                    result.messages += 1
                    result.latencies.append(latency)
                    result.finals[final] = result.finals.get(final, 0) + 1
                    if sent + 1 < per_connection:
                        await client.abort()  # Sendmail resets between messages with Abort
            except (OSError, TimeoutError, ConnectionError) as exc:
                result.errors += 1
                print(f"loadgen: connection: {exc!r}", file=sys.stderr)
            finally:
                if client is not None:
                    with contextlib.suppress(OSError, ConnectionError):
                        await client.quit()
                    await client.close()

    started = time.perf_counter()
    watcher = asyncio.create_task(_watch_stalls(result)) if rate else None
    # The generator's own collector pauses would count as the milter's latency: none during
    # the run, one collection after it.
    collecting = gc.isenabled()
    gc.disable()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        if watcher is not None:
            watcher.cancel()
        if collecting:
            gc.enable()
    result.elapsed = time.perf_counter() - started
    gc.collect()
    return result


STALL_TICK = 0.005  # seconds between the stall watcher's wake-ups (200 a second: cheap)


async def _watch_stalls(result: LoadResult) -> None:
    """Record how late this event loop wakes a sleeper: its own stalls and the machine's."""
    loop = asyncio.get_running_loop()
    result.max_stall = 0.0
    while True:
        due = loop.time() + STALL_TICK
        await asyncio.sleep(STALL_TICK)
        result.max_stall = max(result.max_stall, loop.time() - due)


@contextlib.asynccontextmanager
async def idle_connections(
    address: str | tuple[str, int], count: int, read_timeout: float = 60.0
) -> AsyncIterator[list[MilterClient]]:
    """`count` MTA connections past HELO, held open and idle until the block ends."""
    clients: list[MilterClient] = []
    try:
        for start in range(0, count, 50):
            batch = [open_session(address, read_timeout) for _ in range(min(50, count - start))]
            clients.extend(await asyncio.gather(*batch))
        yield clients
    finally:
        for client in clients:
            with contextlib.suppress(OSError, ConnectionError):
                await client.quit()
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def send_big(address: str | tuple[str, int], size: int, read_timeout: float = 300.0) -> str:
    """One message of `size` bytes on a fresh connection; returns the final reply's name."""
    client = await open_session(address, read_timeout)
    try:
        _, final = await send_one(client, make_message(size), 0)
        await client.quit()
        return final
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="milter-protocol load generator")
    parser.add_argument("socket", help="inet:PORT@HOST or unix:/path")
    parser.add_argument("--total", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--per-connection", type=int, default=1)
    parser.add_argument("--size", type=int, default=5 * 1024, help="message bytes")
    parser.add_argument("--spam-ratio", type=float, default=0.0, help="share of GTUBE messages")
    parser.add_argument(
        "--rate", type=float, default=None, help="open loop: messages/s over all connections"
    )
    args = parser.parse_args(argv)
    result = asyncio.run(
        run_load(
            parse_address(args.socket),
            total=args.total,
            concurrency=args.concurrency,
            per_connection=args.per_connection,
            size=args.size,
            spam_ratio=args.spam_ratio,
            rate=args.rate,
        )
    )
    print(json.dumps(result.summary()))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
