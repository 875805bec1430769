"""`spambridge scan FILE|-`: one message through the configured spamd without an MTA, and the
milter-spamc entry point."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from spambridge import cli
from tests.scenarios.daemon_support import ROOT
from tests.support.fake_spamd import GTUBE, FakeSpamd

pytestmark = pytest.mark.timeout(60)

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


async def test_scan_file_prints_verdict_edits_and_action(tmp_path: Path) -> None:
    path = tmp_path / "spam.eml"
    path.write_bytes(MESSAGE)
    async with FakeSpamd() as spamd:
        code, out, err = await run_scan([f"spamd-socket={spamd.address}", "scan", str(path)])
        assert len(spamd.requests) == 1
        sent = spamd.requests[0].body
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("verdict: spam score=1000.00/5.00 spamd=")
    assert "edit: ChangeHeader(index=1, name=b'X-Spam-Flag', value=b'')" in lines
    assert any(
        line.startswith("edit: AddHeader(name=b'X-Spam-Status', value=b' YES, hits=1000.00")
        for line in lines
    )
    assert any("[SPAM] cheap pills" in line for line in lines)
    assert "action: tag" in lines
    assert "reply: Continue()" in lines
    assert b"X-Spam-Flag" not in sent  # forged verdict headers never reach spamd
    assert GTUBE in sent


async def test_scan_stdin_with_reject_option() -> None:
    async with FakeSpamd() as spamd:
        code, out, err = await run_scan(
            [f"spamd-socket={spamd.address}", "extra-reject=0", "scan", "-"], stdin=MESSAGE
        )
    assert code == 0, err
    assert "action: reject" in out.splitlines()
    assert "reply: ReplyCode(text=b'550-5.7.1 message was identified as junk mail" in out


async def test_scan_ham_from_stdin() -> None:
    ham = b"Subject: hi\r\n\r\nhello\r\n"
    async with FakeSpamd() as spamd:
        code, out, _ = await run_scan([f"spamd-socket={spamd.address}", "scan", "-"], stdin=ham)
    assert code == 0
    assert out.startswith("verdict: ham score=0.00/5.00 ")
    assert "action: accept" in out.splitlines()


async def test_scan_spamd_down_reports_error_and_fail_open_action() -> None:
    async with FakeSpamd(fault="refuse") as spamd:
        code, out, _ = await run_scan(
            [f"spamd-socket={spamd.address}", "spamd-timeouts=C:1s;E:3s", "scan", "-"],
            stdin=MESSAGE,
        )
    assert code == 0
    assert out.startswith("verdict: error (")
    assert "action: accept" in out.splitlines()


def test_scan_needs_exactly_one_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["file=", "scan"]) == 2
    assert "scan: give one FILE, or - for standard input" in capsys.readouterr().err


def test_milter_spamc_entry_point_takes_milter_spamc_paths(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["milter-spamc", "check"])
    assert cli.main_milter_spamc() == 0
    out = capsys.readouterr().out
    assert "\nmilter-socket=unix:/var/run/milter/milter-spamc.socket\n" in out
    assert "\npid-file=/var/run/milter/milter-spamc.pid\n" in out
    assert "\nfile=/etc/mail/milter-spamc.cf\n" in out
