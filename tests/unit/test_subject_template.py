"""subject-tag templates (%s, %d, %f, %.Nf, %%): the result read back by the standard
library's RFC 2047 decoder is the template filled in; the plain prefix works as before."""

from __future__ import annotations

from email.header import decode_header, make_header

import pytest

from spambridge.headers import MAX_LINE
from spambridge.subject import is_subject_template, tag_subject, template_subject


def decoded(value: bytes) -> str:
    return str(make_header(decode_header(value.decode("ascii").strip())))


@pytest.mark.parametrize(
    ("tag", "template"),
    [
        ("[SPAM]", False),
        ("100% spam", False),  # a lone percent sign is text
        ("***SPAM*** %s", True),
        ("[%d]", True),
        ("[%.1f]", True),
        ("%f", True),
    ],
)
def test_subject_template_detected(tag: str, template: bool) -> None:
    assert is_subject_template(tag) is template


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (b"***SPAM*** %s", " ***SPAM*** hello"),
        (b"[SPAM %d] %s", " [SPAM 12] hello"),
        (b"[SPAM %.1f] %s", " [SPAM 12.3] hello"),
        (b"[SPAM %.2f]", " [SPAM 12.35] hello"),  # no %s: a prefix
        (b"%s (spam, %f)", " hello (spam, 12.345000)"),
        (b"[100%%] %s", " [100%] hello"),
    ],
)
def test_subject_template_fills_in(template: bytes, expected: str) -> None:
    assert template_subject(b" hello", template, 12.345) == expected.encode()


def test_subject_template_not_twice() -> None:
    assert template_subject(b" ***SPAM*** hello", b"***SPAM*** %s", 9) is None
    assert template_subject(b" [SPAM 3.0] hello", b"[SPAM %.1f] %s", 9) is None
    assert template_subject(b" hello [SPAM]", b"%s [SPAM]", 9) is None


def test_subject_template_missing_subject() -> None:
    assert template_subject(None, b"***SPAM*** %s", 9) == b"***SPAM***"


@pytest.mark.parametrize(
    "subject",
    [b" =?UTF-8?B?w6l0w6k=?=", b" =?ISO-8859-1?Q?=E9t=E9?= =?UTF-8?B?w6l0w6k=?=", b" plain"],
)
@pytest.mark.parametrize("template", ["★ %s", "%s ★", "[SPAM %d] %s ✉"])
def test_subject_template_rfc2047_round_trip(subject: bytes, template: str) -> None:
    new = template_subject(subject, template.encode(), 7.5)
    assert new is not None and new.isascii()
    original = decoded(subject)
    head, _, tail = template.replace("%d", "7").partition("%s")
    assert decoded(new) == head + original + tail
    assert subject.strip() in new  # the original words themselves are untouched


def test_subject_template_long_subject_stays_within_line_limits() -> None:
    subject = b" " + b"x" * (MAX_LINE - 20)
    new = template_subject(subject, b"***SPAM*** %s ***SPAM***", 1)
    assert new is not None
    lines = new.split(b"\n")
    assert len(b"Subject:") + len(lines[0]) <= MAX_LINE
    assert all(len(line) <= MAX_LINE for line in lines)
    assert all(line[:1] in (b" ", b"\t") for line in lines[1:])


def test_subject_plain_prefix_unchanged() -> None:
    assert tag_subject(b" hello", b"[SPAM]") == b" [SPAM] hello"
