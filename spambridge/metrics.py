"""Counters and histograms, served for Prometheus at metrics-listen=HOST:PORT.

The figures are plain counters updated on every message; at scrape time a prometheus-client
collector turns them into metric families, next to the library's standard process, platform
and garbage-collector metrics. prometheus-client is optional (the `metrics` extra): it is
imported only when metrics-listen is set.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from spambridge.decision import UNSCANNED, Decision
from spambridge.errors import ConfigError, SpamdError
from spambridge.log import logger

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
SIZE_BUCKETS = (1024, 4096, 16384, 65536, 262144, 524288, 1048576, 4194304, 16777216)
# Served at 0 from the start: a counter that first appears at 1 is no increase to Prometheus,
# so the first such error after a start would fire no alert (deploy/spambridge-alerts.yml).
ZERO_FROM_START = ("internal_errors", "protocol_errors")


def _spamd_error_kinds() -> tuple[str, ...]:
    kinds, todo = set(), list(SpamdError.__subclasses__())
    while todo:
        cls = todo.pop()
        kinds.add(cls.kind)
        todo.extend(cls.__subclasses__())
    return tuple(sorted(kinds))


SPAMD_ERROR_KINDS = _spamd_error_kinds()  # unavailable, timeout, bad-response


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

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, observations at or below it) pairs, ending with +Inf."""
        out, running = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=False):
            running += n
            out.append((f"{bound:g}", float(running)))
        out.append(("+Inf", float(self.count)))
        return out


@dataclass(frozen=True, slots=True)
class Family:
    """A labelled metric family read at scrape time (the spamd pool's per-host figures):
    `name` without the spambridge_ prefix (and without _total for a counter)."""

    name: str
    kind: Literal["gauge", "counter"]
    doc: str
    labels: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]


class Metrics:
    """Process-wide figures. Cheap enough to update on every message."""

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter(
            dict.fromkeys(ZERO_FROM_START, 0)
        )
        self.messages: collections.Counter[tuple[str, str]] = collections.Counter()
        self.spamd_seconds = Histogram(LATENCY_BUCKETS)
        self.message_bytes = Histogram(SIZE_BUCKETS)
        self.gauges: dict[str, Callable[[], float]] = {}
        self.sources: list[Callable[[], Mapping[str, int]]] = []
        self.families: list[Callable[[], Iterable[Family]]] = []

    def inc(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def message(self, decision: Decision, size: int, spamd_seconds: float | None) -> None:
        self.messages[(decision.verdict, decision.action)] += 1
        self.message_bytes.observe(size)
        if spamd_seconds is not None:
            self.spamd_seconds.observe(spamd_seconds)
        if decision.verdict is UNSCANNED:
            self.counters["skipped"] += 1

    def counter_totals(self) -> collections.Counter[str]:
        """Our counters and those of the sources (the spamd pool), summed by name."""
        counters: collections.Counter[str] = collections.Counter(self.counters)
        for source in self.sources:
            counters.update(source())
        return counters

    def render(self) -> bytes:
        """The Prometheus text exposition, written by prometheus-client."""
        return render(registry(self))


def registry(metrics: Metrics) -> CollectorRegistry:
    """A registry with our figures plus the library's standard process, platform and
    garbage-collector metrics."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector

    reg = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    reg.register(_Collector(metrics))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    from prometheus_client import generate_latest

    return bytes(generate_latest(reg))


class _Collector:
    """Reads Metrics at scrape time (on the event loop's thread, so nothing races)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self.metrics
        messages = CounterMetricFamily(
            "spambridge_messages",
            "Messages answered, by verdict and action",
            labels=["verdict", "action"],
        )
        for (verdict, action), n in sorted(m.messages.items()):
            messages.add_metric([verdict, action], n)
        yield messages
        errors = CounterMetricFamily(
            "spambridge_spamd_errors", "Failed spamd scans, by kind", labels=["kind"]
        )
        by_kind = dict.fromkeys(SPAMD_ERROR_KINDS, 0)
        for name, n in sorted(m.counter_totals().items()):
            if name.startswith("errors."):
                by_kind[name.split(".", 1)[1]] = n
                continue
            metric = "spambridge_" + name.replace(".", "_").replace("-", "_")
            yield CounterMetricFamily(metric, name.replace("_", " "), value=n)
        for error_kind, n in sorted(by_kind.items()):
            errors.add_metric([error_kind], n)
        yield errors
        for name, read in sorted(m.gauges.items()):
            yield GaugeMetricFamily(f"spambridge_{name}", name.replace("_", " "), value=read())
        for source in m.families:
            for family in source():
                kind = GaugeMetricFamily if family.kind == "gauge" else CounterMetricFamily
                out = kind(f"spambridge_{family.name}", family.doc, labels=list(family.labels))
                for values, value in family.samples:
                    out.add_metric(list(values), value)
                yield out
        for metric, histogram, doc in (
            ("spambridge_spamd_seconds", m.spamd_seconds, "Time in spamd per scanned message"),
            ("spambridge_message_bytes", m.message_bytes, "Message size"),
        ):
            yield HistogramMetricFamily(
                metric, doc, buckets=histogram.cumulative(), sum_value=histogram.total
            )


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """metrics-listen parsed; `source` is the option as written (what `check` prints)."""

    host: str
    port: int
    source: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.source


def parse_metrics_listen(text: str) -> ListenAddress | None:
    """`HOST:PORT`, `[IPv6]:PORT` or `:PORT` (127.0.0.1); empty is None (no metrics)."""
    if not text:
        return None
    host, _, port = text.rpartition(":")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ConfigError(
            "metrics-listen",
            f"{text!r}: write HOST:PORT with a port in 1-65535 (127.0.0.1:9873, [::1]:9873)",
        )
    return ListenAddress(host.strip("[]") or "127.0.0.1", int(port), text)


async def serve(metrics: Metrics, listen: ListenAddress) -> asyncio.Server:
    """Serve GET /metrics on `listen` (plain HTTP/1.0, one request per connection)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    reg = registry(metrics)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b"/"
            if path.split(b"?")[0] in (b"/metrics", b"/"):
                body = render(reg)
                head = b"HTTP/1.0 200 OK\r\nContent-Type: %s\r\n" % CONTENT_TYPE_LATEST.encode()
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

    return await asyncio.start_server(handle, listen.host, listen.port)
