"""SpamAssassin's own rewrite (spamd PROCESS) as milter edits.

With header-style=spamassassin, spamd-command=PROCESS and +spamd-rewrite-body, the message is
delivered as spamd returned it, as `spamc` would deliver it: SpamAssassin's headers where it
put them and, with report_safe, its new body. The MTA keeps the message and takes edits, so the
header section the MTA holds is turned into SpamAssassin's with the placements both MTAs
honour exactly (see rewrite_edits).

Two of the fields spamd saw are ours, not the message's: the synthetic Return-Path and
Received in front (see transaction.message_for_spamd). They are left out of the target; the
synthetic Received marks where the MTA's own Received header stands (the milter never sees
it): SpamAssassin's headers above it are inserted on top.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from spambridge.headers import safe_value
from spambridge.milter.messages import AddHeader, ChangeHeader, Edit, InsertHeader, ReplaceBody

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


def looks_processed(result: bytes) -> bool:
    """Whether a PROCESS reply is a message SpamAssassin rewrote (it has X-Spam-Status):
    anything else is never delivered in place of the real message."""
    fields, _ = split_fields(result)
    return any(name.strip().lower() == b"x-spam-status" for name, _ in fields)


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
    # Only three placements are exact in both MTAs: on top (InsertHeader 0), at the end
    # (AddHeader) and in place (ChangeHeader). Sendmail's header list holds entries it never
    # writes out, so an InsertHeader index in the middle lands somewhere else (its own
    # insheader() says so). So: what SpamAssassin put above the MTA's Received goes on top;
    # below it, the headers are kept, changed in place or deleted up to the first place
    # where a field must be inserted, and from there on deleted and appended in order.
    mark = want.index(_MTA_RECEIVED)
    above, below = want[:mark], want[mark + 1 :]
    work = list(have[1:])
    edits: list[Edit] = []

    def nth(position: int) -> int:
        """1-based among the visible headers of that name, as ChangeHeader counts."""
        name = work[position][0].lower()
        return sum(1 for f in work[: position + 1] if f[0].lower() == name)

    def value(name: bytes, raw: bytes) -> bytes:
        # spamd's bytes: valid fields only (the verdict headers are not checked again at
        # the edge, headers.wire_edits)
        return safe_value(name, raw.replace(b"\r\n", b"\n"))

    in_place: list[tuple[str, int, int, int, int]] = []
    cut_have, cut_want = len(work), len(below)
    matcher = difflib.SequenceMatcher(
        None, [_key(f) for f in work], [_key(f) for f in below], autojunk=False
    )
    for op in matcher.get_opcodes():
        tag, i1, i2, j1, j2 = op
        same_names = i2 - i1 == j2 - j1 and all(
            work[i1 + k][0] == below[j1 + k][0] for k in range(i2 - i1)
        )
        if tag in ("equal", "delete") or (tag == "replace" and same_names):
            in_place.append(op)
            continue
        cut_have, cut_want = i1, j1
        break
    for position in range(len(work) - 1, cut_have - 1, -1):  # the tail goes ...
        edits.append(ChangeHeader(nth(position), work[position][0], b""))
        del work[position]
    for kind, i1, i2, j1, _ in reversed(in_place):  # from the end: positions stay valid
        for k in range(i2 - i1 - 1, -1, -1):
            if kind == "delete":
                edits.append(ChangeHeader(nth(i1 + k), work[i1 + k][0], b""))
                del work[i1 + k]
            elif kind == "replace":
                name, new = below[j1 + k]
                edits.append(ChangeHeader(nth(i1 + k), name, value(name, new)))
    for name, new in below[cut_want:]:  # ... and comes back, in SpamAssassin's order
        edits.append(AddHeader(name, value(name, new)))
    for name, new in reversed(above):
        edits.append(InsertHeader(0, name, value(name, new)))
    replaced = new_body != body
    if replaced:
        edits.append(ReplaceBody(new_body))
    return Rewrite(tuple(edits), replaced)
