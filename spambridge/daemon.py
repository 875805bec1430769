"""The one lifecycle of a running spambridge: start-up, reload, drain and stop.

`Daemon` owns what lives as long as the process: the server and its listeners, the services
every session reads (config, spamd pool, metrics, clock), the metrics endpoint. `spambridge
run` drives it through `run` (detach, event loop, signals, pid file, systemd notices); the
tests' controller drives the same object in the test's event loop, so a test that reloads
runs the very reload SIGHUP runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import grp
import os
import pwd
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from spambridge import __version__, metrics
from spambridge.errors import ConfigError
from spambridge.log import logger, setup
from spambridge.metrics import Metrics
from spambridge.options import Config
from spambridge.server import Server
from spambridge.services import Services, local_now
from spambridge.spamd.endpoints import spamd_sockets_text
from spambridge.spamd.library import drop_loguru_handlers
from spambridge.spamd.pool import SpamdPool
from spambridge.spamd.tls import client_context


def build_pool(c: Config) -> SpamdPool:
    return SpamdPool(
        c.spamd_socket,
        timeouts=c.spamd_timeouts,
        select=c.spamd_select,
        max_connections=c.spamd_max_connections,
        connect_retries=c.spamd_connect_retries,
        cooldown=c.spamd_cooldown,
        cooldown_max=c.spamd_cooldown_max,
        slow_factor=c.spamd_slow_factor,
        slow_samples=c.spamd_slow_samples,
        tls=client_context(c.spamd_tls) if any(e.tls for e in c.spamd_socket) else None,
        max_reply_size=c.spamd_max_reply_size * 1024,
    )


def build_services(
    config: Config, stats: Metrics, *, clock: Callable[[], datetime] = local_now
) -> Services:
    return Services(config, build_pool(config), stats, clock)


class Daemon:
    """A running spambridge. `load` reads the options again (raising ConfigError) when the
    daemon is told to reload. With `owns_logging` (the process's daemon) a reload also sets
    the process's logging up again from the new options; the tests leave pytest's alone."""

    def __init__(
        self,
        config: Config,
        load: Callable[[], Config],
        *,
        clock: Callable[[], datetime] = local_now,
        owns_logging: bool = True,
    ) -> None:
        self.load = load
        self.clock = clock
        self.owns_logging = owns_logging
        self.metrics = Metrics()
        self.services = build_services(config, self.metrics, clock=clock)
        self.server = Server(lambda: self.services)  # read per connection and per message
        self.metrics_server: asyncio.Server | None = None
        self.stopping = asyncio.Event()
        stats = self.metrics
        stats.sources.append(lambda: self.services.pool.counters)
        stats.gauges["connections_active"] = lambda: float(len(self.server.sessions))
        stats.gauges["scans_in_flight"] = lambda: float(self.services.pool.in_flight)
        stats.families.append(lambda: self.services.pool.metric_families())

    @property
    def config(self) -> Config:
        return self.services.config

    # ---------------------------------------------------------------- start-up

    def bind(self) -> list[socket.socket]:
        """Bind milter-socket (or take systemd's sockets): before dropping privileges."""
        return self.server.bind()

    async def start(self, sockets: list[socket.socket]) -> None:
        """Serve the MTA on `sockets`, and the metrics on metrics-listen when set."""
        await self.server.start(sockets)
        listen = self.config.metrics_listen
        if listen:
            self.metrics_server = await metrics.serve(self.metrics, listen)
            logger.info("metrics on http://%s/metrics", listen)

    # ---------------------------------------------------------------- reload

    def reload(self) -> bool:
        """What SIGHUP does: read the options (the option file, the access map) again and
        swap the services whole; new messages use them, messages in flight finish on the old
        ones. A broken configuration keeps the running one. Returns whether it was taken."""
        try:
            fresh = self.load()
        except ConfigError as exc:
            logger.error("reload failed, keeping the running configuration: %s", exc)
            return False
        running = self.config.milter_socket.source  # as written: any change is news
        if fresh.milter_socket.source != running:
            logger.warning("milter-socket changes need a restart; keeping %s", running)
        try:
            services = build_services(fresh, self.metrics, clock=self.clock)
        except ConfigError as exc:
            logger.error("reload failed, keeping the running configuration: %s", exc)
            return False
        self.services.pool.stop_probes()  # scans in flight finish on it; its probes end here
        self.services = services
        if self.owns_logging:
            setup(fresh.log, fresh.verbose)
        logger.info("configuration reloaded; new messages use it")
        return True

    # ---------------------------------------------------------------- drain and stop

    def stop(self) -> None:
        """What SIGTERM does: `serve` drains and returns."""
        self.stopping.set()

    async def drain(self, grace: float | None = None) -> None:
        """Stop accepting, let messages in flight finish within `grace` (shutdown-grace by
        default), then close the listeners, the metrics endpoint and the spamd pool."""
        grace = self.config.shutdown_grace if grace is None else grace
        logger.info(
            "stopping: finishing %d message(s) in flight (grace %.0fs)", self.server.busy, grace
        )
        await self.server.shutdown(grace)
        if self.metrics_server is not None:
            self.metrics_server.close()
        await self.services.pool.close()
        logger.info("stopped")

    # ---------------------------------------------------------------- the whole life

    async def serve(self, warnings: Sequence[str] = ()) -> int:
        """Start, serve until SIGTERM or SIGINT (SIGHUP reloads), drain. The pid file is
        written once the socket is ours, privileges dropped once it is bound."""
        config = self.config
        sockets = self.bind()
        write_pid_file(config.pid_file)
        drop_privileges(config)
        await self.start(sockets)
        for note in warnings:
            logger.warning("%s", note)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        logger.info(
            "spambridge %s ready; spamd %s",
            __version__,
            spamd_sockets_text(config.spamd_socket) or "(none: scanning disabled)",
        )
        drop_loguru_handlers()  # aiospamc's debug records then cost one comparison each
        # Everything built so far (modules, option tables, the server) lives as long as the
        # process: move it out of the collector's sight, so a full collection scans only what
        # connections made (about 20 ms less per pause on a busy milter).
        gc.collect()
        gc.freeze()
        notify("READY=1\nSTATUS=serving")
        await self.stopping.wait()
        notify("STOPPING=1")
        await self.drain()
        return 0


def run(config: Config, load: Callable[[], Config], warnings: Sequence[str] = ()) -> int:
    """The daemon as a process: logging, detach (daemon), work-dir, the event loop the
    options name, the Daemon until it stops; its pid file removed. Returns the exit status."""
    setup(config.log, config.verbose)
    if config.daemon:
        daemonize()
    if config.work_dir:
        os.chdir(config.work_dir)
    try:
        with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
            return runner.run(_serve(config, load, warnings))
    except ConfigError as exc:
        logger.error("%s", exc)
        print(f"spambridge: error: {exc}", file=sys.stderr)
        return 2
    finally:
        remove_pid_file(config.pid_file)


async def _serve(config: Config, load: Callable[[], Config], warnings: Sequence[str]) -> int:
    return await Daemon(config, load).serve(warnings)  # built in the loop it runs in


def loop_factory(config: Config) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event-loop option as a loop factory for asyncio.Runner (None: asyncio's own).
    build_config made sure uvloop is there when the option names it."""
    if config.event_loop == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # event-loop=auto without uvloop
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


# ------------------------------------------------------------------ the process


def drop_privileges(config: Config) -> None:
    if not (config.run_user or config.run_group) or os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam(config.run_user) if config.run_user else None
        gid = (
            grp.getgrnam(config.run_group).gr_gid
            if config.run_group
            else (user.pw_gid if user else os.getgid())
        )
    except KeyError as exc:
        raise ConfigError(
            "run-user" if "user" in str(exc) else "run-group", f"no such user or group: {exc}"
        ) from None
    os.setgroups([gid])
    os.setgid(gid)
    if user is not None:
        os.setuid(user.pw_uid)
        os.environ["USER"] = user.pw_name
    logger.info("running as uid=%d gid=%d", os.getuid(), os.getgid())


def daemonize() -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)


def notify(message: str) -> None:
    """sd_notify: tell systemd about READY/STOPPING/STATUS (Type=notify)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            logger.debug("sd_notify failed: %s", exc)


def write_pid_file(path: str) -> None:
    """Written once the socket is ours: an instance refused for a socket in use must not
    overwrite (and then remove) the running instance's pid file."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Whole or not at all: a reader that sees the file never sees it half written.
        partial = Path(f"{path}.{os.getpid()}.tmp")
        partial.write_text(f"{os.getpid()}\n")
        os.replace(partial, path)


def remove_pid_file(path: str) -> None:
    """Remove the pid file if it is this process's own."""
    with contextlib.suppress(OSError, ValueError):
        if path and int(Path(path).read_text().split()[0]) == os.getpid():
            os.unlink(path)
