"""The pool phase's harness (bench/pool.py runs the scenarios): the fleet of fake spamds in
its own process, the subjects (spambridge's SpamdPool with each spamd-select, and a
spamc-style client), the closed and open loops that drive them, and what they measure."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spambridge.errors import SpamdError
from spambridge.spamd.endpoints import parse_spamd_socket
from spambridge.spamd.pool import SpamdPool

REPO_ROOT = Path(__file__).resolve().parents[1]
GRACE = 5.0  # after an open-loop window, how long unanswered messages may still finish


# ------------------------------------------------------------------ the fleet (own process)


async def serve_fleet(spec: Sequence[tuple[int, float]]) -> None:
    from tools.fake_spamd import FakeSpamd

    def make(i: int, port: int = 0) -> FakeSpamd:
        children, seconds = spec[i]
        return FakeSpamd(port=port, children=children, service_time=seconds, record=False)

    servers = [await make(i).start() for i in range(len(spec))]
    ports = [s.port for s in servers]
    # When each host last accepted a connection (CLOCK_MONOTONIC, which the driver's
    # time.monotonic() shares): sampled every 5 ms, so it needs no change to the fake.
    seen = [0] * len(spec)
    last = [0.0] * len(spec)

    async def sample() -> None:
        while True:
            for i, server in enumerate(servers):
                if server.connections != seen[i]:
                    seen[i], last[i] = server.connections, time.monotonic()
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    print(" ".join(map(str, ports)), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        command, index = line[0], int(line[1])
        answer = ""
        if command == "speed":  # speed I FACTOR: service time = base * FACTOR
            servers[index].service_time = spec[index][1] * float(line[2])
        elif command == "down":
            await servers[index].stop()
        elif command == "up":
            servers[index] = await make(index, ports[index]).start()
            seen[index] = 0
        elif command == "last":  # last I: when host I last accepted a connection
            answer = f" {last[index]}"
        print(f"ok{answer}", flush=True)
    sampler.cancel()
    for server in servers:
        await server.stop()


class Fleet:
    """The fake spamds in a child process, driven over its stdin."""

    def __init__(self, spec: Sequence[tuple[int, float]]) -> None:
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None
        self.addresses: list[str] = []

    async def __aenter__(self) -> Fleet:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.pool",
            "--fleet",
            ",".join(f"{c}x{s}" for c, s in self.spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        )
        assert self.proc.stdout is not None
        ports = (await asyncio.wait_for(self.proc.stdout.readline(), 20)).split()
        self.addresses = [f"127.0.0.1:{int(p)}" for p in ports]
        return self

    async def command(self, text: str) -> str:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()
        reply = (await asyncio.wait_for(self.proc.stdout.readline(), 20)).decode().split()
        assert reply[:1] == ["ok"], reply
        return " ".join(reply[1:])

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# ------------------------------------------------------------------ subjects


@dataclass
class Outcome:
    sent: float  # seconds since the run started
    latency: float
    host: str | None  # None: no verdict (lost)


class SpamcStyle:
    """spamc -d h1,h2,h3 -H: a random host order per message; the next host is tried only
    when the connect fails; no cap on connections (one spamc per message)."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.hosts = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in addresses]
        self.failovers = 0

    async def scan(self, message: bytes) -> str | None:
        order = random.sample(self.hosts, len(self.hosts))
        request = b"REPORT SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(message) + message
        for index, (host, port) in enumerate(order):
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            except (OSError, TimeoutError):
                if index + 1 < len(order):
                    self.failovers += 1
                continue
            try:
                writer.write(request)
                writer.write_eof()
                reply = await asyncio.wait_for(reader.read(), 120)
            except (OSError, TimeoutError):
                return None
            finally:
                writer.close()
            head = reply.split(b"\r\n\r\n", 1)[0]
            ok = reply.startswith(b"SPAMD/") and b"\r\nSpam: " in head
            return f"{host}:{port}" if ok else None
        return None


Scan = Callable[[bytes], Awaitable[str | None]]
POOLS: list[SpamdPool | None] = []  # the pool of each subject made, in order


def set_asides(pool: SpamdPool | None, addresses: Sequence[str]) -> list[int] | None:
    """Times each host (in `addresses` order) was set aside, failed or slow."""
    if pool is None:
        return None
    count = {h.label: sum(h.set_asides.values()) for h in pool.hosts.hosts}
    return [count.get(a, 0) for a in addresses]


