"""Header injection from the MTA side: whatever header names and values the MTA hands us, every
header edit spambridge sends is a valid RFC 5322 field (docs/robustness.md, "What we send").

The judge is RFC 5322 itself (tests.support.header_rules): a field name of ftext (§3.6.8), no
NUL and no CR in a value (the MTA adds CR to our LF), every LF the start of a fold: white space
and then visible text on the new line (§2.2.3, §3.2.2), and no line over 998 octets (§2.1.1).

The fixed cases drive the real server with the MTA-side test client; the property drives it
with Hypothesis over raw sockets (FIELD_EXAMPLES sets the budget, default 60 per style).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spambridge import headers
from spambridge.milter.codec import ReplyDecoder, encode
from spambridge.milter.flags import MAX_PAYLOAD, ActionFlags, Family, ProtocolFlags
from spambridge.milter.messages import (
    FINAL_REPLIES,
    AddHeader,
    BodyChunk,
    ChangeHeader,
    Command,
    Connect,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    InsertHeader,
    MailFrom,
    Negotiate,
    RcptTo,
    Reply,
)
from tests.support.controller import running_milter
from tests.support.header_rules import field_problems
from tests.support.scripted_spamd import ScriptedSpamd, spamd_reply
from tests.support.server_thread import ServerThread
from tools.fake_spamd import GTUBE, FakeSpamd
from tools.milter_client import MilterClient

EXAMPLES = int(os.environ.get("FIELD_EXAMPLES", "60"))
pytestmark = pytest.mark.timeout(60 + EXAMPLES * 0.5)

HeaderEdit = AddHeader | InsertHeader | ChangeHeader


def header_edits(replies: Sequence[Reply]) -> list[HeaderEdit]:
    return [r for r in replies if isinstance(r, AddHeader | InsertHeader | ChangeHeader)]


def assert_valid(replies: Sequence[Reply]) -> None:
    for edit in header_edits(replies):
        assert field_problems(edit.name, edit.value) == [], edit


@pytest.fixture
async def spamd() -> AsyncIterator[FakeSpamd]:
    async with FakeSpamd() as fake:
        yield fake


async def one_spam(
    spamd: FakeSpamd, options: Sequence[str], fields: Sequence[tuple[bytes, bytes]]
) -> list[Reply]:
    """One GTUBE message with `fields` as its headers; the end-of-message replies."""
    async with running_milter([f"spamd-socket={spamd.address}", *options]) as milter:
        client = await MilterClient.open(milter.address, read_timeout=10)
        try:
            await client.negotiate()
            await client.connect(b"client.example.net", address=b"192.0.2.9", port=4000)
            await client.helo(b"client.example.net")
            result = await client.send_message(fields, GTUBE + b"\r\n")
            await client.quit()
        finally:
            await client.close()
    return [*result.edits, result.final]


# ------------------------------------------------------------------ the cases

INJECTED_SUBJECTS = {
    "bare-lf": b" hi\nX-Injected: 1",
    "crlf": b" hi\r\nX-Injected: 1",
    "bare-cr": b" hi\rX-Injected: 1",
    "blank-line": b" hi\n\nbody: 1",
    "white-line": b" hi\n \nX-Injected: 1",
    "trailing-lf": b" hi\n",
}


@pytest.mark.parametrize("subject", INJECTED_SUBJECTS.values(), ids=INJECTED_SUBJECTS.keys())
async def test_mta_subject_with_bare_line_break_cannot_inject_a_header(
    spamd: FakeSpamd, subject: bytes
) -> None:
    replies = await one_spam(spamd, [], [(b"From", b" a@example.net"), (b"Subject", subject)])
    (tagged,) = [e for e in header_edits(replies) if e.name == b"Subject"]
    assert field_problems(tagged.name, tagged.value) == []
    assert tagged.value.startswith(b" [SPAM] hi")
    assert b"X-Injected: 1" in tagged.value or b"body: 1" in tagged.value or subject.endswith(b"\n")
    assert_valid(replies)


async def test_mta_subject_fold_is_kept_as_lf_fold(spamd: FakeSpamd) -> None:
    replies = await one_spam(spamd, [], [(b"Subject", b" hi\r\n\tthere")])
    assert ChangeHeader(1, b"Subject", b" [SPAM] hi\n\tthere") in replies


@pytest.mark.parametrize("name", [b"X-Spam-Flag ", b"X-Spam-\x01Flag", b"X-Spam-Fl\xe4g"])
async def test_mta_header_with_a_bad_name_is_not_named_in_an_edit(
    spamd: FakeSpamd, name: bytes
) -> None:
    # spamassassin style deletes every incoming X-Spam-* header by prefix, this one included
    options = ["header-style=spamassassin", "spamd-command=HEADERS"]
    replies = await one_spam(spamd, options, [(name, b" YES"), (b"Subject", b" hi")])
    assert_valid(replies)
    assert isinstance(replies[-1], FINAL_REPLIES)


def test_mta_wire_edits_leave_valid_fields_alone() -> None:
    edits = (
        AddHeader(b"X-Spam-Report", b" line one\n  | line two"),
        ChangeHeader(1, b"X-Spam-Flag", b""),
        InsertHeader(0, b"X-Spam-Status", b" Yes, score=9.0\n\ttests=A,B"),
    )
    assert headers.wire_edits(edits) == (edits, ())


@settings(max_examples=EXAMPLES * 5, deadline=None, derandomize=EXAMPLES <= 60)
@given(
    name=st.one_of(st.just(b"Subject"), st.binary(max_size=20)),
    value=st.one_of(
        st.binary(max_size=3000),
        st.lists(st.sampled_from([b"a", b" ", b"\t", b"\n", b"\r", b"\0", b"x" * 600])).map(
            b"".join
        ),
    ),
)
def test_mta_wire_edits_make_any_field_valid_and_keep_valid_ones(name: bytes, value: bytes) -> None:
    edit = ChangeHeader(1, name, value)
    (out, dropped) = headers.wire_edits((edit,))
    if field_problems(name, value) == []:
        assert out == (edit,) and dropped == ()
    for sent in out:
        assert isinstance(sent, ChangeHeader)
        assert field_problems(sent.name, sent.value) == [], sent
    assert len(out) + len(dropped) == 1


# ------------------------------------------------------------------ the property


@dataclass
class Live:
    server: ServerThread[ScriptedSpamd]
    address: tuple[str, int]
    spamd: ScriptedSpamd
    style: str


STYLES = {
    "milter-spamc": ["+subject-tag-score", "mail-policy=redirect", "mail-spam=spam@example.org"],
    "spamassassin": ["header-style=spamassassin", "spamd-command=HEADERS"],
    "process": ["header-style=spamassassin", "spamd-command=PROCESS", "+spamd-rewrite-body"],
}


@pytest.fixture(scope="module", params=sorted(STYLES))
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    server = ServerThread(
        ScriptedSpamd, ["spamd-timeouts=C:2s;S:2s;R:2s;E:4s", *STYLES[request.param]]
    )
    with server as (milter, spamd):
        assert isinstance(milter.address, tuple)
        yield Live(server, milter.address, spamd, request.param)
    assert server.loop_errors == []


# What an MTA can hand over: a C string each (no NUL), anything else goes; but a header with
# an empty name is a protocol error, as libmilter reads it (the connection ends).
no_nul = st.binary(max_size=200).map(lambda b: b.replace(b"\0", b"\n"))
names = st.one_of(
    st.sampled_from([b"Subject", b"X-Spam-Flag", b"x-spam-status", b"X-Spam-Level", b"To"]),
    no_nul.filter(bool),
    st.sampled_from([b"X-Spam-Flag ", b"X-Spam-Bad\nName", b"X-Spam-\x7f", b"X-Spam-:"]),
)
values = st.one_of(
    no_nul,
    no_nul.map(lambda b: b" " + b),
    st.sampled_from([b" hi\nX-Injected: 1", b" hi\r\n\tok", b" a\r\rb\n\n", b" " + b"w" * 3000]),
)
fields = st.lists(st.tuples(names, values), max_size=6).map(
    lambda some: [*some, (b"Subject", b" hi\nX-Injected: 1")]
)


def spamd_answer(style: str, fields: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A spam verdict in the style's command; HEADERS and PROCESS echo the MTA's fields back,
    with SpamAssassin's own, as spamd does."""
    block = b"".join(n + b":" + v + b"\r\n" for n, v in fields)
    if style == "milter-spamc":
        return spamd_reply(b" 1000 GTUBE  Generic Test for Unsolicited Bulk Email\r\n")
    ours = b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=1000.0\r\n\tbad\nX-Injected: 2\r\n"
    subject = b"Subject: [SPAM] hi\nX-Injected: 3\r\nX-Spam-Prev-Subject: hi\r\n"
    if style == "spamassassin":
        return spamd_reply(ours + subject + block + b"\r\n")
    return spamd_reply(ours + subject + block + b"\r\n" + GTUBE + b"\r\n")


