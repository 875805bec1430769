"""The real milter-spamc 1.17.1, built from ../shared/oracle and started on a loopback port.

Used by the differential suite (tests/oracle) and by the e2e tests that put it beside
spambridge behind the same MTA side (tests/e2e/test_go_milter_client.py). The sources live
outside the repository: without them the callers skip, and under CI=true they fail.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tools import stack
from tools.stack import Daemon

ORACLE_DIR = stack.REPO_ROOT.parent / "shared" / "oracle"


class Unavailable(Exception):
    """The oracle cannot be had here; the message says why."""


def build() -> Path:
    """The milter-spamc binary, built once by ../shared/oracle/build.sh (idempotent)."""
    script = ORACLE_DIR / "build.sh"
    if not script.exists():
        raise Unavailable(f"no milter-spamc oracle sources at {ORACLE_DIR}")
    result = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        # Two builds at once can trip over each other's files; one retry settles it.
        result = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=900, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(
            f"building the oracle failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
        )
    return Path(result.stdout.strip().splitlines()[-1])


def start(binary: Path, option_file: Path, workdir: Path) -> tuple[Daemon, int]:
    """milter-spamc on `option_file`, as nobody, on a free loopback port."""
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
