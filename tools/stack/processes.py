"""Process control for the real stack: spawn a daemon in its own process group, wait until it
is ready, stop it by its PID, and read its log.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class StackError(RuntimeError):
    """A daemon of the test stack could not be started or misbehaved."""


def require_binaries(names: Sequence[str]) -> list[str]:
    """Return the names in ``names`` that are not on PATH (or /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [name for name in names if shutil.which(name, path=path) is None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_workdir(prefix: str = "spambridge-stack-") -> Path:
    """A fresh directory that unprivileged daemons can traverse (0755 under the temp dir)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def describe_logs(*daemons: Daemon, limit: int = 3000) -> str:
    """The tails of the daemons' logs, for assertion messages."""
    return "\n".join(f"--- {d.log_path}\n{tail(d.log_path, limit)}" for d in daemons)


def tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_bytes()[-limit:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


@dataclass
class Daemon:
    """A daemon in its own process group, stopped by its PID."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        """The log once it holds ``needle``. spambridge logs a message's verdict line just
        after it has sent the MTA its reply, so the SMTP client can see the reply first."""
        wait_until(lambda: needle in self.log_text(), timeout, f"{needle!r} in {self.log_path}")
        return self.log_text()

    def stop(self, timeout: float = 15.0) -> None:
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout)
        # Children that outlive their parent (forked SMTP sessions, spamd children).
        self._signal_group(signal.SIGKILL)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        self.proc.wait(15.0)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)


def spawn(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> Daemon:
    log = log_path.open("ab")
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    finally:
        log.close()
    return Daemon(proc, log_path)


# --------------------------------------------------------------------------------------- spamd


def _alive_or_raise(process: Daemon, name: str) -> bool:
    if not process.running():
        raise StackError(
            f"{name} exited with status {process.proc.returncode}:\n{tail(process.log_path)}"
        )
    return True


def await_ready(
    process: Daemon, name: str, ready: Callable[[], bool], timeout: float, what: str
) -> None:
    """Wait until `ready()` while the process lives; stop it if it never gets there."""
    try:
        wait_until(lambda: _alive_or_raise(process, name) and ready(), timeout, what)
    except Exception:
        process.stop()
        raise


def python_env() -> dict[str, str]:
    """The environment for a Python child that must import this repository's packages."""
    path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))
