"""Security properties: header injection, forged headers, the spamd User, socket mode,
what reaches the logs, and memory bounded by the options."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spambridge.server
from spambridge import headers
from spambridge.errors import RemoteProtocolError
from spambridge.milter.codec import CommandDecoder, encode
from spambridge.milter.messages import (
    FINAL_REPLIES,
    AddHeader,
    BodyChunk,
    ChangeHeader,
    Continue,
    EndOfMessage,
    InsertHeader,
    Reply,
    Unknown,
)
from spambridge.spamd.protocol import sanitize_user
from tests.support.controller import Running, running_milter
from tests.support.header_rules import field_problems
from tools.fake_spamd import GTUBE, FakeSpamd
from tools.milter_client import MilterClient

pytestmark = pytest.mark.timeout(30)

HOSTILE_REPORTS = {
    "crlf-injection": b"Spam detection\r\nX-Injected: 1\r\n pts rule\r\n",
    "lf-injection": b"line one\nX-Injected: 1\n\nX-Injected: 2\n",
    "bare-cr": b"line one\rX-Injected: 1\r\r\n",
    "nul": b"line\x00one\r\nX-Injected:\x00 1\r\n",
    "empty-lines": b"\r\n\r\n\r\nX-Injected: 1\r\n\r\n\r\n",
    "whitespace-lines": b"a\r\n   \r\n\t\r\nX-Injected: 1\r\n \t \r\n",
    "non-ascii": "Spam \u00e9t\u00e9 \u2603\r\nX-Injected: \u00ff\r\n".encode(),
    "long-word": b"x" * 5000 + b"\r\nX-Injected: 1\r\n",
    "long-words": b"word " * 3000 + b"\r\n",
    "long-spaces": b"a" + b" " * 3000 + b"b\r\n" + b"\t" * 2000 + b"c\r\n",
    "controls": bytes(range(32)) + b"\x7fX-Injected: 1\r\n",
    "headers-block": b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes,\r\n\tscore=1\r\n\r\nbody\r\n",
}


def header_edits(replies: list[Reply]) -> list[tuple[bytes, bytes]]:
    out = []
    for reply in replies:
        if isinstance(reply, (AddHeader, InsertHeader, ChangeHeader)):
            out.append((reply.name, reply.value))
    return out


@pytest.fixture
async def hostile_spamd() -> AsyncIterator[FakeSpamd]:
    async with FakeSpamd() as spamd:
        yield spamd


async def spam_conversation(
    milter: Running,
    headers_in: list[tuple[bytes, bytes]] | None = None,
    body: bytes = GTUBE + b"\r\n",
    rcpt: bytes = b"<rcpt@example.org>",
    rcpt_macros: dict[str, str] | None = None,
) -> list[Reply]:
    client = await MilterClient.open(milter.address, read_timeout=10)
    try:
        await client.negotiate()
        await client.connect(b"client.example.net", address=b"192.0.2.9", port=4000)
        await client.helo(b"client.example.net")
        result = await client.send_message(
            headers_in or [(b"Subject", b" hello")],
            body,
            rcpts=(rcpt,),
            macros={"R": rcpt_macros} if rcpt_macros else None,
        )
        await client.quit()
        return [*result.edits, result.final]
    finally:
        await client.close()


async def open_transaction(client: MilterClient) -> None:
    """Negotiate and go as far as one recipient of a message."""
    await client.negotiate()
    await client.connect(b"c.example.net", address=b"192.0.2.9", port=4000)
    await client.mail(b"<s@example.net>")
    await client.rcpt(b"<r@example.org>")


# ------------------------------------------------------------------ header injection


@pytest.mark.parametrize("report", HOSTILE_REPORTS.values(), ids=HOSTILE_REPORTS.keys())
@pytest.mark.parametrize(
    "style", [["spamd-command=REPORT"], ["header-style=spamassassin", "spamd-command=HEADERS"]]
)
async def test_security_hostile_spamd_output_cannot_inject_headers(
    hostile_spamd: FakeSpamd, report: bytes, style: list[str]
) -> None:
    hostile_spamd.report_override = report
    async with running_milter([f"spamd-socket={hostile_spamd.address}", *style]) as milter:
        replies = await spam_conversation(milter)
    edits = header_edits(replies)
    assert edits, "the milter wrote no header"
    for name, value in edits:
        assert field_problems(name, value) == [], (name, value)
        assert name.lower() != b"x-injected"
    assert replies[-1] == Continue()


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None)
@given(st.binary(max_size=4000), st.integers(1, 200))
def test_security_sanitizers_always_give_safe_values(raw: bytes, name_len: int) -> None:
    name = b"X" * name_len
    for value in (
        headers.sanitize_value(raw, name_len),
        headers.sanitize_value(raw, name_len, keep_8bit=True),
    ):
        assert field_problems(name, b" " + value) == []
    report = headers.format_report(raw)
    if report:
        assert field_problems(b"X-Spam-Report", b" " + report) == []
    for name_, value in headers.spamassassin_headers(raw):
        assert field_problems(name_, b" " + value) == []


# ------------------------------------------------------------------ forged headers

FORGED = [
    (b"x-spam-flag", b" YES"),
    (b"X-SPAM-STATUS", b" Yes, hits=99\r\n\tfolded=1"),
    (b"Subject", b" hello"),
    (b"X-Spam-Flag", b"\r\n YES"),
    (b"X-Spam-Level", b" xxxxx"),
    (b"x-Spam-Report", b" forged\r\n  | line\r\n  | line"),
    (b"X-Spam-Checker-Version", b" forged"),
    (b"X-Spam-Prev-Subject", b" kept"),
]


@pytest.mark.parametrize(
    ("style", "gone"),
    [
        (["spamd-command=CHECK"], 5),
        (["header-style=spamassassin", "spamd-command=HEADERS"], 6),
    ],
)
async def test_security_forged_spam_headers_removed_in_any_case_and_folding(
    hostile_spamd: FakeSpamd, style: list[str], gone: int
) -> None:
    async with running_milter([f"spamd-socket={hostile_spamd.address}", *style]) as milter:
        replies = await spam_conversation(milter, FORGED)
    deletes = [
        (r.name.lower(), r.index) for r in replies if isinstance(r, ChangeHeader) and not r.value
    ]
    assert (b"x-spam-flag", 2) in deletes and (b"x-spam-flag", 1) in deletes
    assert (b"x-spam-status", 1) in deletes
    assert (b"x-spam-level", 1) in deletes and (b"x-spam-report", 1) in deletes
    assert (b"x-spam-prev-subject", 1) not in deletes
    assert len(deletes) == gone  # Checker-Version only under header-style=spamassassin
    # Deleting the last instance first keeps the earlier indexes valid.
    flags = [i for n, i in deletes if n == b"x-spam-flag"]
    assert flags == sorted(flags, reverse=True)


# ------------------------------------------------------------------ spamd User


def test_security_sanitize_user_drops_protocol_breakers() -> None:
    assert sanitize_user("evil\r\nX-Injected: 1") == "evilX-Injected1"
    assert sanitize_user("a\x00b c\td\u00e9") == "abcd"
    assert sanitize_user(None) == ""


async def test_security_spamd_user_from_crlf_recipient_is_sanitised(
    hostile_spamd: FakeSpamd,
) -> None:
    args = [f"spamd-socket={hostile_spamd.address}", "+is-gateway", "spamd-command=CHECK"]
    rcpt = b"<evil\r\nX-Injected: 1@[127.0.0.1]>"
    async with running_milter(args) as milter:
        await spam_conversation(milter, rcpt=rcpt, rcpt_macros={"{rcpt_host}": "[127.0.0.1]"})
    (request,) = hostile_spamd.requests
    names = [n.lower() for n, _ in request.headers]
    assert b"x-injected" not in names
    user = request.header(b"User")
    assert user is not None and re.fullmatch(rb"[-A-Za-z0-9_.@+]+", user), user
    assert user.startswith(b"evil")


# ------------------------------------------------------------------ unix socket mode


@pytest.fixture
def short_tmp() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="sb-", dir="/tmp")  # unix socket paths are short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("mode", [0o600, 0o660])
def test_security_unix_socket_has_mode_from_bind_on(
    short_tmp: str, mode: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is born with the mode (umask at bind), not widened then narrowed by chmod."""
    path = os.path.join(short_tmp, "milter.sock")
    at_chmod: list[int] = []
    real_chmod = os.chmod

    def spy_chmod(target: str, wanted: int) -> None:
        at_chmod.append(stat.S_IMODE(os.stat(target).st_mode))
        real_chmod(target, wanted)

    monkeypatch.setattr(os, "chmod", spy_chmod)  # bind_unix calls os.chmod
    umask = os.umask(0o022)
    os.umask(umask)
    sock = spambridge.server.bind_unix(path, mode, "", 5)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == mode
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert at_chmod == [mode]  # already right before chmod ran
        current = os.umask(umask)
        assert current == umask  # the process umask is restored
    finally:
        sock.close()


