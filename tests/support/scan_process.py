"""`spambridge scan` run as the admin runs it: a child process of this checkout."""

from __future__ import annotations

import asyncio
import os
import sys

from tests.support.daemon_process import ROOT
from tools.fake_spamd import GTUBE

MESSAGE = (
    b"From: sender@example.net\r\n"
    b"To: rcpt@example.org\r\n"
    b"Subject: cheap pills\r\n"
    b"X-Spam-Flag: NO\r\n"
    b"\r\n"
    b"Buy now\r\n" + GTUBE + b"\r\n"
)


async def run_scan(args: list[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "spambridge",
        "file=",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
