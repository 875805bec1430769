"""Option negotiation, and the tables of which reply is legal after which command.

We request only bits the MTA offered (Sendmail fails the negotiation otherwise), never the
MDS bits, and only bits that exist in the version we reply with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from spambridge.errors import LocalProtocolError, RemoteProtocolError
from spambridge.milter.flags import PROTOCOL_VERSION, ActionFlags, ProtocolFlags, Stage
from spambridge.milter.messages import (
    FINAL_REPLIES,
    Abort,
    AddHeader,
    AddRecipient,
    BodyChunk,
    ChangeFrom,
    ChangeHeader,
    Command,
    Connect,
    Data,
    DeleteRecipient,
    Discard,
    Edit,
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
    ReplaceBody,
    Reply,
    Skip,
    Unknown,
)

__all__ = [
    "LEGAL_REPLIES",
    "Negotiated",
    "Wanted",
    "check_reply",
    "edit_for_mta",
    "negotiate",
    "required_action",
    "value_from_mta",
]

_V1_ACTIONS = ActionFlags(0x0F)  # SMFI_V1_ACTS: what an offered actions word of 0 means
_V2_ACTIONS = ActionFlags(0x3F)  # SMFI_V2_ACTS: all that exists before version 6
_V1_PROTOCOL = ProtocolFlags(0x3F)  # SMFI_V1_PROT: what an offered protocol word of 0 means
_V2_PROTOCOL = ProtocolFlags(0x7F)  # SMFI_V2_PROT
_V6_PROTOCOL = ProtocolFlags(0x1FFFFF)  # SMFI_CURR_PROT; excludes MDS and internal bits
_MIN_VERSION = 2


def _protocol_for_version(version: int) -> ProtocolFlags:
    """The protocol bits that exist in `version` (NR_*, SKIP, HDR_LEADSPC only from 6)."""
    if version >= 6:
        return _V6_PROTOCOL
    bits = _V2_PROTOCOL
    if version >= 3:
        bits |= ProtocolFlags.NO_UNKNOWN
    if version >= 4:
        bits |= ProtocolFlags.NO_DATA
    return bits


@dataclass(frozen=True, slots=True)
class Wanted:
    """What spambridge would like; negotiate() trims it to what the MTA offers."""

    actions: ActionFlags
    protocol: ProtocolFlags
    macros: tuple[tuple[Stage, tuple[str, ...]], ...] = ()


# The no-reply flag for each command that is normally replied to.
_NO_REPLY_FLAG: dict[type, ProtocolFlags] = {
    Connect: ProtocolFlags.NR_CONNECT,
    Helo: ProtocolFlags.NR_HELO,
    MailFrom: ProtocolFlags.NR_MAIL,
    RcptTo: ProtocolFlags.NR_RCPT,
    Data: ProtocolFlags.NR_DATA,
    Unknown: ProtocolFlags.NR_UNKNOWN,
    Header: ProtocolFlags.NR_HEADER,
    EndOfHeaders: ProtocolFlags.NR_END_OF_HEADERS,
    BodyChunk: ProtocolFlags.NR_BODY,
}

# The flag that asks the MTA not to send a command at all.
_NOT_SENT_FLAG: dict[type, ProtocolFlags] = {
    Connect: ProtocolFlags.NO_CONNECT,
    Helo: ProtocolFlags.NO_HELO,
    MailFrom: ProtocolFlags.NO_MAIL,
    RcptTo: ProtocolFlags.NO_RCPT,
    Data: ProtocolFlags.NO_DATA,
    Unknown: ProtocolFlags.NO_UNKNOWN,
    Header: ProtocolFlags.NO_HEADERS,
    EndOfHeaders: ProtocolFlags.NO_END_OF_HEADERS,
    BodyChunk: ProtocolFlags.NO_BODY,
}


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The options in force for one connection.

    Everything a session asks per command is worked out once here, as plain sets and bools:
    flag arithmetic on enum.Flag costs microseconds a time, and one Negotiated (cached per
    offer) serves every connection that made the same offer.
    """

    version: int
    actions: ActionFlags
    protocol: ProtocolFlags
    # Command types the MTA waits for a reply to.
    replied: frozenset[type] = field(init=False, repr=False, compare=False)
    # Steps the MTA agreed to send without waiting for a reply (the NR flags granted).
    unanswered: frozenset[type] = field(init=False, repr=False, compare=False)
    # (command type, reply type) pairs check_reply passes whatever the reply's arguments.
    legal: frozenset[tuple[type, type]] = field(init=False, repr=False, compare=False)
    # SMFIP_SKIP negotiated: a Skip reply to a body chunk is allowed.
    can_skip: bool = field(init=False, repr=False, compare=False)
    # SMFIP_HDR_LEADSPC negotiated: header values arrive (and go) byte for byte.
    leading_space: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        v6 = self.version >= 6
        protocol = int(self.protocol)
        # NR flags exist only from version 6; before that every one of these steps is replied to.
        replied = {kind for kind, flag in _NO_REPLY_FLAG.items() if not (v6 and protocol & flag)}
        replied.add(EndOfMessage)
        object.__setattr__(self, "replied", frozenset(replied))
        object.__setattr__(self, "unanswered", frozenset(_NO_REPLY_FLAG) - replied)
        object.__setattr__(self, "can_skip", v6 and bool(protocol & ProtocolFlags.SKIP))
        object.__setattr__(
            self, "leading_space", v6 and bool(protocol & ProtocolFlags.HEADER_LEADING_SPACE)
        )
        legal = {
            (after, kind)
            for after, kinds in LEGAL_REPLIES.items()
            for kind in kinds
            if kind is not AddRecipient and _reply_problem(after, kind, None, self) is None
        }
        object.__setattr__(self, "legal", frozenset(legal))

    def expects_reply(self, command: Command) -> bool:
        """Whether the MTA waits for a reply to `command`."""
        return type(command) in self.replied

    def sends(self, command_type: type[Command]) -> bool:
        """Whether the MTA will send commands of this type at all."""
        flag = _NOT_SENT_FLAG.get(command_type)
        return flag is None or not self.protocol & flag


