"""Which spamd host gets the scan: least-loaded, weights, and the slow host set aside.

Fake spamds with a fixed service time and a fixed number of children (like spamd's
--max-children) stand in for hosts of different speed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from spambridge.spamd.endpoints import SpamdTimeouts, parse_spamd_socket
from spambridge.spamd.pool import SpamdPool
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(30)

TIMEOUTS = SpamdTimeouts(connect=1.0, send=1.0, read=2.0, end=5.0)
HAM = b"From: a@example.org\r\nSubject: hello\r\n\r\nJust a normal message.\r\n"


@pytest.fixture
async def three() -> AsyncIterator[tuple[FakeSpamd, FakeSpamd, FakeSpamd]]:
    async with FakeSpamd() as a, FakeSpamd() as b, FakeSpamd() as c:
        yield a, b, c


def pool_of(*servers: FakeSpamd, weights: tuple[int, ...] = (), **kwargs: object) -> SpamdPool:
    entries = [
        f"{s.address};weight={weights[i]}" if weights else s.address for i, s in enumerate(servers)
    ]
    kwargs.setdefault("timeouts", TIMEOUTS)
    return SpamdPool([parse_spamd_socket(e) for e in entries], **kwargs)  # type: ignore[arg-type]


def scans(server: FakeSpamd) -> int:
    return sum(r.method != "PING" for r in server.requests)


# ------------------------------------------------------------------ least-loaded


async def test_spamd_pool_least_loaded_is_the_default(three: tuple[FakeSpamd, ...]) -> None:
    assert pool_of(*three).select == "least-loaded"


async def test_spamd_pool_least_loaded_spreads_scans_in_flight(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    for server in three:
        server.service_time = 0.2
    pool = pool_of(*three)
    await asyncio.gather(*(pool.scan(HAM, command="CHECK") for _ in range(6)))
    assert [s.max_active for s in three] == [2, 2, 2]
    assert [scans(s) for s in three] == [2, 2, 2]


async def test_spamd_pool_failover_mode_piles_everything_on_the_first(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    """The contrast to the test above: same load, select=failover."""
    for server in three:
        server.service_time = 0.2
    pool = pool_of(*three, select="failover")
    await asyncio.gather(*(pool.scan(HAM, command="CHECK") for _ in range(6)))
    assert [scans(s) for s in three] == [6, 0, 0]


async def test_spamd_pool_least_loaded_ties_go_to_the_lowest_recent_latency(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    a, b, c = three
    a.service_time, b.service_time, c.service_time = 0.06, 0.0, 0.03
    pool = pool_of(a, b, c, slow_factor=0)
    hosts = [(await pool.scan(HAM, command="CHECK")).host for _ in range(6)]
    # One at a time, every host is idle: the unmeasured ones first (in list order), then
    # always the fastest.
    assert hosts == [a.address, b.address, c.address, b.address, b.address, b.address]


async def test_spamd_pool_least_loaded_avoids_the_host_that_holds_scans(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    a, b, c = three
    a.service_time = 0.5  # a holds its scans 50 times longer than the others
    b.service_time = c.service_time = 0.01
    pool = pool_of(a, b, c, slow_factor=0)

    async def sender() -> None:
        for _ in range(10):
            await pool.scan(HAM, command="CHECK")

    await asyncio.gather(*(sender() for _ in range(3)))
    # a takes one scan of each sender at most while b and c turn over theirs
    assert scans(a) <= 3
    assert scans(b) + scans(c) >= 27


async def test_spamd_pool_weight_sets_the_share_in_flight(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    a, b, _ = three
    a.service_time = b.service_time = 0.2
    pool = pool_of(a, b, weights=(3, 1))
    await asyncio.gather(*(pool.scan(HAM, command="CHECK") for _ in range(8)))
    assert (scans(a), scans(b)) == (6, 2)


async def test_spamd_pool_weight_in_round_robin(three: tuple[FakeSpamd, ...]) -> None:
    a, b, _ = three
    pool = pool_of(a, b, weights=(2, 1), select="round-robin")
    hosts = [(await pool.scan(HAM, command="CHECK")).host for _ in range(6)]
    assert hosts == [a.address, b.address, a.address] * 2


async def test_spamd_pool_weight_in_random(three: tuple[FakeSpamd, ...]) -> None:
    a, b, _ = three
    pool = pool_of(a, b, weights=(9, 1), select="random")
    for _ in range(100):
        await pool.scan(HAM, command="CHECK")
    assert 75 <= scans(a) <= 99  # expected 90; far outside chance either way


# ------------------------------------------------------------------ the slow host


async def test_spamd_pool_slow_host_is_set_aside_and_logged_once(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = three
    c.service_time = 0.15  # a and b answer at once
    pool = pool_of(a, b, c, select="round-robin", slow_samples=3, cooldown=30)
    with caplog.at_level(logging.INFO, logger="spambridge.spamd"):
        for _ in range(30):
            await pool.scan(HAM, command="CHECK")
    assert scans(c) == 3  # judged after its third answer, then no more live mail
    assert pool.counters["host_set_aside.slow"] == 1
    assert pool.counters["host_set_aside.failed"] == 0
    lines = [r for r in caplog.records if "set aside" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert f"spamd {c.address} set aside (slow: median 15" in lines[0].getMessage()
    families = {f.name: dict(f.samples) for f in pool.metric_families()}
    assert families["spamd_host_set_aside"][(c.address, "slow")] == 1
    assert families["spamd_host_set_aside"][(c.address, "failed")] == 0
    assert families["spamd_host_up"] == {(a.address,): 1, (b.address,): 1, (c.address,): 0}
    await pool.close()


async def test_spamd_pool_slow_host_set_aside_under_least_loaded(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    a, b, c = three
    for server in three:
        server.children, server.service_time = 2, 0.02
    c.service_time = 0.2  # ten times slower
    pool = pool_of(a, b, c, slow_samples=5, cooldown=30)

    async def sender() -> None:
        for _ in range(25):
            await pool.scan(HAM, command="CHECK")

    await asyncio.gather(*(sender() for _ in range(6)))
    assert pool.counters["host_set_aside.slow"] == 1
    assert scans(c) <= 8  # five to judge it, plus what was already on its way
    await pool.close()


async def test_spamd_pool_not_judged_slow_below_the_factor(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    a, b, c = three
    a.service_time = b.service_time = 0.05
    c.service_time = 0.15  # three times slower: a smaller host, not a sick one
    pool = pool_of(a, b, c, select="round-robin", slow_samples=3)
    for _ in range(15):
        await pool.scan(HAM, command="CHECK")
    assert pool.counters["host_set_aside"] == 0
    assert scans(c) == 5


async def test_spamd_pool_slow_factor_zero_disables(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    a, b, c = three
    c.service_time = 0.1
    pool = pool_of(a, b, c, select="round-robin", slow_samples=2, slow_factor=0)
    for _ in range(9):
        await pool.scan(HAM, command="CHECK")
    assert pool.counters["host_set_aside"] == 0
    assert scans(c) == 3


async def test_spamd_pool_slow_host_is_probed_with_ping_then_probation_before_it_returns(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, c = three
    a.service_time = b.service_time = 0.03
    c.service_time = 0.4
    pool = pool_of(a, b, c, select="round-robin", slow_samples=3, cooldown=0.5)
    for _ in range(9):
        await pool.scan(HAM, command="CHECK")
    assert pool.counters["host_set_aside.slow"] == 1
    c.fault = "garbage"  # the first probe gets no PONG: c stays out
    await asyncio.sleep(0.7)
    assert [r.method for r in c.requests] == ["CHECK"] * 3 + ["PING"]
    assert pool.counters["host_probes_failed"] == 1
    for _ in range(6):
        await pool.scan(HAM, command="CHECK")
    assert scans(c) == 3  # in cool-down: probed, not fed live mail
    c.fault, c.service_time = None, 0.0  # recovered: the next PONG puts it on probation
    with caplog.at_level(logging.INFO, logger="spambridge.spamd"):
        await asyncio.sleep(0.6)
        assert [r.method for r in c.requests][-1] == "PING"
        assert any(
            f"spamd {c.address} on probation" in r.getMessage() and "PONG" in r.getMessage()
            for r in caplog.records
        )
        assert not any("back in the pool" in r.getMessage() for r in caplog.records)
        for _ in range(6):
            await pool.scan(HAM, command="CHECK")
    # Three probation scans (one at a time, the first three messages), then its share.
    assert scans(c) == 3 + 3 + 1
    assert any(
        f"spamd {c.address} back in the pool" in r.getMessage()
        and "3 probation scans answered within its bound" in r.getMessage()
        for r in caplog.records
    )
    assert pool.counters["host_set_aside.slow"] == 1
    assert pool.counters["host_probations"] == 1 and pool.counters["host_probations_failed"] == 0
    await pool.close()


async def test_spamd_pool_failed_host_returns_only_after_ping(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    a, b, _ = three
    pool = pool_of(a, b, select="failover", cooldown=0.3)
    a.fault = "ex-74"  # EX_IOERR: the host's fault
    assert (await pool.scan(HAM, command="CHECK")).host == b.address
    a.fault = None
    assert (await pool.scan(HAM, command="CHECK")).host == b.address  # still set aside
    await asyncio.sleep(0.45)
    assert [r.method for r in a.requests] == ["CHECK", "PING"]
    assert (await pool.scan(HAM, command="CHECK")).host == a.address
    assert pool.counters["host_set_aside.failed"] == 1
    await pool.close()


async def test_spamd_pool_close_stops_pending_probes(three: tuple[FakeSpamd, ...]) -> None:
    a, b, _ = three
    pool = pool_of(a, b, select="failover", cooldown=0.2)
    a.fault = "ex-74"
    await pool.scan(HAM, command="CHECK")
    await pool.close()
    await asyncio.sleep(0.3)
    assert [r.method for r in a.requests] == ["CHECK"]


async def test_spamd_pool_per_host_figures_on_the_metrics_page(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    pytest.importorskip("prometheus_client")
    from spambridge.metrics import Metrics

    a, b, _ = three
    a.service_time = 0.3
    pool = pool_of(a, b, select="failover", cooldown=30)
    stats = Metrics()
    stats.families.append(pool.metric_families)
    stats.sources.append(lambda: pool.counters)
    scan = asyncio.create_task(pool.scan(HAM, command="CHECK"))
    await asyncio.sleep(0.1)
    page = stats.render().decode()
    assert f'spambridge_spamd_host_in_flight{{host="{a.address}"}} 1.0' in page
    assert f'spambridge_spamd_host_in_flight{{host="{b.address}"}} 0.0' in page
    await scan
    a.fault = "ex-74"
    await pool.scan(HAM, command="CHECK")
    page = stats.render().decode()
    assert f'spambridge_spamd_host_in_flight{{host="{a.address}"}} 0.0' in page
    assert f'spambridge_spamd_host_latency_seconds{{host="{a.address}"}} 0.3' in page  # 0.30..
    assert f'spambridge_spamd_host_scans_total{{host="{a.address}"}} 1.0' in page
    assert f'spambridge_spamd_host_up{{host="{a.address}"}} 0.0' in page
    aside = f'spambridge_spamd_host_set_aside_total{{host="{a.address}",reason="failed"}} 1.0'
    assert aside in page
    assert "spambridge_host_set_aside_failed_total 1.0" in page
    await pool.close()


async def test_spamd_pool_round_robin_spreads_a_set_aside_hosts_share(
    three: tuple[FakeSpamd, FakeSpamd, FakeSpamd],
) -> None:
    """With the first host out, the other two share its turns, not just the next one."""
    a, b, c = three
    pool = pool_of(a, b, c, select="round-robin", cooldown=30)
    a.fault = "ex-74"
    hosts = [(await pool.scan(HAM, command="CHECK")).host for _ in range(7)]
    assert hosts[0] == b.address  # a failed, b took it over
    assert sorted(hosts[1:]).count(b.address) == 3 and hosts[1:].count(c.address) == 3
    await pool.close()
