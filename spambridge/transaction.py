"""One SMTP connection and transaction as the MTA showed them to us.

Builds the bytes spamd sees: a synthetic Return-Path and Received first (the MTA adds its own
Received only after the milters ran, and the Return-Path only at final delivery, so
SpamAssassin would otherwise miss the last hop and the envelope sender), then the headers and
body as the MTA received them, less the headers the MTA itself removes before delivery.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from spambridge.headers import format_date
from spambridge.milter.flags import Family

# libmilter's macro scoping: a command clears the macros of every later stage. Postfix also
# sends 'L' (EOH list, before each header), 'B' (EOM list, before each body chunk) and 'U'.
_STAGE_ORDER = b"CHMRTLNBEU"
_CLEARS: dict[bytes, bytes] = {
    b"C": b"HMRTLNBEU",
    b"H": b"MRTLNBEU",
    b"M": b"RTLNBE",
    b"R": b"TLNBE",
}


# Incoming headers the MTA removes before delivery: Postfix's `message_drop_headers` default
# (its cleanup drops them before any milter sees them) and what Sendmail drops at delivery
# (Return-Path and Content-Length are H_ACHECK headers, Bcc/Resent-Bcc are H_BCC). A sender's
# own Return-Path after our Received line would make SpamAssassin distrust the envelope sender
# ("cannot trust envelope-from") and skip the rules that need it.
MTA_DROPPED_HEADERS = frozenset({b"return-path", b"content-length", b"bcc", b"resent-bcc"})

# Bytes that may not appear in an RFC 5322 field name (ftext is %d33-57 / %d59-126).
_NOT_FTEXT = bytes(range(0x21)) + b":" + bytes(range(0x7F, 0x100))
# Control bytes (CR, LF, NUL, DEL, ...) removed from envelope values before they go into a
# header line, as header values are cleaned: a CR/LF must not start a header of its own.
_ENVELOPE_DELETE = bytes(range(0x20)) + b"\x7f"


def macro_name(name: bytes) -> bytes:
    """`{x}` and `x` are the same macro (libmilter's smfi_getsymval)."""
    if name[:1] == b"{" and name[-1:] == b"}":  # slices: see milter.codec._strings
        return name[1:-1]
    return name


@dataclass(slots=True)
class Macros:
    """Macros by stage, scoped and looked up as libmilter does (latest stage first)."""

    by_stage: dict[int, dict[bytes, bytes]] = dataclasses.field(default_factory=dict)
    # The lookup result for every name, rebuilt on the first get() after a change: a message
    # reads macros about 15 times and changes them about 8.
    _merged: dict[bytes, bytes] | None = None

    def define(self, stage: bytes, pairs: tuple[tuple[bytes, bytes], ...]) -> None:
        key = stage[0] if stage else 0
        self.by_stage[key] = {macro_name(n): v for n, v in pairs}
        self._merged = None

    def enter(self, command: bytes) -> None:
        """A command of this stage letter arrived: forget the macros of later stages."""
        for letter in _CLEARS.get(command, b""):
            if self.by_stage.pop(letter, None) is not None:
                self._merged = None

    def clear(self) -> None:
        self.by_stage.clear()
        self._merged = None

    def get(self, name: bytes | str, default: bytes = b"") -> bytes:
        merged = self._merged
        if merged is None:
            merged = self._merge()
            self._merged = merged
        key = name.encode() if isinstance(name, str) else name
        value = merged.get(key)
        if value is None:
            value = merged.get(macro_name(key), default)
        return value

    def _merge(self) -> dict[bytes, bytes]:
        # Lowest precedence first, so later updates win: stages of unknown order (the first
        # defined wins among them), then the known stages from earliest to latest.
        merged: dict[bytes, bytes] = {}
        unknown = [s for letter, s in self.by_stage.items() if letter not in _STAGE_ORDER]
        for stage in reversed(unknown):
            merged.update(stage)
        for letter in _STAGE_ORDER:
            known = self.by_stage.get(letter)
            if known is not None:
                merged.update(known)
        return merged


@dataclass(slots=True)
class Client:
    """The SMTP client of this connection (from CONNECT and HELO)."""

    hostname: bytes = b""
    family: Family = Family.UNKNOWN
    port: int = 0
    address: bytes = b""
    helo: bytes = b""


@dataclass(frozen=True, slots=True)
class Recipient:
    address: bytes
    esmtp_args: tuple[bytes, ...]
    mailer: bytes  # {rcpt_mailer}
    host: bytes  # {rcpt_host}
    addr: bytes  # {rcpt_addr}


@dataclass(slots=True)
class Transaction:
    """One message: envelope, headers as received, and the body buffered up to a limit."""

    sender: bytes = b""
    sender_args: tuple[bytes, ...] = ()
    recipients: list[Recipient] = dataclasses.field(default_factory=list)
    # (name, value) as in the message: the value keeps its leading whitespace
    headers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)
    header_bytes: int = 2  # the header lines as delivered, plus the blank line after them
    body: bytearray = dataclasses.field(default_factory=bytearray)
    body_seen: int = 0  # every body byte the MTA sent, buffered or not
    body_complete: bool = True  # False once we stopped buffering (size limit)

    def header_values(self, name: bytes) -> list[bytes]:
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def add_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self.header_bytes += len(header_line(name, value))

    def add_body(self, data: bytes, limit: int) -> bool:
        """Buffer body bytes up to `limit` total message bytes (0: no limit).

        Returns False once the message is over the limit; the caller decides between skipping
        the scan and scanning the truncated start.
        """
        self.body_seen += len(data)
        if not self.body_complete:
            return False
        if limit:
            room = limit - self.header_bytes - len(self.body)
            if len(data) > room:
                self.body += data[: max(room, 0)]
                self.body_complete = False
                return False
        self.body += data
        return True

    def add_body_chunk(self, data: bytes, limit: int) -> bool:
        """milter-spamc's truncation: whole body chunks until `limit` body bytes (headers not
        counted) have been taken; 0: no limit. Returns False once a chunk is dropped."""
        taken = len(self.body)
        self.body_seen += len(data)
        if limit and taken >= limit:
            self.body_complete = False
            return False
        self.body += data
        return True

    @property
    def size(self) -> int:
        return self.header_bytes + self.body_seen


