"""Connection limit, idle timeout and a slow-drip (slowloris) MTA."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from spambridge.milter.codec import encode
from spambridge.milter.messages import AddHeader, Continue, Header
from tests.support.controller import Running
from tests.support.scenario import BODY, HEADERS, ClientFactory, messages, open_session
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("milter_args", [["max-connections=2"]])
async def test_limits_third_connection_refused_and_logged(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    first = await connect(milter.address)
    await open_session(first)
    second = await connect(milter.address)
    await open_session(second)

    third = await connect(milter.address)

    assert await third.at_eof(read_timeout=2)
    assert any("max-connections=2" in m for m in messages(logs, logging.WARNING)), messages(logs)
    result = await first.send_message(HEADERS, BODY)
    assert result.final == Continue()
    await second.close()
    await asyncio.sleep(0.1)  # let the server see the close
    fourth = await connect(milter.address)
    await open_session(fourth)
    assert (await fourth.send_message(HEADERS, BODY)).final == Continue()


@pytest.mark.parametrize("milter_args", [["milter-timeout=1"]])
async def test_limits_idle_connection_closed(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    started = time.monotonic()

    assert await client.at_eof(read_timeout=5)

    assert 0.8 <= time.monotonic() - started < 3
    assert any("idle" in m for m in messages(logs)), messages(logs)


@pytest.mark.parametrize("milter_args", [["milter-timeout=1"]])
async def test_limits_slowloris_packet_dripped_is_cut_off(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    """One byte every 0.2 s never trips a per-read timeout; the packet deadline must."""
    client = await connect(milter.address)
    await open_session(client)
    await client.mail(b"<sender@example.net>")
    packet = encode(Header(b"Subject", b" " + b"s" * 200))
    started = time.monotonic()
    closed = False
    for byte in packet:
        try:
            client.send_raw(bytes([byte]))
            closed = await client.at_eof(read_timeout=0.2)
        except TimeoutError:
            continue
        except ConnectionError:
            closed = True
        break
    assert closed
    assert 0.8 < time.monotonic() - started < 3
    assert any("idle" in m for m in messages(logs)), messages(logs)


@pytest.mark.parametrize(
    "milter_args", [["milter-timeout=1", "spamd-timeouts=C:1s;S:1s;R:5s;E:6s"]]
)
async def test_limits_scan_longer_than_milter_timeout_is_not_idle(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    """The idle timer stops while spamd works: the MTA is waiting for us, not idle."""
    spamd.fault, spamd.delay = "delay", 2.5
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, BODY)

    assert result.final == Continue()
    assert AddHeader(b"X-Spam-Status", b" NO, hits=0.00 required=5.00") in result.edits
    spamd.fault = None
    started = time.monotonic()
    assert await client.at_eof(read_timeout=5)  # idle after the verdict: closed as usual
    assert 0.8 <= time.monotonic() - started < 3
