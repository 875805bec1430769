"""SPAMC, sans-IO: request bytes out, reply bytes in -> Verdict or SpamdBadResponse.

Import-safe: no sockets, and aiospamc (whose import touches the environment and loguru, see
library.py) is loaded only when the first reply is parsed, so `policy` can import `Verdict`
from here for free.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, get_args

from spambridge.errors import SpamdBadResponse, SpamdErrorStatus

__all__ = [
    "COMMANDS",
    "ECHOING",
    "PER_MESSAGE_CODES",
    "SpamdCommand",
    "Verdict",
    "describe",
    "encode_reply",
    "parse_header_line",
    "parse_pong",
    "parse_reply",
    "parse_request_line",
    "request_bytes",
    "sanitize_user",
    "spam_header",
    "spamc_reply",
    "status_reply",
]

SpamdCommand = Literal["CHECK", "SYMBOLS", "REPORT", "REPORT_IFSPAM", "HEADERS", "PROCESS"]
# The scan requests, in the order --help lists them: the spamd-command choices.
COMMANDS: tuple[SpamdCommand, ...] = get_args(SpamdCommand)
# Replies that carry the message back (HEADERS its header, PROCESS all of it) may be that much
# longer than the reply bound.
ECHOING = frozenset({"HEADERS", "PROCESS"})

# EX_* codes that describe this message or this user rather than the host: retrying elsewhere
# would fail the same way, and the host is healthy.
PER_MESSAGE_CODES = frozenset({64, 65, 66, 67, 76, 77})


@dataclass(frozen=True, slots=True)
class Verdict:
    """spamd's answer for one message."""

    is_spam: bool
    score: float
    threshold: float
    body: bytes
    command: str
    host: str
    elapsed: float


_USER_DROP_RE = re.compile(r"[^-A-Za-z0-9_.@+]")


def sanitize_user(user: str | None) -> str:
    """Keep only ASCII [-A-Za-z0-9_.@+]: CR/LF would inject protocol headers."""
    return _USER_DROP_RE.sub("", user or "")


def request_bytes(command: str, body: bytes = b"", user: str = "") -> bytes:
    """One SPAMC/1.5 request as spamc and aiospamc write it: the User header (already
    sanitised) first, Content-length only for a non-empty body."""
    head = b"%b SPAMC/1.5\r\n" % command.encode("ascii")
    if user:
        head += b"User: %b\r\n" % user.encode("ascii")
    if body:
        head += b"Content-length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


_library: ModuleType | None = None


def _parse_response(raw: bytes, label: str, command: str = "") -> Any:
    """aiospamc's response for `raw`, read first as spamc reads it (spamc_reply); any
    failure to parse it is SpamdBadResponse."""
    global _library
    if _library is None:
        from spambridge.spamd import library

        _library = library
    try:
        return _library.parse_response(spamc_reply(raw, command))
    except Exception as exc:  # ParseError, UnicodeDecodeError on 8-bit bytes, ValueError ...
        raise SpamdBadResponse(f"{label} sent a bad reply ({describe(exc)})", label) from None


# What libspamc (spamc/libspamc.c, SpamAssassin 4.0) accepts in a reply, so that spambridge
# reads spamd's bytes as SpamAssassin's own client does (tests/wire/ holds the two side by
# side). A line ends at LF, one CR before it dropped; words are parted by any C white space;
# the status line is sscanf("SPAMD/%18s %d %*s") with a version of at least 1.0; headers
# are matched by exact name at the start of the line, the last one counting, others ignored:
# sscanf("Spam: %5s ; %20s / %20s") and sscanf("Content-length: %d"). A Spam or
# Content-length line spamc would not read is ignored too, as spamc ignores it. Stricter
# than spamc, deliberately (README, "How spamd's reply is read"): a number is plain decimal
# (spamc reads `7,5` as 7, `nan` as 0, `1e308` as 1), nothing but white space follows the
# threshold or the length, and a non-zero status code is an error whatever follows it.
_STATUS_RE = re.compile(rb"SPAMD/(\S{1,18}+)\s++([+-]?\d++)(?:\s++(.*?))?\s*+", re.DOTALL)
_VERSION_RE = re.compile(rb"\d+(?:\.\d+)?")
_SPAM_RE = re.compile(
    rb"Spam:\s*+(\S{1,5}+)\s*+;\s*+(\S{1,20}+)\s*+/\s*+(\S{1,20}+)(.*)", re.DOTALL
)
_LENGTH_RE = re.compile(rb"Content-length:\s*+([+-]?\d++)(.*)", re.DOTALL)
_TELL_RE = re.compile(rb"(DidSet|DidRemove):\s*+(\S{1,14}+)")
_NUMBER_RE = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)")
_BLANK_RE = re.compile(rb"\s*")


