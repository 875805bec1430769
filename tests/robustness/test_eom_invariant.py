"""The end-of-message invariant, as properties over whole sessions (docs/robustness.md).

A real Server, Session and SpamdPool run on their own event loop in a thread, against a
scripted spamd that answers whatever bytes Hypothesis chose. Hypothesis also chooses what
the MTA offers (protocol version, actions, protocol flags) and the message's shape (no body,
huge headers, a huge Subject, many recipients, 8-bit bytes everywhere). For every example:

- the milter answers the end of message with exactly one final reply, and it comes last;
- every packet it sends decodes and fits the protocol's 65,535-byte payload limit;
- no edit needs an action the MTA did not grant;
- no exception reached the event loop, no internal error was needed (what we generate
  fits), and the connection ends once the MTA half-closes;
- spamd never gets more than spamd-max-size of message, headers included (with
  oversize-action=truncate: milter-spamc's rule, that much body in whole chunks).

EOM_EXAMPLES (default 100 per option set) sets the Hypothesis budget.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spambridge.milter.codec import ReplyDecoder, encode
from spambridge.milter.flags import MAX_PAYLOAD, ActionFlags, Family, ProtocolFlags
from spambridge.milter.messages import (
    FINAL_REPLIES,
    BodyChunk,
    Command,
    Connect,
    Data,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    MailFrom,
    Negotiate,
    Progress,
    RcptTo,
    Reply,
)
from spambridge.milter.negotiate import Negotiated, required_action
from tests.support.controller import Running
from tests.support.scripted_spamd import ScriptedSpamd, spamd_reply
from tests.support.server_thread import ServerThread
from tools.fake_spamd import GTUBE

EXAMPLES = int(os.environ.get("EOM_EXAMPLES", "100"))
pytestmark = pytest.mark.timeout(120 + EXAMPLES * 0.2)
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 100,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
END_TIMEOUT = 15.0
MAX_SIZE_KB = 64
# Return-Path and Received lines spambridge puts before the message, and SPAMC's own headers.
REQUEST_SLACK = 1024

OPTION_SETS = {
    "milter-spamc": [
        "subject-tag=[SPAM]",
        "+subject-tag-score",
        "spamd-error-action=tempfail",
        "mail-policy=redirect",
        "mail-spam=spam@example.org",
        "quarantine-score=900",
        "oversize-action=truncate",
        "+always-add-flag",
    ],
    "spamassassin": ["header-style=spamassassin", "spamd-command=HEADERS"],
    "process": ["header-style=spamassassin", "spamd-command=PROCESS", "+spamd-rewrite-body"],
    "reject": ["extra-reject=0", "+smtp-detailed-reply", "spamd-error-action=reject"],
}


# Common to every option set; the milter-spamc set truncates, this bounds what spamd gets.
BASE_ARGS = [
    "spamd-timeouts=C:2s;S:2s;R:2s;E:4s",
    "spamd-cooldown=0",
    f"spamd-max-size={MAX_SIZE_KB}",
    "oversize-action=skip",  # the milter-spamc set truncates instead
    "milter-timeout=10",
]


@dataclass
class Live:
    server: ServerThread[ScriptedSpamd]
    milter: Running
    spamd: ScriptedSpamd


@pytest.fixture(scope="module", params=sorted(OPTION_SETS))
def live(request: pytest.FixtureRequest) -> Iterator[Live]:
    server = ServerThread(ScriptedSpamd, [*BASE_ARGS, *OPTION_SETS[request.param]])
    with server as (milter, spamd):
        yield Live(server, milter, spamd)
    assert server.loop_errors == []


# ------------------------------------------------------------------ strategies

eight_bit = st.binary(max_size=300).map(lambda b: b.replace(b"\0", b"\x80"))
header_names = st.sampled_from(
    [b"Subject", b"From", b"To", b"X-Spam-Flag", b"x-spam-status", b"X-Spam-Report", b"X-Other"]
)
header_values = st.one_of(
    st.just(b" hello"),
    eight_bit.map(lambda b: b" " + b),
    st.integers(1, 120_000).map(lambda n: b" " + (b"w " * n)[:n]),  # up to a 120 KB value
    st.just(b" =?UTF-8?B?w6TDtsO8?= folded\r\n\tline"),
)
# Headers-only bulk past spamd-max-size (64 KB here): 0 to 4 headers of 30 KB each.
bulk = st.integers(0, 4).map(lambda n: [(b"X-Bulk-%d" % i, b" " + b"h" * 30_000) for i in range(n)])
headers = st.builds(
    lambda some, more: some + more,
    st.lists(st.tuples(header_names, header_values), max_size=8),
    bulk,
)
bodies = st.one_of(
    st.none(),  # no body chunk at all
    st.just(GTUBE + b"\r\n"),
    eight_bit,
    st.integers(1, 200_000).map(lambda n: (b"body line\r\n" * (n // 11 + 1))[:n]),
)
spam_values = st.one_of(
    st.sampled_from(
        [
            b"True ; 1000.0 / 5.0",
            b"False ; 0.5 / 5.0",
            b"Yes ; 7.0 / 5.0",
            b"True ; nan / 5.0",
            b"True ; inf / 5.0",
            b"False ; 1e999 / 5.0",
            b"True ; 5.0",
        ]
    ),
    eight_bit,
)
rule_lines = st.integers(0, 3000).map(
    lambda n: b"".join(b" 0.1 RULE_%04d  a rule that hit\n" % i for i in range(n))
)
reply_bodies = st.one_of(
    eight_bit,
    rule_lines,
    st.tuples(header_names, header_values).map(lambda nv: nv[0] + b":" + nv[1] + b"\r\n\r\n"),
    st.just(
        b"X-Spam-Bad Name: 1\r\nX-Spam-Flag: YES\r\nSubject: [SPAM] x\r\n"
        b"X-Spam-Prev-Subject: x\r\n\r\n"
    ),
)
reply_lines = st.lists(
    st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    max_size=3,
)


def with_lines(reply: bytes, lines: list[bytes]) -> bytes:
    """`reply` with extra header lines (8-bit names and values, no colon...) after its status."""
    status, _, rest = reply.partition(b"\r\n")
    return status + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + rest


spamd_replies = st.one_of(
    st.builds(
        lambda body, spam, lines: with_lines(spamd_reply(body, spam=spam), lines),
        reply_bodies,
        spam_values,
        reply_lines,
    ),
    st.binary(max_size=2000),
    st.integers(64, 80).map(lambda code: b"SPAMD/1.0 %d EX_SOMETHING\r\n" % code),
)
recipients = st.integers(1, 40).map(lambda n: [b"<rcpt%d@example.org>" % i for i in range(n)])
protocol_bits = st.integers(0, 0x1FFFFF).map(
    lambda bits: bits & ~int(ProtocolFlags.NO_UNKNOWN)  # we never send Unknown anyway
)


@dataclass
class Shape:
    version: int
    actions: int
    protocol: int
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    rcpts: list[bytes]


shapes = st.builds(
    Shape,
    version=st.integers(2, 6),
    actions=st.integers(0, 0x1FF),
    protocol=protocol_bits,
    headers=headers,
    body=bodies,
    rcpts=recipients,
)


# ------------------------------------------------------------------ one conversation


def in_force(reply: Negotiate) -> Negotiated:
    """The options the milter's negotiation reply put in force (as negotiate() computes)."""
    protocol = reply.protocol
    if reply.version <= 2:
        protocol |= ProtocolFlags.NO_UNKNOWN
    if reply.version <= 3:
        protocol |= ProtocolFlags.NO_DATA
    return Negotiated(reply.version, reply.actions, protocol)


