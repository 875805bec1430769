"""SpamAssassin's own C client, spamc, as the judge of how spambridge reads spamd's replies.

One reply, two readers: `spamc_reading` runs the real `spamc` (in the mode that sends the
same command) against a loopback server answering with the scripted bytes, and
`spambridge_reading` scans through spambridge's spamd pool against the same server. Both
come back as a `Reading`: the class (spam, ham, failure; for PING ok or failure), the score
as spamc prints it (`%.1f/%.1f` of a C float) where the mode shows one, and the body.

Also here: capturing spamd's real replies (`capture_replies`), the fixtures they are kept in,
and the masking that lets a fresh capture be compared with them.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from spambridge.errors import SpamdBadResponse, SpamdError
from spambridge.spamd.endpoints import SpamdTimeouts, parse_spamd_socket
from spambridge.spamd.pool import SpamdPool
from spambridge.spamd.protocol import request_bytes
from tests.support.scripted_spamd import ScriptedSpamd

FIXTURES = Path(__file__).resolve().parents[1] / "wire" / "data" / "spamd-4.0.1"

# The message spamc and spambridge send to the scripted server: only HEADERS reads it back
# (spamc appends its body to the headers spamd returned).
MESSAGE = b"Subject: differential\r\nFrom: a@example.org\r\n\r\nhello\r\n"
MESSAGE_BODY = b"hello\r\n"

# spamc's options per command: -x so a failure is an exit status, not a pass-through; -E so
# the exit status is the class in the modes that do not print a score.
SPAMC_MODES: Mapping[str, tuple[str, ...]] = {
    "CHECK": ("-c",),
    "SYMBOLS": ("-y", "-E"),
    "REPORT": ("-R", "-E"),
    "REPORT_IFSPAM": ("-r", "-E"),
    "HEADERS": ("--headers", "-E"),
    "PROCESS": ("-E",),
    "PING": ("-K",),
}
_SCORE_LINE = re.compile(rb"(-?\d+\.\d/-?\d+\.\d)\n")


@dataclass(frozen=True)
class Reading:
    """What one client made of one reply."""

    kind: str  # "spam", "ham" or "failure" ("ok" or "failure" for PING)
    score: str | None = None  # "score/threshold" as spamc prints them; None: not shown
    body: bytes | None = None  # None: not shown (CHECK) or not compared (a failure)
    detail: str = ""  # spamc's exit status, spambridge's exception: for the failure text

    def same_as(self, other: Reading) -> bool:
        """Same class, and the same score and body wherever both readings show one."""
        if self.kind != other.kind:
            return False
        if self.score is not None and other.score is not None and self.score != other.score:
            return False
        return self.body is None or other.body is None or self.body == other.body


def c_float_text(value: float) -> str:
    """`value` printed as spamc prints its C float: rounded to single precision, %.1f."""
    if abs(value) > 3.4e38:
        return "inf" if value > 0 else "-inf"
    single: float = struct.unpack("f", struct.pack("f", value))[0]
    return f"{single + 0.0:.1f}"  # + 0.0: spamc prints -0.0 as 0.0


async def spamc_reading(port: int, command: str) -> Reading:
    """Run spamc in `command`'s mode against 127.0.0.1:`port`."""
    process = await asyncio.create_subprocess_exec(
        "spamc",
        "-d",
        "127.0.0.1",
        "-p",
        str(port),
        "-x",
        "-t",
        "5",
        *SPAMC_MODES[command],
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(10):
        out, _ = await process.communicate(MESSAGE)
    status = process.returncode
    detail = f"spamc exit {status}"
    if command == "PING":
        # spamc -K prints "SPAMD/<version> <code>" for any status line it can read.
        code = out.split()[-1:] if status == 0 else []
        return Reading("ok" if code == [b"0"] else "failure", detail=f"{detail} {out!r}")
    if status not in (0, 1):
        return Reading("failure", detail=detail)
    kind = "spam" if status == 1 else "ham"
    score_line = _SCORE_LINE.match(out) if command != "SYMBOLS" else None
    score = score_line.group(1).decode() if score_line else None
    if command == "CHECK":
        return Reading(kind, score, None, detail)
    if command in ("REPORT", "REPORT_IFSPAM") and score_line:
        out = out[score_line.end() :]
    if command == "HEADERS" and out.endswith(MESSAGE_BODY):
        out = out[: -len(MESSAGE_BODY)]
    if command in ("SYMBOLS", "HEADERS", "PROCESS"):
        score = None  # these modes print no score
    return Reading(kind, score, out, detail)


async def spambridge_reading(port: int, command: str) -> Reading:
    """Scan (or PING) through spambridge's spamd pool against 127.0.0.1:`port`."""
    pool = SpamdPool(
        [parse_spamd_socket(f"127.0.0.1:{port}")],
        timeouts=SpamdTimeouts(connect=5, send=5, read=5, end=10),
        cooldown=0,
    )
    try:
        if command == "PING":
            ok = (await pool.ping())[f"127.0.0.1:{port}"]
            return Reading("ok" if ok else "failure")
        try:
            verdict = await pool.scan(MESSAGE, command=command)
        except SpamdBadResponse as exc:
            return Reading("failure", detail=f"{type(exc).__name__}: {exc}")
        except SpamdError as exc:  # not a parse failure: the test says so
            return Reading("failure", detail=f"NOT A BAD RESPONSE {type(exc).__name__}: {exc}")
    finally:
        await pool.close()
    score = f"{c_float_text(verdict.score)}/{c_float_text(verdict.threshold)}"
    kind = "spam" if verdict.is_spam else "ham"
    return Reading(kind, score, None if command == "CHECK" else verdict.body)


async def scan_command_reading(port: int, command: str) -> Reading:
    """`spambridge scan - --json` (the public path) against 127.0.0.1:`port`; its exit
    status is spamc -E's: 0 ham, 1 spam, 69 failing spamd."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "spambridge",
        "scan",
        "-",
        "--json",
        f"--spamd-socket=127.0.0.1:{port}",
        f"--spamd-command={command}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate(MESSAGE)
    detail = f"scan exit {process.returncode} {err[-300:]!r}"
    if process.returncode not in (0, 1):
        return Reading("failure", detail=detail)
    found = json.loads(out)
    score = f"{c_float_text(found['score'])}/{c_float_text(found['threshold'])}"
    return Reading("spam" if process.returncode == 1 else "ham", score, None, detail)


async def both_readings(reply: bytes, command: str) -> tuple[Reading, Reading]:
    """(spamc's, spambridge's) reading of the same reply bytes."""
    async with ScriptedSpamd(reply) as spamd:
        return await spamc_reading(spamd.port, command), await spambridge_reading(
            spamd.port, command
        )


# ----------------------------------------------------------------------- real spamd replies


def exchange(port: int, request: bytes, timeout: float = 60.0) -> bytes:
    """One SPAMC exchange with the spamd on 127.0.0.1:`port`: the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


SCAN_COMMANDS = ("CHECK", "SYMBOLS", "REPORT", "REPORT_IFSPAM", "HEADERS", "PROCESS")


def capture_replies(port: int, ham: bytes, spam: bytes) -> dict[str, bytes]:
    """spamd's replies to every command spambridge sends, and to two bad requests: the
    fixture name (`<command>-<ham|spam>`, `PING`, `EX_UNAVAILABLE-tell`,
    `EX_PROTOCOL-length`) -> the reply."""
    replies = {
        f"{command}-{name}": exchange(port, request_bytes(command, message))
        for name, message in (("ham", ham), ("spam", spam))
        for command in SCAN_COMMANDS
    }
    replies["PING"] = exchange(port, request_bytes("PING"))
    tell = b"TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local\r\nContent-length: 2\r\n\r\nhi"
    replies["EX_UNAVAILABLE-tell"] = exchange(port, tell)
    replies["EX_PROTOCOL-length"] = exchange(
        port, b"CHECK SPAMC/1.5\r\nContent-length: 9\r\n\r\nhi"
    )
    return replies


def load_fixtures() -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for path in sorted(FIXTURES.glob("*.reply"))}


def fixture_command(name: str) -> str:
    """The command a fixture answers (the error replies: CHECK, as spambridge reads them)."""
    command = name.rsplit("-", 1)[0] if name != "PING" else "PING"
    return command if command in SPAMC_MODES else "CHECK"


_VOLATILE = (
    (re.compile(rb"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d (?:[+-]\d{4}|GMT)"), b"DATE"),
    (re.compile(rb'running on the system "[^"]*"'), b'running on the system "HOST"'),
    (re.compile(rb"Received: from localhost by \S+"), b"Received: from localhost by HOST"),
    (re.compile(rb"\) on \S+\r\n"), b") on HOST\r\n"),
    (re.compile(rb"<[0-9a-f]{32}@"), b"<ID@"),
    (re.compile(rb"_[0-9A-F]{8}\.[0-9A-F]{8}"), b"_BOUNDARY"),
    (re.compile(rb"Content-length: \d+"), b"Content-length: N"),
)


def masked(reply: bytes) -> bytes:
    """`reply` without what changes from one capture to the next (dates, host name, ids)."""
    for pattern, stand_in in _VOLATILE:
        reply = pattern.sub(stand_in, reply)
    return reply
