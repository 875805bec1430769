"""The header section as the recipient will see it, after the MTA applied a Decision's edits.

`spambridge scan` prints this instead of the raw edits. It follows what both MTAs do with
the milter edits: AddHeader appends, InsertHeader inserts at an index, ChangeHeader replaces
the n-th header of that name (counted case-insensitively) or deletes it when the value is
empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from spambridge.milter.messages import AddHeader, ChangeHeader, Edit, InsertHeader


def apply_header_edits(
    headers: Sequence[tuple[bytes, bytes]], edits: Iterable[Edit]
) -> list[tuple[bytes, bytes]]:
    """(name, value) pairs after the edits; values keep their leading space and folding."""
    out = list(headers)
    for edit in edits:
        if isinstance(edit, AddHeader):
            out.append((edit.name, edit.value))
        elif isinstance(edit, InsertHeader):
            out.insert(min(edit.index, len(out)), (edit.name, edit.value))
        elif isinstance(edit, ChangeHeader):
            seen = 0
            for i, (name, _) in enumerate(out):
                if name.lower() == edit.name.lower():
                    seen += 1
                    if seen == edit.index:
                        if edit.value:
                            out[i] = (name, edit.value)
                        else:
                            del out[i]
                        break
            else:
                if edit.value:  # libmilter: changing a missing header adds it
                    out.append((edit.name, edit.value))
    return out


def render_headers(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """`Name: value` lines, folded continuation lines as they are in mail (no CR)."""
    lines = []
    for name, value in headers:
        text = value.replace(b"\r\n", b"\n").decode("utf-8", "replace")
        sep = "" if text[:1] in (" ", "\t") else " "
        lines.append(f"{name.decode('ascii', 'replace')}:{sep}{text}")
    return "\n".join(lines)
