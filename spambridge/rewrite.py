"""SpamAssassin's own rewrite (spamd PROCESS) as milter edits.

With header-style=spamassassin, spamd-command=PROCESS and +spamd-rewrite-body, the message is
delivered as spamd returned it, as `spamc` would deliver it: SpamAssassin's headers where it
put them and, with report_safe, its new body. The MTA keeps the message and takes edits, so the
header section the MTA holds is turned into SpamAssassin's by a sequence diff: unchanged
fields stay, changed values become ChangeHeader, removed fields are deleted, new fields are
inserted at their place.

Two of the fields spamd saw are ours, not the message's: the synthetic Return-Path and
Received in front (see transaction.message_for_spamd). They are left out of the target; the
synthetic Received marks where the MTA's own Received header stands, which both MTAs count
as index 0 of InsertHeader (it is invisible to the milter otherwise).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from spambridge.milter.messages import ChangeHeader, Edit, InsertHeader, ReplaceBody

# Stands for the MTA's own Received header in the lists below (never sent).
_MTA_RECEIVED = (b"\0mta-received", b"")


@dataclass(frozen=True, slots=True)
class Rewrite:
    edits: tuple[Edit, ...]
    body_replaced: bool


def split_fields(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(name, value) header fields of a message and its body. A value is everything after
    the colon with folding kept as LF (no CR), as the MTA hands values to the milter."""
    eol = b"\r\n" if message.find(b"\r\n") >= 0 else b"\n"
    if message.startswith(eol):
        return [], message[len(eol) :]
    head, sep, body = message.partition(eol + eol)
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(eol):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\n" + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields, body if sep else b""


def _key(field: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    # Exact names (SpamAssassin's report_safe writes Message-Id for Message-ID) and values
    # up to the one space after the colon, which HDR_LEADSPC may or may not leave in.
    name, value = field
    value = value.replace(b"\r\n", b"\n")
    return name, value[1:] if value[:1] == b" " else value


def _is_synthetic(field: tuple[bytes, bytes], sender: bytes) -> str | None:
    name, value = field
    lower = name.lower()
    if lower == b"return-path" and value.strip() == sender:
        return "return-path"
    if lower == b"received" and value.find(b"(spambridge) with ESMTP") >= 0:
        return "received"
    return None


def target_fields(
    result: Sequence[tuple[bytes, bytes]], sender: bytes
) -> list[tuple[bytes, bytes]]:
    """spamd's header fields without our synthetic two; the synthetic Received becomes the
    marker for the MTA's own Received header."""
    out: list[tuple[bytes, bytes]] = []
    seen: set[str] = set()
    for field in result:
        kind = _is_synthetic(field, sender)
        if kind is not None and kind not in seen:
            seen.add(kind)
            if kind == "received":
                out.append(_MTA_RECEIVED)
            continue
        out.append(field)
    return out


def rewrite_edits(
    headers: Sequence[tuple[bytes, bytes]],
    result: bytes,
    *,
    sender: bytes,
    body: bytes,
    leading_space: bool,
) -> Rewrite:
    """The edits that turn the message the MTA holds (headers, body) into spamd's `result`."""
    sender = sender if sender.startswith(b"<") else b"<" + sender + b">"
    fields, new_body = split_fields(result)
    want = target_fields(fields, sender)
    have = [_MTA_RECEIVED, *headers]
    if _MTA_RECEIVED not in want:
        # SpamAssassin moved the trace into the report_safe attachment; the MTA's own
        # Received cannot be removed, so it stays on top.
        want.insert(0, _MTA_RECEIVED)
    # The MTA's Received cannot move: what SpamAssassin put above it is inserted on top, and
    # the rest is a diff of the headers the milter saw against what follows it.
    mark = want.index(_MTA_RECEIVED)
    above, below = want[:mark], want[mark + 1 :]
    work = list(have)
    edits: list[Edit] = []

    def nth(position: int) -> int:
        """1-based among the visible headers of that name, as ChangeHeader counts."""
        name = work[position][0].lower()
        return sum(1 for f in work[1 : position + 1] if f[0].lower() == name)

    def value(raw: bytes) -> bytes:
        text = raw.replace(b"\r\n", b"\n")
        return text if leading_space or text[:1] != b" " else text[1:]

    def insert(at: int, fields: Sequence[tuple[bytes, bytes]]) -> None:
        # InsertHeader counts the MTA's own Received as index 0, like `work`
        for k, field in enumerate(fields):
            edits.append(InsertHeader(at + k, field[0], value(field[1])))
            work.insert(at + k, field)

    matcher = difflib.SequenceMatcher(
        None, [_key(f) for f in have[1:]], [_key(f) for f in below], autojunk=False
    )
    # From the end backwards: an edit never moves the positions of the ones still to come.
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag == "equal":
            continue
        i1, i2 = i1 + 1, i2 + 1  # positions in `work`, after the MTA's Received
        new = below[j1:j2]
        if (
            tag == "replace"
            and i2 - i1 == j2 - j1
            and all(work[i1 + k][0] == new[k][0] for k in range(i2 - i1))
        ):
            for k, field in enumerate(new):  # same names in place: change the values
                edits.append(ChangeHeader(nth(i1 + k), field[0], value(field[1])))
                work[i1 + k] = field
            continue
        for position in range(i2 - 1, i1 - 1, -1):
            edits.append(ChangeHeader(nth(position), work[position][0], b""))
            del work[position]
        insert(i1, new)
    insert(0, above)
    replaced = new_body != body
    if replaced:
        edits.append(ReplaceBody(new_body))
    return Rewrite(tuple(edits), replaced)
