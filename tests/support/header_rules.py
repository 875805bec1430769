"""What makes a header field we send valid, from RFC 5322, for the tests that judge our edits.

A field name is ftext, printable US-ASCII except the colon (§3.6.8). The value, as the milter
sends it (with its leading space, folded with a bare LF: the MTA adds the CR), has no NUL and
no CR; every LF is a fold, followed by white space and then visible text on that line (§2.2.3,
§3.2.2: a line of white space only is obsolete syntax and ends the header block for lenient
readers); no line passes 998 octets (§2.1.1).
"""

from __future__ import annotations

import re

MAX_LINE = 998
_FTEXT = re.compile(rb"[!-9;-~]+")


def field_problems(name: bytes, value: bytes) -> list[str]:
    """Why `name: value` is not a valid field as sent to the MTA; [] when it is."""
    problems = []
    if _FTEXT.fullmatch(name) is None:
        problems.append(f"bad header name {name!r}")
    if b"\r" in value or b"\0" in value:
        problems.append("CR or NUL in value")
    lines = (name + b":" + value).split(b"\n")
    for i, line in enumerate(lines):
        if len(line) > MAX_LINE:
            problems.append(f"line {i} has {len(line)} octets")
        if i and line[:1] not in (b" ", b"\t"):
            problems.append(f"line {i} does not start with white space: {line[:40]!r}")
        if i and not line.strip(b" \t"):
            problems.append(f"line {i} has no visible text")
    return problems