# ------------------------------------------------------------------ logs


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
async def test_security_logs_hold_no_body_or_report(
    hostile_spamd: FakeSpamd, caplog: pytest.LogCaptureFixture, level: int
) -> None:
    """INFO is the default verbosity (verbose=info); DEBUG must not leak either."""
    body_marker = b"BODYMARKER-5f0c2e91"
    report_marker = b"REPORTMARKER-a83d7b44"
    hostile_spamd.report_override = b"pts rule\r\n 1000 GTUBE " + report_marker + b"\r\n"
    caplog.set_level(level, logger="spambridge")
    async with running_milter([f"spamd-socket={hostile_spamd.address}"]) as milter:
        replies = await spam_conversation(milter, body=GTUBE + b"\r\n" + body_marker + b"\r\n")
    assert any(report_marker in v for _, v in header_edits(replies))  # the report was used
    assert any("verdict=" in r.getMessage() for r in caplog.records)  # logging was on
    text = caplog.text
    assert body_marker.decode() not in text
    assert report_marker.decode() not in text
    assert "GTUBE-STANDARD" not in text


# ------------------------------------------------------------------ memory bounds


def test_security_oversize_frame_refused_without_allocating() -> None:
    decoder = CommandDecoder(1 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(RemoteProtocolError):
            decoder.feed(b"\x7f\xff\xff\xffB")  # a 2 GiB body chunk announced
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert decoder.buffered == 0


async def test_security_oversize_frame_closes_connection_at_once(
    hostile_spamd: FakeSpamd,
) -> None:
    async with running_milter(
        [f"spamd-socket={hostile_spamd.address}", "max-frame-size=70000"]
    ) as milter:
        assert isinstance(milter.address, tuple)
        reader, writer = await asyncio.open_connection(*milter.address)
        writer.write(b"\x00\x10\x00\x00B")  # 1 MiB announced, never sent
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed without waiting for the payload
        writer.close()


@pytest.mark.parametrize("action", ["skip", "truncate"])
async def test_security_huge_body_buffered_only_up_to_spamd_max_size(
    hostile_spamd: FakeSpamd, action: str
) -> None:
    limit_kb = 16
    args = [f"spamd-socket={hostile_spamd.address}", f"spamd-max-size={limit_kb}"]
    async with running_milter([*args, f"oversize-action={action}"]) as milter:
        limit = milter.services.config.max_scan_bytes
        assert 0 < limit <= limit_kb * 1024
        client = await MilterClient.open(milter.address, read_timeout=10)
        try:
            await open_transaction(client)
            await client.header(b"Subject", b" big")
            await client.end_of_headers()
            chunk = b"y" * 65535
            sent = 0
            for _ in range(64):  # 4 MiB, far over the limit
                reply = await client.body(chunk)
                sent += len(chunk)
                if reply is not None and not isinstance(reply, Continue):
                    break  # Skip: the MTA stops sending
            (session,) = milter.server.sessions.values()
            async with asyncio.timeout(5):  # NR_BODY: wait until the milter read it all
                while session.txn is None or session.txn.body_seen < sent:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            txn = session.txn
            if action == "truncate":  # milter-spamc's rule: whole chunks up to the limit
                assert len(txn.body) <= milter.services.config.truncate_bytes + len(chunk)
            else:
                assert txn.header_bytes + len(txn.body) <= limit
            assert not txn.body_complete
            result = await client.end_of_message()
            assert result.final == Continue()
        finally:
            await client.close()
    for request in hostile_spamd.requests:
        # plus the synthetic Received/Return-Path; truncation sends whole body chunks
        assert len(request.body) <= limit + 4096 + (65535 if action == "truncate" else 0)
    assert (hostile_spamd.requests == []) == (action == "skip")


async def test_security_mta_that_never_reads_cannot_grow_our_write_buffer(
    hostile_spamd: FakeSpamd,
) -> None:
    """With skip-body every body chunk needs a reply; an MTA that sends 6 MB of them and
    reads nothing must find us no longer reading, not buffering 5 MB of replies."""
    args = [f"spamd-socket={hostile_spamd.address}", "+skip-body"]
    async with running_milter(args) as milter:
        client = await MilterClient.open(milter.address, read_timeout=10)
        try:
            sock = client._writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # replies back up fast
            await open_transaction(client)
            await client.end_of_headers()
            chunk = encode(BodyChunk(b"x"))
            client.send_raw(chunk * 1_000_000)  # 6 MB of packets, 1 M replies due
            (session,) = milter.server.sessions.values()
            async with asyncio.timeout(5):
                while session.txn is None:  # noqa: ASYNC110 (polls server state)
                    await asyncio.sleep(0.01)
            assert session.transport is not None
            seen = -1
            while seen != session.txn.body_seen:  # until the milter stops reading
                seen = session.txn.body_seen
                await asyncio.sleep(1)
            assert session.transport.get_write_buffer_size() < 512 * 1024
            assert session.txn.body_seen < 1_000_000
        finally:
            await client.close()


async def test_security_mta_flooding_during_a_scan_is_held_to_a_limit(
    hostile_spamd: FakeSpamd,
) -> None:
    """Reading goes on while spamd scans; an MTA that sends megabytes after its end of
    message must find us holding at most about 64 KB of it, then no longer reading. The
    flood is handled after the verdict, in order."""
    hostile_spamd.fault, hostile_spamd.delay = "delay", 1.0  # the flood arrives meanwhile
    async with running_milter([f"spamd-socket={hostile_spamd.address}"]) as milter:
        client = await MilterClient.open(milter.address, read_timeout=10)
        try:
            await open_transaction(client)
            await client.end_of_headers()
            await client.body(b"hello\r\n")
            client.send(EndOfMessage())
            (session,) = milter.server.sessions.values()
            flood = encode(Unknown(b"x" * 60_000)) * 80  # about 4.8 MB of packets
            client.send_raw(flood)
            async with asyncio.timeout(5):
                while not session.in_scan:  # noqa: ASYNC110 (polls server state)
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)  # well inside the scan: the flood has been offered
            assert session.in_scan
            assert session._read_paused
            assert 0 < session._unread_size <= 64 * 1024 + 256 * 1024  # limit + one read
            final = await client.receive()
            while not isinstance(final, FINAL_REPLIES):
                final = await client.receive()
            assert isinstance(final, Continue)
        finally:
            await client.close()
