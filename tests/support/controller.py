"""Start and stop a real spambridge server inside the test's event loop (like aiosmtpd's
Controller): the same Server, Session and SpamdPool the daemon runs, on a loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from spambridge.cli import Resolved, build_services, resolve
from spambridge.metrics import Metrics
from spambridge.server import Server
from spambridge.services import Services

# The time every test server sees, so header values can be compared byte for byte.
FROZEN_NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def frozen_clock() -> datetime:
    return FROZEN_NOW


@dataclass
class Running:
    server: Server
    services: Services
    address: tuple[str, int] | str

    def reconfigure(self, args: Sequence[str]) -> None:
        """What SIGHUP does: new messages use the new options."""
        _, resolved = resolve(["file=", *args])
        self.services = build_services(
            resolved.config, self.services.metrics, clock=self.services.clock
        )


@contextlib.asynccontextmanager
async def running_milter(
    args: Sequence[str], *, grace: float = 2.0, clock: Callable[[], datetime] = frozen_clock
) -> AsyncIterator[Running]:
    """Serve spambridge with `args` (option syntax as on the command line) on 127.0.0.1:0
    unless args name a milter-socket; the sessions read the time from `clock`."""
    argv = ["file=", "milter-socket=inet:0@127.0.0.1", "log=stderr", *args]
    resolved: Resolved = resolve(argv)[1]
    holder: list[Running] = []
    services = build_services(resolved.config, Metrics(), clock=clock)
    server = Server(lambda: holder[0].services)
    running = Running(server, services, "")
    holder.append(running)
    sockets = server.bind()
    await server.start(sockets)
    name = sockets[0].getsockname()
    running.address = name if isinstance(name, str) else (name[0], name[1])
    try:
        yield running
    finally:
        await server.shutdown(grace)
        await running.services.pool.close()
