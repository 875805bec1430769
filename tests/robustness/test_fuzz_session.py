"""Fuzz whole sessions: random and mutated MTA byte streams against a live server.

The server (real Server + Session + SpamdPool, fake spamd) runs in its own thread and event
loop, so Hypothesis drives it with plain blocking sockets. For every input: the connection
ends within a timeout once the MTA side has half-closed, every byte the milter sends is a
well-formed reply packet, and the event loop reports no unhandled exception. Afterwards a
normal conversation on a fresh connection still gets its verdict, and no session is left.

FUZZ_EXAMPLES (default 300) sets the Hypothesis budget.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spambridge.errors import RemoteProtocolError
from spambridge.milter.codec import ReplyDecoder, encode
from spambridge.milter.messages import AddHeader, Continue, Quit, Reply
from tests.support.controller import Running
from tests.support.fuzz_streams import conversation, conversation_bytes, mutate
from tests.support.server_thread import ServerThread
from tools.fake_spamd import GTUBE, FakeSpamd
from tools.milter_client import MilterClient

Server = ServerThread[FakeSpamd]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
# About 3 ms per example on loopback; the long budget needs a longer test timeout.
pytestmark = pytest.mark.timeout(120 + EXAMPLES * 0.01)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
END_TIMEOUT = 10.0  # seconds for the milter to finish with one fuzzed connection


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Server, Running]]:
    server = ServerThread(FakeSpamd, ["milter-timeout=5"])
    with server as (running, _spamd):
        yield server, running
    assert server.loop_errors == []


def converse_raw(address: tuple[str, int], data: bytes) -> list[Reply]:
    """Send `data`, half-close, read to EOF; return the decoded replies.

    Fails the test when the milter keeps the connection open past END_TIMEOUT or sends
    bytes that are not reply packets.
    """
    decoder = ReplyDecoder()
    replies: list[Reply] = []
    deadline = time.monotonic() + END_TIMEOUT
    with socket.create_connection(address, timeout=END_TIMEOUT) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the milter may close on a protocol error before reading it all
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                break
            except TimeoutError:
                raise AssertionError(f"connection still open after {END_TIMEOUT}s") from None
            if not chunk:
                break
            replies.extend(decoder.feed(chunk))  # a RemoteProtocolError here fails the test
    return replies


def assert_still_serves(server: Server, running: Running) -> None:
    async def spam_conversation() -> list[Reply]:
        client = await MilterClient.open(running.address, read_timeout=10)
        try:
            await client.negotiate()
            await client.connect(b"mx.example.net", address=b"192.0.2.1", port=25)
            await client.helo(b"mx.example.net")
            result = await client.send_message([(b"Subject", b" hi")], GTUBE + b"\r\n")
            await client.quit()
            return [*result.edits, result.final]
        finally:
            await client.close()

    replies = server.call(spam_conversation())
    assert AddHeader(b"X-Spam-Flag", b" YES") in replies
    assert replies[-1] == Continue()


def assert_no_sessions_left(running: Running) -> None:
    deadline = time.monotonic() + END_TIMEOUT
    while running.server.sessions and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running.server.sessions == {}


SEEDS = (
    conversation_bytes(),
    conversation_bytes(GTUBE + b"\r\n", 2),
    b"".join(encode(c) for c in conversation()[:8]),  # stops mid-transaction
)


@FUZZ
@given(st.sampled_from(SEEDS), st.randoms(use_true_random=False))
def test_session_mutated_streams_end_cleanly(
    live: tuple[Server, Running], seed: bytes, rng: random.Random
) -> None:
    server, running = live
    converse_raw(running.address, mutate(seed, rng))  # type: ignore[arg-type]
    assert server.loop_errors == []


@FUZZ
@given(st.binary(max_size=1024))
def test_session_random_bytes_end_cleanly(live: tuple[Server, Running], data: bytes) -> None:
    server, running = live
    converse_raw(running.address, data)  # type: ignore[arg-type]
    assert server.loop_errors == []


def test_session_valid_stream_gets_replies_and_verdict(
    live: tuple[Server, Running],
) -> None:
    """The oracle works: an unmutated conversation is answered in full."""
    _, running = live
    data = conversation_bytes(GTUBE + b"\r\n") + encode(Quit())
    replies = converse_raw(running.address, data)  # type: ignore[arg-type]
    assert AddHeader(b"X-Spam-Flag", b" YES") in replies


def test_session_still_serves_after_fuzzing(live: tuple[Server, Running]) -> None:
    """Runs after the fuzz tests in file order: the server is intact and holds no session."""
    server, running = live
    assert_still_serves(server, running)
    assert_no_sessions_left(running)
    assert server.loop_errors == []


def test_session_decoder_error_is_remote_protocol_error() -> None:
    """converse_raw relies on this: garbage from the milter raises, not passes."""
    with pytest.raises(RemoteProtocolError):
        ReplyDecoder().feed(b"\x00\x00\x00\x01\xee")
