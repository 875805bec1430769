"""spamd/protocol.py: the client half against the server half, and import safety."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spambridge.errors import SpamdErrorStatus
from spambridge.spamd.protocol import (
    COMMANDS,
    Verdict,
    encode_reply,
    parse_header_line,
    parse_pong,
    parse_reply,
    parse_request_line,
    request_bytes,
    spam_header,
    status_reply,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_spamd_protocol_request_bytes_as_spamc_writes_them() -> None:
    # spamc/libspamc and aiospamc 1.2: User first, Content-length only for a body.
    assert request_bytes("REPORT", b"abc", "bob") == (
        b"REPORT SPAMC/1.5\r\nUser: bob\r\nContent-length: 3\r\n\r\nabc"
    )
    assert request_bytes("PING") == b"PING SPAMC/1.5\r\n\r\n"


@pytest.mark.parametrize("command", COMMANDS)
def test_spamd_protocol_server_half_reads_the_client_half(command: str) -> None:
    raw = request_bytes(command, b"Subject: x\r\n\r\nhi\r\n", "alice")
    head, _, body = raw.partition(b"\r\n\r\n")
    first, *lines = head.split(b"\r\n")
    assert parse_request_line(first) == (command, "SPAMC/1.5")
    assert [parse_header_line(line) for line in lines] == [
        (b"User", b"alice"),
        (b"Content-length", b"%d" % len(body)),
    ]
    assert parse_header_line(b"no colon here\r\n") is None


@pytest.mark.parametrize(
    ("command", "body", "yes_no"),
    [("CHECK", None, False), ("REPORT", b"report", False), ("REPORT_IFSPAM", b"", True)],
)
def test_spamd_protocol_client_half_reads_the_server_half(
    command: str, body: bytes | None, yes_no: bool
) -> None:
    raw = encode_reply(spam_header(True, 7.5, 5.0, yes_no=yes_no), body)
    verdict = parse_reply(raw, command=command, host="h")
    assert verdict == Verdict(True, 7.5, 5.0, body or b"", command, "h", 0.0)


def test_spamd_protocol_status_reply_is_an_ex_status() -> None:
    with pytest.raises(SpamdErrorStatus) as info:
        parse_reply(status_reply(69, "Service Unavailable"), command="CHECK", host="h")
    assert info.value.code == 69
    assert parse_pong(b"SPAMD/1.5 0 PONG\r\n", "h") == "PONG"
    with pytest.raises(SpamdErrorStatus, match="UnavailableException"):
        parse_pong(status_reply(69, "Service Unavailable"), "h")


def test_spamd_protocol_policy_imports_verdict_without_side_effects() -> None:
    # policy needs Verdict only: no aiospamc/loguru import, no change to the environment.
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import spambridge.policy, spambridge.session, spambridge.options\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('aiospamc', 'loguru'))\n"
        "print(loaded, dict(os.environ) == before)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == b"[] True"
