"""SpamdPool against the fake spamd on every transport: verdicts, faults, timeouts, failover
and the cap."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from spambridge.errors import SpamdBadResponse, SpamdTimeout, SpamdUnavailable
from spambridge.spamd.endpoints import SpamdEndpoint, SpamdTimeouts, parse_spamd_socket
from spambridge.spamd.pool import SpamdPool
from spambridge.spamd.transport import Exchange as _Exchange
from tests.support import spamd_transports
from tests.support.spamd_transports import HOST_NAME, Transport, host_addresses
from tools.fake_spamd import EX_NAMES, GTUBE, FakeSpamd, build_reply

pytestmark = pytest.mark.timeout(30)

REPO_ROOT = Path(__file__).resolve().parents[2]

FAST = SpamdTimeouts(connect=0.5, send=0.5, read=0.5, end=2.0)
HAM = b"From: a@example.org\r\nSubject: hello\r\n\r\nJust a normal message.\r\n"
SPAM = b"From: a@example.org\r\nSubject: buy\r\n\r\n" + GTUBE + b"\r\n"
SECRET = b"Subject: private\r\n\r\nTOP-SECRET-BODY\r\n"


# Every test that talks to spamd runs on each transport (the `transport` fixture): `spamd`,
# `spamd2` and `dead` are served on it. The few pinned to one transport say why.


@pytest.fixture
async def spamd(transport: Transport) -> AsyncIterator[FakeSpamd]:
    async with transport.serve() as server:
        yield server


@pytest.fixture
async def spamd2(transport: Transport) -> AsyncIterator[FakeSpamd]:
    async with transport.serve() as server:
        yield server


@pytest.fixture
def dead(transport: Transport) -> Iterator[SpamdEndpoint]:
    """An endpoint on the transport where connects are refused."""
    with transport.dead() as endpoint:
        yield endpoint


@pytest.fixture
def dead2(transport: Transport) -> Iterator[SpamdEndpoint]:
    with transport.dead() as endpoint:
        yield endpoint


def make_pool(*targets: FakeSpamd | SpamdEndpoint, **kwargs: object) -> SpamdPool:
    kwargs.setdefault("timeouts", FAST)
    return spamd_transports.make_pool(*targets, **kwargs)


# ------------------------------------------------------------------ verdicts


@pytest.mark.parametrize("command", ["CHECK", "SYMBOLS", "REPORT", "REPORT_IFSPAM", "HEADERS"])
async def test_spamd_pool_spam_verdict_per_command(spamd: FakeSpamd, command: str) -> None:
    verdict = await make_pool(spamd).scan(SPAM, command=command)
    assert (verdict.is_spam, verdict.score, verdict.threshold) == (True, 1000.0, 5.0)
    assert verdict.command == command
    assert verdict.host == spamd.address
    assert spamd.requests[0].method == command
    assert spamd.requests[0].body == SPAM
    expected_body = {
        "CHECK": b"",
        "SYMBOLS": b"GTUBE,NO_RECEIVED,NO_RELAYS",
    }
    if command in expected_body:
        assert verdict.body == expected_body[command]
    elif command == "HEADERS":
        assert b"X-Spam-Flag: YES\r\n" in verdict.body
        assert b"X-Spam-Status: Yes, score=1000.0 required=5.0" in verdict.body
        assert verdict.body.endswith(b"Subject: buy\r\n\r\n")
    else:
        assert b"1000 GTUBE" in verdict.body
        assert b"\n\n" in verdict.body


@pytest.mark.parametrize("command", ["CHECK", "SYMBOLS", "REPORT", "REPORT_IFSPAM", "HEADERS"])
async def test_spamd_pool_ham_verdict_per_command(spamd: FakeSpamd, command: str) -> None:
    verdict = await make_pool(spamd).scan(HAM, command=command)
    assert (verdict.is_spam, verdict.score, verdict.threshold) == (False, 0.0, 5.0)
    if command in ("CHECK", "REPORT_IFSPAM"):
        assert verdict.body == b""
    elif command == "HEADERS":
        assert b"X-Spam-Flag" not in verdict.body
        assert b"X-Spam-Status: No, score=0.0" in verdict.body
    else:
        assert b"GTUBE" not in verdict.body and verdict.body


async def test_spamd_pool_forced_score_and_elapsed(spamd: FakeSpamd) -> None:
    message = b"Subject: x\r\nX-Fake-Score: 7.5\r\n\r\nbody\r\n"
    verdict = await make_pool(spamd).scan(message, command="check")
    assert (verdict.is_spam, verdict.score, verdict.command) == (True, 7.5, "CHECK")
    assert 0 <= verdict.elapsed < FAST.end


async def test_spamd_pool_unix_socket() -> None:
    # The unix entry form spelled out (its `unix:/` label); the other tests run on it too.
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        async with FakeSpamd(unix_path=str(Path(tmp) / "spamd.sock")) as server:
            verdict = await make_pool(server).scan(SPAM, command="CHECK")
    assert verdict.is_spam and verdict.host.startswith("unix:/")


@pytest.mark.parametrize("transport", ["tcp"], indirect=True)  # refused before any I/O
async def test_spamd_pool_rejects_unknown_command(spamd: FakeSpamd) -> None:
    with pytest.raises(ValueError, match="PING"):
        await make_pool(spamd).scan(HAM, command="PING")


@pytest.mark.parametrize("transport", ["tls"], indirect=True)  # about the CA file itself
async def test_spamd_pool_tls_with_ca_file(spamd: FakeSpamd, spamd_certificate: Path) -> None:
    server = spamd
    assert server.address.startswith("ssl:")
    pool = make_pool(server, ca_file=str(spamd_certificate))
    verdict = await pool.scan(SPAM, command="HEADERS")
    untrusted = make_pool(server, ca_file=None)
    with pytest.raises(SpamdUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusted.scan(HAM)
    assert verdict.is_spam and verdict.host == server.address
    assert server.requests[0].body == SPAM


# ------------------------------------------------------------------ User header


async def test_spamd_pool_user_header_is_sanitised(spamd: FakeSpamd) -> None:
    await make_pool(spamd).scan(HAM, command="CHECK", user="alice\r\nCompress: zlib")
    recorded = spamd.requests[0]
    assert recorded.header(b"User") == b"aliceCompresszlib"
    assert recorded.header(b"Compress") is None
    assert [n for n, _ in recorded.headers] == [b"User", b"Content-length"]


async def test_spamd_pool_empty_user_sends_no_header(spamd: FakeSpamd) -> None:
    pool = make_pool(spamd)
    await pool.scan(HAM, command="CHECK", user="\r\n")
    await pool.scan(HAM, command="CHECK")
    assert [r.header(b"User") for r in spamd.requests] == [None, None]


# ------------------------------------------------------------------ faults


async def test_spamd_pool_refused_is_unavailable(dead: SpamdEndpoint) -> None:
    pool = make_pool(dead)
    with pytest.raises(SpamdUnavailable) as info:
        await pool.scan(HAM)
    assert info.value.host == dead.label
    assert pool.counters["errors.unavailable"] == 1


async def test_spamd_pool_refusing_fake_is_unavailable(transport: Transport) -> None:
    async with transport.serve(fault="refuse") as server:
        with pytest.raises(SpamdUnavailable, match="connect"):
            await make_pool(server).scan(HAM)


async def test_spamd_pool_no_socket_to_be_had_is_unavailable(
    spamd: FakeSpamd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of descriptors: as a failed connect (the next host is tried), never a crash.
    def no_socket(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    pool = make_pool(spamd)
    monkeypatch.setattr("spambridge.spamd.transport.socket.socket", no_socket)
    with pytest.raises(SpamdUnavailable, match=r"connect to .* failed: .*Too many open files"):
        await pool.scan(HAM)
    monkeypatch.undo()
    assert (await pool.scan(HAM)).host == spamd.address


async def test_spamd_pool_refused_message_names_the_connect(dead: SpamdEndpoint) -> None:
    if dead.host == HOST_NAME and len(host_addresses()) > 1:
        pytest.skip("a name with several addresses fails with asyncio's 'Multiple exceptions'")
    with pytest.raises(SpamdUnavailable, match=r"connect to .* failed: ConnectionRefusedError"):
        await make_pool(dead).scan(HAM)


async def test_spamd_pool_missing_unix_socket_is_unavailable() -> None:
    # The unix form of a spamd that is not there at all: no socket file.
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        pool = make_pool(parse_spamd_socket(f"unix:{tmp}/spamd.sock"))
        with pytest.raises(SpamdUnavailable, match=r"connect to unix:.* failed: FileNotFound"):
            await pool.scan(HAM)
    assert pool.counters["errors.unavailable"] == 1


async def test_spamd_pool_unresolvable_name_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    # The host-name form of a spamd that is not there at all: the resolver knows no such
    # name (said by the loop's resolver here: a real lookup may wait on a DNS server).
    async def no_such_name(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_name)
    pool = make_pool(parse_spamd_socket("spamd.invalid:783"))
    with pytest.raises(SpamdUnavailable, match=r"connect to spamd.invalid:783 failed: gaierror"):
        await pool.scan(HAM)
    assert pool.counters["errors.unavailable"] == 1


# A unix socket has no reset: the fake's abort there is a reply cut short, a bad response
# (test_spamd_transports.py checks it is still an error).
@pytest.mark.parametrize("transport", ["tcp", "tls", "hostname"], indirect=True)
async def test_spamd_pool_reset_mid_reply_is_unavailable(spamd: FakeSpamd) -> None:
    spamd.fault = "reset"
    with pytest.raises(SpamdUnavailable, match="reset") as info:
        await make_pool(spamd).scan(SPAM, command="REPORT")
    assert info.value.host == spamd.address


async def test_spamd_pool_garbage_is_bad_response(spamd: FakeSpamd) -> None:
    pool = make_pool(spamd)
    with pytest.raises(SpamdBadResponse, match="bad reply"):
        await pool.scan(HAM, user="fault-garbage")
    assert pool.counters["errors.bad-response"] == 1


async def test_spamd_pool_close_without_reply_is_bad_response(spamd: FakeSpamd) -> None:
    with pytest.raises(SpamdBadResponse):
        await make_pool(spamd).scan(HAM, user="fault-close")


@pytest.mark.parametrize("code", sorted(EX_NAMES))
async def test_spamd_pool_ex_status_is_bad_response(spamd: FakeSpamd, code: int) -> None:
    pool = make_pool(spamd)
    with pytest.raises(SpamdBadResponse) as info:
        await pool.scan(HAM, user=f"fault-ex{code}")
    assert f"EX code {code}" in str(info.value)
    assert EX_NAMES[code] in str(info.value)  # spamd's message text is kept
    per_message = code in (64, 65, 66, 67, 76, 77)
    assert pool.counters["host_set_aside"] == (0 if per_message else 1)


async def test_spamd_pool_per_message_ex_does_not_fail_over(
    spamd: FakeSpamd, spamd2: FakeSpamd
) -> None:
    spamd.fault = "ex-76"
    with pytest.raises(SpamdBadResponse, match="76"):
        await make_pool(spamd, spamd2).scan(HAM)
    assert spamd2.requests == []


async def test_spamd_pool_host_ex_fails_over(spamd: FakeSpamd, spamd2: FakeSpamd) -> None:
    spamd.fault = "ex-75"
    verdict = await make_pool(spamd, spamd2).scan(SPAM)
    assert verdict.host == spamd2.address


# ------------------------------------------------------------------ timeouts


async def test_spamd_pool_hang_past_read_timeout(spamd: FakeSpamd) -> None:
    spamd.fault = "hang"
    timeouts = SpamdTimeouts(connect=1, send=1, read=0.2, end=5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(SpamdTimeout, match=r"read .* timed out after 0.2s"):
        await make_pool(spamd, timeouts=timeouts).scan(HAM)
    assert 0.15 < loop.time() - start < 1.5


async def test_spamd_pool_hang_past_end_timeout(spamd: FakeSpamd) -> None:
    spamd.fault = "hang"
    timeouts = SpamdTimeouts(connect=1, send=1, read=5, end=0.3)
    pool = make_pool(spamd, timeouts=timeouts)
    with pytest.raises(SpamdTimeout, match=r"end timeout of 0.3s") as info:
        await pool.scan(HAM)
    assert info.value.host == spamd.address
    assert pool.counters["errors.timeout"] == 1
    assert pool.in_flight == 0


async def test_spamd_pool_slow_trickle_within_limits(spamd: FakeSpamd) -> None:
    spamd.fault, spamd.trickle_delay = "trickle", 0.005
    timeouts = SpamdTimeouts(connect=1, send=1, read=0.3, end=5)
    verdict = await make_pool(spamd, timeouts=timeouts).scan(SPAM, command="CHECK")
    assert verdict.is_spam and verdict.score == 1000.0


async def test_spamd_pool_slow_trickle_over_read_timeout(spamd: FakeSpamd) -> None:
    spamd.fault, spamd.trickle_delay = "trickle", 0.5
    timeouts = SpamdTimeouts(connect=1, send=1, read=0.2, end=5)
    with pytest.raises(SpamdTimeout, match="read"):
        await make_pool(spamd, timeouts=timeouts).scan(SPAM, command="CHECK")


async def test_spamd_pool_slow_trickle_over_end_timeout(spamd: FakeSpamd) -> None:
    # Each byte arrives well within R, but the whole reply takes longer than E.
    spamd.fault, spamd.trickle_delay = "trickle", 0.03
    timeouts = SpamdTimeouts(connect=1, send=1, read=0.3, end=0.5)
    with pytest.raises(SpamdTimeout, match="end timeout"):
        await make_pool(spamd, timeouts=timeouts).scan(SPAM, command="CHECK")


# asyncio's TLS transport takes the whole request into its own buffers at once, so whether
# the kernel took it cannot be seen: there the read timeout ends the wait (see
# test_spamd_transports_server_never_reads_past_send_timeout).
@pytest.mark.parametrize("transport", ["tcp", "unix", "hostname"], indirect=True)
async def test_spamd_pool_hang_before_reading_past_send_timeout(spamd: FakeSpamd) -> None:
    spamd.fault = "hang-before-read"
    big = b"Subject: big\r\n\r\n" + b"x" * (48 * 1024 * 1024)
    timeouts = SpamdTimeouts(connect=1, send=0.3, read=5, end=5)
    with pytest.raises(SpamdTimeout, match=r"send .* timed out after 0.3s"):
        await make_pool(spamd, timeouts=timeouts).scan(big)


async def test_spamd_pool_large_request_arrives_whole(spamd: FakeSpamd) -> None:
    # Far more than a socket buffer holds: the request goes out in many partial sends.
    big = b"Subject: big\r\n\r\n" + bytes(range(256)) * (24 * 1024) + GTUBE + b"\r\n"
    verdict = await make_pool(spamd).scan(big)
    assert verdict.is_spam
    assert spamd.requests[-1].body == big


async def test_spamd_pool_early_reply_while_sending_is_read(spamd: FakeSpamd) -> None:
    # spamd may answer (here: EX_TOOBIG-style refusal) and close before taking the whole
    # request; the reply is what counts, not the broken pipe.
    spamd.fault = "reply-early"
    big = b"Subject: big\r\n\r\n" + b"x" * (16 * 1024 * 1024)
    with pytest.raises(SpamdBadResponse, match="EX code 74"):
        await make_pool(spamd).scan(big)


async def test_spamd_pool_send_timeout_runs_from_the_connection() -> None:
    # No socket: the watchdog every transport shares, driven by hand.
    # The exchange is watched from before its connect; a slow connect must not eat into the
    # send timeout (Sendmail's T=S counts from the connection, and so do we).
    loop = asyncio.get_running_loop()
    exchange = _Exchange(loop)
    exchange.connecting = True
    timeouts = SpamdTimeouts(connect=5, send=1, read=5, end=10)
    exchange.watch(loop.time() - 3, timeouts, "spamd")  # the connect took 3 s
    exchange.connected()
    exchange.sending = True
    exchange._check()  # 3 s after the start, well inside 1 s of the connection
    assert not exchange.done.done()
    exchange.unwatch()


async def test_spamd_pool_connect_timeout(transport: Transport) -> None:
    # A listener whose accept queue is full: further SYNs are dropped and connect hangs
    # (a unix socket's connect answers EAGAIN until there is room).
    with transport.blackhole() as blackhole:
        timeouts = SpamdTimeouts(connect=0.2, send=1, read=1, end=5)
        pool = make_pool(blackhole, timeouts=timeouts)
        with pytest.raises(SpamdTimeout, match=r"connect .* timed out after 0.2s"):
            await pool.scan(HAM)


@pytest.fixture
async def writers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The descriptors the running loop is asked to watch for writability."""
    loop = asyncio.get_running_loop()
    watched: list[int] = []
    add_writer = loop.add_writer

    def counting_add_writer(fd: int, callback: object, *args: object) -> None:
        watched.append(fd)
        add_writer(fd, callback, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "add_writer", counting_add_writer)
    return watched


