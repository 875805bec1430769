"""The Subject tag: milter-spamc's `subject-tag` before the subject (never twice, RFC 2047
safe: a non-ASCII tag becomes encoded words, a tag before an encoded word stays a separate
token) and the `%s`/`%d`/`%f` template form. Pure: bytes in, bytes out."""

from __future__ import annotations

import base64
import binascii
import re

from spambridge.headers import CONTROL, MAX_LINE, fits_one_packet, one_line

# RFC 2047 §2: an encoded word is at most 75 characters.
MAX_ENCODED_WORD = 75
_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")


def tag_subject(subject: bytes | None, tag: bytes, *, detail: bytes | None = None) -> bytes | None:
    """The tagged Subject value, or None when nothing should change.

    Result: "<tag> <subject>" or "<tag> <detail> <subject>" (detail is e.g.
    b"(1000.00/5.00)" for subject-tag-score). Rules:

    - An empty tag disables tagging (None). Control bytes in the tag and detail are
      removed first.
    - A subject that already starts with the tag (case-insensitive, after leading
      whitespace; also when the tag is the start of a leading RFC 2047 encoded word) is
      not tagged twice (None), as milter-spamc does.
    - A missing subject gives just the tag (and detail), with no leading space.
    - A subject value that begins with whitespace (HDR_LEADSPC) keeps exactly one leading
      space; one that does not gets none.
    - The tag is a separate token: it is only ever prepended, followed by a space, so an
      encoded word in the subject is never touched (RFC 2047 §5).
    - A tag with 8-bit bytes is sent as its own UTF-8 encoded word. When the next token is
      also an encoded word the separating space goes inside our encoded word, because
      readers drop whitespace between adjacent encoded words (RFC 2047 §6.2).
    - CRLF folding inside the subject becomes LF folding (the MTA adds the CR).
    - If prefixing would push the first line past 998 octets, the tag goes on its own line
      and the subject follows as a continuation.
    - A tagged Subject that would not fit one milter packet is not tagged (None).
    """
    tag = one_line(tag, keep_8bit=True)
    if not tag:
        return None
    prefix = tag if detail is None else tag + b" " + one_line(detail, keep_8bit=True)
    if subject is None:
        return _encode_tag(prefix, next_is_encoded_word=False).rstrip(b" ")
    lead = b" " if subject[:1] in (b" ", b"\t", b"\r", b"\n") else b""
    body = subject.lstrip(b" \t\r\n").replace(b"\r\n", b"\n")  # MTA folding, as LF
    if _starts_with_tag(body, tag):
        return None
    next_is_encoded = _ENCODED_WORD.match(body) is not None
    token = _encode_tag(prefix, next_is_encoded_word=next_is_encoded)
    first_line = body.split(b"\n", 1)[0]
    if len(b"Subject: ") + len(token) + len(first_line) > MAX_LINE:
        tagged = lead + token.rstrip(b" ") + b"\n " + body
    else:
        tagged = lead + token + body
    # A Subject too long to tag within one milter packet stays as it is.
    return tagged if fits_one_packet(b"Subject", tagged) else None


# subject-tag placeholders (rspamd's subject template): %s the subject, %d the score as a
# whole number, %f / %.Nf the score with decimals, %% a percent sign.
_PLACEHOLDER = re.compile(rb"%(?:s|d|%|(?:\.(\d))?f)")


def is_subject_template(tag: str) -> bool:
    """Whether subject-tag is a template rather than a plain prefix."""
    return "%" in tag and _PLACEHOLDER.search(tag.encode()) is not None


