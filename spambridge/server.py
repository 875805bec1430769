"""Listeners and connections: the milter socket bound (or systemd's taken), one Session per
MTA connection, the connection limit, and the connections closed gracefully when the daemon
drains.

The milter socket (spambridge.milter_socket, parsed with the options) is bound here; with
systemd socket activation (LISTEN_FDS) the inherited sockets are used instead. Start-up,
reload and stop are daemon.py's: the server only reads the services it is given, per
connection and per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import grp
import os
import socket
import stat
from collections.abc import Callable

from spambridge.errors import ConfigError
from spambridge.log import conn_id, logger
from spambridge.milter_socket import SocketSpec
from spambridge.services import Services
from spambridge.session import Session

SD_LISTEN_FDS_START = 3


def inherited_sockets() -> list[socket.socket]:
    """Sockets passed by systemd socket activation (LISTEN_PID/LISTEN_FDS), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return [socket.socket(fileno=SD_LISTEN_FDS_START + i) for i in range(count)]


def bind_unix(path: str, mode: int, group: str, backlog: int) -> socket.socket:
    """Bind a unix socket with its final mode before anyone can connect.

    A leftover socket file is removed only when nothing answers on it; a live one means a
    second instance, which must not steal the socket.
    """
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError("milter-socket", f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            logger.info("removing stale socket %s (nothing answers on it)", path)
            os.unlink(path)
        else:
            raise ConfigError(
                "milter-socket",
                f"{path} is in use by a running milter; stop it first or choose another socket",
            )
        finally:
            probe.close()
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            sock.close()
            raise ConfigError("socket-group", f"no such group {group!r}") from None
        os.chown(path, -1, gid)
    sock.listen(backlog)
    return sock


def bind_inet(spec: SocketSpec, backlog: int) -> socket.socket:
    host = spec.host or ("::" if spec.family == socket.AF_INET6 else "0.0.0.0")
    infos = socket.getaddrinfo(host, spec.port, spec.family, socket.SOCK_STREAM)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError("milter-socket", f"cannot listen on {spec}: {exc.strerror}") from None
    sock.listen(backlog)
    return sock


class Server:
    """Accepts MTA connections and runs one Session each."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self.services = services
        self.sessions: dict[int, Session] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.servers: list[asyncio.Server] = []
        self.unix_paths: list[str] = []
        self.next_id = 0
        self.accepting = True

    def bind(self) -> list[socket.socket]:
        """Bind the configured socket (or take systemd's). Call before dropping privileges."""
        inherited = inherited_sockets()
        if inherited:
            logger.info("using %d socket(s) passed by systemd", len(inherited))
            return inherited
        config = self.services().config
        spec = config.milter_socket  # parsed with the options
        if spec.family == socket.AF_UNIX:
            self.unix_paths.append(spec.path)
            return [
                bind_unix(spec.path, config.socket_mode, config.socket_group, config.milter_queue)
            ]
        return [bind_inet(spec, config.milter_queue)]

    async def start(self, sockets: list[socket.socket]) -> None:
        # asyncio calls listen() again: pass milter-queue, or it silently becomes 100.
        backlog = self.services().config.milter_queue
        for sock in sockets:
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            if sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(
                    self._new_session, sock=sock, backlog=backlog
                )
            else:
                server = await loop.create_server(self._new_session, sock=sock, backlog=backlog)
            self.servers.append(server)
            logger.info("listening on %s", _describe(sock))

    def _new_session(self) -> Session:
        """Protocol factory: each connection's session, with its own logging context."""
        self.next_id += 1
        context = contextvars.copy_context()
        context.run(conn_id.set, self.next_id)
        return Session(self.services, self.next_id, context, admit=self._admit)

    def _admit(self, session: Session) -> bool:
        """Called as the connection is made: register the session and start its task."""
        svc = self.services()
        if not self.accepting or len(self.sessions) >= svc.config.max_connections:
            why = (
                "shutting down"
                if not self.accepting
                else (f"max-connections={svc.config.max_connections} reached")
            )
            logger.warning("refusing MTA connection: %s", why)
            svc.metrics.inc("connections_refused")
            return False
        self.sessions[session.ident] = session
        svc.metrics.inc("connections")
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._serve(session), context=session.context)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _serve(self, session: Session) -> None:
        try:
            await session.run()
        except asyncio.CancelledError:
            pass  # shutdown after the grace period; the session closed its socket
        finally:
            self.sessions.pop(session.ident, None)

    @property
    def busy(self) -> int:
        return sum(1 for s in self.sessions.values() if s.in_transaction)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let messages in flight finish within `grace`, then close.

        Idle connections are closed at once and busy ones as soon as their message is done:
        the MTA then applies its own F=/default_action, so no message is lost.
        """
        self.accepting = False
        for server in self.servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.tasks:
            for session in list(self.sessions.values()):
                if not session.in_transaction:
                    session.close()
            if loop.time() >= deadline:
                break
            await asyncio.wait(list(self.tasks), timeout=0.05)
        if self.busy:
            logger.warning(
                "shutdown grace of %.0fs over; %d message(s) left to the MTA", grace, self.busy
            )
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=5)
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)
        for path in self.unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    if sock.family == socket.AF_INET6:
        return f"inet6:{name[1]}@{name[0]}"
    return f"inet:{name[1]}@{name[0]}"
