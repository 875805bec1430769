"""Instructions per message of spambridge, counted by valgrind: a noise-free A/B measure.

    python -m bench.instructions                      # this checkout, the four scenarios
    python -m bench.instructions --tree ../old-copy   # the same for another checkout

CPU seconds on a shared 2-core machine move by 20 % between runs; user-space instructions
counted by callgrind move by well under 1 %. The milter runs under callgrind against the
instant fake spamd; after a warm-up the counters are zeroed, the load runs, and the count
is read from a dump. Kernel work (the system calls) is not counted, so this measures the
Python side only; `python -m bench.run` gives the CPU time. Needs `valgrind`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.loadgen import run_load
from bench.run import fake_spamd
from bench.subjects import REPO_ROOT, _accepts, free_port, subject_argv

SCENARIOS = ((1, 1, 60), (1, 20, 200), (50, 1, 300), (50, 20, 1000))  # c, per conn, messages


def _total(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def _control(action: str, pid: int) -> None:
    """callgrind_control -z (zero) or -d (dump). It can wait for ever on a request the
    valgrind'ed process never picks up (seen with several valgrinds on 2 cores): bound it
    and ask again, then give up loudly instead of hanging the run."""
    for _ in range(3):
        try:
            subprocess.run(["callgrind_control", action, str(pid)], capture_output=True, timeout=60)
            return
        except subprocess.TimeoutExpired:
            continue
    raise RuntimeError(f"callgrind_control {action} {pid} did not answer in 3 tries")


def count(tree: Path, spamd_port: int, c: int, m: int, n: int, loop: str) -> dict[str, object]:
    """Instructions per message for one scenario, spambridge from `tree`."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="spambridge-ir-") as tmp:
        out = Path(tmp) / "cg"
        name = "spambridge" if loop == "asyncio" else "spambridge-uvloop"
        # The same command line as the benchmark's subject, under callgrind.
        argv = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}.%p",
            *subject_argv(name, port, spamd_port),
        ]
        env = dict(os.environ, PYTHONPATH=str(tree))
        proc = subprocess.Popen(
            argv, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 120
            while not _accepts(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"spambridge from {tree} did not start under valgrind")
                time.sleep(0.2)
            address = ("127.0.0.1", port)
            warm = max(c * m, 40)
            asyncio.run(run_load(address, total=warm, concurrency=c, per_connection=m))
            _control("-z", proc.pid)
            load = asyncio.run(
                run_load(address, total=n, concurrency=c, per_connection=m, read_timeout=120)
            )
            _control("-d", proc.pid)
            dumps = sorted(Path(tmp).glob("cg.*.*"))
            if not dumps or not load.messages:
                raise RuntimeError("no callgrind dump or no messages")
            total = _total(dumps[-1])
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
    return {
        "tree": str(tree),
        "loop": loop,
        "concurrency": c,
        "per_connection": m,
        "messages": load.messages,
        "errors": load.errors,
        "instructions_per_message": total // load.messages,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--tree", type=Path, default=REPO_ROOT, help="checkout to measure")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 1
    tree = args.tree.resolve()
    with fake_spamd() as spamd_port:
        for c, m, n in SCENARIOS:
            print(json.dumps(count(tree, spamd_port, c, m, n, args.loop)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
