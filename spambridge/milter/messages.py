"""One frozen dataclass per wire message, in both directions.

Field values are bytes exactly as on the wire, without the trailing NUL. The codec in
`codec.py` owns the command bytes; nothing else in the project needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from spambridge.milter.flags import ActionFlags, Family, ProtocolFlags, Stage

# ---------------------------------------------------------------- both directions


@dataclass(frozen=True, slots=True)
class Negotiate:  # SMFIC_OPTNEG / the 'O' reply
    """Option negotiation. The MTA's offer never carries macro lists; our reply may."""

    version: int
    actions: ActionFlags
    protocol: ProtocolFlags
    macro_lists: tuple[tuple[Stage, bytes], ...] = ()


# ---------------------------------------------------------------- MTA to milter


@dataclass(frozen=True, slots=True)
class Macro:  # SMFIC_MACRO
    """Macro definitions for the command whose code is `stage` (any byte; Postfix sends L/B too)."""

    stage: bytes
    macros: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Connect:  # SMFIC_CONNECT
    hostname: bytes
    family: Family
    port: int = 0
    address: bytes = b""  # Sendmail's "IPv6:" prefix already stripped


@dataclass(frozen=True, slots=True)
class Helo:  # SMFIC_HELO
    name: bytes


@dataclass(frozen=True, slots=True)
class MailFrom:  # SMFIC_MAIL
    address: bytes
    esmtp_args: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class RcptTo:  # SMFIC_RCPT
    address: bytes
    esmtp_args: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Data:  # SMFIC_DATA
    pass


@dataclass(frozen=True, slots=True)
class Header:  # SMFIC_HEADER (also the payload of AddHeader-like replies, see below)
    name: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class EndOfHeaders:  # SMFIC_EOH
    pass


@dataclass(frozen=True, slots=True)
class BodyChunk:  # SMFIC_BODY
    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:  # SMFIC_BODYEOB
    data: bytes = b""  # libmilter treats bytes here as a last body chunk


@dataclass(frozen=True, slots=True)
class Abort:  # SMFIC_ABORT
    pass


@dataclass(frozen=True, slots=True)
class Quit:  # SMFIC_QUIT
    pass


@dataclass(frozen=True, slots=True)
class QuitNewConnection:  # SMFIC_QUIT_NC
    pass


@dataclass(frozen=True, slots=True)
class Unknown:  # SMFIC_UNKNOWN
    command: bytes


Command = (
    Negotiate
    | Macro
    | Connect
    | Helo
    | MailFrom
    | RcptTo
    | Data
    | Header
    | EndOfHeaders
    | BodyChunk
    | EndOfMessage
    | Abort
    | Quit
    | QuitNewConnection
    | Unknown
)

# ---------------------------------------------------------------- milter to MTA: final replies


@dataclass(frozen=True, slots=True)
class Continue:  # SMFIR_CONTINUE
    pass


@dataclass(frozen=True, slots=True)
class Accept:  # SMFIR_ACCEPT
    pass


@dataclass(frozen=True, slots=True)
class Reject:  # SMFIR_REJECT
    pass


@dataclass(frozen=True, slots=True)
class TempFail:  # SMFIR_TEMPFAIL
    pass


@dataclass(frozen=True, slots=True)
class Discard:  # SMFIR_DISCARD
    pass


@dataclass(frozen=True, slots=True)
class ReplyCode:  # SMFIR_REPLYCODE
    """A complete SMTP reply, e.g. b"550 5.7.1 text"; lines joined by CRLF. See reply.py."""

    text: bytes


@dataclass(frozen=True, slots=True)
class Skip:  # SMFIR_SKIP
    pass


# ---------------------------------------------------------------- milter to MTA: interim


@dataclass(frozen=True, slots=True)
class Progress:  # SMFIR_PROGRESS
    pass


@dataclass(frozen=True, slots=True)
class Quarantine:  # SMFIR_QUARANTINE
    reason: bytes


@dataclass(frozen=True, slots=True)
class AddHeader:  # SMFIR_ADDHEADER
    name: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class InsertHeader:  # SMFIR_INSHEADER
    index: int
    name: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class ChangeHeader:  # SMFIR_CHGHEADER; an empty value deletes
    index: int  # 1-based among headers of this name
    name: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class AddRecipient:  # SMFIR_ADDRCPT, or SMFIR_ADDRCPT_PAR when esmtp_args is not None
    address: bytes
    esmtp_args: bytes | None = None


@dataclass(frozen=True, slots=True)
class DeleteRecipient:  # SMFIR_DELRCPT
    address: bytes


@dataclass(frozen=True, slots=True)
class ChangeFrom:  # SMFIR_CHGFROM
    address: bytes
    esmtp_args: bytes | None = None


@dataclass(frozen=True, slots=True)
class ReplaceBody:  # SMFIR_REPLBODY; the encoder splits data into <= 65535-byte packets
    data: bytes


FinalReply = Continue | Accept | Reject | TempFail | Discard | ReplyCode
Edit = (
    Quarantine
    | AddHeader
    | InsertHeader
    | ChangeHeader
    | AddRecipient
    | DeleteRecipient
    | ChangeFrom
    | ReplaceBody
)
Reply = Negotiate | FinalReply | Skip | Progress | Edit

FINAL_REPLIES = (Continue, Accept, Reject, TempFail, Discard, ReplyCode)
