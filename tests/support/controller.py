"""Start and stop a real spambridge server inside the test's event loop (like aiosmtpd's
Controller): the daemon's own `Daemon` (server, sessions, spamd pool, reload, drain), on a
loopback port; only the signals and the process around it are left out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from spambridge.cli import resolve
from spambridge.daemon import Daemon
from spambridge.options import Config
from spambridge.server import Server
from spambridge.services import Services

# The time every test server sees, so header values can be compared byte for byte.
FROZEN_NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def frozen_clock() -> datetime:
    return FROZEN_NOW


def _loader(argv: Sequence[str]) -> Callable[[], Config]:
    """What reading the option file again gives: `argv` resolved anew."""
    return lambda: resolve(argv)[1].config


@dataclass
class Running:
    daemon: Daemon
    address: tuple[str, int] | str
    argv: Sequence[str]  # the options it started with

    @property
    def server(self) -> Server:
        return self.daemon.server

    @property
    def services(self) -> Services:
        """What sessions use now (a reload swaps it)."""
        return self.daemon.services

    def reconfigure(self, args: Sequence[str]) -> None:
        """What SIGHUP does, the option file now reading `args`: new messages use them."""
        self.daemon.load = _loader([*self.argv, *args])
        if not self.daemon.reload():
            raise AssertionError(f"reload with {list(args)} was refused (see the log)")


@contextlib.asynccontextmanager
async def running_milter(
    args: Sequence[str], *, grace: float = 2.0, clock: Callable[[], datetime] = frozen_clock
) -> AsyncIterator[Running]:
    """Serve spambridge with `args` (option syntax as on the command line) on 127.0.0.1:0
    unless args name a milter-socket; the sessions read the time from `clock`."""
    argv = ["file=", "milter-socket=inet:0@127.0.0.1", "log=stderr", *args]
    load = _loader(argv)
    daemon = Daemon(load(), load, clock=clock, owns_logging=False)
    sockets = daemon.bind()
    await daemon.start(sockets)
    name = sockets[0].getsockname()
    address = name if isinstance(name, str) else (name[0], name[1])
    try:
        yield Running(daemon, address, argv)
    finally:
        await daemon.drain(grace)
