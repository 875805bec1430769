"""The socket exchanges with spamd: one SPAMC request/response per fresh connection (SPAMC has
no keep-alive) over TCP, a unix socket, TLS or a host given by name, under the connect, send
and read timeouts, always closing the socket.

Bytes only: what to send and how to read the reply is protocol.py's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import cast

from spambridge.errors import SpamdBadResponse, SpamdError, SpamdTimeout, SpamdUnavailable
from spambridge.spamd.endpoints import SpamdEndpoint, SpamdTimeouts
from spambridge.spamd.protocol import describe

__all__ = [
    "DEFAULT_MAX_REPLY",
    "Attempt",
    "Connection",
    "Exchange",
    "SocketExchange",
    "TcpConnection",
    "UnixConnection",
    "connection_for",
]

DEFAULT_MAX_REPLY = 1024 * 1024  # bytes; a REPORT of every rule SpamAssassin has is ~100 KB


class Attempt(Exception):
    """One try against one host failed. `connecting` says no request bytes were sent."""

    def __init__(self, error: SpamdError, *, connecting: bool, host_fault: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        self.connecting = connecting
        self.host_fault = host_fault


def _failed(phase: str, label: str, exc: BaseException) -> Attempt:
    """A connect, send or read to `label` that failed with `exc`."""
    error = SpamdUnavailable(f"{phase} to {label} failed: {describe(exc)}", label)
    return Attempt(error, connecting=phase == "connect")


def _timed_out(phase: str, label: str, limit: float) -> Attempt:
    """A connect, send or read to `label` that took longer than `limit` seconds."""
    error = SpamdTimeout(f"{phase} to {label} timed out after {limit:g}s", label)
    return Attempt(error, connecting=phase == "connect")


class Exchange(asyncio.Protocol):
    """One SPAMC request/response on a fresh connection (SPAMC has no keep-alive), over an
    asyncio transport: TLS, Unix sockets and hosts given by name.

    A bare Protocol rather than streams: no reader/writer objects, no future per read.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.done: asyncio.Future[bytes] = loop.create_future()
        self.chunks: list[bytes] = []
        self.connecting = False  # no connection yet: a failure now is a connect failure
        self.sending = False  # request bytes not yet taken by the kernel
        self.sent = False  # the whole request was taken: no more send phase
        self.last = 0.0  # loop time of the last progress (send finished, bytes read)
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.limit = DEFAULT_MAX_REPLY  # bytes of reply accepted; past it, a bad response
        self.size = 0
        self._watched: tuple[float, float, SpamdTimeouts, str] | None = None

    # ---------------------------------------------------------------- protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def pause_writing(self) -> None:
        # Once the whole request has gone, the send phase is over for good: asyncio's TLS
        # transport calls pause_writing again, with nothing buffered, whenever it processes
        # TLS records (a session ticket) under a high-water mark of 0, and the read timeout
        # must not turn into the send timeout.
        if not self.sent:
            self.sending = True

    def resume_writing(self) -> None:
        self.sending = False
        self.sent = True
        self.last = self.loop.time()

    def data_received(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:  # never buffer a runaway reply whole
            if not self.done.done():
                self.done.set_exception(_ReplyTooLarge(self.limit))
            self.abort()
            return
        self.chunks.append(data)
        self.last = self.loop.time()

    def eof_received(self) -> bool:
        if not self.done.done():
            self.done.set_result(b"".join(self.chunks))
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(exc or ConnectionResetError("connection closed"))

    # ---------------------------------------------------------------- what request() calls

    def send(self, data: bytes) -> None:
        """Write the whole request, then half-close: spamd reads to EOF when there is no
        Content-length."""
        transport = self.transport
        assert transport is not None
        # High-water mark 0: pause_writing fires while any byte waits in user space and
        # resume_writing once the kernel has taken the whole request: the send phase.
        transport.set_write_buffer_limits(0)
        transport.write(data)
        if transport.can_write_eof():
            transport.write_eof()

    def abort(self) -> None:
        """Drop the connection at once: never flush to a spamd that may not read."""
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # plain TCP: already closed at EOF; TLS: close_notify
            self.transport = None

    # ---------------------------------------------------------------- the watchdog

    def watch(self, start: float, timeouts: SpamdTimeouts, label: str) -> None:
        """Fail with the connect, send or read timeout. One timer per request, re-armed only
        when it fires early: cheaper than a timeout context per phase or per read for the
        common, fast reply."""
        self.last = start
        self._watched = (start + timeouts.connect, start + timeouts.send, timeouts, label)
        # No deadline can fall before this; _check moves on to the real one.
        first = min(timeouts.send, timeouts.read)
        if self.connecting:
            first = min(first, timeouts.connect)
        self.timer = self.loop.call_at(start + first, self._check)

    def _check(self) -> None:
        # A method, not a closure: a closure that re-arms itself refers to itself, and that
        # cycle would keep every exchange for the garbage collector (a 20 ms pause each time).
        if self.done.done() or self._watched is None:
            return
        connect_by, send_by, timeouts, label = self._watched
        if self.connecting:
            due, phase, limit = connect_by, "connect", timeouts.connect
        elif self.sending:
            due, phase, limit = send_by, "send", timeouts.send
        else:
            due, phase, limit = self.last + timeouts.read, "read", timeouts.read
        if self.loop.time() < due:
            self.timer = self.loop.call_at(due, self._check)
            return
        self.done.set_exception(_timed_out(phase, label, limit))
        self.abort()

    def connected(self) -> None:
        """The connection stands: the send timeout runs from now, not from the start."""
        self.connecting = False
        if self._watched is not None:
            connect_by, _, timeouts, label = self._watched
            self.last = self.loop.time()
            self._watched = (connect_by, self.last + timeouts.send, timeouts, label)

    def unwatch(self) -> None:
        if self.timer is not None:
            self.timer.cancel()  # also drops its reference to _check, and so to self
        self._watched = None


class SocketExchange(Exchange):
    """The same exchange driven on the bare non-blocking socket, connect included, for a
    literal address over plain TCP (what nearly every site runs).

    A transport's machinery (registration, buffering, callbacks scheduled for later) costs
    more than this exchange needs: a connect, a send, a half-close, reads to EOF. Each step
    runs straight from the socket's readiness callback, so the scan's task wakes once, for
    the reply. Measured: about 60 us less CPU per scan. It feeds the protocol callbacks above,
    so the watchdog and the outcome are the transport path's.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, family: socket.AddressFamily, data: bytes
    ) -> None:
        super().__init__(loop)
        self.sock: socket.socket | None = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.fd = self.sock.fileno()
        self.connecting = True
        self._unsent: memoryview | None = memoryview(data)
        self._writing = False
        self._reading = False

    def connect(self, address: tuple[str, int]) -> None:
        """Start connecting; the request follows as soon as the connection stands."""
        assert self.sock is not None
        # The reader first and for the whole exchange: the writer then only modifies the
        # registration (a refused connect wakes the reader, whose recv reports it).
        self._reading = True
        self.loop.add_reader(self.fd, self._on_readable)
        try:
            # connect_ex: EINPROGRESS, the usual answer, as a number rather than an exception.
            error = self.sock.connect_ex(address)
        except OSError as exc:
            self._lost(exc)
            return
        if error in _CONNECTING:
            self._send_early()
        elif error:
            self._lost(OSError(error, os.strerror(error)))
        else:
            self._connected()

    def _send_early(self) -> None:
        """Send while connect() reports EINPROGRESS. Over loopback the handshake is done by
        the time connect() returns, so the send goes through, and the wait for writability
        (two epoll_ctl calls, a getsockopt and a loop iteration per scan) is saved. While
        still connecting, send() fails with EAGAIN and we wait as usual; a refused connect
        fails it with the connect's own error."""
        assert self.sock is not None and self._unsent is not None
        try:
            sent = self.sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            self._writing = True
            self.loop.add_writer(self.fd, self._on_connected)
            return
        except OSError as exc:
            self._lost(exc)  # still `connecting`: reported as the connect that failed
            return
        self.connected()
        self.sending = True
        self._sent(sent)

    def _on_connected(self) -> None:
        assert self.sock is not None
        self._writing = False
        self.loop.remove_writer(self.fd)
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._lost(OSError(error, os.strerror(error)))
            return
        self._connected()

    def _connected(self) -> None:
        assert self.sock is not None
        self.connected()
        self.sending = True
        self._on_writable()

    def _on_writable(self) -> None:
        assert self.sock is not None and self._unsent is not None
        try:
            sent = self.sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lost(exc)
            return
        self._sent(sent)

    def _sent(self, sent: int) -> None:
        """`sent` more bytes went out: wait to send the rest, or half-close."""
        assert self.sock is not None and self._unsent is not None
        self._unsent = self._unsent[sent:]
        if self._unsent:
            if not self._writing:
                self._writing = True
                self.loop.add_writer(self.fd, self._on_writable)
            return
        self._unsent = None
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)
        self.resume_writing()
        try:
            self.sock.shutdown(socket.SHUT_WR)  # spamd reads to EOF without Content-length
        except OSError as exc:
            self._lost(exc)

    def _on_readable(self) -> None:
        # Read on until the socket is drained: spamd's reply and its FIN usually arrive
        # together, and stopping after the data would cost a loop iteration for the EOF.
        sock = self.sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(exc)
                return
            if not data:
                self._unregister()
                self.eof_received()
                return
            self.data_received(data)
            if self.sock is None:  # aborted: the reply grew past its limit
                return

    def _lost(self, exc: OSError) -> None:
        self._unregister()
        self.connection_lost(exc)

    def _unregister(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self.fd)
        if self._writing:
            self._writing = False
            self.loop.remove_writer(self.fd)

    def abort(self) -> None:
        self.close()

    def close(self) -> None:
        self._unregister()
        if self.sock is not None:
            self.sock.close()
            self.sock = None


