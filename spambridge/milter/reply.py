"""Build SMTP reply texts for the ReplyCode reply, as libmilter's smfi_setmlreply does."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from spambridge.milter.messages import ReplyCode

__all__ = ["MAX_LINES", "MAX_LINE_LENGTH", "reply_matches", "smtp_reply"]

MAX_LINES = 32  # libmilter MAXREPLIES
MAX_LINE_LENGTH = 980  # libmilter MAXREPLYLEN, per line of text

_CODE = re.compile(r"[45][0-9][0-9]")
_ENHANCED = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
_FORBIDDEN = ("\r", "\n", "\0")


def smtp_reply(code: str, enhanced: str | None, lines: Sequence[str]) -> ReplyCode:
    """A ReplyCode carrying `lines` as one (possibly multi-line) SMTP reply.

    Every `%` is doubled because Sendmail uses the text as a format string. Raises ValueError
    naming the rule broken: code not 4xx/5xx, a malformed enhanced code or one of another class,
    more than 32 lines, a line over 980 characters, CR/LF/NUL or non-ASCII text in a line.
    """
    if not _CODE.fullmatch(code):
        raise ValueError(f"reply code {code!r} must be three digits starting with 4 or 5")
    if enhanced is not None:
        if not _ENHANCED.fullmatch(enhanced):
            raise ValueError(f"enhanced status code {enhanced!r} must look like 5.7.1")
        if enhanced[0] != code[0]:
            raise ValueError(
                f"enhanced status code {enhanced!r} must be of the same class as {code!r}"
            )
    if isinstance(lines, str):
        raise ValueError("reply lines must be a sequence of strings, not one string")
    texts = list(lines) or [""]
    if len(texts) > MAX_LINES:
        raise ValueError(f"reply has {len(texts)} lines; at most {MAX_LINES} are allowed")
    out: list[str] = []
    for number, text in enumerate(texts, 1):
        if len(text) > MAX_LINE_LENGTH:
            raise ValueError(
                f"reply line {number} has {len(text)} characters; at most {MAX_LINE_LENGTH}"
            )
        if any(c in text for c in _FORBIDDEN):
            raise ValueError(f"reply line {number} contains CR, LF or NUL")
        if not text.isascii():
            raise ValueError(f"reply line {number} contains non-ASCII characters")
        separator = " " if number == len(texts) else "-"
        parts = [p for p in (enhanced, text.replace("%", "%%")) if p]
        out.append(code + separator + " ".join(parts))
    return ReplyCode("\r\n".join(out).encode("ascii"))


def reply_matches(reply: ReplyCode, expected_class: Literal["4", "5"]) -> bool:
    """Whether the reply text is of the given class (4xx temporary, 5xx permanent)."""
    return reply.text[:1] == expected_class.encode("ascii")
