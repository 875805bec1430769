"""Soak run: drive N messages through a milter subprocess and watch its RSS and fds.

    python -m tests.robustness.soak --messages 100000

The milter runs as `python -m spambridge` on a unix socket; the MTA-side clients and a
fake spamd run in this process. A share of messages asks the fake spamd for a fault
(garbage, reset, close, EX_SOFTWARE) through the per-recipient spamd User. Every message
must get a final reply (none lost), the milter must log one verdict line per message, and
its RSS at the end must be within --max-growth of the RSS after warm-up. Exit status 0
when all of that holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from spambridge.milter.messages import FINAL_REPLIES
from tools.fake_spamd import GTUBE, FakeSpamd
from tools.milter_client import MilterClient

FAULTS = ("garbage", "reset", "close", "ex-70")
HEADERS = [
    (b"From", b" Sender <sender@example.net>"),
    (b"To", b" rcpt@example.org"),
    (b"Subject", b" soak"),
]


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    faults: int = 0
    finals: dict[str, int] = field(default_factory=dict)
    samples: list[tuple[int, int, int]] = field(default_factory=list)  # (done, rss_kib, fds)


def proc_status(pid: int) -> tuple[int, int]:
    """(VmRSS in KiB, open fds) of process `pid`."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def message_for(n: int, fault_every: int) -> tuple[list[tuple[bytes, bytes]], bytes, bytes]:
    """Headers, body and recipient of message n: ham, spam, forged headers or a fault."""
    rcpt = b"<user%d@example.org>" % (n % 50)
    headers = HEADERS
    body = b"Hello %d,\r\n\r\nan ordinary message.\r\n" % n + b"x" * (n % 4000)
    if n % 3 == 1:
        body = GTUBE + b"\r\n" + body
    if n % 7 == 0:
        headers = [*HEADERS, (b"X-Spam-Flag", b" YES"), (b"x-spam-status", b" Yes,\r\n\tforged")]
    if fault_every and n % fault_every == fault_every - 1:
        fault = FAULTS[(n // fault_every) % len(FAULTS)]
        rcpt = b"<fault-%s@[127.0.0.1]>" % fault.encode()
    return headers, body, rcpt


async def client_loop(
    address: str, ids: asyncio.Queue[int], tally: Tally, per_conn: int, fault_every: int
) -> None:
    rcpt_macros = {"{rcpt_host}": "[127.0.0.1]", "{rcpt_mailer}": "esmtp"}
    while not ids.empty():
        client = await MilterClient.open(address, read_timeout=30)
        try:
            await client.negotiate()
            await client.connect(b"client.example.net", address=b"192.0.2.9", port=4000)
            await client.helo(b"client.example.net")
            for _ in range(per_conn):
                try:
                    n = ids.get_nowait()
                except asyncio.QueueEmpty:
                    break
                headers, body, rcpt = message_for(n, fault_every)
                tally.sent += 1
                tally.faults += rcpt.startswith(b"<fault-")
                result = await client.send_message(
                    headers, body, rcpts=(rcpt,), macros={"R": rcpt_macros}
                )
                if isinstance(result.final, FINAL_REPLIES):
                    tally.answered += 1
                    name = type(result.final).__name__
                    tally.finals[name] = tally.finals.get(name, 0) + 1
            await client.quit()
        finally:
            await client.close()


async def sampler(pid: int, tally: Tally, every: float, spamd: FakeSpamd) -> None:
    while True:
        spamd.requests.clear()  # the fake records every request; keep this process small
        rss, fds = proc_status(pid)
        tally.samples.append((tally.answered, rss, fds))
        await asyncio.sleep(every)


async def wait_for_socket(path: str, proc: asyncio.subprocess.Process) -> None:
    """Return once the milter accepts connections on `path` (15 s at most)."""
    async with asyncio.timeout(15):
        while True:
            if proc.returncode is not None:
                raise RuntimeError(f"milter exited with status {proc.returncode}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_unix_connection(path)
                writer.close()
                return
            await asyncio.sleep(0.05)


async def soak(args: argparse.Namespace) -> int:
    workdir = tempfile.mkdtemp(prefix="sb-soak-", dir="/tmp")
    sock = os.path.join(workdir, "milter.sock")
    log_path = os.path.join(workdir, "milter.log")
    tally = Tally()
    async with FakeSpamd() as spamd:
        cmd = [
            sys.executable,
            "-m",
            "spambridge",
            "file=",
            f"milter-socket=unix:{sock}",
            f"spamd-socket={spamd.address}",
            "spamd-timeouts=C:2s;S:2s;R:5s;E:10s",
            "spamd-cooldown=0",
            "+is-gateway",
            "log=stderr",
        ]
        log = await asyncio.to_thread(open, log_path, "wb")
        with log:
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL, stderr=log)
        try:
            await wait_for_socket(sock, proc)
            ids: asyncio.Queue[int] = asyncio.Queue()
            for n in range(args.messages):
                ids.put_nowait(n)
            sampling = asyncio.create_task(sampler(proc.pid, tally, args.sample_every, spamd))
            started = time.monotonic()
            await asyncio.gather(
                *(
                    client_loop(sock, ids, tally, args.per_connection, args.fault_every)
                    for _ in range(args.clients)
                )
            )
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.5)  # let the milter close the last connections
            end_rss, end_fds = proc_status(proc.pid)
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        finally:
            if proc.returncode is None:
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    log_text = await asyncio.to_thread(Path(log_path).read_text, errors="replace")
    verdict_lines = log_text.count(" verdict=")
    spamd_failures = log_text.count("spamd failed")
    shutil.rmtree(workdir, ignore_errors=True)

    warm_at = max(1, int(args.messages * args.warmup))
    warm = next((s for s in tally.samples if s[0] >= warm_at), tally.samples[-1])
    growth = (end_rss - warm[1]) / warm[1] * 100
    max_rss = max(s[1] for s in tally.samples)
    lost = tally.sent - tally.answered
    print(f"messages={tally.sent} answered={tally.answered} lost={lost} faults={tally.faults}")
    print(
        f"finals={tally.finals} milter_verdict_lines={verdict_lines} "
        f"spamd_failures_logged={spamd_failures}"
    )
    print(f"seconds={elapsed:.1f} rate={tally.sent / elapsed:.0f}/s clients={args.clients}")
    print(
        f"rss_after_warmup_kib={warm[1]} (at {warm[0]} msgs) rss_end_kib={end_rss} "
        f"rss_max_kib={max_rss} growth={growth:.1f}%"
    )
    curve = [tally.samples[len(tally.samples) * q // 4] for q in range(4)]
    print("rss_curve_kib=" + " ".join(f"{done}:{rss}" for done, rss, _ in curve))
    print(f"fds_after_warmup={warm[2]} fds_end={end_fds} milter_exit={proc.returncode}")
    ok = (
        lost == 0
        and tally.sent == args.messages
        and verdict_lines == args.messages
        and growth < args.max_growth
        and end_fds <= warm[2]
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="soak the milter with N messages")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20, help="concurrent MTA connections")
    parser.add_argument("--per-connection", type=int, default=50, help="messages per connection")
    parser.add_argument(
        "--fault-every", type=int, default=50, help="one spamd fault per N (0: none)"
    )
    parser.add_argument("--warmup", type=float, default=0.2, help="share of messages as warm-up")
    parser.add_argument("--max-growth", type=float, default=10.0, help="allowed RSS growth, %%")
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds between samples")
    return asyncio.run(soak(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