def converse(address: tuple[str, int], fields: Sequence[tuple[bytes, bytes]]) -> list[Reply]:
    """One message as Sendmail sends it (every action, no NR); the end-of-message replies."""
    decoder = ReplyDecoder(MAX_PAYLOAD + 1)
    offer = Negotiate(6, ActionFlags(0x1FF), ProtocolFlags.HEADER_LEADING_SPACE)
    steps: list[Command] = [
        offer,
        Connect(b"client.example.net", Family.INET, 40123, b"192.0.2.1"),
        Helo(b"client.example.net"),
        MailFrom(b"<sender@example.net>", ()),
        RcptTo(b"<rcpt@example.org>", ()),
        *(Header(n, v) for n, v in fields),
        EndOfHeaders(),
        BodyChunk(GTUBE + b"\r\n"),
        EndOfMessage(b""),
    ]
    replies: list[Reply] = []
    deadline = time.monotonic() + 15
    with socket.create_connection(address, timeout=15) as sock:
        sock.sendall(b"".join(encode(s) for s in steps))
        sock.shutdown(socket.SHUT_WR)
        while chunk := sock.recv(65536):
            replies.extend(decoder.feed(chunk))
            assert time.monotonic() < deadline
    assert isinstance(replies[0], Negotiate)
    return replies[1:]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(fields=fields)
def test_mta_every_header_edit_is_a_valid_field_whatever_the_mta_sent(
    live: Live, fields: list[tuple[bytes, bytes]]
) -> None:
    live.spamd.reply = spamd_answer(live.style, fields)
    replies = converse(live.address, fields)
    # the Header steps are answered (no NR offered): the end of message follows them
    finals = [r for r in replies if isinstance(r, FINAL_REPLIES)]
    assert len(finals) >= 1 and replies[-1] is finals[-1]
    assert_valid(replies)
    assert live.server.loop_errors == []
