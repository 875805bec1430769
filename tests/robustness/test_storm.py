"""Connection storm: 2,000 MTA connections at once against max-connections=1000.

The limit holds (the excess is closed at once and each refusal is logged), the admitted
connections all complete a normal conversation, and afterwards no task or file
descriptor is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import select
import socket
import time
from collections.abc import Iterator

import pytest

from spambridge.log import logger
from spambridge.milter.messages import AddHeader, Continue
from tests.support.controller import running_milter
from tools.fake_spamd import GTUBE, FakeSpamd
from tools.milter_client import MilterClient

pytestmark = pytest.mark.timeout(120)

LIMIT = 1000
STORM = 2000
FDS_NEEDED = STORM * 2 + LIMIT + 512  # clients, server ends, spamd sockets, slack


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def fd_room() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FDS_NEEDED:
        if hard != resource.RLIM_INFINITY and hard < FDS_NEEDED:
            pytest.skip(f"needs {FDS_NEEDED} file descriptors, hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (FDS_NEEDED, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def admitted(client: MilterClient) -> bool:
    """True when the milter answers negotiation; False when it closed the connection."""
    try:
        await client.negotiate()
    except (ConnectionError, asyncio.IncompleteReadError):
        return False
    return True


async def conversation(client: MilterClient, spam: bool) -> list[object]:
    await client.connect(b"client.example.net", address=b"192.0.2.9", port=4000)
    await client.helo(b"client.example.net")
    body = GTUBE + b"\r\n" if spam else b"hello\r\n"
    result = await client.send_message([(b"Subject", b" storm")], body)
    await client.quit()
    return [*result.edits, result.final]


async def test_storm_limit_holds_and_nothing_leaks(
    fd_room: None, caplog: pytest.LogCaptureFixture
) -> None:
    tasks_before = set(asyncio.all_tasks())
    fds_before = open_fds()
    clients: list[MilterClient] = []
    logger.addHandler(caplog.handler)
    try:
        async with FakeSpamd() as spamd:
            args = [
                f"spamd-socket={spamd.address}",
                f"max-connections={LIMIT}",
                "milter-queue=4096",
                "milter-timeout=30",
            ]
            async with running_milter(args) as milter:
                server = milter.server
                metrics = milter.services.metrics
                opened = await asyncio.gather(
                    *(MilterClient.open(milter.address, read_timeout=30) for _ in range(STORM))
                )
                clients = list(opened)
                async with asyncio.timeout(30):  # every connection accepted or refused
                    counters = metrics.counters
                    while counters["connections"] + counters["connections_refused"] < STORM:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                assert len(server.sessions) == LIMIT
                assert metrics.counters["connections_refused"] == STORM - LIMIT

                flags = await asyncio.gather(*(admitted(c) for c in clients))
                winners = [c for c, ok in zip(clients, flags, strict=True) if ok]
                assert len(winners) == LIMIT

                results = await asyncio.gather(
                    *(conversation(c, spam=i % 2 == 0) for i, c in enumerate(winners))
                )
                for i, replies in enumerate(results):
                    assert replies[-1] == Continue()
                    assert (AddHeader(b"X-Spam-Flag", b" YES") in replies) == (i % 2 == 0)
                assert len(spamd.requests) == LIMIT

                for client in clients:
                    await client.close()
                async with asyncio.timeout(10):
                    while server.sessions:  # noqa: ASYNC110 (polls server state)
                        await asyncio.sleep(0.02)
    finally:
        logger.removeHandler(caplog.handler)
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close()

    records = {id(r): r for r in caplog.records}.values()  # once even if it propagates too
    refusals = [
        r
        for r in records
        if r.levelno == logging.WARNING and "max-connections=1000 reached" in r.getMessage()
    ]
    assert len(refusals) == STORM - LIMIT

    await asyncio.sleep(0.1)  # let transports finish closing
    leftover = {t for t in asyncio.all_tasks() if t not in tasks_before and not t.done()}
    assert leftover == set()
    assert open_fds() <= fds_before


def _somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4096


async def test_storm_default_backlog_takes_a_burst_of_connects() -> None:
    """With default options a burst of MTA connects is taken by the kernel at once.

    The event loop is kept from accepting (nothing yields to it while the burst is made), so
    only the listen backlog holds the connections: the kernel completes a handshake while the
    accept queue has room and drops the SYN otherwise, and the MTA then waits for its SYN
    retransmit (1 s, then 3 s). milter-spamc's backlog of 20 completed 21 of these.
    """
    burst = min(200, _somaxconn() - 1)
    async with FakeSpamd() as spamd, running_milter([f"spamd-socket={spamd.address}"]) as milter:
        assert isinstance(milter.address, tuple)
        host, port = milter.address
        socks: list[socket.socket] = []
        try:
            for _ in range(burst):
                sock = socket.socket()
                sock.setblocking(False)
                socks.append(sock)
                assert sock.connect_ex((host, port)) in (0, errno.EINPROGRESS)
            pending = list(socks)
            deadline = time.monotonic() + 0.5  # the kernel alone: no retransmit fits in here
            while pending and time.monotonic() < deadline:
                _, writable, _ = select.select([], pending, [], 0.05)
                pending = [s for s in pending if s not in writable]
            assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in socks)
            assert not pending, f"{len(pending)} of {burst} connects waited for a SYN retransmit"
        finally:
            for sock in socks:
                sock.close()
