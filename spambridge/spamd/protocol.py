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


def _parse_response(raw: bytes, label: str) -> Any:
    """aiospamc's response for `raw`; any failure to parse it is SpamdBadResponse."""
    global _library
    if _library is None:
        from spambridge.spamd import library

        _library = library
    try:
        return _library.parse_response(raw)
    except Exception as exc:  # ParseError, UnicodeDecodeError on 8-bit bytes, ValueError ...
        raise SpamdBadResponse(f"{label} sent a bad reply ({describe(exc)})", label) from None


def parse_reply(raw: bytes, *, command: str, host: str, elapsed: float = 0.0) -> Verdict:
    """spamd's whole reply to a scan -> Verdict. Anything else raises SpamdBadResponse
    (SpamdErrorStatus for an EX_* status): garbage, a missing Spam header, a score or
    threshold that is not a finite number (nan or inf make every comparison false)."""
    response = _parse_response(raw, host)
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
    response = _parse_response(raw, host)
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
