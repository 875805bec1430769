"""Counters and histograms, and a tiny Prometheus text endpoint (metrics-listen=HOST:PORT).

The exposition format is simple enough to write directly, so metrics need no extra package.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from spambridge.log import logger

if TYPE_CHECKING:
    from spambridge.policy import Decision

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SIZE_BUCKETS = (1024, 4096, 16384, 65536, 262144, 524288, 1048576, 4194304, 16777216)


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            running += n
            out.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {self.total:g}")
        out.append(f"{name}_count {self.count}")
        return out


class Metrics:
    """Process-wide figures. Cheap enough to update on every message."""

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self.messages: collections.Counter[tuple[str, str]] = collections.Counter()
        self.spamd_seconds = Histogram(LATENCY_BUCKETS)
        self.message_bytes = Histogram(SIZE_BUCKETS)
        self.gauges: dict[str, Callable[[], float]] = {}
        self.sources: list[Callable[[], Mapping[str, int]]] = []

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def message(self, decision: Decision, size: int, spamd_seconds: float | None) -> None:
        self.messages[(decision.verdict, decision.action)] += 1
        self.message_bytes.observe(size)
        if spamd_seconds is not None:
            self.spamd_seconds.observe(spamd_seconds)
        if decision.verdict == "unscanned":
            self.counters["skipped"] += 1

    def render(self) -> str:
        lines = ["# TYPE spambridge_messages_total counter"]
        for (verdict, action), n in sorted(self.messages.items()):
            lines.append(f'spambridge_messages_total{{verdict="{verdict}",action="{action}"}} {n}')
        counters: collections.Counter[str] = collections.Counter(self.counters)
        for source in self.sources:
            counters.update(source())
        for name, n in sorted(counters.items()):
            metric = "spambridge_" + name.replace(".", "_").replace("-", "_")
            if name.startswith("errors."):
                kind = name.split(".", 1)[1]
                metric = f'spambridge_spamd_errors_total{{kind="{kind}"}}'
            elif not metric.endswith("_total"):
                metric += "_total"
            lines.append(f"{metric} {n}")
        for name, read in sorted(self.gauges.items()):
            lines.append(f"# TYPE spambridge_{name} gauge")
            lines.append(f"spambridge_{name} {read():g}")
        lines.append("# TYPE spambridge_spamd_seconds histogram")
        lines.extend(self.spamd_seconds.lines("spambridge_spamd_seconds"))
        lines.append("# TYPE spambridge_message_bytes histogram")
        lines.extend(self.message_bytes.lines("spambridge_message_bytes"))
        return "\n".join(lines) + "\n"


async def serve(metrics: Metrics, listen: str) -> asyncio.Server:
    """Serve GET /metrics on HOST:PORT (plain HTTP/1.0, one request per connection)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path.split(b"?")[0] in (b"/metrics", b"/"):
                body = metrics.render().encode()
                head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            else:
                body = b"not found\n"
                head = b"HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\n"
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ) as exc:
            logger.debug("metrics request failed: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, int(port))