def _macro_list(stage: Stage, names: tuple[str, ...]) -> tuple[Stage, bytes]:
    for name in names:
        if not name or not name.isascii() or any(c.isspace() or c == "\0" for c in name):
            raise LocalProtocolError(f"bad macro name {name!r} for stage {stage.name}")
    return stage, " ".join(names).encode("ascii")


def negotiate(offer: Negotiate, wanted: Wanted) -> tuple[Negotiate, Negotiated]:
    """Answer the MTA's offer: returns the reply to send and the options then in force."""
    if offer.version < _MIN_VERSION:
        raise RemoteProtocolError(f"milter protocol version {offer.version} is not supported")
    version = min(offer.version, PROTOCOL_VERSION)
    offered_actions = offer.actions or _V1_ACTIONS
    offered_protocol = offer.protocol or _V1_PROTOCOL
    actions = wanted.actions & offered_actions
    if version < 6:
        actions &= _V2_ACTIONS
    protocol = wanted.protocol & offered_protocol & _protocol_for_version(version)

    lists: tuple[tuple[Stage, bytes], ...] = ()
    if wanted.macros and version >= 6 and offered_actions & ActionFlags.SET_MACRO_LIST:
        stages = dict(wanted.macros)
        # Sendmail applies a milter's own EOM list only if that milter also sent an EOH list.
        if Stage.END_OF_MESSAGE in stages and Stage.END_OF_HEADERS not in stages:
            stages[Stage.END_OF_HEADERS] = stages[Stage.END_OF_MESSAGE]
        lists = tuple(_macro_list(stage, names) for stage, names in stages.items())
        actions |= ActionFlags.SET_MACRO_LIST

    reply = Negotiate(version, ActionFlags(actions), ProtocolFlags(protocol), lists)
    # The MTA leaves out steps the version lacks (Sendmail forces these bits the same way).
    in_force = ProtocolFlags(protocol)
    if version <= 2:
        in_force |= ProtocolFlags.NO_UNKNOWN
    if version <= 3:
        in_force |= ProtocolFlags.NO_DATA
    return reply, Negotiated(version, ActionFlags(actions), in_force)


# ------------------------------------------------------------------ legal replies

_FINAL: frozenset[type] = frozenset(FINAL_REPLIES)
_EDITS: frozenset[type] = frozenset(
    {
        Quarantine,
        AddHeader,
        InsertHeader,
        ChangeHeader,
        AddRecipient,
        DeleteRecipient,
        ChangeFrom,
        ReplaceBody,
    }
)

