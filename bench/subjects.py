"""The milters under test: start one on a free loopback port, stop it by its PID."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The C floors, each built from bench/NAME.c: nullfilter never calls spamd, nullscan does
# what any scanning milter must (buffer, one REPORT round trip to spamd, one header).
C_FILTERS = ("nullfilter", "nullscan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def _limit_files(nofile: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return apply


@dataclass
class Running:
    """A started milter: `spec` is its socket in Sendmail syntax."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    nofile: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def spec(self) -> str:
        return f"inet:{self.port}@127.0.0.1"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        # libmilter can take about 5 s to honour SIGTERM: don't wait that long.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def build_c_filter(name: str, build_dir: Path) -> Path:
    """Compile bench/NAME.c into build_dir (never into the source tree)."""
    if name not in C_FILTERS:
        raise ValueError(f"unknown C filter {name!r}")
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / name
    source = Path(__file__).with_name(f"{name}.c")
    compiler = shutil.which("cc") or shutil.which("gcc") or "cc"
    subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(source), "-lmilter", "-lpthread"],
        check=True,
        timeout=120,
    )
    return binary


def build_c_filters(build_dir: Path) -> dict[str, Path]:
    """Every C floor, by subject name."""
    return {name: build_c_filter(name, build_dir) for name in C_FILTERS}


def subject_argv(
    name: str, port: int, spamd_port: int, binaries: Mapping[str, Path] | None = None
) -> list[str]:
    """The command line of subject `name`; the C floors need their built `binaries`."""
    spec = f"inet:{port}@127.0.0.1"
    bridge_args = [
        "--milter-socket",
        spec,
        "--spamd-socket",
        f"127.0.0.1:{spamd_port}",
        "--log",
        "stderr",
        "--verbose",
        "0",
        "--max-connections",
        "2000",
    ]
    if name == "spambridge":  # the plain install: asyncio's own loop
        return [sys.executable, "-m", "spambridge", *bridge_args, "--event-loop", "asyncio"]
    if name == "spambridge-uvloop":
        return [sys.executable, "-m", "spambridge", *bridge_args, "--event-loop", "uvloop"]
    if name == "spambridge-skip-body":  # answers every body chunk, to offer SKIP
        bridge_args.append("--skip-body")
        return [sys.executable, "-m", "spambridge", *bridge_args, "--event-loop", "asyncio"]
    if name == "spambridge-no-reply-off":  # every step answered, as a libmilter filter
        bridge_args.append("--milter-no-reply=0")
        return [sys.executable, "-m", "spambridge", *bridge_args, "--event-loop", "asyncio"]
    if name == "spamass-milter":
        # No -i: Debian's default -i 127.0.0.1 would skip every loopback client.
        return ["spamass-milter", "-p", spec, "--", "-d", "127.0.0.1", "-p", str(spamd_port)]
    if name in C_FILTERS:
        binary = (binaries or {}).get(name)
        if binary is None:
            raise ValueError(f"{name} needs a built binary")
        if name == "nullscan":  # spamd is on loopback in every phase (fake or real)
            return [str(binary), spec, "127.0.0.1", str(spamd_port)]
        return [str(binary), spec]
    raise ValueError(f"unknown subject {name!r}")


def start_subject(
    name: str,
    spamd_port: int,
    log_dir: Path,
    *,
    binaries: Mapping[str, Path] | None = None,
    nofile: int = 1024,
    timeout: float = 20.0,
) -> Running:
    port = free_port()
    argv = subject_argv(name, port, spamd_port, binaries)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{name}-{port}.log").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_limit_files(nofile),
            env=env,
            cwd=REPO_ROOT,
        )
    running = Running(name, proc, port, nofile)
    deadline = time.monotonic() + timeout
    while not _accepts(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(f"{name} did not start; see {log_dir}")
        time.sleep(0.05)
    return running