_READ_SIZE = 65536  # what asyncio's transports read at a time
_CONNECTING = frozenset({errno.EINPROGRESS, errno.EAGAIN, errno.EINTR})


class _ReplyTooLarge(Exception):
    """The reply passed the exchange's limit (bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


class Connection:
    """One spamd endpoint: `request(data)` runs one exchange under the connect, send and read
    timeouts and returns the whole reply; every failure is an Attempt."""

    def __init__(self, endpoint: SpamdEndpoint, timeouts: SpamdTimeouts) -> None:
        self.label = endpoint.label
        self.timeouts = timeouts

    async def _start(self, loop: asyncio.AbstractEventLoop, data: bytes) -> Exchange:
        """An exchange under way: connected (or connecting) with `data` sent or queued to
        send, and watched from its start. Connect failures raise Attempt."""
        raise NotImplementedError

    async def _transport_start(
        self, loop: asyncio.AbstractEventLoop, data: bytes, connect: _Connector
    ) -> Exchange:
        label, timeouts = self.label, self.timeouts
        exchange = Exchange(loop)
        try:
            async with asyncio.timeout(timeouts.connect):
                await connect(lambda: exchange)
        except TimeoutError:
            raise _timed_out("connect", label, timeouts.connect) from None
        except OSError as exc:
            raise _failed("connect", label, exc) from None
        exchange.watch(loop.time(), timeouts, label)
        try:
            exchange.send(data)
        except BaseException:
            exchange.unwatch()
            exchange.abort()
            raise
        return exchange

    async def request(self, data: bytes, limit: int = DEFAULT_MAX_REPLY) -> bytes:
        label = self.label
        exchange = await self._start(asyncio.get_running_loop(), data)
        exchange.limit = limit  # before any reply byte: data_received runs from the loop
        try:
            return await exchange.done
        except _ReplyTooLarge:
            error = SpamdBadResponse(f"{label} sent a reply over {limit} bytes", label)
            raise Attempt(error, connecting=False) from None
        except OSError as exc:
            phase = "connect" if exchange.connecting else "send" if exchange.sending else "read"
            raise _failed(phase, label, exc) from None
        except BaseException:
            exchange.abort()
            raise
        finally:
            exchange.unwatch()
            exchange.close()


_Connector = Callable[[Callable[[], Exchange]], Awaitable[object]]


class TcpConnection(Connection):
    """TCP, with TLS when `ctx` is given; a host name is resolved on every connect."""

    def __init__(
        self, endpoint: SpamdEndpoint, timeouts: SpamdTimeouts, ctx: ssl.SSLContext | None
    ) -> None:
        super().__init__(endpoint, timeouts)
        self.host = endpoint.host
        self.port = endpoint.port
        self.ssl_context = ctx
        # A literal address without TLS is connected by hand and driven on the bare socket:
        # create_connection would resolve it twice per scan (the resolver short-cuts
        # literals, but not cheaply), and a transport costs more than the exchange needs.
        self._literal: tuple[socket.AddressFamily, tuple[str, int]] | None = None
        if ctx is None and "%" not in endpoint.host:  # scoped IPv6 goes the long way
            with contextlib.suppress(ValueError):
                ip = ipaddress.ip_address(endpoint.host)
                family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
                self._literal = (family, (str(ip), endpoint.port))

    async def _start(self, loop: asyncio.AbstractEventLoop, data: bytes) -> Exchange:
        if self._literal is None:
            host, port, ctx = self.host, self.port, self.ssl_context
            return await self._transport_start(
                loop, data, lambda factory: loop.create_connection(factory, host, port, ssl=ctx)
            )
        family, address = self._literal
        try:
            exchange = SocketExchange(loop, family, data)
        except OSError as exc:  # no socket to be had (EMFILE, ENOBUFS): as a failed connect
            raise _failed("connect", self.label, exc) from None
        exchange.watch(loop.time(), self.timeouts, self.label)
        exchange.connect(address)
        return exchange


class UnixConnection(Connection):
    def __init__(self, endpoint: SpamdEndpoint, timeouts: SpamdTimeouts) -> None:
        super().__init__(endpoint, timeouts)
        self.path = endpoint.path

    async def _start(self, loop: asyncio.AbstractEventLoop, data: bytes) -> Exchange:
        path = self.path

        async def connect(factory: Callable[[], Exchange]) -> object:
            sock = await _connect_unix(loop, path)
            return await loop.create_unix_connection(factory, sock=sock)

        return await self._transport_start(loop, data, connect)


async def _connect_unix(loop: asyncio.AbstractEventLoop, path: str) -> socket.socket:
    """A unix socket connected to `path`, tried again while spamd's accept queue is full.

    Linux answers a non-blocking connect to a full queue with EAGAIN: nothing is in
    progress and no readiness will announce room. asyncio takes it for a connect in
    progress, finds the socket writable and fails the first send with ENOTCONN, so a busy
    spamd would be reported at once as a failed read instead of waited for under the
    connect timeout (which the caller runs this under), as TCP's dropped SYN is.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        delay = _UNIX_RETRY_FIRST
        while True:
            try:
                sock.connect(path)
                return sock
            except BlockingIOError as exc:
                if exc.errno != errno.EAGAIN:  # EINPROGRESS: a connect under way after all
                    await loop.sock_connect(sock, path)
                    return sock
            await asyncio.sleep(delay)
            delay = min(2 * delay, _UNIX_RETRY_LAST)
    except BaseException:
        sock.close()
        raise


_UNIX_RETRY_FIRST = 0.001  # seconds before the first retry of a unix connect; it doubles
_UNIX_RETRY_LAST = 0.05  # up to this: spamd frees a slot when a child takes a connection


def connection_for(
    endpoint: SpamdEndpoint, timeouts: SpamdTimeouts, ctx: ssl.SSLContext | None
) -> Connection:
    """The connection for `endpoint`; `ctx` is the shared TLS context for ssl: entries."""
    if endpoint.path:
        return UnixConnection(endpoint, timeouts)
    return TcpConnection(endpoint, timeouts, ctx if endpoint.tls else None)
