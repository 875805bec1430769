"""`spambridge scan FILE|-`: one message through the configured spamd without an MTA, and the
milter-spamc entry point."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from spambridge import cli
from tests.support.scan_process import MESSAGE, run_scan
from tools.fake_spamd import GTUBE, FakeSpamd

pytestmark = pytest.mark.timeout(60)


async def test_scan_file_prints_verdict_then_headers_as_delivered(tmp_path: Path) -> None:
    path = tmp_path / "spam.eml"
    path.write_bytes(MESSAGE)
    async with FakeSpamd() as spamd:
        code, out, err = await run_scan([f"spamd-socket={spamd.address}", "scan", str(path)])
        assert len(spamd.requests) == 1
        sent = spamd.requests[0].body
    assert code == 1, err  # spam, as spamc -E
    head, _, shown = out.partition("\n\n")
    lines = head.splitlines()
    assert lines[0].startswith("verdict: spam score=1000.00/5.00 spamd=")
    assert lines[1:] == ["action: tag", "reply: continue (delivered)"]
    # the headers as the recipient sees them: the forged flag gone, ours added, folded
    headers = shown.splitlines()
    assert headers[:3] == [
        "From: sender@example.net",
        "To: rcpt@example.org",
        "Subject: [SPAM] cheap pills",
    ]
    assert "X-Spam-Flag: NO" not in headers
    assert "X-Spam-Flag: YES" in headers
    assert "X-Spam-Status: YES, hits=1000.00 required=5.00" in headers
    report = headers.index(next(h for h in headers if h.startswith("X-Spam-Report: ")))
    assert headers[report + 1].startswith("  | ")  # a folded continuation, as in mail
    assert "b'" not in out and "AddHeader" not in out  # no Python reprs
    assert b"X-Spam-Flag" not in sent  # forged verdict headers never reach spamd
    assert GTUBE in sent


async def test_scan_json_for_machines() -> None:
    async with FakeSpamd() as spamd:
        code, out, err = await run_scan(
            [f"spamd-socket={spamd.address}", "extra-reject=0", "scan", "--json", "-"],
            stdin=MESSAGE,
        )
    assert code == 1, err
    document = json.loads(out)
    assert document["verdict"] == "spam"
    assert document["score"] == 1000.0
    assert document["action"] == "reject"
    assert document["reply"].startswith("550-5.7.1 message was identified as junk mail")
    assert ["Subject", "cheap pills"] in document["headers"]


async def test_scan_stdin_with_reject_option() -> None:
    async with FakeSpamd() as spamd:
        code, out, err = await run_scan(
            [f"spamd-socket={spamd.address}", "extra-reject=0", "scan", "-"], stdin=MESSAGE
        )
    assert code == 1, err
    assert "action: reject" in out.splitlines()
    assert "reply: 550-5.7.1 message was identified as junk mail, score 1000.00/5.00" in out


async def test_scan_ham_from_stdin() -> None:
    ham = b"Subject: hi\r\n\r\nhello\r\n"
    async with FakeSpamd() as spamd:
        code, out, _ = await run_scan([f"spamd-socket={spamd.address}", "scan", "-"], stdin=ham)
    assert code == 0
    assert out.startswith("verdict: ham score=0.00/5.00 ")
    assert "action: accept" in out.splitlines()
    assert "X-Spam-Status: NO, hits=0.00 required=5.00" in out.splitlines()


async def test_scan_spamd_down_exits_69_and_shows_fail_open_action() -> None:
    async with FakeSpamd(fault="refuse") as spamd:
        code, out, _ = await run_scan(
            [f"spamd-socket={spamd.address}", "spamd-timeouts=C:1s;E:3s", "scan", "-"],
            stdin=MESSAGE,
        )
    assert code == 69  # EX_UNAVAILABLE, as spamc
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
    if not os.path.exists("/etc/mail/milter-spamc.cf"):
        assert out.startswith("# no option file at /etc/mail/milter-spamc.cf; defaults only\n")
        assert "\n# file=/etc/mail/milter-spamc.cf\n" in out


def test_check_says_when_the_default_option_file_is_absent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = tmp_path / "spambridge.cf"
    assert cli.main(["check"], defaults={"file": str(absent)}) == 0
    out, err = capsys.readouterr()
    assert f"no option file at {absent}; defaults only" in err
    assert out.startswith(f"# no option file at {absent}; defaults only\n")
    assert f"\nfile={absent}\n" not in out  # not shown as if it had been read
    absent.write_text("extra-reject=3\n")
    assert cli.main(["check"], defaults={"file": str(absent)}) == 0
    out, err = capsys.readouterr()
    assert f"\nfile={absent}\n" in out
    assert "no option file" not in out + err


async def test_scan_spamassassin_rewrite_prints_the_new_body() -> None:
    rewritten = (
        b"From: sender@example.net\r\nSubject: cheap pills\r\nX-Spam-Status: Yes\r\n"
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\nThis is a multi-part message\r\n"
    )
    async with FakeSpamd() as spamd:
        spamd.report_override = rewritten
        code, out, err = await run_scan(
            [
                f"spamd-socket={spamd.address}",
                "header-style=spamassassin",
                "spamd-command=PROCESS",
                "+spamd-rewrite-body",
                "-add-scanned-by",
                "scan",
                "-",
            ],
            stdin=MESSAGE,
        )
    assert code == 1, err
    shown = out.partition("\n\n")[2]
    assert shown == (
        "From: sender@example.net\nSubject: cheap pills\nX-Spam-Status: Yes\n"
        "Content-Type: multipart/mixed; boundary=b\n\nThis is a multi-part message\n"
    )
