"""How fast a spamd host scans, judged on like terms, and how long a set-aside lasts.

Pure values: no clock of its own (callers pass `now`), no event loop, no sockets.

A scan's time is mostly the host's queue when the pool keeps it busy: a spamd with 2 children
and 10 of our scans in flight answers the tenth after five service times. Comparing raw
latencies lets the load decide (a host that has just joined, or one round-robin keeps
busier, looks slow; a slow host whose queue is still short looks fine). So every answer is
filed under its *load level*, the host's scans in flight when it was sent (itself included)
per unit of weight, and a host is compared with the other hosts at the same level: what
least-loaded levels across hosts, and what a host of the weight the admin gave carries.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MAX_LEVEL", "Backoff", "LoadTable", "load_level", "reference"]

# Levels above this share one entry: past it every host is queueing deep anyway.
MAX_LEVEL = 64
# Weight of the newest answer in a level's running average.
_ALPHA = 0.3
# An entry not refreshed for this long is not used as it stands: the pool may have changed
# speed since (a busy pool never refreshes its low levels); see LoadTable.estimate.
FRESH = 120.0


def load_level(in_flight: int, weight: int) -> int:
    """The load level of a scan sent while the host had `in_flight` scans (this one
    included): scans per unit of weight, rounded up, 1..MAX_LEVEL."""
    return max(1, min(MAX_LEVEL, -(-in_flight // max(1, weight))))


class LoadTable:
    """One host's running average answer time per load level, with when each was last fed."""

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: dict[int, tuple[float, float]] = {}  # level -> (seconds, updated at)

    def add(self, level: int, seconds: float, now: float) -> None:
        old = self._levels.get(level)
        average = seconds if old is None else old[0] + _ALPHA * (seconds - old[0])
        self._levels[level] = (average, now)

    def clear(self) -> None:
        self._levels.clear()

    def estimate(self, level: int, now: float) -> float | None:
        """This host's expected answer time at `level`, from fresh entries only: the least
        of the upper bounds they give. A scan never answers sooner for having more scans
        ahead of it, so an entry at a higher level bounds it as it stands; and a queue of k
        scans ahead takes at most k service times, so an entry at a lower level bounds it
        scaled up in proportion (loose for a host with several children: a host compared
        with it is judged leniently). None: nothing fresh.
        """
        best: float | None = None
        for lvl, (seconds, updated) in self._levels.items():
            if now - updated > FRESH:
                continue
            bound = seconds if lvl >= level else seconds * level / lvl
            if best is None or bound < best:
                best = bound
        return best


def reference(tables: Iterable[LoadTable], level: int, now: float) -> float | None:
    """The pool's answer time at `level`: the upper median of the given hosts' estimates
    (with two hosts, the slower: a host is judged slow only against the pool as a whole)."""
    found = sorted(e for t in tables if (e := t.estimate(level, now)) is not None)
    return found[len(found) // 2] if found else None


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else math.nan


@dataclass
class Backoff:
    """A host's cool-down: `base` for a first set-aside; doubled (up to `cap`) for one that
    comes while the host is on probation or less than its cool-down after it returned; back
    to `base` once it has stayed in the pool that long."""

    base: float
    cap: float
    current: float = 0.0

    def __post_init__(self) -> None:
        self.cap = max(self.cap, self.base)
        self.current = self.current or self.base

    def at_set_aside(self, *, on_probation: bool, back_for: float | None) -> float:
        """The cool-down of a set-aside starting now. `back_for`: seconds since the host
        last returned to the pool (None: it never left it)."""
        if on_probation or (back_for is not None and back_for < self.current):
            self.current = min(self.cap, self.current * 2)
        else:
            self.current = self.base
        return self.current

    def shown(self, *, up: bool, back_for: float | None) -> float:
        """For the metrics: the cool-down of the set-aside under way, or while the host is in
        the pool the one its next set-aside would get."""
        if not up:
            return self.current
        if back_for is None or back_for >= self.current:
            return self.base
        return min(self.cap, self.current * 2)