LEGAL_REPLIES: dict[type, frozenset[type]] = {
    Negotiate: frozenset({Negotiate}),
    # Discard is meaningless before a transaction (Postfix warns and ignores it).
    Connect: _FINAL - {Discard},
    Helo: _FINAL - {Discard},
    MailFrom: _FINAL,
    RcptTo: _FINAL,
    Data: _FINAL,
    Unknown: _FINAL,
    Header: _FINAL,
    EndOfHeaders: _FINAL,
    BodyChunk: _FINAL | {Skip},
    # Sendmail treats Progress and Quarantine before end of message as bogus: EOM only.
    EndOfMessage: _FINAL | _EDITS | {Progress},
    Macro: frozenset(),
    Abort: frozenset(),
    Quit: frozenset(),
    QuitNewConnection: frozenset(),
}
"""For each command type, the reply types that may follow it (empty: never reply)."""

# The action an edit needs to have been negotiated (libmilter checks the same in smfi_*).
_ACTION_NEEDED: dict[type, ActionFlags] = {
    AddHeader: ActionFlags.ADD_HEADERS,
    InsertHeader: ActionFlags.ADD_HEADERS,
    ChangeHeader: ActionFlags.CHANGE_HEADERS,
    DeleteRecipient: ActionFlags.DELETE_RECIPIENT,
    ChangeFrom: ActionFlags.CHANGE_FROM,
    ReplaceBody: ActionFlags.CHANGE_BODY,
    Quarantine: ActionFlags.QUARANTINE,
}


# The same as plain ints, for the per-message check of every edit (enum.Flag arithmetic
# costs microseconds a time).
_ADD_RECIPIENT = int(ActionFlags.ADD_RECIPIENT)
_ADD_RECIPIENT_WITH_ARGS = int(ActionFlags.ADD_RECIPIENT_WITH_ARGS)
_NEEDED_BITS: dict[type, int] = {
    **{kind: int(flag) for kind, flag in _ACTION_NEEDED.items()},
    AddRecipient: _ADD_RECIPIENT,
}


def required_action(reply: Reply) -> int:
    """The action bit the MTA must have granted for `reply`; 0 when it needs none."""
    needed = _NEEDED_BITS.get(type(reply), 0)
    if (
        needed == _ADD_RECIPIENT
        and isinstance(reply, AddRecipient)
        and reply.esmtp_args is not None
    ):
        return _ADD_RECIPIENT_WITH_ARGS
    return needed


def check_reply(after: type[Command], reply: Reply, negotiated: Negotiated) -> None:
    """Raise LocalProtocolError if `reply` may not be written after a command of type `after`."""
    esmtp_args = reply.esmtp_args if isinstance(reply, AddRecipient) else None
    problem = _reply_problem(after, type(reply), esmtp_args, negotiated)
    if problem is not None:
        raise LocalProtocolError(problem)


def _reply_problem(
    after: type[Command], kind: type[Reply], esmtp_args: bytes | None, negotiated: Negotiated
) -> str | None:
    """Why a reply of type `kind` may not follow `after`, or None if it may."""
    legal = LEGAL_REPLIES.get(after)
    if legal is None or kind not in legal:
        return f"{kind.__name__} is not a legal reply to {after.__name__}"
    if after is not Negotiate and after not in negotiated.replied:
        return f"we promised not to reply to {after.__name__}"
    if kind is Skip and not negotiated.can_skip:
        return "Skip was not negotiated"
    needed = _ACTION_NEEDED.get(kind)
    if kind is AddRecipient:
        needed = (
            ActionFlags.ADD_RECIPIENT if esmtp_args is None else ActionFlags.ADD_RECIPIENT_WITH_ARGS
        )
    if needed is not None and not negotiated.actions & needed:
        return f"{kind.__name__} needs the {needed.name} action"
    return None


# SMFIP_HDR_LEADSPC. Inside spambridge a header value always keeps its leading whitespace, as
# in the message; an MTA that did not negotiate the bit strips the one space after the colon
# and adds it back on delivery. These two convert where values enter and leave.


def value_from_mta(value: bytes, leading_space: bool) -> bytes:
    """A header value as the message holds it."""
    return value if leading_space else b" " + value


def edit_for_mta(edit: Edit, leading_space: bool) -> Edit:
    """A header edit's value as the MTA takes it: without HDR_LEADSPC it adds the space."""
    if (
        not leading_space
        and isinstance(edit, AddHeader | InsertHeader | ChangeHeader)
        and edit.value[:1] == b" "
    ):
        return dataclasses.replace(edit, value=edit.value[1:])
    return edit