def _line(raw: bytes, start: int) -> tuple[bytes, int]:
    """The line at `start` without its end, and where the next begins; a line must end."""
    end = raw.find(b"\n", start)
    if end < 0:
        raise ValueError("the reply ends inside a line")
    line = raw[start:end]
    return (line[:-1] if line.endswith(b"\r") else line), end + 1


# spamd's own replies to a scan, as it writes them: already canonical, passed on as they are.
_SPAMD_HEAD_RE = re.compile(
    rb"SPAMD/1\.[0-9] 0 EX_OK\r\n(Content-length: [0-9]+\r\n)?"
    rb"Spam: (?:True|False|Yes|No) ; -?[0-9]+\.[0-9] / -?[0-9]+\.[0-9]\r\n\r\n"
)


def spamc_reply(raw: bytes, command: str = "") -> bytes:
    """`raw` rewritten as the canonical reply spamc reads in it (CRLF, one space between the
    status-line words, only the headers spamc reads), for aiospamc's parser. CHECK's reply
    ends at its blank line (spamc reads no further); PING's at its status line."""
    spamd = _SPAMD_HEAD_RE.match(raw)
    if spamd is not None and (spamd.group(1) is None) == (command == "CHECK"):
        return raw[: spamd.end()] if command == "CHECK" else raw
    status, at = _line(raw, 0)
    match = _STATUS_RE.fullmatch(status)
    if match is None:
        raise ValueError("the status line is not SPAMD/<version> <code>")
    version, code, message = match.groups()
    number = _VERSION_RE.match(version)
    if number is None or float(number.group()) < 1.0:
        raise ValueError("the protocol version is not a number of at least 1.0")
    text = (message or b"").decode("ascii", "replace").encode("ascii", "replace")
    head = b"SPAMD/%b %d %b\r\n" % (number.group(), int(code), text or b"-")
    if command == "PING" or at == len(raw):  # status only: PONG or an EX_* error
        return head
    spam = length = None
    tell: dict[bytes, bytes] = {}
    while True:
        line, at = _line(raw, at)
        if not line:
            break
        if found := _SPAM_RE.match(line):
            spam = found
        elif found := _LENGTH_RE.match(line):
            length = found
        elif found := _TELL_RE.match(line):
            tell[found.group(1)] = found.group(2)
    if spam is not None:
        flag, score, threshold, rest = spam.groups()
        if not (_NUMBER_RE.fullmatch(score) and _NUMBER_RE.fullmatch(threshold)):
            raise ValueError("a score or threshold is not a decimal number")
        if not _BLANK_RE.fullmatch(rest):
            raise ValueError("the Spam header goes on after its threshold")
        head += b"Spam: %b ; %b / %b\r\n" % (flag, score, threshold)
    head += b"".join(b"%b: %b\r\n" % item for item in tell.items())
    if command == "CHECK":
        return head + b"\r\n"
    if command and command in COMMANDS and length is None:
        raise ValueError("no Content-length header")
    if length is not None:
        if not _BLANK_RE.fullmatch(length.group(2)) or int(length.group(1)) < 0:
            raise ValueError("the Content-length is not a length")
        head += b"Content-length: %d\r\n" % int(length.group(1))
    return head + b"\r\n" + raw[at:]


def parse_reply(raw: bytes, *, command: str, host: str, elapsed: float = 0.0) -> Verdict:
    """spamd's whole reply to a scan -> Verdict. Anything else raises SpamdBadResponse
    (SpamdErrorStatus for an EX_* status): garbage, a missing Spam header, a score or
    threshold that is not a finite number (nan or inf make every comparison false)."""
    response = _parse_response(raw, host, command)
    try:
        response.raise_for_status()
        spam = response.headers.spam
        if spam is None:
            raise SpamdBadResponse(f"{host} answered {command} without a Spam header", host)
        score, threshold = float(spam.score), float(spam.threshold)
        if not (math.isfinite(score) and math.isfinite(threshold)):
            raise SpamdBadResponse(
                f"{host} answered a score that is not a finite number ({score}/{threshold})", host
            )
        return Verdict(
            bool(spam.value), score, threshold, bytes(response.body), command, host, elapsed
        )
    except SpamdBadResponse:
        raise
    except Exception as exc:
        code = _ex_code(exc)
        if code is not None:
            raise SpamdErrorStatus(f"{host} answered EX code {code}: {exc}", host, code) from None
        raise SpamdBadResponse(f"{host} sent a bad reply ({describe(exc)})", host) from None


