"""The spamd failure paths over every transport spamd-socket offers: a literal address over
TCP (driven on the bare socket), a unix socket, TLS, and a host name (resolved each connect;
both of the latter go through asyncio transports). Each fault must end as the same
SpamdError on every transport, with the pool's books balanced and no socket left open."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from spambridge.errors import SpamdBadResponse, SpamdError, SpamdTimeout, SpamdUnavailable
from spambridge.spamd.endpoints import SpamdTimeouts, parse_spamd_socket
from spambridge.spamd.pool import SpamdPool
from tests.support.spamd_transports import Transport, make_pool
from tools.fake_spamd import GTUBE, FakeSpamd

pytestmark = pytest.mark.timeout(60)

HAM = b"From: a@example.org\r\nSubject: hello\r\n\r\nJust a normal message.\r\n"
SPAM = b"From: a@example.org\r\nSubject: buy\r\n\r\n" + GTUBE + b"\r\n"
TIMEOUTS = SpamdTimeouts(connect=1, send=0.3, read=0.3, end=3)


@pytest.fixture
async def served(transport: Transport) -> AsyncIterator[tuple[FakeSpamd, SpamdPool]]:
    """A fake spamd on one transport and a pool that reaches it."""
    async with transport.serve() as server:
        pool = make_pool(server, timeouts=TIMEOUTS)
        yield server, pool
        await pool.close()
        assert pool.in_flight == 0


def test_spamd_transports_cover_every_entry_form() -> None:
    forms = {"tcp": "127.0.0.1:783", "unix": "unix:/run/s", "tls": "ssl:h:1", "hostname": "h:1"}
    endpoints = {name: parse_spamd_socket(text) for name, text in forms.items()}
    assert endpoints["unix"].path and endpoints["tls"].tls
    assert endpoints["hostname"].host == "h" and not endpoints["hostname"].tls


async def test_spamd_transports_happy_path(served: tuple[FakeSpamd, SpamdPool]) -> None:
    server, pool = served
    verdict = await pool.scan(SPAM, command="HEADERS")
    assert verdict.is_spam and verdict.score == 1000.0
    assert server.requests[0].body == SPAM


async def test_spamd_transports_refused_is_unavailable(
    served: tuple[FakeSpamd, SpamdPool],
) -> None:
    server, pool = served
    server.refuse()  # for a unix socket the file stays, as a dead spamd leaves it
    with pytest.raises(SpamdUnavailable, match=r"connect to .* failed") as info:
        await pool.scan(HAM)
    assert info.value.host == pool.endpoints[0].label
    assert pool.counters["errors.unavailable"] == 1


async def test_spamd_transports_garbage_is_bad_response(
    served: tuple[FakeSpamd, SpamdPool],
) -> None:
    _, pool = served
    with pytest.raises(SpamdBadResponse, match="bad reply"):
        await pool.scan(HAM, user="fault-garbage")
    assert pool.counters["errors.bad-response"] == 1


async def test_spamd_transports_close_without_reply_is_bad_response(
    served: tuple[FakeSpamd, SpamdPool],
) -> None:
    _, pool = served
    with pytest.raises(SpamdBadResponse):
        await pool.scan(HAM, user="fault-close")


@pytest.mark.parametrize("code", [69, 76])
async def test_spamd_transports_ex_status_is_bad_response(
    served: tuple[FakeSpamd, SpamdPool], code: int
) -> None:
    _, pool = served
    with pytest.raises(SpamdBadResponse, match=f"EX code {code}"):
        await pool.scan(HAM, user=f"fault-ex{code}")


async def test_spamd_transports_hang_past_read_timeout(
    served: tuple[FakeSpamd, SpamdPool],
) -> None:
    _, pool = served
    with pytest.raises(SpamdTimeout, match=r"read to .* timed out after 0.3s"):
        await pool.scan(HAM, user="fault-hang")
    assert pool.counters["errors.timeout"] == 1


async def test_spamd_transports_trickle_past_end_timeout(
    served: tuple[FakeSpamd, SpamdPool],
) -> None:
    server, pool = served
    server.trickle_delay = 0.05  # each byte within R, the whole reply longer than E
    with pytest.raises(SpamdTimeout, match="end timeout of 3s"):
        await pool.scan(SPAM, command="REPORT", user="fault-trickle")


async def test_spamd_transports_server_never_reads_past_send_timeout(
    served: tuple[FakeSpamd, SpamdPool],
) -> None:
    server, pool = served
    server.fault = "hang-before-read"
    big = b"Subject: big\r\n\r\n" + b"x" * (48 * 1024 * 1024)
    # asyncio's TLS transport takes the whole request into its own buffers at once, so
    # whether the kernel took it cannot be seen: there the read timeout ends the wait.
    phase = "(send|read)" if pool.endpoints[0].tls else "send"
    with pytest.raises(SpamdTimeout, match=rf"{phase} to .* timed out after 0.3s"):
        await pool.scan(big)


async def test_spamd_transports_reset_mid_reply_is_an_error(
    served: tuple[FakeSpamd, SpamdPool],
) -> None:
    _, pool = served
    with pytest.raises(SpamdError) as info:
        await pool.scan(SPAM, command="REPORT", user="fault-reset")
    # TCP sees the RST; a unix socket or TLS sees the reply cut short.
    assert isinstance(info.value, SpamdUnavailable | SpamdBadResponse)


async def test_spamd_transports_reply_over_the_limit_is_bad_response(
    served: tuple[FakeSpamd, SpamdPool],
) -> None:
    server, pool = served
    server.report_override = b"x" * (2 * 1024 * 1024)
    with pytest.raises(SpamdBadResponse, match="reply over"):
        await pool.scan(SPAM, command="REPORT")


async def test_spamd_transports_answer_slower_than_send_timeout_within_read_timeout(
    served: tuple[FakeSpamd, SpamdPool],
) -> None:
    # spamd takes longer to scan than S allows for sending, well within R: the answer
    # counts. (Over TLS the send timeout used to cut every such scan short.)
    server, _ = served
    timeouts = SpamdTimeouts(connect=1, send=0.2, read=2, end=5)
    pool = make_pool(server, timeouts=timeouts)
    verdict = await pool.scan(SPAM, command="CHECK", user="fault-delay-0.6")
    assert verdict.is_spam and verdict.score == 1000.0


async def test_spamd_transports_tls_handshake_never_answered_is_a_connect_timeout() -> None:
    # A listener that accepts but never speaks TLS (plain spamd behind an ssl: entry, or a
    # stuck one): the handshake belongs to the connect and its timeout.
    async with FakeSpamd(fault="hang-before-read") as plain:
        timeouts = SpamdTimeouts(connect=0.3, send=1, read=1, end=3)
        pool = SpamdPool([parse_spamd_socket(f"ssl:{plain.address}")], timeouts=timeouts)
        with pytest.raises(SpamdTimeout, match=r"connect to ssl:.* timed out after 0.3s"):
            await pool.scan(HAM)
        assert pool.in_flight == 0