def template_subject(subject: bytes | None, template: bytes, score: float) -> bytes | None:
    """The Subject value from a subject-tag template, or None when nothing should change.

    The text before %s is prepended and the text after it appended, each as its own token
    (an encoded word when it is not plain ASCII), so the original subject, encoded words
    and folding included, is never re-encoded (RFC 2047 §5). A template without %s is a
    prefix. The subject is left alone when it already starts with the template's literal
    text before its first placeholder (or, for a template starting with %s, already ends
    with the text after its last placeholder).
    """
    template = one_line(template, keep_8bit=True)
    head, has_subject, tail = template.partition(b"%s")
    if not has_subject:
        head, tail = template + b" ", b""

    def expand(part: bytes) -> bytes:
        def one(m: re.Match[bytes]) -> bytes:
            if m[0] == b"%%":
                return b"%"
            if m[0] == b"%d":
                return b"%d" % int(score)
            if m[0] == b"%s":
                return b""  # a second %s: the subject appears once
            return b"%.*f" % (int(m[1] or 6), score)

        return _PLACEHOLDER.sub(one, part)

    prefix, suffix = expand(head), expand(tail)
    body = b""
    lead = b""
    if subject is not None:
        lead = b" " if subject[:1] in (b" ", b"\t", b"\r", b"\n") else b""
        body = subject.lstrip(b" \t\r\n").replace(b"\r\n", b"\n").rstrip(b" \t\n")
        literal_head = _PLACEHOLDER.split(head, 1)[0].strip()
        literal_tail = _PLACEHOLDER.split(tail)[-1].strip()
        if not literal_head and literal_tail and body.lower().endswith(literal_tail.lower()):
            return None
        if literal_head and _starts_with_tag(body, literal_head):
            return None
    if not body:
        whole = (prefix + suffix).strip()
        return _encode_tag(whole, next_is_encoded_word=False).rstrip(b" ") if whole else None
    out = body
    if prefix.strip():
        token = _encode_tag(
            prefix.rstrip(), next_is_encoded_word=_ENCODED_WORD.match(body) is not None
        )
        if not prefix[-1:].isspace() and token.isascii() and token == prefix.rstrip() + b" ":
            token = token[:-1]  # "[SPAM]%s": no space was asked for
        first_line = body.split(b"\n", 1)[0]
        if len(b"Subject: ") + len(token) + len(first_line) > MAX_LINE:
            token = token.rstrip(b" ") + b"\n "
        out = token + out
    if suffix.strip():
        last = out.rsplit(b"\n", 1)[-1]
        ends_encoded = re.search(rb"\?=$", last) is not None
        gap = suffix[: len(suffix) - len(suffix.lstrip())]
        text = suffix.strip()
        visible = text.translate(None, CONTROL)
        if text.isascii() and len(visible) == len(text):
            token = (gap or (b" " if ends_encoded else b"")) + text
        else:
            # an encoded word must be set off by whitespace; between two encoded words that
            # whitespace is dropped by readers, so a wanted gap goes inside ours
            inner = (gap if ends_encoded else b"") + visible
            token = b" " + _encode_tag(inner, next_is_encoded_word=False).rstrip(b" ")
        if len(last) + len(token) > MAX_LINE:
            token = b"\n " + token.lstrip()
        out = out + token
    return lead + out


def _encode_tag(prefix: bytes, *, next_is_encoded_word: bool) -> bytes:
    """The tag followed by one space, as encoded words when it is not plain ASCII.

    The tag is bytes as configured: UTF-8 when it decodes as such, else ISO-8859-1 (every
    byte is a character there). Each encoded word holds whole characters and is at most
    75 characters long (RFC 2047 §2, §5); readers join adjacent words without the space.
    """
    visible = prefix.translate(None, CONTROL)
    if prefix.isascii() and len(visible) == len(prefix):
        return prefix + b" "
    try:
        text, charset = visible.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        text, charset = visible.decode("latin-1"), "ISO-8859-1"
    if next_is_encoded_word:
        text += " "
    return b" ".join(encoded_words(text, charset)) + b" "


def encoded_words(text: str, charset: str) -> list[bytes]:
    """`text` as RFC 2047 "B" encoded words of at most 75 characters, whole characters each."""
    head = b"=?" + charset.encode("ascii") + b"?B?"
    room = (MAX_ENCODED_WORD - len(head) - 2) // 4 * 3  # raw bytes per word
    words: list[bytes] = []
    chunk = b""
    for char in text:
        raw = char.encode(charset)
        if chunk and len(chunk) + len(raw) > room:
            words.append(head + base64.b64encode(chunk) + b"?=")
            chunk = b""
        chunk += raw
    if chunk or not words:
        words.append(head + base64.b64encode(chunk) + b"?=")
    return words


def _starts_with_tag(body: bytes, tag: bytes) -> bool:
    if body.lower().startswith(tag.lower()):
        return True
    encoded_tag = _encode_tag(tag, next_is_encoded_word=False).rstrip(b" ")
    if encoded_tag != tag and body.lower().startswith(encoded_tag.lower()):
        return True
    decoded = _decode_leading_encoded_words(body)
    return decoded is not None and decoded.lower().startswith(tag.lower())


def _decode_leading_encoded_words(body: bytes) -> bytes | None:
    """The decoded text of the encoded words at the start of `body`, as UTF-8, or None."""
    text = b""
    rest = body
    while (match := _ENCODED_WORD.match(rest)) is not None:
        charset, encoding, payload = match.groups()
        try:
            if encoding in b"bB":
                raw = base64.b64decode(payload + b"=" * (-len(payload) % 4))
            else:
                raw = binascii.a2b_qp(payload.replace(b"_", b" "), header=True)
            text += raw.decode(charset.decode("ascii").split("*")[0]).encode("utf-8")
        except (ValueError, LookupError, UnicodeError):
            return None
        rest = rest[match.end() :].lstrip(b" \t\r\n")
    return text or None
