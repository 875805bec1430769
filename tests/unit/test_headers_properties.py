"""Property tests: whatever bytes come in, what we send as a header value is safe."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from spambridge.headers import (
    _clean_bytes,
    _squeeze_blank_runs,
    fold,
    format_report,
    sanitize_value,
    spamassassin_headers,
)
from spambridge.subject import tag_subject

# Bias towards the bytes that matter: line breaks, NUL, whitespace, 8-bit.
_interesting = st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b"\xff", b"a", b"="])
_chunks = st.one_of(
    st.binary(max_size=40),
    _interesting,
    st.builds(lambda c, n: c * n, _interesting, st.integers(0, 1200)),
)
any_bytes = st.lists(_chunks, max_size=30).map(b"".join)


def _assert_safe(value: bytes, name_len: int) -> None:
    assert b"\r" not in value
    assert b"\x00" not in value
    lines = value.split(b"\n")
    for line in lines[1:]:
        assert line[:1] in (b" ", b"\t"), line[:20]
        assert line.strip(b" \t"), "empty continuation line"
    assert len(lines[0]) + name_len + 2 <= 998
    assert all(len(line) <= 998 for line in lines)


@settings(max_examples=300, deadline=None)
@given(any_bytes, st.integers(min_value=1, max_value=200), st.booleans())
def test_headers_property_sanitize_is_always_safe(
    value: bytes, name_len: int, keep_8bit: bool
) -> None:
    out = sanitize_value(value, name_len, keep_8bit=keep_8bit)
    _assert_safe(out, name_len)
    if not keep_8bit:
        assert all(byte < 0x80 for byte in out)


@settings(max_examples=200, deadline=None)
@given(any_bytes)
def test_headers_property_sanitize_is_idempotent(value: bytes) -> None:
    once = sanitize_value(value, 13)
    assert sanitize_value(once, 13) == once


@settings(max_examples=200, deadline=None)
@given(any_bytes)
def test_headers_property_report_is_always_safe(report: bytes) -> None:
    out = format_report(report)
    assert b"\r" not in out and b"\x00" not in out
    lines = out.split(b"\n")
    assert len(lines[0]) + len(b"X-Spam-Report: ") <= 998
    assert all(len(line) <= 998 for line in lines)
    assert all(line[:1] in (b" ", b"\t") for line in lines[1:])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.from_regex(rb"[A-Za-z0-9_]{1,300}", fullmatch=True), max_size=40))
def test_headers_property_fold_keeps_words_and_limits(words: list[bytes]) -> None:
    value = b" ".join(words)
    out = fold(b"X-Spam-Status", value)
    assert out.replace(b"\n\t", b" ") == value
    assert all(len(line) <= 998 for line in out.split(b"\n"))


@settings(max_examples=200, deadline=None)
@given(any_bytes)
def test_headers_property_spamassassin_headers_values_safe(block: bytes) -> None:
    for name, value in spamassassin_headers(b"X-Spam-A: " + block):
        assert name.lower().startswith(b"x-spam-")
        _assert_safe(value, len(name))


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), any_bytes), st.binary(min_size=1, max_size=30))
def test_headers_property_tag_subject_tags_once(subject: bytes | None, tag: bytes) -> None:
    tagged = tag_subject(subject, tag)
    if tagged is None:
        return
    body = (subject or b"").lstrip(b" \t\r\n").replace(b"\r\n", b"\n")
    assert tagged.endswith(body)
    added = tagged[: len(tagged) - len(body)] if body else tagged
    assert not any(byte < 0x20 and byte not in (0x09, 0x0A) for byte in added)
    assert tag_subject(tagged, tag) is None


# The cleaning as first written with regular expressions: the translate tables and the
# squeeze must give exactly the same bytes.
_REF_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
_REF_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_REF_WSP_RUN = re.compile(rb"[ \t]{65,}")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(_chunks, st.binary(min_size=1, max_size=8)), max_size=30).map(b"".join),
    st.booleans(),
    st.booleans(),
)
def test_headers_property_cleaning_matches_the_regular_expressions(
    value: bytes, keep_8bit: bool, keep_lf: bool
) -> None:
    expected = _REF_CONTROL.sub(b"", value if keep_lf else value.replace(b"\n", b""))
    if not keep_8bit:
        expected = _REF_EIGHT_BIT.sub(b"?", expected)
    assert _clean_bytes(value, keep_8bit, keep_lf=keep_lf) == expected
    assert _squeeze_blank_runs(value) == _REF_WSP_RUN.sub(b" ", value)
