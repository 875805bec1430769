"""Run `python -m spambridge` as a real subprocess on a unix socket in a short temp dir."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.policy_messages import deliver, headers_with, open_client
from tools.fake_spamd import FakeSpamd
from tools.milter_client import EomResult

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def short_tmpdir() -> Iterator[Path]:
    """A temp dir short enough for unix socket paths (108 bytes), world-traversable."""
    path = Path(tempfile.mkdtemp(prefix="sb-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    log_path: Path
    socket_path: Path | None
    returncode: int | None = field(default=None)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_log(self, text: str, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            # a child's log file and exit status have no event to await: poll them
            while text not in self.log:
                if self.proc.poll() is not None:
                    raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log}")
                await asyncio.sleep(0.05)

    async def wait_socket(self, within: float = 10.0) -> None:
        assert self.socket_path is not None
        await self.wait_log("ready", within)
        assert self.socket_path.exists(), self.log

    async def wait_exit(self, within: float = 15.0) -> int:
        async with asyncio.timeout(within):
            while self.proc.poll() is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        return self.proc.returncode

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return await self.wait_exit()
            except TimeoutError:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_daemon(
    workdir: Path,
    args: Sequence[str],
    *,
    socket_name: str | None = "milter.sock",
    env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
    pass_fds: Sequence[int] = (),
    log_name: str = "daemon.log",
) -> Daemon:
    """Start the daemon; `args` are options. Logs go to workdir/log_name."""
    socket_path = workdir / socket_name if socket_name else None
    argv = ["-m", "spambridge", "file=", "log=stderr"]
    if socket_path is not None:
        argv.append(f"milter-socket=unix:{socket_path}")
    argv += list(args)
    log_path = workdir / log_name
    environment = dict(os.environ)
    environment["PYTHONPATH"] = str(ROOT)
    environment.pop("NOTIFY_SOCKET", None)
    environment.update(env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *wrapper, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(workdir),
            env=environment,
            pass_fds=tuple(pass_fds),
        )
    return Daemon(proc, log_path, socket_path)


async def send(address: str | tuple[str, int], body: bytes) -> EomResult:
    client = await open_client(address)
    try:
        result = await deliver(client, headers_with(), body)
        await client.quit()
    finally:
        await client.close()
    return result


async def running(workdir: Path, spamd: FakeSpamd, *args: str, **kw: object) -> Daemon:
    daemon = start_daemon(workdir, [f"spamd-socket={spamd.address}", *args], **kw)  # type: ignore[arg-type]
    await daemon.wait_socket()
    return daemon
