"""SPAMC TELL for `spambridge learn`: the request as spamc -L writes it and spamd's replies,
byte for byte as captured from spamc 4.0.1 and spamd 4.0.1 (--allow-tell, Bayes on); the
learn command line and the spamd user it learns for."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spambridge import learn
from spambridge.cli import main, resolve
from spambridge.errors import ConfigError, SpamdBadResponse, SpamdErrorStatus, SpamdUnavailable
from spambridge.spamd.protocol import LearnAs, parse_tell_reply, tell_request

MESSAGE = b"Subject: x\n\nbody\n"

# What spamc 4.0.1 sent for `spamc -L spam -u bob`, `-L ham -u root`, `-L forget -u root`.
SPAMC_SPAM = b"TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local\r\nUser: bob\r\n"
SPAMC_HAM = b"TELL SPAMC/1.5\r\nMessage-class: ham\r\nSet: local\r\nUser: root\r\n"
SPAMC_FORGET = b"TELL SPAMC/1.5\r\nRemove: local\r\nUser: root\r\n"
LENGTH = b"Content-length: 17\r\n\r\n"

# What spamd 4.0.1 answered: learned, already learned; forgotten, not there to forget.
DID_SET = b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n\r\n"
DID_REMOVE = b"SPAMD/1.1 0 EX_OK\r\nDidRemove: local\r\n\r\n\r\n"
DID_NOTHING = b"SPAMD/1.1 0 EX_OK\r\n\r\n\r\n"
NO_TELL = b"SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled\r\n"


@pytest.mark.parametrize(
    ("learn_as", "user", "expected"),
    [("spam", "bob", SPAMC_SPAM), ("ham", "root", SPAMC_HAM), ("forget", "root", SPAMC_FORGET)],
)
def test_spamd_tell_request_is_spamcs(learn_as: LearnAs, user: str, expected: bytes) -> None:
    assert tell_request(learn_as, MESSAGE, user) == expected + LENGTH + MESSAGE


def test_spamd_tell_request_without_user_has_no_user_header() -> None:
    assert tell_request("spam", MESSAGE) == SPAMC_SPAM.replace(b"User: bob\r\n", b"") + (
        LENGTH + MESSAGE
    )


@pytest.mark.parametrize(
    ("learn_as", "reply", "changed"),
    [
        ("spam", DID_SET, True),
        ("ham", DID_SET, True),
        ("spam", DID_NOTHING, False),
        ("forget", DID_REMOVE, True),
        ("forget", DID_NOTHING, False),
        ("forget", DID_SET, False),  # set is not removed: nothing was forgotten
        ("spam", DID_REMOVE, False),
    ],
)
def test_spamd_tell_reply_says_whether_the_database_changed(
    learn_as: LearnAs, reply: bytes, changed: bool
) -> None:
    assert parse_tell_reply(reply, learn_as, "spamd") is changed


def test_spamd_tell_reply_ex_status_keeps_its_code() -> None:
    with pytest.raises(SpamdErrorStatus) as caught:
        parse_tell_reply(NO_TELL, "spam", "spamd")
    assert caught.value.code == 69
    assert learn.exit_status(caught.value) == 69


def test_spamd_tell_reply_garbage_is_a_bad_response() -> None:
    with pytest.raises(SpamdBadResponse) as caught:
        parse_tell_reply(b"HTTP/1.1 200 OK\r\n\r\n", "spam", "spamd")
    assert learn.exit_status(caught.value) == learn.EX_PROTOCOL == 76
    assert learn.exit_status(SpamdUnavailable("down")) == learn.EX_UNAVAILABLE == 69


def test_learn_flags_taken_from_the_command_line() -> None:
    rest, learn_as = learn.take_learn_flags(["file=", "learn", "--ham", "a.eml", "--ham"])
    assert (rest, learn_as) == (["file=", "learn", "a.eml"], "ham")
    assert learn.take_learn_flags(["check"]) == (["check"], None)
    with pytest.raises(ConfigError, match="forget"):
        learn.take_learn_flags(["--spam", "--forget"])


@pytest.mark.parametrize(
    ("options", "recipients", "user"),
    [
        ((), (), ""),
        (("spamd-user=trainer",), (), "trainer"),
        (("spamd-user-from=local-part",), ("bob@example.test",), "bob"),
        (("spamd-user-from=address",), ("Bob@Example.TEST",), "Bob@example.test"),
        (("spamd-user-from=domain", "spamd-user=x"), ("<bob@example.test>",), "example.test"),
        (("spamd-user-from=fixed", "spamd-user=trainer"), ("bob@example.test",), "trainer"),
        (("spamd-user=trainer",), ("a@example.test", "b@example.test"), "trainer"),
        (("spamd-user=train\r\ner",), (), "trainer"),  # sanitised: no header injection
    ],
)
def test_learn_spamd_user_follows_the_scan_rules(
    options: tuple[str, ...], recipients: tuple[str, ...], user: str
) -> None:
    config = resolve(["file=", *options])[1].config
    assert learn.spamd_user(config, recipients) == user


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["learn", "a.eml"], "give --spam, --ham or --forget"),
        (["learn", "--spam"], "give FILE"),
        (["--ham", "check"], "only for learn"),
        (["learn", "--spam", "--sender", "a@b", "a.eml"], "only for scan"),
        (["learn", "--spam", "--ham", "a.eml"], "not --spam too"),
    ],
)
def test_learn_command_line_errors_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["file=", "spamd-socket=127.0.0.1:1", *argv]) == 2
    assert words in capsys.readouterr().err


def test_learn_unreadable_file_exits_66(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["file=", "spamd-socket=127.0.0.1:1", "learn", "--spam", "/nonexistent"]) == 66
    assert "cannot read /nonexistent" in capsys.readouterr().err


_LINES = st.sampled_from(
    [b"SPAMD/1.1 0 EX_OK", b"SPAMD/1.0 69 nope", b"DidSet: local", b"DidRemove: remote",
     b"DidSet: \xff", b"Content-length: 3", b"Content-length: x", b"", b"abc", b"\x00"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.binary(max_size=200), st.lists(_LINES, max_size=6).map(b"\r\n".join)),
    st.sampled_from(["spam", "ham", "forget"]),
)
def test_spamd_tell_reply_any_bytes_parse_or_are_a_bad_response(
    raw: bytes, learn_as: LearnAs
) -> None:
    """Whatever spamd sends, the answer is a bool or SpamdBadResponse, never another error."""
    with contextlib.suppress(SpamdBadResponse):
        assert isinstance(parse_tell_reply(raw, learn_as, "spamd"), bool)
