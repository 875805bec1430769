"""SMTP reply texts for the ReplyCode reply."""

from __future__ import annotations

import pytest

from spambridge.milter.messages import ReplyCode
from spambridge.milter.reply import reply_matches, smtp_reply


def test_reply_single_line_with_enhanced_code() -> None:
    assert smtp_reply("550", "5.7.1", ["Spam detected"]) == ReplyCode(b"550 5.7.1 Spam detected")


def test_reply_single_line_without_enhanced_code() -> None:
    assert smtp_reply("451", None, ["try later"]).text == b"451 try later"


def test_reply_multiline_bytes() -> None:
    reply = smtp_reply("550", "5.7.1", ["first", "second", "third"])
    assert reply.text == b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third"


def test_reply_percent_is_doubled() -> None:
    assert smtp_reply("550", "5.7.1", ["100% spam, %s"]).text == b"550 5.7.1 100%% spam, %%s"


def test_reply_empty_text_is_code_only() -> None:
    assert smtp_reply("421", "4.3.2", []).text == b"421 4.3.2"


@pytest.mark.parametrize("code", ["250", "55", "5500", "abc", "650", ""])
def test_reply_rejects_bad_code(code: str) -> None:
    with pytest.raises(ValueError, match="reply code"):
        smtp_reply(code, None, ["x"])


@pytest.mark.parametrize("enhanced", ["5.7", "5.7.1.1", "x.7.1", "5.7.1234", ""])
def test_reply_rejects_malformed_enhanced_code(enhanced: str) -> None:
    with pytest.raises(ValueError, match="enhanced status code"):
        smtp_reply("550", enhanced, ["x"])


def test_reply_rejects_enhanced_code_of_other_class() -> None:
    with pytest.raises(ValueError, match="same class"):
        smtp_reply("550", "4.7.1", ["x"])


def test_reply_line_count_limit() -> None:
    assert smtp_reply("550", None, ["x"] * 32).text.count(b"\r\n") == 31
    with pytest.raises(ValueError, match="33 lines"):
        smtp_reply("550", None, ["x"] * 33)


def test_reply_line_length_limit() -> None:
    smtp_reply("550", None, ["x" * 980])
    with pytest.raises(ValueError, match="line 2 has 981"):
        smtp_reply("550", None, ["ok", "x" * 981])


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\0b"])
def test_reply_rejects_control_characters(bad: str) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        smtp_reply("550", None, [bad])


def test_reply_rejects_non_ascii() -> None:
    with pytest.raises(ValueError, match="non-ASCII"):
        smtp_reply("550", None, ["spät"])


def test_reply_rejects_a_bare_string_as_lines() -> None:
    with pytest.raises(ValueError, match="sequence"):
        smtp_reply("550", None, "text")


def test_reply_matches_class() -> None:
    assert reply_matches(smtp_reply("451", "4.7.1", ["x"]), "4")
    assert not reply_matches(smtp_reply("451", "4.7.1", ["x"]), "5")
    assert reply_matches(smtp_reply("554", None, ["x"]), "5")
