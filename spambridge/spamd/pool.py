"""The spamd pool: host selection, failover, set-asides, the end timeout and a concurrency cap.

Exchanges are transport.py's, request and reply bytes protocol.py's, per-host bookkeeping
hosts.py's; no aiospamc type crosses this module.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Sequence

from spambridge.errors import (
    SpamdBadResponse,
    SpamdError,
    SpamdErrorStatus,
    SpamdTimeout,
    SpamdUnavailable,
)
from spambridge.metrics import Family
from spambridge.spamd.endpoints import SpamdEndpoint, SpamdTimeouts
from spambridge.spamd.hosts import Host, HostBoard, Select
from spambridge.spamd.protocol import (
    COMMANDS,
    ECHOING,
    PER_MESSAGE_CODES,
    Verdict,
    describe,
    parse_pong,
    parse_reply,
    request_bytes,
    sanitize_user,
)
from spambridge.spamd.transport import DEFAULT_MAX_REPLY, Attempt, Connection, connection_for

__all__ = ["SpamdPool"]

_DEFAULT_TIMEOUTS = SpamdTimeouts()


class SpamdPool:
    """Scans messages on a list of spamd endpoints with failover and a concurrency cap.

    `select` picks the host for each scan (hosts.SELECT_MODES); the others follow as
    the failover order. `connect_retries` is the number of connect attempts per host (at
    least 1). A host that fails, or answers `slow_factor` times slower than the pool at the
    same load over its last `slow_samples` scans, is set aside: it gets no mail while
    another host answers; after `cooldown` seconds (doubled for each set-aside that follows
    a return closely, up to `cooldown_max`) a PING decides whether it is alive, and a
    probation on live mail, one message at a time, whether it is fast enough to come back
    (hosts.py; `cooldown` 0 disables set-asides). Errors after the request was sent also
    move on to the next host while the end timeout allows, except EX codes that describe
    the message itself (EX_PROTOCOL, EX_DATAERR, ...), which no other host would fix.
    """

    def __init__(
        self,
        endpoints: Sequence[SpamdEndpoint],
        *,
        timeouts: SpamdTimeouts = _DEFAULT_TIMEOUTS,
        select: Select = "least-loaded",
        max_connections: int = 10,
        connect_retries: int = 1,
        cooldown: float = 30.0,
        cooldown_max: float = 600.0,
        slow_factor: float = 5.0,
        slow_samples: int = 5,
        ca_file: str | None = None,
        tls: ssl.SSLContext | None = None,  # wins over ca_file: spamd/tls.py builds it
        max_reply_size: int = DEFAULT_MAX_REPLY,
        logger: logging.Logger | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.endpoints = tuple(endpoints)
        self.timeouts = timeouts
        self.select = select
        self.connect_retries = max(1, connect_retries)  # attempts per host when connect fails
        self.cooldown = cooldown
        self.max_reply_size = max_reply_size  # bytes; a longer reply is a bad response
        self.counters: collections.Counter[str] = collections.Counter()
        self._log = logger or logging.getLogger("spambridge.spamd")
        self.hosts = HostBoard(
            self.endpoints,
            select=select,
            cooldown=cooldown,
            cooldown_max=cooldown_max,
            slow_factor=slow_factor,
            slow_samples=slow_samples,
            probe=self._probe,
            logger=self._log,
            counters=self.counters,
        )
        self._semaphore = asyncio.Semaphore(max_connections)
        self._in_flight = 0
        ctx: ssl.SSLContext | None = None
        if any(e.tls for e in self.endpoints):
            ctx = tls or ssl.create_default_context(cafile=ca_file)  # built once, shared
        self._connections: dict[str, Connection] = {
            endpoint.label: connection_for(endpoint, timeouts, ctx) for endpoint in self.endpoints
        }

    @property
    def in_flight(self) -> int:
        """Scans currently holding a connection slot."""
        return self._in_flight

    async def close(self) -> None:
        """Stops the probes; nothing else is held (one connection per request)."""
        self.stop_probes()

    def stop_probes(self) -> None:
        """Cancel the PINGs of set-aside hosts (on reload the old pool is dropped)."""
        self.hosts.close()

    def metric_families(self) -> list[Family]:
        """Per-host figures for the metrics endpoint."""
        return self.hosts.metric_families()

    # ------------------------------------------------------------------ scanning

    async def scan(
        self, message: bytes, *, command: str = "REPORT", user: str | None = None
    ) -> Verdict:
        """Scan `message`; raises SpamdUnavailable, SpamdTimeout or SpamdBadResponse."""
        command = command.upper()
        if command not in COMMANDS:
            raise ValueError(f"unsupported spamd command {command!r}")
        if not self.endpoints:  # spamd-socket is empty: callers skip the scan before this
            raise SpamdUnavailable("no spamd host configured (spamd-socket is empty)")
        self.counters["scans"] += 1
        started = time.monotonic()
        try:
            found = await self._scan_with_budget(message, command, sanitize_user(user))
        except SpamdError as exc:
            self.counters[f"errors.{exc.kind}"] += 1
            raise
        return Verdict(
            found.is_spam,
            found.score,
            found.threshold,
            found.body,
            command,
            found.host,
            time.monotonic() - started,
        )

    async def _scan_with_budget(self, message: bytes, command: str, user: str) -> Verdict:
        tried: list[str] = []
        try:
            async with asyncio.timeout(self.timeouts.end):
                async with self._semaphore:
                    self._in_flight += 1
                    try:
                        return await self._failover(message, command, user, tried)
                    finally:
                        self._in_flight -= 1
        except TimeoutError:
            last = tried[-1] if tried else None
            where = f" (last host {last})" if last else " (waiting for a free connection slot)"
            raise SpamdTimeout(
                f"spamd scan exceeded the end timeout of {self.timeouts.end:g}s{where}", last
            ) from None

    async def _failover(self, message: bytes, command: str, user: str, tried: list[str]) -> Verdict:
        last_error: SpamdError | None = None
        board = self.hosts
        hosts = board.order()
        for index, host in enumerate(hosts):
            label = host.label
            tried.append(label)
            host.in_flight += 1
            level = host.level()
            bound = board.probation_bound(host) if host.probation else None
            started = time.monotonic()
            try:
                if bound is None:
                    response = await self._try_host(label, message, command, user)
                else:  # on probation: past the pool's bound, the message moves on
                    async with asyncio.timeout(bound):
                        response = await self._try_host(label, message, command, user)
            except TimeoutError:
                if bound is None:
                    raise
                board.probation_overrun(host, bound)
                last_error = SpamdTimeout(
                    f"spamd {label} on probation: no answer within {bound * 1000:.0f} ms", label
                )
                if index + 1 < len(hosts):
                    self.counters["failovers"] += 1
                continue
            except Attempt as attempt:
                last_error = attempt.error
                if not attempt.host_fault:
                    board.answered(host, time.monotonic() - started, level)
                    raise attempt.error from None
                board.failed(host, str(attempt.error))
                if index + 1 < len(hosts):
                    self.counters["failovers"] += 1
                    self._log.warning(
                        "spamd %s failed (%s), trying %s",
                        label,
                        attempt.error,
                        hosts[index + 1].label,
                    )
                continue
            finally:
                host.in_flight -= 1
            board.answered(host, time.monotonic() - started, level)
            return response
        assert last_error is not None
        raise last_error

    async def _try_host(self, label: str, message: bytes, command: str, user: str) -> Verdict:
        conn = self._connections[label]
        limit = self.max_reply_size + (len(message) if command in ECHOING else 0)
        for attempt in range(self.connect_retries):
            try:
                return parse_reply(
                    await conn.request(request_bytes(command, message, user), limit),
                    command=command,
                    host=label,
                )
            except Attempt as failed:
                if not failed.connecting or attempt + 1 >= self.connect_retries:
                    raise
            except SpamdErrorStatus as exc:
                raise Attempt(
                    exc, connecting=False, host_fault=exc.code not in PER_MESSAGE_CODES
                ) from None
            except SpamdBadResponse as exc:
                raise Attempt(exc, connecting=False) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _probe(self, host: Host) -> tuple[bool, str]:
        """PING one host under the connect and read timeouts: (answered PONG, detail)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeouts.connect + self.timeouts.read):
                conn = self._connections[host.label]
                message = parse_pong(await conn.request(request_bytes("PING")), host.label)
        except Attempt as attempt:
            return False, str(attempt.error)
        except TimeoutError:
            return False, "no answer in time"
        except SpamdErrorStatus as exc:  # its text is aiospamc's exception, described
            return False, str(exc)
        except SpamdError as exc:
            return False, describe(exc)
        ms = (time.monotonic() - started) * 1000
        if message.strip().upper() != "PONG":
            return False, f"answered {message[:40]!r}"
        return True, f"PONG in {ms:.0f} ms"

    async def ping(self) -> dict[str, bool]:
        """Send PING to every endpoint; label -> whether it answered PONG."""
        results = await asyncio.gather(*(self._probe(host) for host in self.hosts.hosts))
        return {h.label: ok for h, (ok, _) in zip(self.hosts.hosts, results, strict=True)}
