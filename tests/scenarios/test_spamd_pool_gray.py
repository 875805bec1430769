"""A gray failure in the spamd pool: a host that scans slowly but answers PING at once.

The fake spamd's `slow-scan` fault (and its children/service time) make scans slow while PING
stays instant, as a real spamd whose DNS lookups hang. What the operator sees: the host is
found within a few of its own scans however loaded the pool is, stays out while it stays
slow (each return costs one message at most the pool's bound, and the returns thin out),
comes back once it is fast again, and a host that is merely smaller is never set aside.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator

import pytest

from spambridge.spamd.endpoints import SpamdTimeouts, parse_spamd_socket
from spambridge.spamd.hosts import Host, Reason
from spambridge.spamd.pool import SpamdPool
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(40)

TIMEOUTS = SpamdTimeouts(connect=1.0, send=1.0, read=10.0, end=20.0)
HAM = b"From: a@example.org\r\nSubject: hello\r\n\r\nJust a normal message.\r\n"


@pytest.fixture
async def three() -> AsyncIterator[tuple[FakeSpamd, FakeSpamd, FakeSpamd]]:
    async with FakeSpamd() as a, FakeSpamd() as b, FakeSpamd() as c:
        yield a, b, c


def pool_of(*servers: FakeSpamd, **kwargs: object) -> SpamdPool:
    kwargs.setdefault("timeouts", TIMEOUTS)
    return SpamdPool([parse_spamd_socket(s.address) for s in servers], **kwargs)  # type: ignore[arg-type]


def scans(server: FakeSpamd) -> int:
    return sum(r.method != "PING" for r in server.requests)


def spy_set_asides(pool: SpamdPool) -> list[tuple[str, Reason, int]]:
    """(host, reason, scans it had answered) at each set-aside."""
    seen: list[tuple[str, Reason, int]] = []
    board = pool.hosts
    original = board._set_aside

    def spy(host: Host, reason: Reason, why: str) -> None:
        seen.append((host.label, reason, host.scans))
        original(host, reason, why)

    board._set_aside = spy  # type: ignore[method-assign]
    return seen


async def test_spamd_pool_gray_host_stays_out_and_its_returns_thin_out(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = three
    a.service_time = b.service_time = 0.03
    c.fault, c.delay = "slow-scan", 0.4  # PING answers at once
    pool = pool_of(a, b, c, select="round-robin", slow_samples=3, cooldown=0.25)
    latencies = []
    with caplog.at_level(logging.INFO, logger="spambridge.spamd"):
        for _ in range(9):
            await pool.scan(HAM, command="CHECK")
        assert pool.counters["host_set_aside.slow"] == 1
        stop = time.monotonic() + 1.8
        while time.monotonic() < stop:
            started = time.monotonic()
            assert (await pool.scan(HAM, command="CHECK")).host != c.address
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.02)
    # Every PONG led to a probation, and every probation to one message cut off at the
    # pool's bound (5 x 30 ms) and answered elsewhere: no message waited for the slow host.
    probations = pool.counters["host_probations_failed"]
    assert probations >= 2
    assert pool.counters["host_probations"] == probations
    assert scans(c) == 3 + probations
    assert max(latencies) < 0.35, latencies
    assert pool.counters["host_set_aside.slow"] == 1 + probations
    # The cool-down doubled each time: 0.25, 0.5, 1, ... (as the log says).
    cooldowns = [
        float(m.group(1))
        for r in caplog.records
        if (
            m := re.search(
                rf"spamd {re.escape(c.address)} set aside .*PING in ([\d.]+)s", r.getMessage()
            )
        )
    ]
    assert cooldowns[:3] == [0.25, 0.5, 1.0][: len(cooldowns[:3])]
    assert len(cooldowns) == 1 + probations
    assert not any("back in the pool" in r.getMessage() for r in caplog.records)
    assert sum("on probation" in r.getMessage() for r in caplog.records) == probations
    families = {f.name: dict(f.samples) for f in pool.metric_families()}
    assert families["spamd_host_state"][(c.address, "slow")] == 1
    assert families["spamd_host_state"][(c.address, "up")] == 0
    assert families["spamd_host_probations"][(c.address, "failed")] == probations
    assert families["spamd_host_cooldown_seconds"][(c.address,)] == cooldowns[-1]
    assert families["spamd_host_cooldown_seconds"][(a.address,)] == 0.25
    assert families["spamd_host_slowness"][(c.address,)] >= 5
    await pool.close()


async def test_spamd_pool_gray_host_returns_once_fast_again(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = three
    a.service_time = b.service_time = 0.03
    c.fault, c.delay = "slow-scan", 0.4
    pool = pool_of(a, b, c, select="round-robin", slow_samples=3, cooldown=0.25)
    for _ in range(9):
        await pool.scan(HAM, command="CHECK")
    assert pool.counters["host_set_aside.slow"] == 1
    c.fault = None  # DNS answers again
    with caplog.at_level(logging.INFO, logger="spambridge.spamd"):
        stop = time.monotonic() + 1.0
        while time.monotonic() < stop and pool.hosts.hosts[2].aside is not None:
            await pool.scan(HAM, command="CHECK")
            await asyncio.sleep(0.02)
    assert pool.hosts.hosts[2].aside is None
    assert pool.counters["host_probations"] == 1
    assert pool.counters["host_probations_failed"] == 0
    assert any(f"spamd {c.address} back in the pool" in r.getMessage() for r in caplog.records)
    before = scans(c)
    for _ in range(6):
        await pool.scan(HAM, command="CHECK")
    assert scans(c) == before + 2  # its share again
    await pool.close()


async def test_spamd_pool_gray_probation_is_one_message_at_a_time(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    a, b, c = three
    for server in three:
        server.service_time = 0.05
    pool = pool_of(a, b, c, cooldown=0.2)
    c.fault = "ex-74"  # fails outright: set aside, PINGed, then on probation
    await asyncio.gather(*(pool.scan(HAM, command="CHECK") for _ in range(3)))
    assert pool.counters["host_set_aside.failed"] == 1
    c.fault = None
    await asyncio.sleep(0.35)  # PINGed: alive
    c.max_active = 0
    await asyncio.gather(*(pool.scan(HAM, command="CHECK") for _ in range(12)))
    assert c.max_active == 1  # under least-loaded it would have taken four at once
    await pool.close()


async def test_spamd_pool_gray_slow_host_found_within_its_first_answers_under_load(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    """30 senders on 3 hosts of 2 children: every host has ~10 scans queued, so raw
    latencies are mostly queue; compared at the same load the slow host shows at once."""
    a, b, c = three
    for server in three:
        server.children, server.service_time = 2, 0.02
    c.service_time = 0.2  # ten times slower for scans; PING instant
    pool = pool_of(a, b, c, max_connections=30, cooldown=30)
    seen = spy_set_asides(pool)

    async def sender() -> None:
        for _ in range(10):
            await pool.scan(HAM, command="CHECK")

    await asyncio.gather(*(sender() for _ in range(30)))
    assert [(host, reason) for host, reason, _ in seen] == [(c.address, "slow")]
    assert seen[0][2] <= 5  # at its fifth answer (spamd-slow-samples) at the latest
    await pool.close()


@pytest.mark.parametrize("select", ["least-loaded", "round-robin"])
async def test_spamd_pool_gray_a_smaller_host_is_not_set_aside_under_load(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd], select: str
) -> None:
    """Capacities 1 : 2 : 4 (2 children at 80, 40, 20 ms), a closed loop that keeps them
    busy: the small host queues, its answers take many times the others', and it is
    healthy. (round-robin feeds it a third of the mail, far past its capacity.)"""
    a, b, c = three
    for server, seconds in zip(three, (0.08, 0.04, 0.02), strict=True):
        server.children, server.service_time = 2, seconds
    pool = pool_of(a, b, c, select=select, cooldown=30)

    async def sender() -> None:
        for _ in range(12):
            await pool.scan(HAM, command="CHECK")

    await asyncio.gather(*(sender() for _ in range(12)))
    assert pool.counters["host_set_aside"] == 0
    await pool.close()


async def test_spamd_pool_gray_a_return_that_was_a_mistake_is_not_repeated() -> None:
    """The pool busy: its time one scan at a time is unknown, so a host still 10x slow can
    pass its first probation (200 ms against a pool answering in 100 ms at level 10).
    Set aside again soon after, it is held next time to its own probation times: it must
    come back twice as fast as it was (or as fast as the pool)."""
    from collections import Counter

    from spambridge.spamd.hosts import HostBoard

    async def pong(host: Host) -> tuple[bool, str]:
        return True, "PONG in 0 ms"

    endpoints = [parse_spamd_socket(f"127.0.0.1:{port}") for port in (1, 2, 3)]
    board = HostBoard(
        endpoints,
        select="least-loaded",
        cooldown=0.05,
        cooldown_max=10,
        slow_factor=5,
        slow_samples=3,
        probe=pong,
        logger=logging.getLogger("spambridge.spamd"),
        counters=Counter(),
    )
    a, b, c = board.hosts

    def state() -> str:  # read afresh each time (no narrowing across the awaits)
        return c.state

    def busy_pool() -> None:
        for host in (a, b):
            board.answered(host, 0.1, 10)

    busy_pool()
    for _ in range(3):
        board.answered(c, 1.0, 10)
    assert state() == "slow"
    await asyncio.sleep(0.08)
    assert state() == "probation"
    assert board.probation_bound(c) == pytest.approx(0.5)  # 5 x the pool's 100 ms
    for _ in range(3):
        board.answered(c, 0.2, 1)
    assert state() == "up"  # a mistake, as the pool could not tell
    for _ in range(3):
        busy_pool()
        board.answered(c, 1.0, 10)
    assert state() == "slow"
    await asyncio.sleep(0.15)  # the cool-down doubled to 0.1 s
    assert state() == "probation"
    c.in_flight = 1
    assert board.probation_bound(c) == pytest.approx(0.1)  # half its 200 ms
    c.in_flight = 0
    board.answered(c, 0.2, 1)
    assert state() == "slow"
    assert board.counters["host_probations_failed"] == 1
    await asyncio.sleep(0.25)  # doubled again: 0.2 s
    assert state() == "probation"
    for _ in range(3):
        board.answered(c, 0.02, 1)  # recovered
    assert state() == "up"
    board.close()


async def test_spamd_pool_gray_figures_on_the_metrics_page(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    pytest.importorskip("prometheus_client")
    from spambridge.metrics import Metrics

    a, b, c = three
    a.service_time = b.service_time = 0.03
    c.fault, c.delay = "slow-scan", 0.4
    pool = pool_of(a, b, c, select="round-robin", slow_samples=3, cooldown=0.1)
    stats = Metrics()
    stats.families.append(pool.metric_families)
    stats.sources.append(lambda: pool.counters)
    for _ in range(9):
        await pool.scan(HAM, command="CHECK")
    await asyncio.sleep(0.15)  # PINGed: on probation
    page = stats.render().decode()
    assert f'spambridge_spamd_host_state{{host="{c.address}",state="probation"}} 1.0' in page
    assert f'spambridge_spamd_host_up{{host="{c.address}"}} 0.0' in page
    await pool.scan(HAM, command="CHECK")  # its probation message: cut off, set aside again
    page = stats.render().decode()
    assert f'spambridge_spamd_host_state{{host="{c.address}",state="slow"}} 1.0' in page
    assert f'spambridge_spamd_host_state{{host="{c.address}",state="probation"}} 0.0' in page
    assert f'spambridge_spamd_host_state{{host="{a.address}",state="up"}} 1.0' in page
    probations = f'spambridge_spamd_host_probations_total{{host="{c.address}",result="failed"}}'
    assert f"{probations} 1.0" in page
    assert f'spambridge_spamd_host_cooldown_seconds{{host="{c.address}"}} 0.2' in page
    assert f'spambridge_spamd_host_slowness{{host="{c.address}"}}' in page
    assert "spambridge_host_probations_total 1.0" in page
    assert "spambridge_host_probations_failed_total 1.0" in page
    assert "spambridge_host_set_aside_slow_total 2.0" in page
    await pool.close()