def conversation(shape: Shape, negotiated: Negotiated) -> list[Command]:
    steps: list[Command] = [
        Connect(b"client.example.net", Family.INET, 40123, b"192.0.2.1"),
        Helo(b"client.example.net"),
        MailFrom(b"<sender@example.net>", ()),
        *(RcptTo(r, ()) for r in shape.rcpts),
    ]
    if negotiated.sends(Data):
        steps.append(Data())
    steps += [Header(n, v if negotiated.leading_space else v.lstrip()) for n, v in shape.headers]
    steps.append(EndOfHeaders())
    if shape.body is not None:
        view = memoryview(shape.body)
        steps += [BodyChunk(bytes(view[i : i + 65535])) for i in range(0, len(view), 65535)]
    return steps


def converse(address: tuple[str, int], shape: Shape) -> tuple[Negotiated, list[Reply], int]:
    """One message; returns the options in force, the replies after the step replies, and
    how many step replies came before them."""
    decoder = ReplyDecoder(MAX_PAYLOAD + 1)  # code byte + payload: a bigger packet fails here
    replies: list[Reply] = []
    deadline = time.monotonic() + END_TIMEOUT
    with socket.create_connection(address, timeout=END_TIMEOUT) as sock:
        offer = Negotiate(shape.version, ActionFlags(shape.actions), ProtocolFlags(shape.protocol))
        sock.sendall(encode(offer))
        while not replies:
            first = sock.recv(65536)
            assert first, "the milter closed the connection at negotiation"
            replies.extend(decoder.feed(first))
        reply = replies.pop(0)
        assert isinstance(reply, Negotiate)
        negotiated = in_force(reply)
        steps = conversation(shape, negotiated)
        expected_step_replies = sum(1 for step in steps if negotiated.expects_reply(step))
        sock.sendall(b"".join(encode(s) for s in steps) + encode(EndOfMessage(b"")))
        sock.shutdown(socket.SHUT_WR)
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"connection still open after {END_TIMEOUT}s") from None
            if not chunk:
                break
            replies.extend(decoder.feed(chunk))
    return negotiated, replies, expected_step_replies


@PROPERTY
@given(shape=shapes, reply=spamd_replies)
def test_eom_invariant_one_final_reply_whatever_spamd_and_the_mta_do(
    live: Live, shape: Shape, reply: bytes
) -> None:
    live.spamd.reply = reply
    live.spamd.requests.clear()
    errors_before = live.milter.services.metrics.counters["internal_errors"]
    address = live.milter.address
    assert isinstance(address, tuple)
    negotiated, replies, steps = converse(address, shape)

    step_replies, answer = replies[:steps], replies[steps:]
    assert len(step_replies) == steps, replies
    assert all(isinstance(r, FINAL_REPLIES) for r in step_replies), step_replies
    finals = [r for r in answer if isinstance(r, FINAL_REPLIES)]
    assert len(finals) == 1 and answer[-1] is finals[0], answer
    for edit in answer[:-1]:
        if isinstance(edit, Progress):
            continue
        needed = required_action(edit)
        assert not needed or negotiated.actions & needed, (edit, negotiated.actions)
    assert live.milter.services.metrics.counters["internal_errors"] == errors_before
    assert live.server.loop_errors == []
    config = live.milter.services.config
    for request in live.spamd.requests:
        _, _, message = request.partition(b"\r\n\r\n")
        if config.oversize_action == "truncate":
            # milter-spamc's rule (tests/oracle): body bytes only, in whole body chunks
            _, _, body = message.partition(b"\r\n\r\n")
            assert len(body) <= config.truncate_bytes + 65535
        else:
            assert len(message) <= MAX_SIZE_KB * 1024 + REQUEST_SLACK
