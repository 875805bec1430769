"""The fake spamd (tools.fake_spamd) run as a process, for faults real spamd cannot
produce.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from tools.stack.processes import Daemon, await_ready, python_env, spawn


@dataclass
class FakeSpamdProcess(Daemon):
    """tools.fake_spamd run as a process (for faults real spamd cannot produce)."""

    address: str = ""


def start_fake_spamd(
    workdir: Path, *, fault: str | None = None, delay: float = 0.0, timeout: float = 15.0
) -> FakeSpamdProcess:
    """The fake spamd on a free loopback port; ``address`` is its spamd-socket value."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "tools.fake_spamd", "--port", "0"]
    if fault is not None:
        argv += ["--fault", fault, "--delay", str(delay)]
    log_path = workdir / f"fake-spamd-{uuid.uuid4().hex[:8]}.log"
    process = spawn(argv, log_path, python_env())
    fake = FakeSpamdProcess(process.proc, log_path)

    def announced() -> bool:
        first = fake.log_text().split("\n", 1)
        if len(first) < 2 or not first[0]:
            return False
        fake.address = first[0].strip()
        return True

    await_ready(fake, "fake spamd", announced, timeout, "the fake spamd to print its address")
    return fake
