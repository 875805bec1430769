"""The differential cases: option files and messages given to both milters.

Each case names the README "What changes, deliberately" row that explains it when the two
milters are expected to differ (``documented``); every other case must be identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.oracle.harness import Message, local_rcpt, remote_rcpt
from tests.support.realstack import GTUBE

# The option file every set starts from: what the tests need, nothing more.
BASE = """\
# shared by milter-spamc and spambridge
spamd-socket=@SPAMD@
access-db=
"""


def options(*lines: str) -> str:
    return BASE + "".join(line + "\n" for line in lines)


def headers(*extra: tuple[bytes, bytes], subject: bytes | None = b" Budget notes") -> list[
    tuple[bytes, bytes]
]:
    out = [
        (b"From", b" Alice <alice@example.org>"),
        (b"To", b" Bob <bob@example.com>"),
        (b"Date", b" Fri, 04 Dec 2026 10:00:00 +0000"),
        (b"Message-ID", b" <case-1@example.org>"),
    ]
    if subject is not None:
        out.append((b"Subject", subject))
    out.extend(extra)
    return out


HAM_BODY = (
    b"Hello Bob,\r\n\r\nthe budget notes for next week are attached below. Please read them\r\n"
    b"before the meeting on Tuesday and send me your questions.\r\n\r\nThanks,\r\nAlice\r\n"
)
SPAM_BODY = b"This is the GTUBE test message.\r\n\r\n" + GTUBE + b"\r\n"

HAM = Message(headers(), HAM_BODY)
SPAM = Message(headers(subject=b" Buy now"), SPAM_BODY)


@dataclass(frozen=True)
class Case:
    name: str
    options: str
    message: Message
    documented: str | None = None  # README row explaining an expected difference
    tags: Sequence[str] = field(default_factory=tuple)


CASES: tuple[Case, ...] = (
    Case("ham", options(), HAM),
    Case("spam", options(), SPAM),
)