@pytest.mark.parametrize("transport", ["tcp"], indirect=True)  # the bare-socket path's shortcut
async def test_spamd_pool_loopback_request_goes_out_without_waiting_to_connect(
    spamd: FakeSpamd, writers: list[int]
) -> None:
    # Over loopback the handshake is done when connect() returns EINPROGRESS, so the request
    # is sent at once: no wait for writability (two epoll_ctl, a getsockopt, an iteration).
    verdict = await make_pool(spamd).scan(SPAM)
    assert verdict.is_spam and spamd.requests[-1].body.endswith(GTUBE + b"\r\n")
    assert writers == []


async def test_spamd_pool_slow_handshake_waits_then_sends(writers: list[int]) -> None:
    # The bare-socket path's own wait for the connection (a transport waits inside asyncio).
    # The accept queue is full, so the SYN is dropped and the first send finds the socket
    # still connecting (EAGAIN): the request must wait for the connection, then go out whole.
    reply = build_reply("REPORT", SPAM)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        received: list[bytes] = []
        # The scan's connection gets through once its SYN is retransmitted.
        server = _free_the_queue_then_answer(listener, fillers, reply, received)
        timeouts = SpamdTimeouts(connect=8, send=2, read=2, end=12)
        pool = make_pool(parse_spamd_socket(f"127.0.0.1:{port}"), timeouts=timeouts)
        verdict = await pool.scan(SPAM)
        await server
    assert verdict.is_spam and verdict.score == 1000.0
    assert len(writers) == 1  # it did wait for the connection
    assert received[0].startswith(b"REPORT SPAMC/1.5\r\n") and received[0].endswith(SPAM)


