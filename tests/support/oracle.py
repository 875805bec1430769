"""The real milter-spamc 1.17.1 (built from ../shared/oracle beside the repository) as a
process: building it, starting it on an option file, and the pair of it and spambridge that
the differential tests drive. Without the sources the caller skips; under CI=true it fails,
so a broken pipeline cannot pass silently."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools import stack
from tools.stack import Daemon, Spambridge

ORACLE_DIR = stack.REPO_ROOT.parent / "shared" / "oracle"


def oracle_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the oracle is unavailable: {reason}")
    pytest.skip(reason)


def build_oracle() -> Path:
    """The oracle binary, built once (build.sh returns at once when it exists)."""
    build = ORACLE_DIR / "build.sh"
    if not build.exists():
        oracle_unavailable(f"no milter-spamc oracle sources at {ORACLE_DIR}")
    result = subprocess.run(
        ["bash", str(build)], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        # Two builds at once can trip over each other's files; one retry settles it.
        result = subprocess.run(
            ["bash", str(build)], capture_output=True, text=True, timeout=900, check=False
        )
    if result.returncode != 0:
        pytest.fail(f"building the oracle failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class Pair:
    """milter-spamc and spambridge started on the same option file."""

    oracle_port: int
    bridge_port: int
    oracle: Daemon
    bridge: Spambridge


PairFactory = Callable[[str], Pair]


def start_oracle(binary: Path, option_file: Path, workdir: Path) -> tuple[Daemon, int]:
    port = stack.free_port()
    argv = [
        str(binary),
        f"file={option_file}",
        "-daemon",
        "run-user=nobody",
        "run-group=nogroup",
        f"work-dir={workdir}",
        f"pid-file={workdir}/milter-spamc.pid",
        f"milter-socket=inet:{port}@127.0.0.1",
    ]
    log_path = workdir / "milter-spamc.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    daemon = Daemon(proc, log_path)
    try:
        stack.wait_until(lambda: daemon.running() and stack.port_accepts(port), 20, "milter-spamc")
    except stack.StackError:
        daemon.stop()
        raise stack.StackError(
            f"milter-spamc did not start: {stack.describe_logs(daemon)}"
        ) from None
    return daemon, port
