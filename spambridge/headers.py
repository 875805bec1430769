"""X-Spam-* header values: formatting, folding, sanitising, forged-header cleanup (the
Subject tag is in subject.py).

Everything here is pure: bytes in, bytes out.

Leading space: the session negotiates SMFIP_HDR_LEADSPC, so a value we send to the MTA is
everything after ``Name:`` and must carry its own leading space. The formatters below return
the value WITHOUT that space; the space is added where the edit is built. (When HDR_LEADSPC
is not negotiated the MTA adds the space itself; send the bare value.)

Line ends: folded values use a bare LF followed by SP or TAB. libmilter and Postfix add the CR
themselves; sending CRLF doubles it.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import re
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from spambridge.log import logger
from spambridge.milter.flags import MAX_PAYLOAD
from spambridge.milter.messages import AddHeader, ChangeHeader, Edit, InsertHeader

# RFC 5322 §2.1.1: a line is at most 998 octets, not counting CRLF.
MAX_LINE = 998
# milter-spamc: 1000 - sizeof("X-Spam-Level") - 5, so "X-Spam-Level: " + level + CRLF fits.
MAX_LEVEL = 982
# Runs of whitespace longer than this are squeezed to one space by `sanitize_value`, so a
# hard-wrapped line can always be broken with some visible text on it.
_MAX_WSP_RUN = 64

REPORT_SEPARATOR = b"\n  | "
# The longest X-Spam-Report (or any header copied from a spamd HEADERS reply) we write, in
# bytes: a real report is a few KB; a longer one is cut at a line boundary and says so.
# Far below one milter packet (64 KiB), which no edit may exceed.
MAX_REPORT = 16 * 1024
# RFC 5322 §3.6.8: a field name is printable ASCII except the colon.
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")

# The headers milter-spamc writes and therefore deletes when they arrive from outside.
MILTER_SPAMC_HEADERS: tuple[bytes, ...] = (
    b"X-Spam-Flag",
    b"X-Spam-Level",
    b"X-Spam-Report",
    b"X-Spam-Status",
)

_WSP = b" \t"
# Byte classes cleaned with bytes.translate rather than regular expressions: about ten
# times cheaper, and a message's headers and report go through them several times.
CONTROL = bytes(range(0x09)) + bytes(range(0x0B, 0x20)) + b"\x7f"  # keeps TAB and LF
_CONTROL_AND_LF = CONTROL + b"\n"
_EIGHT_BIT_TO_QUESTION = bytes(range(0x80)) + b"?" * 0x80  # a translate table
_WSP_RUN = re.compile(rb"[ \t]{%d,}" % (_MAX_WSP_RUN + 1))
_SPACE_RUN = b" " * (_MAX_WSP_RUN + 1)


# ---------------------------------------------------------------- milter-spamc values


def format_status(is_spam: bool, score: float, threshold: float) -> bytes:
    """milter-spamc's X-Spam-Status: b"YES, hits=1000.00 required=5.00"."""
    return b"%s, hits=%.2f required=%.2f" % (format_flag(is_spam), score, threshold)


def format_flag(is_spam: bool) -> bytes:
    """X-Spam-Flag: b"YES" or b"NO"."""
    return b"YES" if is_spam else b"NO"


def format_level(score: float, char: bytes = b"x") -> bytes:
    """X-Spam-Level: the first byte of `char` repeated int(score) times, 0..982 times.

    milter-spamc caps only scores >= 1000; we cap every score at 982 so the header line
    never passes 1000 octets. An empty `char` or a NaN score gives b"".
    """
    if not char or math.isnan(score) or score < 1:
        return b""
    count = MAX_LEVEL if score >= MAX_LEVEL else int(score)
    return char[:1] * count


