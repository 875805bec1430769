"""Verdict fidelity: what a milter acted on versus SpamAssassin's own scan of the delivery.

The judge is real spamd, asked directly (``spamc -R``) about the message as it was delivered,
with the Return-Path the MTA's local mailer writes and the milter's own headers taken out.
A milter's verdict is read back from the headers it added: spambridge's X-Spam-Status and
X-Spam-Report (milter-spamc style, spamd-command REPORT), spamass-milter's X-Spam-Status
(SpamAssassin style, ``tests=``).

`spamd_recorder.SpamdRecorder` sits between a milter and spamd and keeps every request and
reply, so a test can rescan the exact bytes spamd saw and change them one step at a time.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from tools.stack import field_name, split_message


@dataclass(frozen=True, order=True)
class Scan:
    """A verdict as SpamAssassin states it: the score (one decimal, as spamd prints it) and
    the names of the rules that hit."""

    score: float
    rules: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.score:.1f} [{' '.join(self.rules)}]"


MAX_SCAN = 16 * 1024 * 1024  # bytes spamc may send; above every test message

# A rule line of SpamAssassin's report: " 1.0 RULE_NAME   description".
_REPORT_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Za-z0-9_]+)(?:\s|$)")  # GTUBE: "1000"
_BRIDGE_STATUS = re.compile(rb"hits=(-?\d+\.\d+)")
_SA_STATUS = re.compile(rb"score=(-?\d+\.\d+).*?tests=(.*?)(?:\s+autolearn=|\s+version=|$)", re.S)


def report_rules(report: str) -> tuple[str, ...]:
    """The rule names in a SpamAssassin report (the table after "Content analysis details")."""
    _, _, table = report.partition("Content analysis details")
    rules = (m[2] for m in map(_REPORT_RULE.match, table.splitlines()) if m)
    return tuple(sorted(rules))


def direct_scan(spamd_port: int, message: bytes, *, timeout: float = 60.0) -> Scan:
    """SpamAssassin's own verdict on ``message``, asked through the spamc client."""
    result = subprocess.run(
        # -s: spamc's own size limit (500 KB by default) would answer 0/0 unscanned.
        ["spamc", "-d", "127.0.0.1", "-p", str(spamd_port), "-R", "-x", "-s", str(MAX_SCAN)],
        input=message,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    text = result.stdout.decode("utf-8", "replace")
    first, _, report = text.partition("\n")
    score, sep, _ = first.partition("/")
    if not sep:
        raise AssertionError(f"spamc -R gave no score (exit {result.returncode}): {text[:300]}")
    return Scan(round(float(score), 1), report_rules(report))


def unfolded(raw: bytes, name: bytes) -> list[bytes]:
    """Every value of header ``name`` with its line breaks kept as LF."""
    fields, _ = split_message(raw)
    out = []
    for item in fields:
        if field_name(item) == name.lower():
            out.append(item.split(b":", 1)[1].replace(b"\r\n", b"\n"))
    return out


def bridge_scan(delivered: bytes) -> Scan | None:
    """spambridge's verdict from its X-Spam-Status and X-Spam-Report (None: not scanned)."""
    statuses = unfolded(delivered, b"X-Spam-Status")
    if not statuses:
        return None
    match = _BRIDGE_STATUS.search(statuses[-1])
    assert match, statuses
    reports = unfolded(delivered, b"X-Spam-Report")
    report = reports[-1].replace(b"\n  | ", b"\n").decode("utf-8", "replace") if reports else ""
    return Scan(round(float(match[1]), 1), report_rules(report))


def samilter_scan(delivered: bytes) -> Scan | None:
    """spamass-milter's verdict from SpamAssassin's X-Spam-Status (None: not scanned)."""
    statuses = unfolded(delivered, b"X-Spam-Status")
    if not statuses:
        return None
    match = _SA_STATUS.search(statuses[-1])
    assert match, statuses
    names = re.sub(rb"\s+", b"", match[2]).decode().split(",")  # folded after commas
    rules = tuple(sorted(r for r in names if r and r != "none"))
    return Scan(round(float(match[1]), 1), rules)


def wire(raw: bytes) -> bytes:
    """A message with CRLF line ends, as it travels over SMTP (Postfix's pipe writes LF)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def without_fields(raw: bytes, drop: Iterable[bytes], *, prefixes: tuple[bytes, ...] = ()) -> bytes:
    """``raw`` without the header fields named in ``drop`` or starting with ``prefixes``
    (lower case); everything else byte for byte."""
    names = frozenset(drop)
    fields, body = split_message(raw)
    kept = [f for f in fields if not _named(f, names, prefixes)]
    separator = b"\r\n" if raw.find(b"\r\n") >= 0 else b"\n"
    return b"".join(kept) + separator + body


def _named(item: bytes, names: frozenset[bytes], prefixes: tuple[bytes, ...]) -> bool:
    name = field_name(item)
    return name in names or name.startswith(prefixes)


def with_return_path(sender: str, raw: bytes) -> bytes:
    """What the local mailer of either MTA writes first at final delivery."""
    address = sender if sender.startswith("<") else f"<{sender}>"
    return f"Return-Path: {address}\r\n".encode() + raw