def received_header(client: Client, macros: Macros, *, now: datetime, authenticated: bool) -> bytes:
    """A Sendmail-style Received line for the hop the MTA has not recorded yet, with the
    STARTTLS details as Sendmail writes them when the client used it.

    SpamAssassin's trust path and its Received-based rules parse this format.
    """
    addr = client.address.decode("ascii", "replace")
    if client.family is Family.INET6:
        addr = f"IPv6:{addr}"
    name = macros.get("client_name") or client.hostname
    name_s = name.decode("ascii", "replace")
    if name_s.startswith("[") or not name_s:
        name_s = ""
    helo = (client.helo or client.hostname).decode("ascii", "replace")
    forged = macros.get("client_resolve").upper().find(b"FORGED") >= 0  # see codec._cstr
    by = macros.get("j") or macros.get("if_name") or macros.get("daemon_name") or b"localhost"
    qid = macros.get("i").decode("ascii", "replace")
    parts = [f"from {helo} ({name_s} [{addr}]".replace("( [", "([")]
    if forged:
        parts[0] += " (may be forged)"
    parts[0] += ")"
    if authenticated:
        mech = macros.get("auth_type").decode("ascii", "replace") or "unknown"
        parts.append(f"(authenticated as {_clean(macros.get('auth_authen'))} mech={_clean(mech)})")
    tls_version = macros.get("tls_version")  # set by the MTA when the client used STARTTLS
    with_ = "ESMTP" + ("S" if tls_version else "") + ("A" if authenticated else "")
    by_line = f"by {_clean(by)} (spambridge) with {with_}"
    if qid:
        by_line += f" id {_clean(qid)}"
    if tls_version:  # Sendmail's own form (cf/m4/cfhead.m4 confRECEIVED_HEADER, _REC_TLS_)
        parts.append(by_line)
        cipher, bits, verify = (macros.get(n) for n in ("cipher", "cipher_bits", "verify"))
        by_line = (
            f"(version={_clean(tls_version)} cipher={_clean(cipher)} bits={_clean(bits)}"
            f" verify={_clean(verify)})"
        )
    parts.append(by_line + ";")
    parts.append(format_date(now))
    text = "\r\n\t".join(_clean(p) for p in parts)
    if client.family is Family.UNKNOWN and not client.address:
        text = text.replace(" []", "")
    return b"Received: " + text.encode("ascii", "replace")


def _clean(value: bytes | str) -> str:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if text.isascii() and text.isprintable():  # the usual case: nothing to replace
        return text
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def header_line(name: bytes, value: bytes) -> bytes:
    """One header exactly as the MTA will deliver it: folding LF becomes CRLF. The value keeps
    its leading whitespace (the session adds the space an MTA without HDR_LEADSPC strips)."""
    if value.find(b"\n") >= 0:  # folded (most values are not)
        value = value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return name + b":" + value + b"\r\n"


def message_for_spamd(
    txn: Transaction,
    client: Client,
    macros: Macros,
    *,
    drop: frozenset[bytes],
    now: datetime,
    authenticated: bool,
) -> bytes:
    """The bytes spamd scans: synthetic Return-Path and Received, then the message.

    Left out: headers named in `drop` (lower case), because we delete them from the delivered
    message too; the headers the MTA removes before delivery (`MTA_DROPPED_HEADERS`); and any
    header whose name is not an RFC 5322 field name. The delivered message is not changed.
    """
    sender = txn.sender.translate(None, _ENVELOPE_DELETE)
    if not sender.startswith(b"<"):
        sender = b"<" + sender + b">"
    parts: list[bytes | bytearray] = [
        b"Return-Path: " + sender + b"\r\n",
        received_header(client, macros, now=now, authenticated=authenticated) + b"\r\n",
    ]
    keep = _keep_table(drop)
    for name, value in txn.headers:
        kept = keep.get(name)
        if kept is None:
            kept = keep[name] = _keep_for_spamd(name, drop)
        if kept:
            parts.append(header_line(name, value))
    parts += (b"\r\n", txn.body)
    return b"".join(parts)  # one copy of the body, not two (bytearray, then bytes())


# Whether a header name goes into spamd's copy, by drop set: the same few dozen names come
# back in every message, and a lookup is cheaper than lowering and checking each one. Bounded,
# since senders choose the names.
_KEEP: dict[frozenset[bytes], dict[bytes, bool]] = {}
_KEEP_MAX = 4096


def _keep_table(drop: frozenset[bytes]) -> dict[bytes, bool]:
    table = _KEEP.get(drop)
    if table is None or len(table) > _KEEP_MAX:
        if len(_KEEP) > 8:
            _KEEP.clear()
        table = _KEEP[drop] = {}
    return table


def _keep_for_spamd(name: bytes, drop: frozenset[bytes]) -> bool:
    lname = name.lower()
    if lname in drop or lname in MTA_DROPPED_HEADERS:
        return False
    return bool(name) and name.translate(None, _NOT_FTEXT) == name
