"""Per-host state of the spamd pool: which host gets the next scan, and which hosts sit out.

The pool (pool.SpamdPool) owns the connections and the failover loop; this module owns the
bookkeeping around them, so that the choice of host is testable on its own:

- scans in flight and recent latency per host, for `spamd-select=least-loaded`;
- set-asides: a host that failed, or whose answers take `spamd-slow-factor` times the pool's
  at the same load (speed.py: a gray failure: overloaded, swapping, stuck on DNS), sits
  out for its cool-down and gets no live mail meanwhile, unless every other host has failed
  that very message (a slow or doubtful answer is better than none);
- the way back: after the cool-down a SPAMC PING (liveness: a dead host stays out), then a
  probation: one live message at a time, each of which must be answered within the pool's
  bound (spamd-slow-factor times the pool's time at the same load; past it the message
  moves on to another host), PROBATION_SCANS of them in a row. PING alone proves nothing
  about scan speed: a spamd whose DNS lookups hang answers it at once;
- back-off: a set-aside on probation, or soon after the host returned, doubles its cool-down
  (up to `spamd-cooldown-max`), so a host that stays slow stops costing the tail;
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
from spambridge.spamd.speed import Backoff, LoadTable, load_level, median, reference

if TYPE_CHECKING:
    from spambridge.spamd.endpoints import SpamdEndpoint

Select = Literal["least-loaded", "failover", "round-robin", "random"]
SELECT_MODES: tuple[Select, ...] = get_args(Select)  # the spamd-select choices
Reason = Literal["failed", "slow"]
State = Literal["up", "probation", "failed", "slow"]  # the last two: set aside, and why
STATES: tuple[State, ...] = get_args(State)

# Weight of the newest sample in the running latency average: the average follows a change
# of speed within a few scans, and one stray sample moves it by only this share.
_ALPHA = 0.3
# A host is never judged slow for being less than this many seconds slower than the pool:
# on an instant or idle spamd a millisecond of jitter would otherwise be "5 times slower".
SLOW_FLOOR = 0.05
# Answers within the pool's bound, one message at a time, that end a probation.
PROBATION_SCANS = 3
# A host that was slow on probation (or soon after one) must come back at least this many
# times faster than it was then, or as fast as the pool: its own earlier probation answers
# are the like-for-like figure when the pool is too busy to show its own time unqueued.
# (Once its cool-down has reached spamd-cooldown-max, the pool's bound alone decides.)
RECOVERY = 2.0

# (ok, detail): the probe's answer; detail is for the log line.
Probe = Callable[["Host"], Awaitable[tuple[bool, str]]]


class Host:
    """One spamd endpoint's live figures."""

    __slots__ = (
        "aside",
        "aside_since",
        "back_at",
        "backoff",
        "endpoint",
        "in_flight",
        "label",
        "latency",
        "probation",
        "probations",
        "probe_task",
        "ratios",
        "recent",
        "samples",
        "scans",
        "set_asides",
        "sick",
        "slowness",
        "table",
        "timer",
        "trial",
        "weight",
    )

    def __init__(self, endpoint: SpamdEndpoint, window: int, backoff: Backoff) -> None:
        self.endpoint = endpoint
        self.label = endpoint.label
        self.weight = endpoint.weight
        self.in_flight = 0
        self.latency = 0.0  # running average of answered scans, seconds (0: none yet)
        self.recent: collections.deque[float] = collections.deque(maxlen=window)
        # (its time / the pool's at the same load, its time - the pool's, the pool's)
        self.ratios: collections.deque[tuple[float, float, float]] = collections.deque(
            maxlen=window
        )
        # The median of the ratios above once there are `window` of them (or a failed
        # probation's ratio); 0 from its return until it is judged again.
        self.slowness = 0.0
        self.table = LoadTable()
        self.samples = 0  # answered scans since the host last (re)joined the pool
        self.scans = 0
        # Set aside (and why) until it is fully back: also while on probation.
        self.aside: Reason | None = None
        self.aside_since = 0.0
        self.probation = 0  # answers within the bound still owed (0: not on probation)
        self.trial: list[float] = []  # its answer times on its last probation
        # Its answer time, one scan at a time, when it was last known slow (None: unknown).
        self.sick: float | None = None
        self.back_at: float | None = None  # when it last returned (None: never left)
        self.backoff = backoff
        self.set_asides: collections.Counter[str] = collections.Counter()
        self.probations: collections.Counter[str] = collections.Counter()
        self.probe_task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    @property
    def state(self) -> State:
        if self.aside is None:
            return "up"
        return "probation" if self.probation else self.aside

    def load(self) -> tuple[float, float]:
        """least-loaded's sort key: scans in flight per unit of weight, counting the one
        about to be placed, then recent latency (a host not yet measured goes first)."""
        return ((self.in_flight + 1) / self.weight, self.latency)

    def level(self) -> int:
        """The load level of a scan just placed on it (speed.load_level)."""
        return load_level(self.in_flight, self.weight)

    def recent_median(self) -> float:
        ordered = sorted(self.recent)
        return ordered[len(ordered) // 2]

    def reset_latency(self) -> None:
        self.latency = 0.0
        self.recent.clear()
        self.ratios.clear()
        self.samples = 0


class HostBoard:
    """Orders the hosts for each scan and keeps each one's state.

    `cooldown` 0 disables every set-aside (failed or slow); `slow_factor` 0 disables only
    the slow one (and the bound on probation). A host is judged slow when, over its last
    `slow_samples` answers, the median of its time over the pool's at the same load level
    (speed.reference: the other hosts in the pool) is at least `slow_factor`, and the median
    excess at least SLOW_FLOOR seconds; so it takes two hosts with recent traffic, and
    `failover`, which sends everything to the first host, has a comparison only for what
    the others took. `cooldown_max` caps the doubling of repeated set-asides.
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
        cooldown_max: float = 0.0,
    ) -> None:
        if select not in SELECT_MODES:
            raise ValueError(f"unknown select mode {select!r}")
        self.select = select
        self.cooldown = cooldown
        self.cooldown_max = max(cooldown, cooldown_max)
        self.slow_factor = slow_factor
        self.slow_samples = max(1, slow_samples)
        self.hosts = tuple(
            Host(e, self.slow_samples, Backoff(cooldown, self.cooldown_max)) for e in endpoints
        )
        self._probe = probe
        self._log = logger
        self.counters = counters
        self._aside_count = 0  # hosts set aside or on probation
        self._next_start = 0
        # round-robin: each host as many times as its weight, spread out (smooth weighted
        # round-robin as nginx does it), so weight 2 is "twice as often", not "twice in a row".
        self._cycle = _smooth_cycle(self.hosts)
        self._weighted = any(h.weight != 1 for h in self.hosts)
        # Slowness is relative to the other hosts: nothing to judge with one host.
        self._judge = slow_factor > 0 and cooldown > 0 and len(self.hosts) > 1

    # ------------------------------------------------------------------ choosing

    def order(self) -> list[Host]:
        """The hosts to try for one scan: the chosen one first, then the failover order; a
        host on probation with nothing in flight before all of them (its one message at a
        time); hosts set aside last (tried only if all the others fail this message)."""
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
            trial = [h for h in hosts if h.probation and h.in_flight == 0]
            hosts = (
                trial
                + [h for h in hosts if h.aside is None]
                + [h for h in hosts if h.aside and h not in trial]
            )
        return hosts

    def probation_bound(self, host: Host) -> float | None:
        """How long the scan just placed on `host` may take, if it is on probation and the
        pool has a figure to hold it to (None: no limit but the pool's timeouts)."""
        if not host.probation or not self._judge:
            return None
        return self._trial_bound(host, self._reference(host, host.level(), time.monotonic()))

    def _bound(self, pool: float) -> float:
        return max(self.slow_factor * pool, pool + SLOW_FLOOR)

    def _trial_bound(self, host: Host, pool: float | None) -> float | None:
        """What a probation answer may take: the pool's bound, and for a host known slow
        one scan at a time, RECOVERY times faster than that (or the pool's own time)."""
        if not self._judge:
            return None
        limits = [] if pool is None else [self._bound(pool)]
        if host.sick is not None:
            own = max(host.sick / RECOVERY, SLOW_FLOOR)
            limits.append(own if pool is None else max(own, pool))
        return min(limits) if limits else None

    def _reference(self, host: Host, level: int, now: float) -> float | None:
        return reference(
            (h.table for h in self.hosts if h is not host and h.aside is None), level, now
        )

    # ------------------------------------------------------------------ outcomes

    def answered(self, host: Host, elapsed: float, level: int = 1) -> None:
        """`host` answered a scan in `elapsed` seconds; it was sent at load `level`."""
        host.scans += 1
        host.samples += 1
        host.recent.append(elapsed)
        host.latency = (
            elapsed if host.samples == 1 else host.latency + _ALPHA * (elapsed - host.latency)
        )
        if host.aside is not None and not host.probation:
            if host.aside == "failed":  # tried as a last resort, and it answered: alive
                self._to_probation(host, "answered a scan")
            return
        if not self._judge:  # one host, or slowness not judged: nothing to compare
            if host.probation:
                self._probation_answer(host, elapsed, None)
            return
        now = time.monotonic()
        pool = self._reference(host, level, now)
        host.table.add(level, elapsed, now)
        if host.probation:
            self._probation_answer(host, elapsed, pool)
        elif pool is not None:
            host.ratios.append((elapsed / max(pool, 1e-6), elapsed - pool, pool))
            if len(host.ratios) >= self.slow_samples:
                self._check_slow(host)

    def failed(self, host: Host, why: str) -> None:
        """`host` failed a scan (connect, send, read, bad reply): set it aside."""
        if self.cooldown <= 0:
            return
        if host.aside is None or host.probation:
            self._set_aside(host, "failed", why)
        elif host.timer is None and host.probe_task is None:
            self._schedule_probe(host)

    def probation_overrun(self, host: Host, bound: float) -> None:
        """`host`, on probation, did not answer within `bound`: the message moved on."""
        if host.probation:
            host.sick = max(host.sick or 0.0, bound)
            self._fail_probation(host, f"no answer within its bound of {bound * 1000:.0f} ms")

    def _check_slow(self, host: Host) -> None:
        ratio = median(r for r, _, _ in host.ratios)
        host.slowness = ratio
        if ratio < self.slow_factor:
            return
        excess = median(e for _, e, _ in host.ratios)
        if excess >= SLOW_FLOOR:
            pool = median(p for _, _, p in host.ratios)
            self._set_aside(
                host,
                "slow",
                f"median {host.recent_median() * 1000:.0f} ms over its last "
                f"{len(host.recent)} scans, {ratio:.1f} times the pool's "
                f"{pool * 1000:.0f} ms at the same load, spamd-slow-factor {self.slow_factor:g}",
            )

    def _probation_answer(self, host: Host, elapsed: float, pool: float | None) -> None:
        bound = self._trial_bound(host, pool)
        if bound is not None and elapsed > bound:
            if pool is not None:
                host.slowness = elapsed / max(pool, 1e-6)
            host.sick = max(host.sick or 0.0, elapsed)
            self._fail_probation(
                host,
                f"answered in {elapsed * 1000:.0f} ms, over its bound of {bound * 1000:.0f} ms",
            )
            return
        host.trial.append(elapsed)
        host.probation -= 1
        if not host.probation:
            host.probations["passed"] += 1
            self.counters["host_probations"] += 1
            self._rejoin(
                host,
                f"{PROBATION_SCANS} probation scans answered within its bound "
                f"(slowest {max(host.trial) * 1000:.0f} ms)",
            )

    def _fail_probation(self, host: Host, why: str) -> None:
        host.probations["failed"] += 1
        self.counters["host_probations"] += 1
        self.counters["host_probations_failed"] += 1
        self._set_aside(host, "slow", f"probation: {why}")

    # ------------------------------------------------------------------ set aside, probe

    def _set_aside(self, host: Host, reason: Reason, why: str) -> None:
        now = time.monotonic()
        back_for = None if host.back_at is None else now - host.back_at
        if not host.probation:
            soon = back_for is not None and back_for < host.backoff.current
            if reason == "slow" and soon and host.trial:
                # Its return was a mistake: its probation answers were those of a slow host.
                host.sick = max(host.sick or 0.0, max(host.trial))
            else:
                host.sick = None  # a new episode: nothing known of it one scan at a time
        cooldown = host.backoff.at_set_aside(on_probation=bool(host.probation), back_for=back_for)
        if host.aside is None:
            self._aside_count += 1
        host.aside = reason
        host.probation = 0
        host.aside_since = now
        host.set_asides[reason] += 1
        host.table.clear()  # its times describe a sick host: no reference for the others
        self.counters["host_set_aside"] += 1
        self.counters[f"host_set_aside.{reason}"] += 1
        doubled = (
            f" (doubled; spamd-cooldown-max {self.cooldown_max:g}s)"
            if cooldown > self.cooldown
            else ""
        )
        # A failure already has its WARNING (the failover line or the message's error);
        # slowness has no other voice.
        self._log.log(
            logging.WARNING if reason == "slow" else logging.INFO,
            "spamd %s set aside (%s: %s); PING in %gs%s, then a probation before it gets its "
            "share of mail again",
            host.label,
            reason,
            why,
            cooldown,
            doubled,
        )
        if host.timer is not None:
            host.timer.cancel()
            host.timer = None
        if host.probe_task is None:
            self._schedule_probe(host)

    def _schedule_probe(self, host: Host) -> None:
        loop = asyncio.get_running_loop()
        host.timer = loop.call_later(host.backoff.current, self._start_probe, host)

    def _start_probe(self, host: Host) -> None:
        host.timer = None
        if host.aside is None or host.probation or host.probe_task is not None:
            return
        host.probe_task = asyncio.get_running_loop().create_task(self._run_probe(host))

    async def _run_probe(self, host: Host) -> None:
        try:
            ok, detail = await self._probe(host)
        finally:
            host.probe_task = None
        self.counters["host_probes"] += 1
        if host.aside is None or host.probation:  # it came back meanwhile (a last resort)
            return
        if ok:
            self._to_probation(host, f"PING answered ({detail})")
        else:
            self.counters["host_probes_failed"] += 1
            self._log.debug("spamd %s probe failed (%s); still set aside", host.label, detail)
            self._schedule_probe(host)

    def _to_probation(self, host: Host, why: str) -> None:
        """Alive again: from now on one live message at a time until PROBATION_SCANS are
        answered within its bound."""
        if host.timer is not None:
            host.timer.cancel()
            host.timer = None
        host.probation = PROBATION_SCANS
        host.trial = []
        if host.backoff.current >= self.cooldown_max:
            host.sick = None  # after the longest cool-down, judged against the pool alone
        host.reset_latency()
        self._log.info(
            "spamd %s on probation after %.1fs set aside (%s): %s; it gets one message at a "
            "time until %d are answered within its bound",
            host.label,
            time.monotonic() - host.aside_since,
            host.aside,
            why,
            PROBATION_SCANS,
        )

    def _rejoin(self, host: Host, why: str) -> None:
        now = time.monotonic()
        self._log.info(
            "spamd %s back in the pool after %.1fs set aside (%s): %s",
            host.label,
            now - host.aside_since,
            host.aside,
            why,
        )
        host.aside = None
        host.probation = 0
        host.slowness = 0.0
        host.back_at = now
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
        """Per-host figures: in flight, recent latency, up, scans, set-asides by reason,
        state, cool-down, slowness, probations."""
        hosts = self.hosts
        now = time.monotonic()

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
                "1 while a spamd host gets its share of mail, 0 while set aside or on probation",
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
            Family(
                "spamd_host_state",
                "gauge",
                "1 for a spamd host's state: up, probation (one message at a time until it "
                "proves its speed), failed or slow (set aside)",
                ("host", "state"),
                tuple(
                    ((h.label, state), float(h.state == state)) for h in hosts for state in STATES
                ),
            ),
            each(
                "spamd_host_cooldown_seconds",
                "gauge",
                "A spamd host's cool-down: the set-aside under way, or the next one's (doubled "
                "while it keeps failing, up to spamd-cooldown-max)",
                lambda h: h.backoff.shown(
                    up=h.aside is None, back_for=None if h.back_at is None else now - h.back_at
                ),
            ),
            each(
                "spamd_host_slowness",
                "gauge",
                "Median over a spamd host's recent scans of its time over the pool's at the "
                "same load (set aside as slow at spamd-slow-factor; 0: not judged yet)",
                lambda h: h.slowness,
            ),
            Family(
                "spamd_host_probations",
                "counter",
                "Probations a spamd host ended, by result (failed: set aside again)",
                ("host", "result"),
                tuple(
                    ((h.label, result), float(h.probations[result]))
                    for h in hosts
                    for result in ("passed", "failed")
                ),
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