def format_report(report: bytes) -> bytes:
    """milter-spamc's X-Spam-Report from a spamd REPORT body.

    Each report line (CRLF or LF separated) loses its trailing whitespace, and the lines are
    joined with LF + "  | ". Blank lines inside the report become "  | " lines, so the
    header never ends early. As milter-spamc, a report that ends with a newline ends with a
    "  | " line; other blank lines at the start and at the end are dropped: the value starts
    with the first non-blank line (milter-spamc would start with a bare newline). An empty
    report gives b"": add no header then.

    Control bytes, 8-bit bytes and long blank runs are cleaned as in `sanitize_value`; a
    line longer than the 998-octet limit (the first counted with "X-Spam-Report: ") is
    hard-wrapped onto a continuation line that starts with whitespace.
    """
    # Squeeze long blank runs as sanitize_value does: hard-wrapping a line that is mostly
    # whitespace would otherwise leave a continuation line with no visible text.
    # The cleaning is done on the whole report at once (none of the patterns spans a line
    # break): three passes per report instead of three per line.
    text = _squeeze_blank_runs(_clean_bytes(report.replace(b"\r\n", b"\n"), keep_lf=True))
    lines = [line.rstrip() for line in text.split(b"\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        return b""
    # The first line counts "X-Spam-Report: "; every later one starts with "  | ".
    out = _hard_wrap(lines[0].lstrip(), MAX_LINE - len(b"X-Spam-Report: "))
    for line in lines[1:]:
        out.extend(_hard_wrap(REPORT_SEPARATOR[1:] + line, MAX_LINE))
    if report.endswith(b"\n"):
        out.append(REPORT_SEPARATOR[1:])  # milter-spamc's closing bar after a final newline
    return cap_lines(b"\n".join(out), MAX_REPORT, REPORT_SEPARATOR[1:])


def cap_lines(value: bytes, limit: int, indent: bytes = b"\t") -> bytes:
    """`value` (folded with LF) cut to at most `limit` bytes at a line boundary, with a last
    continuation line saying it was truncated. Values within the limit are unchanged."""
    if len(value) <= limit:
        return value
    marker = indent + b"[truncated: %d of %d bytes shown]" % (limit, len(value))
    cut = value.rfind(b"\n", 0, limit - len(marker))
    if cut <= 0:  # no line boundary early enough (lines are at most 998 octets)
        cut = max(0, limit - len(marker) - 1)
    return value[:cut] + b"\n" + marker


def fits_one_packet(name: bytes, value: bytes) -> bool:
    """Whether a header edit with this name and value fits one milter packet (with room for
    a ChangeHeader index and a leading space)."""
    return len(name) + len(value) + 4 + 2 + 1 <= MAX_PAYLOAD


_LAST_DATE: list[tuple[tuple[object, ...], str]] = []


def format_date(when: datetime) -> str:
    """email.utils.format_datetime, remembered for the last second (headers and Received
    of one message, and every message within that second, share it)."""
    # The fields the text shows, as the key: a fifth of the cost of when.replace().
    key = (when.second, when.minute, when.hour, when.day, when.month, when.year, when.utcoffset())
    if _LAST_DATE and _LAST_DATE[0][0] == key:
        return _LAST_DATE[0][1]
    text = email.utils.format_datetime(when)
    _LAST_DATE[:] = [(key, text)]
    return text


def format_scanned_by(
    version: str,
    if_name: bytes | None,
    if_addr: bytes | None,
    when: datetime,
    *,
    product: str = "spambridge",
) -> bytes:
    """X-Scanned-By: b"spambridge/0.1.0 (mx.example.com [192.0.2.1]); <RFC 5322 date>".

    Missing (None or empty) macros become "undefined" and "0.0.0.0", as in milter-spamc.
    A naive `when` is taken as local time.
    """
    if when.tzinfo is None:
        when = when.astimezone()
    name = one_line(if_name or b"") or b"undefined"
    addr = one_line(if_addr or b"") or b"0.0.0.0"
    date = format_date(when).encode("ascii")
    token = f"{product}/{version}".encode("ascii", "replace")
    return b"%s (%s [%s]); %s" % (token, name, addr, date)


# ---------------------------------------------------------------- sanitising and folding


def sanitize_value(value: bytes, name_len: int, *, keep_8bit: bool = False) -> bytes:
    """Make an untrusted value safe to send as a header value (without the leading space).

    - CR, NUL and every other control byte except TAB and LF are removed (a CRLF pair
      counts as one line break).
    - A line break becomes folding: LF followed by SP or TAB (one space is added if the
      line did not start with whitespace). Continuation lines with no visible text are
      dropped, and trailing whitespace on each line is removed.
    - Leading whitespace of the value is removed; the edit adds exactly one.
    - Runs of more than 64 spaces/tabs are squeezed to one space.
    - No physical line exceeds 998 octets; the first line counts `name_len` + 2 for
      "Name: ". Longer lines are broken before whitespace when possible, otherwise hard
      broken with an added space.
    - 8-bit bytes become "?" (RFC 5322 headers are 7-bit; RFC 2047 encoded words are
      ASCII and pass unchanged) unless `keep_8bit` is set, e.g. for a Subject that the
      sender already wrote in raw UTF-8.
    """
    lines = [_clean_bytes(line, keep_8bit) for line in _split_lines(value)]
    lines = [_squeeze_blank_runs(line).rstrip(_WSP) for line in lines]
    first = lines[0].lstrip(_WSP) if lines else b""
    rest = [line if line[:1] in (b" ", b"\t") else b" " + line for line in lines[1:] if line]
    first_limit = MAX_LINE - name_len - 2
    if first_limit < 1:  # an absurd name: put the whole value on continuation lines
        rest = [b" " + first, *rest] if first else rest
        first = b""
        first_limit = 1
    out = _hard_wrap(first, first_limit)
    for line in rest:
        out.extend(_hard_wrap(line, MAX_LINE))
    return b"\n".join(out)


def fold(name: bytes, value: bytes, width: int = 78) -> bytes:
    """Soft-fold a generated value with LF + TAB, breaking after spaces and commas.

    The first line counts `name` + ": ". A break at a space replaces that space; a break
    after a comma keeps the comma. Existing folding is undone first. A single word longer
    than `width` stays whole, but no line ever passes 998 octets.
    """
    flat = re.sub(rb"\r?\n[ \t]*", b" ", value).strip(_WSP)
    pieces = re.findall(rb"[^ ,]+,? ?|,+ ?| +", flat)
    lines: list[bytes] = []
    current = b""
    used = len(name) + 2
    for piece in pieces:
        if current and used + len(piece.rstrip(b" ")) > width:
            lines.append(current.rstrip(b" "))
            current = b""
            used = 1  # the TAB
        if not current:
            piece = piece.lstrip(b" ")
            if not piece:
                continue
        current += piece
        used += len(piece)
    lines.append(current.rstrip(b" "))
    out: list[bytes] = _hard_wrap(lines[0], MAX_LINE - len(name) - 2)
    for line in lines[1:]:
        out.extend(_hard_wrap(b"\t" + line, MAX_LINE))
    return b"\n".join(out)


# ---------------------------------------------------------------- what we send

_HEADER_EDITS = frozenset([AddHeader, InsertHeader, ChangeHeader])
# The names we write ourselves: valid, so not matched again for every message.
_KNOWN_NAMES = frozenset(
    [b"Subject", b"X-Scanned-By", b"X-Original-Recipient", *MILTER_SPAMC_HEADERS]
)
# Headers whose AddHeader values the formatters here build (format_*, sanitize_value,
# spamassassin_headers; rewrite.py passes spamd's through safe_value): valid by construction,
# each under a property test (tests/robustness/test_security.py), so not scanned again for
# every message. A full scan of an X-Spam-Report costs more than 2 % of a message's
# instructions (callgrind).
_FORMATTED = frozenset([b"X-Scanned-By", b"X-Original-Recipient", *MILTER_SPAMC_HEADERS])
# A value as we send it (leading space included, folded with bare LF) that needs no work:
# no NUL, no CR, and every LF followed by white space and then visible text on that line.
_WIRE_VALUE = re.compile(rb"[^\0\r\n]*(?:\n[ \t]+[^\0\r\n \t][^\0\r\n]*)*")


def wire_edits(edits: Sequence[Edit]) -> tuple[tuple[Edit, ...], tuple[bytes, ...]]:
    """The edits as they may go to the MTA, and the names of the header edits dropped.

    The one rule for every header field we send, whoever wrote its name and value (we,
    spamd, or the MTA itself: a Subject we tag, a header we delete or rewrite), so that no
    edit can inject a header or end the header block (RFC 5322):

    - a name that is not ftext (printable US-ASCII except the colon, at least one, §3.6.8)
      drops the edit: no other name would address the field the MTA holds;
    - in the value NUL bytes are removed; CRLF becomes LF (the MTA adds the CR); a bare CR
      becomes a space;
    - an LF followed by white space and visible text is a fold and stays; an LF followed
      by anything else is unfolded to a space, and a continuation line with no visible
      text is dropped (§3.2.2: a line of white space only is obsolete syntax that lenient
      readers take for the end of the header block);
    - no line passes 998 octets (§2.1.1), the first counted with "Name:"; a longer one is
      broken before white space, or hard broken with a space added.

    Every name is checked here, and every value that can carry the MTA's or spamd's bytes:
    each ChangeHeader and InsertHeader, each AddHeader but the verdict headers the
    formatters above build (_FORMATTED). Valid edits come back as they were (the same
    tuple).
    """
    for edit in edits:  # inlined: this loop runs for every message
        kind = type(edit)
        if kind not in _HEADER_EDITS or (kind is AddHeader and edit.name in _FORMATTED):  # type: ignore[union-attr]
            continue
        if not _valid_edit(edit):  # type: ignore[arg-type]
            break
    else:
        return tuple(edits), ()  # the usual case: nothing to do, nothing allocated
    kept: list[Edit] = []
    dropped: list[bytes] = []
    for edit in edits:
        if isinstance(edit, AddHeader | InsertHeader | ChangeHeader):
            if not _valid_name(edit.name):
                dropped.append(edit.name)
                continue
            if not _valid_edit(edit):
                edit = dataclasses.replace(edit, value=wire_value(edit.name, edit.value))
        kept.append(edit)
    return tuple(kept), tuple(dropped)


def safe_value(name: bytes, value: bytes) -> bytes:
    """`value` as it is when it passes the rule of `wire_edits`, else made to pass it."""
    return value if valid_value(name, value) else wire_value(name, value)


def _valid_edit(edit: AddHeader | InsertHeader | ChangeHeader) -> bool:
    name = edit.name
    if name in _FORMATTED:
        return type(edit) is AddHeader or valid_value(name, edit.value)
    return _valid_name(name) and valid_value(name, edit.value)


def _valid_name(name: bytes) -> bool:
    return name in _KNOWN_NAMES or (
        _FIELD_NAME.fullmatch(name) is not None and len(name) <= MAX_LINE - 2
    )


def valid_value(name: bytes, value: bytes) -> bool:
    """Whether `value` passes the rule of `wire_edits` as it is.

    Byte searches first (each a C loop): a value without CR or NUL whose every LF is
    followed by SP or TAB, with no white space before an LF and visible text on its last
    line, is folded right. Anything else is left to the exact regular expression.
    """
    if value.find(b"\r") >= 0 or value.find(b"\0") >= 0:
        return False
    breaks = value.count(b"\n")
    if (
        breaks
        and (
            breaks != value.count(b"\n ") + value.count(b"\n\t")
            or value.find(b" \n") >= 0
            or value.find(b"\t\n") >= 0
            or not value[value.rfind(b"\n") + 1 :].strip(_WSP)
        )
        and _WIRE_VALUE.fullmatch(value) is None
    ):
        return False
    return len(name) + 1 + len(value) <= MAX_LINE or _lines_fit(name, value)


def wire_value(name: bytes, value: bytes) -> bytes:
    """`value` (leading space included) made valid by the rule of `wire_edits`."""
    text = value.replace(b"\0", b"").replace(b"\r\n", b"\n").replace(b"\r", b" ")
    lines = text.split(b"\n")
    out = [lines[0]]
    for line in lines[1:]:
        if not line.strip(_WSP):
            continue  # no visible text: not a line we may send
        if line[:1] in (b" ", b"\t"):
            out.append(line)  # a fold
        else:
            out[-1] += b" " + line  # a line break that is no fold: unfolded
    if len(name) + 1 + len(text) <= MAX_LINE:
        return b"\n".join(out)
    # Trailing white space would be all a hard-broken piece holds: gone first.
    wrapped = _hard_wrap(_squeeze_blank_runs(out[0]).rstrip(_WSP), MAX_LINE - len(name) - 1)
    for line in out[1:]:
        wrapped.extend(_hard_wrap(_squeeze_blank_runs(line).rstrip(_WSP), MAX_LINE))
    return b"\n".join(wrapped)


def _lines_fit(name: bytes, value: bytes) -> bool:
    first, _, rest = value.partition(b"\n")
    if len(name) + 1 + len(first) > MAX_LINE:
        return False
    return not rest or max(map(len, rest.split(b"\n"))) <= MAX_LINE


# ---------------------------------------------------------------- forged headers


def forged_header_deletions(
    headers: Sequence[tuple[bytes, bytes]],
    names: Collection[bytes] = (),
    *,
    prefixes: Iterable[bytes] = (),
    exempt_prefixes: Iterable[bytes] = (),
) -> list[ChangeHeader]:
    """ChangeHeader edits that delete every incoming header we are about to write ourselves.

    A header is deleted when its name equals one of `names` or starts with one of
    `prefixes`, and does not start with one of `exempt_prefixes`; all comparisons ignore
    letter case. header-style=spamassassin uses prefixes=(b"X-Spam-",),
    exempt_prefixes=(b"X-Spam-Prev-",).

    The index is 1-based among headers of the same name, counted case-insensitively, as
    the MTAs do (Sendmail compares names with sm_strcasecmp, Postfix with strcasecmp).
    Deletions run from the last occurrence to the first so earlier indexes stay valid.
    Unlike milter-spamc, which removes only the first instance, every instance goes.
    """
    wanted = {name.lower() for name in names}
    starts = tuple(prefix.lower() for prefix in prefixes)
    exempt = tuple(prefix.lower() for prefix in exempt_prefixes)
    seen: dict[bytes, int] = {}
    found: list[ChangeHeader] = []
    for name, _value in headers:
        key = name.lower()
        seen[key] = seen.get(key, 0) + 1
        if (key in wanted or (starts and key.startswith(starts))) and not (
            exempt and key.startswith(exempt)
        ):
            found.append(ChangeHeader(seen[key], name, b""))
    found.reverse()
    return found


# ---------------------------------------------------------------- spamd HEADERS reply


def spamassassin_headers(header_block: bytes) -> list[tuple[bytes, bytes]]:
    """The X-Spam-* fields (not X-Spam-Prev-*) of a spamd HEADERS reply, ready to add.

    SpamAssassin already folds with LF + TAB (fold_headers 1); that line structure is kept
    (the X-Spam-Report lines stay readable), line ends become bare LF, and the value is
    sanitised. A one-line value longer than 78 columns (fold_headers 0) is refolded with
    `fold`. Values come without the leading space.
    """
    result: list[tuple[bytes, bytes]] = []
    for name, raw in _parse_fields(header_block):
        lower = name.lower()
        if not lower.startswith(b"x-spam-") or lower.startswith(b"x-spam-prev-"):
            continue
        if _FIELD_NAME.fullmatch(name) is None or len(name) > MAX_LINE - 2:
            logger.warning("spamd HEADERS reply: dropped a header with a bad name %r", name[:80])
            continue
        value = raw
        if b"\n" not in raw and len(name) + 2 + len(raw.strip()) > 78:
            value = fold(name, raw.strip())
        result.append((name, cap_lines(sanitize_value(value, len(name)), MAX_REPORT)))
    return result


def spamassassin_subject(header_block: bytes) -> bytes | None:
    """The rewritten Subject when SpamAssassin rewrote it (X-Spam-Prev-Subject is present).

    8-bit bytes are kept (a raw UTF-8 subject stays as it was); controls are removed and
    folding made safe. None when the subject was not rewritten.
    """
    fields = _parse_fields(header_block)
    if not any(name.lower() == b"x-spam-prev-subject" for name, _ in fields):
        return None
    for name, raw in fields:
        if name.lower() == b"subject":
            subject = sanitize_value(raw, len(name), keep_8bit=True)
            return subject if fits_one_packet(b"Subject", subject) else None
    return None


# ---------------------------------------------------------------- helpers


def _split_lines(data: bytes) -> list[bytes]:
    """Split at CRLF or LF; a final line break does not make an extra empty line."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    return lines


def _clean_bytes(line: bytes, keep_8bit: bool = False, *, keep_lf: bool = False) -> bytes:
    """Remove control bytes except TAB (and LF with keep_lf); 8-bit to '?'."""
    delete = CONTROL if keep_lf else _CONTROL_AND_LF
    return line.translate(None if keep_8bit else _EIGHT_BIT_TO_QUESTION, delete)


def _squeeze_blank_runs(text: bytes) -> bytes:
    """Runs of more than _MAX_WSP_RUN spaces/tabs become one space. Such a run needs a tab
    or that many spaces in a row: without either, the regular expression is not run."""
    if text.find(b"\t") < 0 and text.find(_SPACE_RUN) < 0:  # find: see milter.codec._cstr
        return text
    return _WSP_RUN.sub(b" ", text)


def one_line(value: bytes, keep_8bit: bool = False) -> bytes:
    return _clean_bytes(value.replace(b"\n", b" "), keep_8bit).strip()


def _hard_wrap(line: bytes, limit: int) -> list[bytes]:
    """Break `line` into pieces of at most `limit` (first) and MAX_LINE (later) octets.

    Later pieces start with whitespace. We break before a space or tab that has visible
    text before it; failing that, we cut at the limit and start the next piece with a
    space.
    """
    out: list[bytes] = []
    limit = limit if limit > 1 else 1
    while len(line) > limit:
        cut = _break_point(line, limit)
        if cut > 0:
            out.append(line[:cut])
            line = line[cut:]
        else:
            out.append(line[:limit])
            line = b" " + line[limit:]
        limit = MAX_LINE
    out.append(line)
    return out


def _break_point(line: bytes, limit: int) -> int:
    """The last index <= limit where a whitespace run starts between visible text, or 0.

    Breaking at the start of the run leaves no trailing whitespace on the earlier line.
    """
    first_visible = len(line) - len(line.lstrip(_WSP))
    last_visible = len(line.rstrip(_WSP)) - 1
    index = min(limit, last_visible - 1)
    while index > first_visible:
        if line[index] in _WSP and line[index - 1] not in _WSP:
            return index
        index -= 1
    return 0


def _parse_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """(name, value) pairs of a header block; values keep their folding as LF, no CR.

    Parsing stops at the first empty line. Lines without a colon are skipped.
    """
    fields: list[tuple[bytes, bytes]] = []
    for line in _split_lines(block):
        if not line:
            break
        if line[:1] in (b" ", b"\t"):
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, value + b"\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if colon and name.strip(_WSP):
            fields.append((name.rstrip(_WSP), value))
    return fields
