"""Milter packets to messages and back, for both peers (sans-IO).

A packet is a 4-byte big-endian length (counting the code byte), one code byte, then the
payload. The decoders buffer partial packets and never copy a payload more than once; the
length prefix is checked before any payload is awaited, so a hostile length fails at once.
This is the only module that knows the SMFIC_* / SMFIR_* code bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from spambridge.errors import LocalProtocolError, RemoteProtocolError
from spambridge.milter.flags import MAX_PAYLOAD, ActionFlags, Family, ProtocolFlags, Stage
from spambridge.milter.messages import (
    Abort,
    Accept,
    AddHeader,
    AddRecipient,
    BodyChunk,
    ChangeFrom,
    ChangeHeader,
    Command,
    Connect,
    Continue,
    Data,
    DeleteRecipient,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    InsertHeader,
    Macro,
    MailFrom,
    Negotiate,
    Progress,
    Quarantine,
    Quit,
    QuitNewConnection,
    RcptTo,
    Reject,
    ReplaceBody,
    Reply,
    ReplyCode,
    Skip,
    TempFail,
    Unknown,
)

__all__ = ["CommandDecoder", "ReplyDecoder", "encode"]

_PREFIX = struct.Struct(">I")
_FRAME_HEAD = struct.Struct(">Ic")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_OPTNEG = struct.Struct(">III")
_NUL = b"\0"

# ------------------------------------------------------------------ code bytes

# MTA to milter
OPTNEG = b"O"  # SMFIC_OPTNEG
MACRO = b"D"  # SMFIC_MACRO
CONNECT = b"C"  # SMFIC_CONNECT
HELO = b"H"  # SMFIC_HELO
MAIL = b"M"  # SMFIC_MAIL
RCPT = b"R"  # SMFIC_RCPT
DATA = b"T"  # SMFIC_DATA
HEADER = b"L"  # SMFIC_HEADER
EOH = b"N"  # SMFIC_EOH
BODY = b"B"  # SMFIC_BODY
BODYEOB = b"E"  # SMFIC_BODYEOB
ABORT = b"A"  # SMFIC_ABORT
QUIT = b"Q"  # SMFIC_QUIT
QUIT_NC = b"K"  # SMFIC_QUIT_NC
UNKNOWN = b"U"  # SMFIC_UNKNOWN

# milter to MTA ('O' is shared with SMFIC_OPTNEG)
R_CONTINUE = b"c"  # SMFIR_CONTINUE
R_ACCEPT = b"a"  # SMFIR_ACCEPT
R_REJECT = b"r"  # SMFIR_REJECT
R_TEMPFAIL = b"t"  # SMFIR_TEMPFAIL
R_DISCARD = b"d"  # SMFIR_DISCARD
R_REPLYCODE = b"y"  # SMFIR_REPLYCODE
R_SKIP = b"s"  # SMFIR_SKIP
R_PROGRESS = b"p"  # SMFIR_PROGRESS
R_QUARANTINE = b"q"  # SMFIR_QUARANTINE
R_ADDHEADER = b"h"  # SMFIR_ADDHEADER
R_INSHEADER = b"i"  # SMFIR_INSHEADER
R_CHGHEADER = b"m"  # SMFIR_CHGHEADER
R_ADDRCPT = b"+"  # SMFIR_ADDRCPT
R_ADDRCPT_PAR = b"2"  # SMFIR_ADDRCPT_PAR
R_DELRCPT = b"-"  # SMFIR_DELRCPT
R_CHGFROM = b"e"  # SMFIR_CHGFROM
R_REPLBODY = b"b"  # SMFIR_REPLBODY


# ------------------------------------------------------------------ payload parsing helpers


def _name(code: int) -> str:
    return repr(bytes((code,)))


def _strings(payload: bytes, what: str) -> list[bytes]:
    """Split a run of NUL-terminated strings; the payload must end with a NUL."""
    if payload[-1:] != _NUL:  # a slice compare: endswith() parses its arguments the slow way
        raise RemoteProtocolError(f"{what}: payload is not NUL-terminated")
    return payload[:-1].split(_NUL)


def _exact_strings(payload: bytes, count: int, what: str) -> list[bytes]:
    parts = _strings(payload, what)
    if len(parts) != count:
        raise RemoteProtocolError(f"{what}: expected {count} NUL-terminated strings")
    return parts


def _empty(message: object, what: str) -> Callable[[bytes], object]:
    def parse(payload: bytes) -> object:
        if payload:
            raise RemoteProtocolError(f"{what}: unexpected {len(payload)} payload bytes")
        return message

    return parse


def _parse_negotiate(payload: bytes) -> Negotiate:
    if len(payload) < _OPTNEG.size:
        raise RemoteProtocolError(f"OPTNEG: payload of {len(payload)} bytes, need 12")
    version, actions, protocol = _OPTNEG.unpack_from(payload)
    lists: list[tuple[Stage, bytes]] = []
    pos = _OPTNEG.size
    while pos < len(payload):
        end = payload.find(_NUL, pos + 4)
        if len(payload) - pos < 5 or end < 0:
            raise RemoteProtocolError("OPTNEG: truncated macro list")
        (stage,) = _U32.unpack_from(payload, pos)
        try:
            lists.append((Stage(stage), payload[pos + 4 : end]))
        except ValueError:
            raise RemoteProtocolError(f"OPTNEG: unknown macro stage {stage}") from None
        pos = end + 1
    return Negotiate(version, ActionFlags(actions), ProtocolFlags(protocol), tuple(lists))


def _parse_macro(payload: bytes) -> Macro:
    if not payload:
        raise RemoteProtocolError("MACRO: empty payload")
    if len(payload) == 1:
        return Macro(payload, ())
    parts = _strings(payload[1:], "MACRO")
    if len(parts) % 2:
        raise RemoteProtocolError("MACRO: a macro name has no value")
    it = iter(parts)
    return Macro(payload[:1], tuple(zip(it, it, strict=True)))


_FAMILIES = {f.value: f for f in Family}


def _parse_connect(payload: bytes) -> Connect:
    end = payload.find(_NUL)
    if end < 0 or end + 1 >= len(payload):
        raise RemoteProtocolError("CONNECT: missing hostname or family")
    hostname = payload[:end]
    family = _FAMILIES.get(payload[end + 1 : end + 2])
    if family is None:
        raise RemoteProtocolError(f"CONNECT: bad family {payload[end + 1 : end + 2]!r}")
    if family is Family.UNKNOWN:
        # Nothing follows 'U'; some clients still send a port and address, which libmilter ignores.
        return Connect(hostname, family)
    rest = payload[end + 2 :]
    # As libmilter's st_connectinfo: at least one byte after the port, the packet ends in NUL,
    # and the address runs to the first NUL; a client that writes more NULs is still served.
    if len(rest) < 3 or rest[-1:] != _NUL:
        raise RemoteProtocolError("CONNECT: malformed port or address")
    (port,) = _U16.unpack_from(rest)
    address = rest[2 : rest.find(_NUL, 2)]
    if address[:5].lower() == b"ipv6:":  # Sendmail's literal prefix for IPv6 clients
        address = address[5:]
    return Connect(hostname, family, port, address)


def _parse_helo(payload: bytes) -> Helo:
    return Helo(_exact_strings(payload, 1, "HELO")[0])


def _parse_mail(payload: bytes) -> MailFrom:
    parts = _strings(payload, "MAIL")
    return MailFrom(parts[0], tuple(parts[1:]))


def _parse_rcpt(payload: bytes) -> RcptTo:
    parts = _strings(payload, "RCPT")
    return RcptTo(parts[0], tuple(parts[1:]))


def _parse_header(payload: bytes) -> Header:
    name, value = _exact_strings(payload, 2, "HEADER")
    return Header(name, value)


def _parse_unknown(payload: bytes) -> Unknown:
    return Unknown(_exact_strings(payload, 1, "UNKNOWN")[0])


_COMMAND_PARSERS: dict[int, Callable[[bytes], Any]] = {
    OPTNEG[0]: _parse_negotiate,
    MACRO[0]: _parse_macro,
    CONNECT[0]: _parse_connect,
    HELO[0]: _parse_helo,
    MAIL[0]: _parse_mail,
    RCPT[0]: _parse_rcpt,
    DATA[0]: _empty(Data(), "DATA"),
    HEADER[0]: _parse_header,
    EOH[0]: _empty(EndOfHeaders(), "EOH"),
    BODY[0]: BodyChunk,
    BODYEOB[0]: EndOfMessage,
    ABORT[0]: _empty(Abort(), "ABORT"),
    QUIT[0]: _empty(Quit(), "QUIT"),
    QUIT_NC[0]: _empty(QuitNewConnection(), "QUIT_NC"),
    UNKNOWN[0]: _parse_unknown,
}


def _parse_indexed(payload: bytes, what: str) -> tuple[int, bytes, bytes]:
    if len(payload) < 4:
        raise RemoteProtocolError(f"{what}: missing index")
    (index,) = _U32.unpack_from(payload)
    name, value = _exact_strings(payload[4:], 2, what)
    return index, name, value


def _parse_optional_args(payload: bytes, what: str) -> tuple[bytes, bytes | None]:
    parts = _strings(payload, what)
    if len(parts) > 2:
        raise RemoteProtocolError(f"{what}: too many strings")
    return parts[0], parts[1] if len(parts) == 2 else None


def _parse_addrcpt_par(payload: bytes) -> AddRecipient:
    address, args = _parse_optional_args(payload, "ADDRCPT_PAR")
    return AddRecipient(address, b"" if args is None else args)


def _parse_chgfrom(payload: bytes) -> ChangeFrom:
    return ChangeFrom(*_parse_optional_args(payload, "CHGFROM"))


def _parse_addheader(payload: bytes) -> AddHeader:
    return AddHeader(*_exact_strings(payload, 2, "ADDHEADER"))


_REPLY_PARSERS: dict[int, Callable[[bytes], Any]] = {
    OPTNEG[0]: _parse_negotiate,
    R_CONTINUE[0]: _empty(Continue(), "CONTINUE"),
    R_ACCEPT[0]: _empty(Accept(), "ACCEPT"),
    R_REJECT[0]: _empty(Reject(), "REJECT"),
    R_TEMPFAIL[0]: _empty(TempFail(), "TEMPFAIL"),
    R_DISCARD[0]: _empty(Discard(), "DISCARD"),
    R_REPLYCODE[0]: lambda p: ReplyCode(_exact_strings(p, 1, "REPLYCODE")[0]),
    R_SKIP[0]: _empty(Skip(), "SKIP"),
    R_PROGRESS[0]: _empty(Progress(), "PROGRESS"),
    R_QUARANTINE[0]: lambda p: Quarantine(_exact_strings(p, 1, "QUARANTINE")[0]),
    R_ADDHEADER[0]: _parse_addheader,
    R_INSHEADER[0]: lambda p: InsertHeader(*_parse_indexed(p, "INSHEADER")),
    R_CHGHEADER[0]: lambda p: ChangeHeader(*_parse_indexed(p, "CHGHEADER")),
    R_ADDRCPT[0]: lambda p: AddRecipient(_exact_strings(p, 1, "ADDRCPT")[0]),
    R_ADDRCPT_PAR[0]: _parse_addrcpt_par,
    R_DELRCPT[0]: lambda p: DeleteRecipient(_exact_strings(p, 1, "DELRCPT")[0]),
    R_CHGFROM[0]: _parse_chgfrom,
    R_REPLBODY[0]: ReplaceBody,
}


# ------------------------------------------------------------------ decoders

_M = TypeVar("_M")


class _Decoder(Generic[_M]):
    _parsers: dict[int, Callable[[bytes], Any]]
    _direction: str

    def __init__(self, max_frame: int = 1 << 20) -> None:
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._error: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete packet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[_M]:
        """Decode every complete packet in the buffered bytes plus `data`."""
        if self._error is not None:
            raise RemoteProtocolError(self._error)
        source: bytes | bytearray
        if self._buf:
            self._buf += data
            source = self._buf
        else:
            source = data  # common case: parse straight from the caller's bytes, no copy
        try:
            messages, pos = self._drain(source)
        except RemoteProtocolError as exc:
            self._error = str(exc)
            self._buf.clear()
            raise
        if source is self._buf:
            del self._buf[:pos]  # CPython trims a bytearray's head without moving the rest
        elif pos < len(data):
            self._buf += memoryview(data)[pos:]
        return messages

    def _drain(self, source: bytes | bytearray) -> tuple[list[_M], int]:
        out: list[_M] = []
        pos = 0
        end = len(source)
        parsers = self._parsers
        with memoryview(source) as view:
            while end - pos >= 4:
                (length,) = _PREFIX.unpack_from(source, pos)
                if length == 0:
                    raise RemoteProtocolError(f"{self._direction}: packet length 0")
                if length > self.max_frame:
                    raise RemoteProtocolError(
                        f"{self._direction}: packet length {length} exceeds {self.max_frame}"
                    )
                if end - pos < 5:
                    break
                code = source[pos + 4]
                parse = parsers.get(code)
                if parse is None:
                    raise RemoteProtocolError(f"{self._direction}: unknown code {_name(code)}")
                if end - pos - 4 < length:
                    break
                payload = bytes(view[pos + 5 : pos + 4 + length])
                try:
                    out.append(parse(payload))
                except (ValueError, IndexError, struct.error) as exc:  # belt and braces
                    raise RemoteProtocolError(
                        f"{self._direction}: malformed {_name(code)} packet: {exc}"
                    ) from None
                pos += 4 + length
        return out, pos


class CommandDecoder(_Decoder[Command]):
    """Decodes what the MTA sends: bytes in, `Command` messages out."""

    _parsers = _COMMAND_PARSERS
    _direction = "command"


class ReplyDecoder(_Decoder[Reply]):
    """Decodes what the milter sends: bytes in, `Reply` messages out (test client, bench)."""

    _parsers = _REPLY_PARSERS
    _direction = "reply"


# ------------------------------------------------------------------ encoding


def _frame(code: bytes, payload: bytes = b"") -> bytes:
    return _FRAME_HEAD.pack(len(payload) + 1, code) + payload


def _reply_frame(code: bytes, payload: bytes, what: str) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(f"{what}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return _frame(code, payload)


def _cstr(value: bytes, what: str) -> bytes:
    # find(), not `in`: bytes.__contains__ first tries the needle as an integer and builds
    # (then drops) a TypeError with a formatted message before it searches.
    if value.find(_NUL) >= 0:
        raise LocalProtocolError(f"{what}: NUL byte inside a string field")
    return value + _NUL


def _u32(value: int, what: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise LocalProtocolError(f"{what}: {value} does not fit in 32 bits")
    return _U32.pack(value)


def _enc_negotiate(m: Negotiate) -> bytes:
    parts = [_u32(m.version, "OPTNEG"), _u32(int(m.actions), "OPTNEG")]
    parts.append(_u32(int(m.protocol), "OPTNEG"))
    for stage, names in m.macro_lists:
        parts += (_u32(int(stage), "OPTNEG"), _cstr(names, "OPTNEG"))
    return _frame(OPTNEG, b"".join(parts))


def _enc_macro(m: Macro) -> bytes:
    if len(m.stage) != 1:
        raise LocalProtocolError("MACRO: stage must be exactly one byte")
    pairs = b"".join(_cstr(n, "MACRO") + _cstr(v, "MACRO") for n, v in m.macros)
    return _frame(MACRO, m.stage + pairs)


def _enc_connect(m: Connect) -> bytes:
    payload = _cstr(m.hostname, "CONNECT") + m.family.value
    if m.family is not Family.UNKNOWN:
        if not 0 <= m.port <= 0xFFFF:
            raise LocalProtocolError(f"CONNECT: port {m.port} out of range")
        payload += _U16.pack(m.port) + _cstr(m.address, "CONNECT")
    return _frame(CONNECT, payload)


def _enc_argv(code: bytes, address: bytes, args: tuple[bytes, ...]) -> bytes:
    return _frame(code, b"".join(_cstr(a, "argv") for a in (address, *args)))


def _enc_header_like(code: bytes, name: bytes, value: bytes, what: str, index: int | None) -> bytes:
    payload = _cstr(name, what) + _cstr(value, what)
    if index is not None:
        payload = _u32(index, what) + payload
    return _reply_frame(code, payload, what)


def _enc_optional_args(code: bytes, address: bytes, args: bytes | None, what: str) -> bytes:
    payload = _cstr(address, what)
    if args is not None:
        payload += _cstr(args, what)
    return _reply_frame(code, payload, what)


def _enc_replace_body(m: ReplaceBody) -> bytes:
    data = m.data
    if len(data) <= MAX_PAYLOAD:
        return _frame(R_REPLBODY, data)
    view = memoryview(data)
    return b"".join(
        _frame(R_REPLBODY, bytes(view[i : i + MAX_PAYLOAD]))
        for i in range(0, len(data), MAX_PAYLOAD)
    )


_EMPTY_FRAMES: dict[type, bytes] = {
    Data: _frame(DATA),  # SMFIC_DATA
    EndOfHeaders: _frame(EOH),  # SMFIC_EOH
    Abort: _frame(ABORT),  # SMFIC_ABORT
    Quit: _frame(QUIT),  # SMFIC_QUIT
    QuitNewConnection: _frame(QUIT_NC),  # SMFIC_QUIT_NC
    Continue: _frame(R_CONTINUE),  # SMFIR_CONTINUE
    Accept: _frame(R_ACCEPT),  # SMFIR_ACCEPT
    Reject: _frame(R_REJECT),  # SMFIR_REJECT
    TempFail: _frame(R_TEMPFAIL),  # SMFIR_TEMPFAIL
    Discard: _frame(R_DISCARD),  # SMFIR_DISCARD
    Skip: _frame(R_SKIP),  # SMFIR_SKIP
    Progress: _frame(R_PROGRESS),  # SMFIR_PROGRESS
}


def _enc_helo(m: Helo) -> bytes:
    return _frame(HELO, _cstr(m.name, "HELO"))


def _enc_header(m: Header) -> bytes:
    return _frame(HEADER, _cstr(m.name, "HEADER") + _cstr(m.value, "HEADER"))


def _enc_unknown(m: Unknown) -> bytes:
    return _frame(UNKNOWN, _cstr(m.command, "UNKNOWN"))


def _enc_replycode(m: ReplyCode) -> bytes:
    return _reply_frame(R_REPLYCODE, _cstr(m.text, "REPLYCODE"), "REPLYCODE")


def _enc_quarantine(m: Quarantine) -> bytes:
    return _reply_frame(R_QUARANTINE, _cstr(m.reason, "QUARANTINE"), "QUARANTINE")


def _enc_addrcpt(m: AddRecipient) -> bytes:
    if m.esmtp_args is None:
        return _reply_frame(R_ADDRCPT, _cstr(m.address, "ADDRCPT"), "ADDRCPT")
    return _enc_optional_args(R_ADDRCPT_PAR, m.address, m.esmtp_args, "ADDRCPT_PAR")


def _enc_delrcpt(m: DeleteRecipient) -> bytes:
    return _reply_frame(R_DELRCPT, _cstr(m.address, "DELRCPT"), "DELRCPT")


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Negotiate: _enc_negotiate,
    Macro: _enc_macro,
    Connect: _enc_connect,
    Helo: _enc_helo,
    MailFrom: lambda m: _enc_argv(MAIL, m.address, m.esmtp_args),
    RcptTo: lambda m: _enc_argv(RCPT, m.address, m.esmtp_args),
    Header: _enc_header,
    BodyChunk: lambda m: _frame(BODY, m.data),
    EndOfMessage: lambda m: _frame(BODYEOB, m.data),
    Unknown: _enc_unknown,
    ReplyCode: _enc_replycode,
    Quarantine: _enc_quarantine,
    AddHeader: lambda m: _enc_header_like(R_ADDHEADER, m.name, m.value, "ADDHEADER", None),
    InsertHeader: lambda m: _enc_header_like(R_INSHEADER, m.name, m.value, "INSHEADER", m.index),
    ChangeHeader: lambda m: _enc_header_like(R_CHGHEADER, m.name, m.value, "CHGHEADER", m.index),
    AddRecipient: _enc_addrcpt,
    DeleteRecipient: _enc_delrcpt,
    ChangeFrom: lambda m: _enc_optional_args(R_CHGFROM, m.address, m.esmtp_args, "CHGFROM"),
    ReplaceBody: _enc_replace_body,
}


def encode(message: Command | Reply) -> bytes:
    """The wire bytes of one message (several packets for a large ReplaceBody).

    Raises LocalProtocolError for a message that cannot be written: a NUL inside a string
    field, an out-of-range number, or a reply payload over 65535 bytes.
    """
    frame = _EMPTY_FRAMES.get(type(message))
    if frame is not None:
        return frame
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise LocalProtocolError(f"cannot encode {type(message).__name__}")
    return encoder(message)
