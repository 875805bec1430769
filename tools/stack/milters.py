"""The milters under test: spambridge itself (this repository's code) and spamass-milter,
the C++ peer the bench runs side by side.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.stack.processes import Daemon, await_ready, free_port, port_accepts, python_env, spawn


@dataclass
class MilterDaemon(Daemon):
    """A milter listening on a loopback port, named the way each MTA writes its socket."""

    port: int = 0

    @property
    def sendmail_socket(self) -> str:
        """The socket in Sendmail's (and spambridge's) syntax."""
        return f"inet:{self.port}@127.0.0.1"

    @property
    def postfix_socket(self) -> str:
        return f"inet:127.0.0.1:{self.port}"


@dataclass
class Spambridge(MilterDaemon):
    """``python -m spambridge`` started by :func:`start_spambridge`."""


def start_spambridge(
    args: Sequence[str],
    workdir: Path,
    *,
    legacy_syntax: bool = False,
    timeout: float = 20.0,
    port: int | None = None,
) -> Spambridge:
    """``python -m spambridge ARGS`` listening on a free loopback port.

    The milter socket is added to ``args`` as ``--milter-socket X`` (or ``milter-socket=X``
    with ``legacy_syntax``). stderr goes to a log file read by :meth:`Spambridge.log_text`.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    spec = f"inet:{port}@127.0.0.1"
    socket_args = [f"milter-socket={spec}"] if legacy_syntax else ["--milter-socket", spec]
    log_path = workdir / f"spambridge-{port}.log"
    argv = [sys.executable, "-m", "spambridge", *socket_args, *args]
    process = spawn(argv, log_path, python_env())
    bridge = Spambridge(process.proc, log_path, port=port)
    await_ready(bridge, "spambridge", lambda: port_accepts(port), timeout, "spambridge to listen")
    return bridge


@dataclass
class SpamassMilter(MilterDaemon):
    """spamass-milter (the C++ peer), for side-by-side runs; one spamc child per message."""


def start_spamass_milter(
    workdir: Path,
    spamd_port: int,
    *,
    args: Sequence[str] = ("-m",),
    spamc_args: Sequence[str] = (),
    timeout: float = 20.0,
) -> SpamassMilter:
    """spamass-milter in the foreground on a free loopback port, scanning with spamd at
    ``spamd_port``. No ``-i``: Debian's default ``-i 127.0.0.1`` would skip every local test
    client. ``-m`` (the default here) leaves the body and Subject alone."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = ["spamass-milter", "-p", f"inet:{port}@127.0.0.1", *args]
    argv += ["--", "-d", "127.0.0.1", "-p", str(spamd_port), *spamc_args]
    process = spawn(argv, workdir / f"spamass-milter-{port}.log")
    milter = SpamassMilter(process.proc, process.log_path, port=port)
    await_ready(milter, "spamass-milter", lambda: port_accepts(port), timeout, "it to listen")
    return milter


# ------------------------------------------------------------------------------------- SMTP