def make_subject(
    name: str,
    addresses: Sequence[str],
    *,
    weights: Sequence[int] = (),
    cooldown: float = 30.0,
    max_connections: int = 16,
) -> tuple[Scan, Callable[[], int], Callable[[], Awaitable[None]]]:
    """(scan, failovers so far, close) for a subject name; the pool, if the subject is one,
    is in POOLS[-1] afterwards (for its set-aside figures)."""
    if name == "spamc-style":
        peer = SpamcStyle(addresses)
        POOLS.append(None)

        async def nothing() -> None:
            return None

        return peer.scan, lambda: peer.failovers, nothing
    entries = (
        [f"{a};weight={w}" for a, w in zip(addresses, weights, strict=True)]
        if weights
        else list(addresses)
    )
    select = name.removesuffix("+weights")
    pool = SpamdPool(
        [parse_spamd_socket(e) for e in entries],
        select=select,  # type: ignore[arg-type]
        max_connections=max_connections,
        cooldown=cooldown,
        logger=_quiet_logger(),
    )
    POOLS.append(pool)

    async def scan(message: bytes) -> str | None:
        try:
            return (await pool.scan(message, command="REPORT")).host
        except SpamdError:
            return None

    return scan, lambda: pool.counters["failovers"], pool.close


def _quiet_logger() -> Any:
    import logging

    log = logging.getLogger("bench.pool.spamd")
    log.propagate = False
    log.addHandler(logging.NullHandler())
    return log


# ------------------------------------------------------------------ loops


async def closed_loop(
    scan: Scan, message: bytes, senders: int, each: int
) -> tuple[list[Outcome], float]:
    """The outcomes, and when (seconds from the start) the first sender was done: until
    then all `senders` keep the pool busy (the steady state)."""
    start = time.monotonic()
    out: list[Outcome] = []
    finished: list[float] = []

    async def sender() -> None:
        for _ in range(each):
            sent = time.monotonic()
            host = await scan(message)
            out.append(Outcome(sent - start, time.monotonic() - sent, host))
        finished.append(time.monotonic() - start)

    await asyncio.gather(*(sender() for _ in range(senders)))
    return out, min(finished)


async def timed_closed_loop(
    scan: Scan,
    message: bytes,
    senders: int,
    duration: float,
    events: Sequence[tuple[float, Callable[[], Awaitable[None]]]] = (),
) -> list[Outcome]:
    """`senders` each send their next message when the last is answered, until `duration`
    seconds from the start; `events` run at their times meanwhile."""
    start = time.monotonic()
    stop = start + duration
    out: list[Outcome] = []

    async def sender() -> None:
        while (sent := time.monotonic()) < stop:
            host = await scan(message)
            out.append(Outcome(sent - start, time.monotonic() - sent, host))

    async def run_events() -> None:
        for at, action in events:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            await action()

    await asyncio.gather(run_events(), *(sender() for _ in range(senders)))
    return out


class AsideWatch:
    """When (seconds from its start) host `index` of a pool was set aside: polled every
    5 ms, since the pool keeps counts, not times."""

    def __init__(self, pool: SpamdPool | None, index: int = 0) -> None:
        self.pool, self.index = pool, index
        self.times: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> AsideWatch:
        if self.pool is not None:
            self._task = asyncio.get_running_loop().create_task(self._watch(self.pool))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self, pool: SpamdPool) -> None:
        host, start, seen = pool.hosts.hosts[self.index], time.monotonic(), 0
        while True:
            if (count := sum(host.set_asides.values())) != seen:
                self.times += [round(time.monotonic() - start, 2)] * (count - seen)
                seen = count
            await asyncio.sleep(0.005)


async def open_loop(
    scan: Scan,
    message: bytes,
    rate: float,
    duration: float,
    events: Sequence[tuple[float, Callable[[], Awaitable[None]]]],
) -> tuple[list[Outcome], int]:
    """Message k is sent k/rate seconds after the start, answered or not. Returns the
    outcomes and how many were still unanswered GRACE seconds after the window (their
    latency is then a lower bound: the time they had waited; their host "unanswered")."""
    start = time.monotonic()
    tasks: list[tuple[float, asyncio.Task[tuple[str | None, float]]]] = []

    async def one() -> tuple[str | None, float]:
        host = await scan(message)
        return host, time.monotonic()

    async def run_events() -> None:
        for at, action in events:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            await action()

    driver = asyncio.create_task(run_events())
    for k in range(int(rate * duration)):
        await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
        tasks.append((time.monotonic(), asyncio.create_task(one())))
    await driver
    _, still = await asyncio.wait([t for _, t in tasks], timeout=GRACE)
    now = time.monotonic()
    out = []
    for sent, task in tasks:
        if task.done():
            host, finished = task.result()
            out.append(Outcome(sent - start, finished - sent, host))
        else:
            task.cancel()
            out.append(Outcome(sent - start, now - sent, "unanswered"))
    await asyncio.gather(*still, return_exceptions=True)
    return out, len(still)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
