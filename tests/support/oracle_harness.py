"""Drive the real milter-spamc and spambridge with the same conversation and compare.

A case is one SMTP transaction written as the milter conversation Sendmail 8.17 would have
with a filter (its offer: version 6, every action, every protocol step; header values
without their leading space unless the filter asked for SMFIP_HDR_LEADSPC). Both milters get
the same option file and the same spamd (through a recording proxy); the outcome of each is
reduced by the normalisations below, and the two outcomes must be equal.

NORMALISATIONS is the one list of what is allowed to differ, and why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from spambridge.milter.flags import Family, ProtocolFlags
from spambridge.milter.messages import (
    Accept,
    AddHeader,
    AddRecipient,
    ChangeHeader,
    Continue,
    DeleteRecipient,
    Discard,
    InsertHeader,
    Quarantine,
    Reject,
    Reply,
    ReplyCode,
    TempFail,
)
from tests.support.spamd_recorder import SpamdRecorder
from tools.milter_client import MilterClient

# Sendmail 8.17's offer (SMFI_PROT_VERSION, SMFI_CURR_ACTS, SMFI_CURR_PROT).
SENDMAIL_VERSION = 6
SENDMAIL_ACTIONS = 0x1FF
SENDMAIL_PROTOCOL = 0x1FFFFF

NORMALISATIONS: tuple[tuple[str, str], ...] = (
    (
        "negotiation",
        "the option negotiation reply is not compared: libmilter asks for every step with a "
        "reply, spambridge for what it uses (README: body chunks); the effect on each step is "
        "compared instead",
    ),
    (
        "no reply = continue",
        "a step the filter asked not to answer (SMFIP_NR_*) or not to be sent (SMFIP_NO_*) "
        "counts as Continue: the MTA goes on exactly as after a Continue",
    ),
    (
        "leading space",
        "header values in edits are compared as the MTA writes them: without SMFIP_HDR_LEADSPC "
        "Sendmail adds one space after the colon, with it the filter supplies it",
    ),
    (
        "X-Scanned-By product and date",
        "the product token (milter-spamc/1.17.1 vs spambridge/VERSION) and the RFC 2822 date "
        "of X-Scanned-By are replaced by placeholders",
    ),
    (
        "synthetic Received header",
        "the Received header both put first in the copy for spamd is replaced by a placeholder: "
        "spambridge writes Sendmail's full form (README: synthetic Received header)",
    ),
    (
        "empty User",
        "an empty `User:` line in the request to spamd counts as none (milter-spamc always "
        "sends one; README: empty spamd User)",
    ),
    (
        "edits by kind",
        "header additions, header changes, recipient deletions and additions are each compared in "
        "order, but not against one another: the MTA keeps them apart, so only the order within a "
        "kind can change the delivered message (milter-spamc adds mail-archive first, and its "
        "X-Original-Recipient after the Subject change; README: edit order)",
    ),
    (
        "edits of a refused message",
        "with a reject or discard at end of message the header and recipient edits are not "
        "compared: the MTA drops them with the message (milter-spamc sends them, spambridge not)",
    ),
    (
        "SPAMC request head",
        "of the request head sent to spamd only the command and the User header are compared "
        "(the protocol version and Content-Length, which milter-spamc omits, may differ)",
    ),
)


@dataclass(frozen=True)
class Message:
    """One SMTP transaction as the MTA would hand it to a filter."""

    headers: Sequence[tuple[bytes, bytes]]  # (name, value as after the colon, leading space kept)
    body: bytes
    sender: bytes = b"<alice@example.org>"
    rcpts: Sequence[tuple[bytes, Mapping[str, str]]] = (
        (b"<bob@example.com>", {"{rcpt_mailer}": "esmtp", "{rcpt_host}": "example.com"}),
    )
    client_addr: bytes = b"192.0.2.25"
    client_name: bytes = b"mail.example.org"
    helo: bytes = b"mail.example.org"
    mail_macros: Mapping[str, str] = field(default_factory=dict)


def local_rcpt(user: str) -> tuple[bytes, Mapping[str, str]]:
    """A recipient Sendmail delivers with its local mailer ({rcpt_host} empty)."""
    return (
        f"<{user}@mx.example.test>".encode(),
        {"{rcpt_mailer}": "local", "{rcpt_host}": "", "{rcpt_addr}": user},
    )


def remote_rcpt(address: str, mailer: str = "esmtp") -> tuple[bytes, Mapping[str, str]]:
    host = address.rsplit("@", 1)[1]
    return (
        f"<{address}>".encode(),
        {"{rcpt_mailer}": mailer, "{rcpt_host}": host, "{rcpt_addr}": address},
    )


@dataclass
class Outcome:
    """What one milter did with one Message, normalised."""

    replies: list[tuple[str, str]] = field(default_factory=list)
    edits: list[tuple[object, ...]] = field(default_factory=list)
    final: str = ""
    spamd: list[bytes] = field(default_factory=list)

    def differences(self, other: Outcome) -> list[str]:
        out = []
        for name in ("replies", "edits", "final", "spamd"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                out.append(f"{name}:\n  milter-spamc: {mine!r}\n  spambridge:   {theirs!r}")
        return out


def describe(reply: Reply | None) -> str:
    if reply is None or isinstance(reply, Continue):
        return "continue"  # normalisation "no reply = continue"
    if isinstance(reply, ReplyCode):
        return "reply " + reply.text.decode("latin-1")
    for kind, name in (
        (Accept, "accept"),
        (Reject, "reject"),
        (TempFail, "tempfail"),
        (Discard, "discard"),
    ):
        if isinstance(reply, kind):
            return name
    return repr(reply)


_SCANNED_BY = re.compile(rb"^ (milter-spamc|spambridge)/\S+ (.*?); .*$", re.S)


def normalise_edit(edit: Reply, leadspc: bool) -> tuple[object, ...]:
    def value(v: bytes) -> bytes:
        return v if leadspc else b" " + v  # normalisation "leading space"

    if isinstance(edit, AddHeader | InsertHeader | ChangeHeader):
        v = value(edit.value) if edit.value else b""
        if edit.name.lower() == b"x-scanned-by":
            v = _SCANNED_BY.sub(rb" PRODUCT \2; DATE", v)  # "X-Scanned-By product and date"
        index = getattr(edit, "index", None)
        return (type(edit).__name__, index, edit.name, v)
    if isinstance(edit, AddRecipient | DeleteRecipient):
        return (type(edit).__name__, edit.address, getattr(edit, "esmtp_args", None))
    if isinstance(edit, Quarantine):
        return ("Quarantine", edit.reason)
    return (repr(edit),)


_RECEIVED = re.compile(rb"\r\nReceived: .*?\r\n(?![ \t])", re.S)


def normalise_spamd_request(raw: bytes) -> bytes:
    head, sep, message = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    command = lines[0].split(b" ", 1)[0]
    users = [line for line in lines[1:] if line.lower().startswith(b"user:") and line[5:].strip()]
    message = _RECEIVED.sub(b"\r\nReceived: SYNTHETIC\r\n", b"\r\n" + message, count=1)[2:]
    return b"\r\n".join([command, *users]) + sep + message


async def converse(port: int, msg: Message, proxy: SpamdRecorder) -> Outcome:
    """Run one transaction against the milter on 127.0.0.1:port as Sendmail 8.17 would."""
    proxy.take()
    outcome = Outcome()
    client = await MilterClient.open(("127.0.0.1", port), read_timeout=60.0)
    try:
        await client.negotiate(SENDMAIL_VERSION, SENDMAIL_ACTIONS, SENDMAIL_PROTOCOL)
        leadspc = bool(client.protocol & ProtocolFlags.HEADER_LEADING_SPACE)

        def done(stage: str, reply: Reply | None) -> bool:
            text = describe(reply)
            outcome.replies.append((stage, text))
            if text != "continue":
                outcome.final = text
                return True
            return False

        connect_macros = {
            "j": "mx.example.test",
            "{daemon_name}": "MTA",
            "{if_name}": "mx.example.test",
            "{if_addr}": "127.0.0.1",
            "_": f"{msg.client_name.decode()} [{msg.client_addr.decode()}]",
            "{client_name}": msg.client_name.decode(),
            "{client_addr}": msg.client_addr.decode(),
            "{client_resolve}": "OK",
        }
        reply = await client.connect(
            msg.client_name, Family.INET, msg.client_addr, 25, connect_macros
        )
        if done("connect", reply):
            return await _finish(client, outcome, proxy)
        if done("helo", await client.helo(msg.helo)):
            return await _finish(client, outcome, proxy)
        mail_macros = {
            "i": "4AQ1234567",
            "{mail_mailer}": "esmtp",
            "{mail_host}": "example.org",
            "{mail_addr}": msg.sender.strip(b"<>").decode(),
            **msg.mail_macros,
        }
        if done("mail", await client.mail(msg.sender, macros=mail_macros)):
            return await _finish(client, outcome, proxy)
        for rcpt, macros in msg.rcpts:
            rcpt_macros = {"{rcpt_addr}": rcpt.strip(b"<>").decode(), **macros}
            if done("rcpt", await client.rcpt(rcpt, macros=rcpt_macros)):
                return await _finish(client, outcome, proxy)
        if done("data", await client.data()):
            return await _finish(client, outcome, proxy)
        for name, value in msg.headers:
            sent = value if leadspc else value.removeprefix(b" ")  # Sendmail eats one space
            if done("header", await client.header(name, sent)):
                return await _finish(client, outcome, proxy)
        if done("eoh", await client.end_of_headers()):
            return await _finish(client, outcome, proxy)
        if msg.body and done("body", await client.body(msg.body)):
            return await _finish(client, outcome, proxy)
        result = await client.end_of_message(macros={"{msg_id}": "<case@example.org>"})
        edits = [normalise_edit(e, leadspc) for e in result.edits]
        # normalisation "edits by kind": a stable sort on the kind keeps each kind's order
        kinds = ("AddHeader", "InsertHeader", "ChangeHeader", "DeleteRecipient", "AddRecipient")
        outcome.edits = sorted(
            edits, key=lambda e: kinds.index(str(e[0])) if e[0] in kinds else len(kinds)
        )
        outcome.final = describe(result.final)
        if outcome.final == "discard" or outcome.final.startswith(("reply 5", "reject")):
            outcome.edits = []  # normalisation "edits of a refused message"
        outcome.replies.append(("eom", outcome.final))
        return await _finish(client, outcome, proxy)
    finally:
        await client.close()


async def _finish(client: MilterClient, outcome: Outcome, proxy: SpamdRecorder) -> Outcome:
    await client.quit()
    await client.at_eof(10.0)  # the filter has finished the connection, spamd included
    outcome.spamd = [normalise_spamd_request(r) for r in (e.request for e in proxy.take()) if r]
    return outcome