def _free_the_queue_then_answer(
    listener: socket.socket, fillers: list[socket.socket], reply: bytes, received: list[bytes]
) -> asyncio.Future[None]:
    """In a thread: once the scan has started, drop the fillers that hold the accept queue
    full, take the queued one off (it sends nothing but EOF), then answer the connection
    that sends a request, keeping what it sent in `received`."""

    def serve() -> None:
        time.sleep(0.3)
        for filler in fillers:
            filler.close()
        listener.settimeout(10)
        while True:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(10)
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                if data:  # a filler's leftover connection sends nothing
                    received.append(data)
                    conn.sendall(reply)
                    return

    return asyncio.get_running_loop().run_in_executor(None, serve)


async def test_spamd_pool_unix_full_queue_waits_then_sends() -> None:
    # A busy spamd on a unix socket: its accept queue is full, so connect answers EAGAIN
    # until a child takes a connection. The scan must wait for room under the connect
    # timeout, as over TCP (it used to fail at once: ENOTCONN on the first send).
    reply = build_reply("REPORT", SPAM)
    with (
        tempfile.TemporaryDirectory(dir="/tmp") as tmp,
        socket.socket(socket.AF_UNIX) as listener,
    ):
        path = str(Path(tmp) / "spamd.sock")
        listener.bind(path)
        listener.listen(0)
        fillers = [socket.socket(socket.AF_UNIX) for _ in range(2)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(path)
        received: list[bytes] = []
        server = _free_the_queue_then_answer(listener, fillers, reply, received)
        timeouts = SpamdTimeouts(connect=8, send=2, read=2, end=12)
        verdict = await make_pool(parse_spamd_socket(f"unix:{path}"), timeouts=timeouts).scan(SPAM)
        await server
    assert verdict.is_spam and verdict.score == 1000.0
    assert verdict.elapsed >= 0.25  # it waited for room
    assert received[0].startswith(b"REPORT SPAMC/1.5\r\n") and received[0].endswith(SPAM)


async def test_spamd_pool_delay_within_read_timeout(spamd: FakeSpamd) -> None:
    verdict = await make_pool(spamd).scan(SPAM, user="fault-delay-0.2")
    assert verdict.is_spam and verdict.elapsed >= 0.2


# ------------------------------------------------------------------ failover


async def test_spamd_pool_fails_over_from_dead_host(
    spamd: FakeSpamd, dead: SpamdEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make_pool(dead, spamd)
    with caplog.at_level(logging.WARNING, logger="spambridge.spamd"):
        verdict = await pool.scan(SECRET, command="REPORT")
    assert verdict.host == spamd.address
    assert pool.counters["failovers"] == 1
    assert pool.counters["host_set_aside"] == 1
    assert pool.counters["scans"] == 1
    assert pool.counters["errors.unavailable"] == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert dead.label in warnings[0].getMessage()
    assert spamd.address in warnings[0].getMessage()
    assert "TOP-SECRET" not in caplog.text and "private" not in caplog.text


async def test_spamd_pool_fails_over_after_read_timeout(
    spamd: FakeSpamd, spamd2: FakeSpamd
) -> None:
    spamd.fault = "hang"
    timeouts = SpamdTimeouts(connect=1, send=1, read=0.2, end=3)
    verdict = await make_pool(spamd, spamd2, timeouts=timeouts).scan(SPAM)
    assert verdict.host == spamd2.address
    assert len(spamd.requests) == 1 and len(spamd2.requests) == 1


async def test_spamd_pool_all_hosts_dead(dead: SpamdEndpoint, dead2: SpamdEndpoint) -> None:
    second = dead2
    pool = make_pool(dead, second, connect_retries=2)
    with pytest.raises(SpamdUnavailable) as info:
        await pool.scan(HAM)
    assert info.value.host == second.label
    assert pool.counters["failovers"] == 1
    assert pool.counters["errors.unavailable"] == 1


async def test_spamd_pool_cooldown_skips_then_retries(spamd: FakeSpamd, spamd2: FakeSpamd) -> None:
    spamd.fault = "garbage"
    pool = make_pool(spamd, spamd2, cooldown=0.3)
    assert (await pool.scan(HAM)).host == spamd2.address
    assert len(spamd.requests) == 1
    assert (await pool.scan(HAM)).host == spamd2.address
    assert len(spamd.requests) == 1  # set aside: not tried
    spamd.fault = None
    await asyncio.sleep(0.4)  # the cool-down ends with a PING, which brings it back
    assert (await pool.scan(HAM)).host == spamd.address
    assert [r.method for r in spamd.requests] == ["REPORT", "PING", "REPORT"]


async def test_spamd_pool_all_set_aside_still_tried(spamd: FakeSpamd) -> None:
    pool = make_pool(spamd, cooldown=60)
    with pytest.raises(SpamdBadResponse):
        await pool.scan(HAM, user="fault-garbage")
    verdict = await pool.scan(SPAM)
    assert verdict.is_spam and len(spamd.requests) == 2


async def test_spamd_pool_round_robin_distribution(transport: Transport) -> None:
    async with transport.serve() as a, transport.serve() as b, transport.serve() as c:
        pool = make_pool(a, b, c, select="round-robin")
        hosts = [(await pool.scan(HAM)).host for _ in range(6)]
    assert hosts == [a.address, b.address, c.address] * 2
    assert [len(s.requests) for s in (a, b, c)] == [2, 2, 2]


async def test_spamd_pool_failover_mode_sticks_to_first(
    spamd: FakeSpamd, spamd2: FakeSpamd
) -> None:
    pool = make_pool(spamd, spamd2, select="failover")
    for _ in range(4):
        await pool.scan(HAM)
    assert (len(spamd.requests), len(spamd2.requests)) == (4, 0)


async def test_spamd_pool_random_uses_every_host(spamd: FakeSpamd, spamd2: FakeSpamd) -> None:
    pool = make_pool(spamd, spamd2, select="random")
    for _ in range(40):
        await pool.scan(HAM, command="CHECK")
    assert spamd.requests and spamd2.requests
    assert len(spamd.requests) + len(spamd2.requests) == 40


# ------------------------------------------------------------------ concurrency


async def test_spamd_pool_max_connections_cap(spamd: FakeSpamd) -> None:
    spamd.fault, spamd.delay = "delay", 0.1
    pool = make_pool(spamd, max_connections=2)
    seen: list[int] = []

    async def watch() -> None:
        while True:
            seen.append(pool.in_flight)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    verdicts = await asyncio.gather(*(pool.scan(HAM, command="CHECK") for _ in range(6)))
    watcher.cancel()
    assert len(verdicts) == 6
    assert spamd.max_active == 2
    assert max(seen) == 2
    assert pool.in_flight == 0


async def test_spamd_pool_slot_wait_counts_against_end(spamd: FakeSpamd) -> None:
    spamd.fault, spamd.delay = "delay", 0.3
    timeouts = SpamdTimeouts(connect=1, send=1, read=1, end=0.45)
    pool = make_pool(spamd, max_connections=1, timeouts=timeouts)
    results = await asyncio.gather(
        *(pool.scan(HAM, command="CHECK") for _ in range(2)), return_exceptions=True
    )
    assert sum(isinstance(r, SpamdTimeout) for r in results) == 1
    assert spamd.max_active == 1


# ------------------------------------------------------------------ ping


async def test_spamd_pool_ping(spamd: FakeSpamd, dead: SpamdEndpoint) -> None:
    pool = make_pool(spamd, dead)
    assert await pool.ping() == {spamd.address: True, dead.label: False}
    assert spamd.requests[0].method == "PING"
    await pool.close()


# ------------------------------------------------------------------ fake as a process


async def test_spamd_pool_against_fake_subprocess() -> None:
    # About the fake's command line (TCP); the transports are covered in-process above.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.fake_spamd",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    try:
        assert proc.stdout is not None
        address = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert address.startswith("127.0.0.1:")
        verdict = await make_pool(parse_spamd_socket(address)).scan(SPAM, command="SYMBOLS")
        assert verdict.is_spam and verdict.body.startswith(b"GTUBE")
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
