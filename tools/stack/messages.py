"""Sample messages (ham, GTUBE spam, an awkward one) and the header parsing the tests use
to compare what was sent with what was delivered.
"""

from __future__ import annotations

import re
import uuid
from email.utils import formatdate

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def _message_id() -> str:
    return f"<{uuid.uuid4().hex}@client.example.org>"


HAM_BODY = (
    "Hi Bob,\r\n"
    "\r\n"
    "Thanks for the notes from Tuesday. I went through the budget sheet again and the\r\n"
    "numbers for the second quarter look right to me now that the travel costs are in the\r\n"
    "right column. Could you send the final version to Carol before Friday so she can\r\n"
    "prepare the summary for the board meeting?\r\n"
    "\r\n"
    "A few smaller points:\r\n"
    "\r\n"
    " - the meeting room on the third floor is booked from 10 to 12;\r\n"
    " - Dave will join by phone, his number is in the calendar entry;\r\n"
    " - lunch is at the usual place around the corner.\r\n"
    "\r\n"
    "I also looked at the proposal from the printing company. Their price is a little\r\n"
    "higher than last year, but they can deliver a week earlier, which matters more to us\r\n"
    "this time. If you agree, I will sign the order on Monday.\r\n"
    "\r\n"
    "The garden project at the office is moving along as well. The new benches arrived\r\n"
    "yesterday and the team from facilities will put them up next week, weather\r\n"
    "permitting. Emma asked whether we could add a few more plants near the entrance; I\r\n"
    "told her to collect some ideas and we can talk about it at the next meeting.\r\n"
    "\r\n"
    "Let me know if anything is missing.\r\n"
    "\r\n"
    "Best regards,\r\n"
    "Alice\r\n"
    "\r\n"
    "--\r\n"
    "Alice Example, Finance\r\n"
    "Example Organisation, 1 Main Street, Springfield\r\n"
)


def ham_message(*, extra_headers: bytes = b"", subject: str = "Budget notes") -> bytes:
    """A plain, realistic ham message (~2 KB, CRLF line ends, unique Message-ID)."""
    headers = (
        "From: Alice Example <alice@example.org>\r\n"
        "To: Bob Example <bob@example.test>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        f"Message-ID: {_message_id()}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
    ).encode()
    return headers + extra_headers + b"\r\n" + HAM_BODY.encode()


def gtube_message() -> bytes:
    """SpamAssassin's GTUBE test message: always scores 1000."""
    headers = (
        "From: Spammer <spammer@example.org>\r\n"
        "To: Bob Example <bob@example.test>\r\n"
        "Subject: Test spam mail (GTUBE)\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        f"Message-ID: {_message_id()}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
    ).encode()
    body = (
        b"This is the GTUBE, the\r\n"
        b"\tGeneric\r\n"
        b"\tTest for\r\n"
        b"\tUnsolicited\r\n"
        b"\tBulk\r\n"
        b"\tEmail\r\n"
        b"\r\n" + GTUBE + b"\r\n"
    )
    return headers + b"\r\n" + body


def awkward_message() -> bytes:
    """Ham with a folded header, an 8-bit header value, trailing blanks and long lines."""
    long_header = b"X-Long-Header: " + b" ".join(b"word%03d" % i for i in range(60))
    headers = (
        b"From: Alice Example <alice@example.org>\r\n"
        b"To: Bob Example <bob@example.test>\r\n"
        b"Subject: A folded subject line that goes on for a while\r\n"
        b"\tand continues on a second line  \r\n"
        b"  and a third one\r\n"
        b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"
        b"Message-ID: " + _message_id().encode() + b"\r\n"
        b"X-Eight-Bit: caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e\r\n"
        b"X-Trailing: value with trailing blanks \t \r\n"
        b"X-Tight:no-space-after-colon\r\n" + long_header + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
    )
    body = (
        b"First line with trailing blanks   \r\n"
        b"\r\n"
        b"Caf\xc3\xa9 au lait, na\xc3\xafve r\xc3\xa9sum\xc3\xa9.\r\n"
        + b"long " * 180
        + b"end\r\n"
        + b".a line that starts with a dot\r\n"
        + b"\ttab-indented line\t\r\n"
        + b"\r\n"
        + b"last line\r\n"
    )
    return headers + b"\r\n" + body


# ------------------------------------------------------------------------- message parsing


def split_message(raw: bytes) -> tuple[list[bytes], bytes]:
    """Split raw bytes into header fields (each with its continuation lines and line end)
    and the body (everything after the blank line)."""
    normalised = raw
    separator = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    head, _, body = normalised.partition(separator)
    eol = separator[: len(separator) // 2]
    fields: list[bytes] = []
    for line in (head + eol).splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields, body


def field_name(header_field: bytes) -> bytes:
    return header_field.split(b":", 1)[0].strip().lower()


def header_values(raw: bytes, name: bytes) -> list[bytes]:
    """The values (unfolded, stripped) of every header called ``name``."""
    fields, _ = split_message(raw)
    values = []
    for item in fields:
        if field_name(item) == name.lower():
            value = item.split(b":", 1)[1]
            values.append(re.sub(rb"\r?\n([ \t])", rb"\1", value).strip())
    return values