def _ex_code(exc: Exception) -> int | None:
    """The EX_* code of aiospamc's exception for a non-zero status, else None."""
    assert _library is not None  # loaded by _parse_response
    if isinstance(exc, _library.ResponseException):
        return int(exc.code)
    return None


def parse_pong(raw: bytes, host: str) -> str:
    """spamd's reply to PING -> its message ("PONG" from a healthy spamd). An EX status
    raises SpamdErrorStatus (its text names aiospamc's exception), garbage SpamdBadResponse."""
    response = _parse_response(raw, host, "PING")
    try:
        response.raise_for_status()
    except Exception as exc:
        code = _ex_code(exc)
        if code is None:
            raise SpamdBadResponse(f"{host} sent a bad reply ({describe(exc)})", host) from None
        raise SpamdErrorStatus(describe(exc), host, code) from None
    return str(response.message)


# --------------------------------------------------------------------------- TELL (learn)
# `spambridge learn`: spamc -L's request, and whether spamd's reply says it changed the
# Bayes database.

LearnAs = Literal["spam", "ham", "forget"]
LEARN_AS: tuple[LearnAs, ...] = get_args(LearnAs)


def tell_request(learn_as: LearnAs, body: bytes, user: str = "") -> bytes:
    """spamc -L's TELL request, header for header (spamd --allow-tell): Message-class and
    `Set: local` to learn spam or ham, `Remove: local` to forget; then User (sanitised) and
    Content-length."""
    head = b"TELL SPAMC/1.5\r\n"
    if learn_as == "forget":
        head += b"Remove: local\r\n"
    else:
        head += b"Message-class: %b\r\nSet: local\r\n" % learn_as.encode("ascii")
    if user:
        head += b"User: %b\r\n" % user.encode("ascii")
    if body:
        head += b"Content-length: %d\r\n" % len(body)
    return head + b"\r\n" + body


def parse_tell_reply(raw: bytes, learn_as: LearnAs, host: str) -> bool:
    """spamd's reply to TELL -> whether it changed the database: `DidSet: local` after
    learning, `DidRemove: local` after forgetting (spamc: "Message successfully
    un/learned"). An EX_OK reply without it: already learned, or never learned when
    forgetting (spamc: "Message was already un/learned"). An EX status raises
    SpamdErrorStatus, garbage SpamdBadResponse."""
    response = _parse_response(raw, host)
    try:
        response.raise_for_status()
        headers = response.headers
        done = headers.did_remove if learn_as == "forget" else headers.did_set
        return bool(done is not None and done.local)
    except Exception as exc:
        code = _ex_code(exc)
        if code is None:
            raise SpamdBadResponse(f"{host} sent a bad reply ({describe(exc)})", host) from None
        raise SpamdErrorStatus(f"{host} answered EX code {code}: {exc}", host, code) from None


# --------------------------------------------------------------------------- server half
# What spamd does with the same bytes, for a spamd stand-in (the test suite's fake spamd):
# it reads a request with these and answers with the replies below, so client and server
# share one framing.


def parse_request_line(line: bytes) -> tuple[str, str]:
    """`PROCESS SPAMC/1.5` (line end optional) -> ("PROCESS", "SPAMC/1.5")."""
    command, _, version = line.rstrip(b"\r\n").decode("latin-1").partition(" ")
    return command, version


def parse_header_line(line: bytes) -> tuple[bytes, bytes] | None:
    """`Name: value` -> (name, value), stripped; None for a line without a colon, which
    spamd answers with EX_PROTOCOL. Names stay case-sensitive, as spamd compares them."""
    name, sep, value = line.rstrip(b"\r\n").partition(b":")
    if not sep:
        return None
    return name.strip(), value.strip()


def status_reply(code: int, message: str) -> bytes:
    """A status-only reply, as spamd sends its EX_* errors."""
    return f"SPAMD/1.0 {code} {message}\r\n".encode("latin-1")


def spam_header(is_spam: bool, score: float, threshold: float, *, yes_no: bool = False) -> bytes:
    """spamd's Spam header line: `Spam: True ; 7.5 / 5.0` (Yes/No for REPORT_IFSPAM)."""
    flag = ("Yes" if is_spam else "No") if yes_no else ("True" if is_spam else "False")
    return f"Spam: {flag} ; {score:.1f} / {threshold:.1f}\r\n".encode("ascii")


def encode_reply(spam: bytes, body: bytes | None) -> bytes:
    """An EX_OK reply: the Spam header line, and Content-length with the body unless `body`
    is None (CHECK's reply has neither)."""
    if body is None:
        return b"SPAMD/1.1 0 EX_OK\r\n" + spam + b"\r\n"
    return b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\n" % len(body) + spam + b"\r\n" + body
