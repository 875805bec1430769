"""What the scenario tests share besides fixtures: the options a test milter runs with, the
clock and connect macros every scenario sees, a plain message, and the MTA-side opening."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest

from tools.fake_spamd import FakeSpamd
from tools.milter_client import MilterClient

ClientFactory = Callable[..., Awaitable[MilterClient]]

# Small spamd timeouts so a failure scenario costs about a second, not two minutes.
FAST_TIMEOUTS = "spamd-timeouts=C:1s;S:1s;R:1s;E:3s"


# The clock every scenario sees (X-Scanned-By, the Received line given to spamd).
NOW_TEXT = b"Wed, 25 Nov 2026 12:00:00 +0000"
# Connect macros as Sendmail sends them; X-Scanned-By is built from {if_name}/{if_addr}.
CONNECT_MACROS = {
    "j": "mx.example.org",
    "{daemon_name}": "MTA",
    "{if_name}": "mx-in.example.org",
    "{if_addr}": "192.0.2.25",
}
SCANNED_BY = b" spambridge/0.1.0 (mx-in.example.org [192.0.2.25]); " + NOW_TEXT
# A plain message; values carry their leading space as with HDR_LEADSPC.
HEADERS = [
    (b"From", b" Sender <sender@example.net>"),
    (b"To", b" rcpt@example.org"),
    (b"Subject", b" hello"),
]
BODY = b"Hello,\r\n\r\nan ordinary message.\r\n"


def milter_options(spamd: FakeSpamd | str, *extra: str) -> list[str]:
    """Options for running_milter: one spamd host (or a space-separated pool), fast timeouts."""
    address = spamd if isinstance(spamd, str) else spamd.address
    return [f"spamd-socket={address}", FAST_TIMEOUTS, "spamd-cooldown=0", *extra]


async def open_session(
    client: MilterClient, *, version: int = 6, actions: int = 0x1FF, protocol: int = 0x1FFFFF
) -> None:
    """Negotiate, connect from 192.0.2.1 with CONNECT_MACROS, HELO client.example.net."""
    await client.negotiate(version, actions, protocol)
    await client.connect(b"client.example.net", b"4", b"192.0.2.1", 40123, macros=CONNECT_MACROS)
    await client.helo(b"client.example.net")


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]
