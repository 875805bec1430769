"""Per-host state of the spamd pool: which host gets the next scan, and which hosts sit out.

The pool (pool.SpamdPool) owns the connections and the failover loop; this module owns the
bookkeeping around them, so that the choice of host is testable on its own:

- scans in flight and recent latency per host, for `spamd-select=least-loaded`;
- set-asides: a host that failed, or whose recent latency is `spamd-slow-factor` times the
  pool's (a gray failure: overloaded, swapping, stuck on DNS), sits out for `spamd-cooldown`
  and then gets a SPAMC PING; only a PONG brings it back. While it sits out it gets no live
  mail, unless every other host has failed that very message (a slow or doubtful answer is
  better than none);
- one log line per state change, and the figures for the metrics endpoint.

No sockets here: the probe itself is a callable given by the pool.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Literal, get_args

from spambridge.metrics import Family

if TYPE_CHECKING:
    from spambridge.spamd.endpoints import SpamdEndpoint

Select = Literal["least-loaded", "failover", "round-robin", "random"]
SELECT_MODES: tuple[Select, ...] = get_args(Select)  # the spamd-select choices
Reason = Literal["failed", "slow"]

# Weight of the newest sample in the running latency average: the average follows a change
# of speed within a few scans, and one stray sample moves it by only this share.
_ALPHA = 0.3
# A host is never judged slow for being less than this many seconds slower than the pool:
# on an instant or idle spamd a millisecond of jitter would otherwise be "5 times slower".
SLOW_FLOOR = 0.05

# (ok, detail): the probe's answer; detail is for the log line.
Probe = Callable[["Host"], Awaitable[tuple[bool, str]]]


class Host:
    """One spamd endpoint's live figures."""

    __slots__ = (
        "aside",
        "aside_since",
        "endpoint",
        "in_flight",
        "label",
        "latency",
        "probe_task",
        "recent",
        "samples",
        "scans",
        "set_asides",
        "timer",
        "weight",
    )

    def __init__(self, endpoint: SpamdEndpoint, window: int) -> None:
        self.endpoint = endpoint
        self.label = endpoint.label
        self.weight = endpoint.weight
        self.in_flight = 0
        self.latency = 0.0  # running average of answered scans, seconds (0: none yet)
        self.recent: collections.deque[float] = collections.deque(maxlen=window)
        self.samples = 0  # answered scans since the host last (re)joined the pool
        self.scans = 0
        self.aside: Reason | None = None
        self.aside_since = 0.0
        self.set_asides: collections.Counter[str] = collections.Counter()
        self.probe_task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def load(self) -> tuple[float, float]:
        """least-loaded's sort key: scans in flight per unit of weight, counting the one
        about to be placed, then recent latency (a host not yet measured goes first)."""
        return ((self.in_flight + 1) / self.weight, self.latency)

    def recent_median(self) -> float:
        ordered = sorted(self.recent)
        return ordered[len(ordered) // 2]

    def reset_latency(self) -> None:
        self.latency = 0.0
        self.recent.clear()
        self.samples = 0


class HostBoard:
    """Orders the hosts for each scan and keeps each one's state.

    `cooldown` 0 disables every set-aside (failed or slow); `slow_factor` 0 disables only
    the slow one. A host is judged slow when its last `slow_samples` answers have a median at
    least `slow_factor` times (and SLOW_FLOOR seconds above) the median of the other hosts in
    the pool that have as many samples; so it takes two hosts with recent traffic, and
    `failover`, which sends everything to the first host, never has a comparison.
    """

    def __init__(
        self,
        endpoints: Sequence[SpamdEndpoint],
        *,
        select: Select,
        cooldown: float,
        slow_factor: float,
        slow_samples: int,
        probe: Probe,
        logger: logging.Logger,
        counters: collections.Counter[str],
    ) -> None:
        if select not in SELECT_MODES:
            raise ValueError(f"unknown select mode {select!r}")
        self.select = select
        self.cooldown = cooldown
        self.slow_factor = slow_factor
        self.slow_samples = max(1, slow_samples)
        self.hosts = tuple(Host(e, self.slow_samples) for e in endpoints)
        self._probe = probe
        self._log = logger
        self.counters = counters
        self._aside_count = 0
        self._next_start = 0
        # round-robin: each host as many times as its weight, spread out (smooth weighted
        # round-robin as nginx does it), so weight 2 is "twice as often", not "twice in a row".
        self._cycle = _smooth_cycle(self.hosts)
        self._weighted = any(h.weight != 1 for h in self.hosts)
        # Slowness is relative to the other hosts: nothing to judge with one host.
        self._judge = slow_factor > 0 and cooldown > 0 and len(self.hosts) > 1

    # ------------------------------------------------------------------ choosing

    def order(self) -> list[Host]:
        """The hosts to try for one scan: the chosen one first, then the failover order;
        hosts set aside last (tried only if all the others fail this message)."""
        hosts: list[Host]
        if len(self.hosts) == 1:
            return list(self.hosts)
        if self.select == "least-loaded":
            hosts = sorted(self.hosts, key=Host.load)
        elif self.select == "failover":
            hosts = list(self.hosts)
        elif self.select == "round-robin":
            cycle = self._cycle
            start = self._next_start % len(cycle)
            if self._aside_count:  # the next ready host in the cycle: shares stay even
                for step in range(len(cycle)):
                    if cycle[(start + step) % len(cycle)].aside is None:
                        start = (start + step) % len(cycle)
                        break
            self._next_start = start + 1
            first = cycle[start]
            hosts = [first, *(h for h in self.hosts if h is not first)]
        elif self._weighted:
            hosts = _weighted_shuffle(self.hosts)
        else:
            hosts = list(self.hosts)
            random.shuffle(hosts)
        if self._aside_count:
            hosts = [h for h in hosts if h.aside is None] + [h for h in hosts if h.aside]
        return hosts

    # ------------------------------------------------------------------ outcomes

    def answered(self, host: Host, elapsed: float) -> None:
        """`host` answered a scan in `elapsed` seconds."""
        host.scans += 1
        host.samples += 1
        host.recent.append(elapsed)
        host.latency = (
            elapsed if host.samples == 1 else host.latency + _ALPHA * (elapsed - host.latency)
        )
        if host.aside is not None:
            if host.aside == "failed":  # tried as a last resort, and it answered
                self._rejoin(host, "answered a scan")
        elif self._judge and host.samples >= self.slow_samples:
            self._check_slow(host)

    def failed(self, host: Host, why: str) -> None:
        """`host` failed a scan (connect, send, read, bad reply): set it aside."""
        if self.cooldown <= 0:
            return
        if host.aside is None:
            self._set_aside(host, "failed", why)
        elif host.timer is None and host.probe_task is None:
            self._schedule_probe(host)

    def _check_slow(self, host: Host) -> None:
        # Cheap gate on the running averages first; the medians only when it trips.
        others = [h for h in self.hosts if h is not host and h.aside is None and h.samples > 0]
        if not others:
            return
        fastest = min(h.latency for h in others)
        if host.latency < self.slow_factor * fastest:
            return
        peers = sorted(h.recent_median() for h in others if h.samples >= self.slow_samples)
        if not peers:
            return
        pool = peers[len(peers) // 2]
        mine = host.recent_median()
        if mine >= self.slow_factor * pool and mine - pool >= SLOW_FLOOR:
            self._set_aside(
                host,
                "slow",
                f"median {mine * 1000:.0f} ms over its last {len(host.recent)} scans, "
                f"pool {pool * 1000:.0f} ms, spamd-slow-factor {self.slow_factor:g}",
            )

    # ------------------------------------------------------------------ set aside, probe

    def _set_aside(self, host: Host, reason: Reason, why: str) -> None:
        host.aside = reason
        host.aside_since = time.monotonic()
        host.set_asides[reason] += 1
        self._aside_count += 1
        self.counters["host_set_aside"] += 1
        self.counters[f"host_set_aside.{reason}"] += 1
        # A failure already has its WARNING (the failover line or the message's error);
        # slowness has no other voice.
        self._log.log(
            logging.WARNING if reason == "slow" else logging.INFO,
            "spamd %s set aside (%s: %s); PING in %gs before it gets mail again",
            host.label,
            reason,
            why,
            self.cooldown,
        )
        self._schedule_probe(host)

    def _schedule_probe(self, host: Host) -> None:
        loop = asyncio.get_running_loop()
        host.timer = loop.call_later(self.cooldown, self._start_probe, host)

    def _start_probe(self, host: Host) -> None:
        host.timer = None
        if host.aside is None or host.probe_task is not None:
            return
        host.probe_task = asyncio.get_running_loop().create_task(self._run_probe(host))

    async def _run_probe(self, host: Host) -> None:
        try:
            ok, detail = await self._probe(host)
        finally:
            host.probe_task = None
        self.counters["host_probes"] += 1
        if host.aside is None:  # it came back meanwhile (a last-resort scan succeeded)
            return
        if ok:
            self._rejoin(host, f"PING answered ({detail})")
        else:
            self.counters["host_probes_failed"] += 1
            self._log.debug("spamd %s probe failed (%s); still set aside", host.label, detail)
            self._schedule_probe(host)

    def _rejoin(self, host: Host, why: str) -> None:
        away = time.monotonic() - host.aside_since
        self._log.info(
            "spamd %s back in the pool after %.1fs set aside (%s): %s",
            host.label,
            away,
            host.aside,
            why,
        )
        host.aside = None
        self._aside_count -= 1
        if host.timer is not None:
            host.timer.cancel()
            host.timer = None
        host.reset_latency()  # judged afresh on new samples; first in ties until measured

    def close(self) -> None:
        for host in self.hosts:
            if host.timer is not None:
                host.timer.cancel()
                host.timer = None
            if host.probe_task is not None:
                host.probe_task.cancel()
                host.probe_task = None

    # ------------------------------------------------------------------ metrics

    def metric_families(self) -> list[Family]:
        """Per-host figures: in flight, recent latency, up, scans, set-asides by reason."""
        hosts = self.hosts

        def each(
            name: str, kind: Literal["gauge", "counter"], doc: str, value: Callable[[Host], float]
        ) -> Family:
            return Family(
                name, kind, doc, ("host",), tuple(((h.label,), float(value(h))) for h in hosts)
            )

        aside = tuple(
            ((h.label, reason), float(h.set_asides[reason]))
            for h in hosts
            for reason in ("failed", "slow")
        )
        return [
            each(
                "spamd_host_in_flight",
                "gauge",
                "Scans in flight per spamd host",
                lambda h: h.in_flight,
            ),
            each(
                "spamd_host_latency_seconds",
                "gauge",
                "Running average of a spamd host's answer time (0: not measured since it joined)",
                lambda h: h.latency,
            ),
            each(
                "spamd_host_up",
                "gauge",
                "1 while a spamd host gets mail, 0 while set aside",
                lambda h: 0 if h.aside else 1,
            ),
            each("spamd_host_scans", "counter", "Scans a spamd host answered", lambda h: h.scans),
            Family(
                "spamd_host_set_aside",
                "counter",
                "Times a spamd host was set aside, by reason",
                ("host", "reason"),
                aside,
            ),
        ]


def _smooth_cycle(hosts: Sequence[Host]) -> list[Host]:
    """One round of smooth weighted round-robin: len == sum of weights."""
    current = [0] * len(hosts)
    total = sum(h.weight for h in hosts)
    cycle = []
    for _ in range(total):
        for i, h in enumerate(hosts):
            current[i] += h.weight
        best = max(range(len(hosts)), key=current.__getitem__)
        current[best] -= total
        cycle.append(hosts[best])
    return cycle


def _weighted_shuffle(hosts: Sequence[Host]) -> list[Host]:
    """A random order where a host comes first with probability weight / total weight."""
    keyed = sorted(hosts, key=lambda h: random.random() ** (1.0 / h.weight), reverse=True)
    return keyed
