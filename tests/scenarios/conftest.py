"""Shared scenario fixtures: a fake spamd, a running milter and an MTA-side client factory;
`transport`, each spamd transport in turn (tests.support.spamd_transports).

`milter_args` is the option list the `milter` fixture starts with; override it in a test
module (or with `@pytest.mark.parametrize("milter_args", ...)`) to change the options.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.support.controller import Running, running_milter
from tests.support.spamd_transports import TRANSPORTS, Transport, make_certificate
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


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    # A leaked socket surfaces as a ResourceWarning at GC; collect inside the test that leaked.
    yield
    gc.collect()


async def open_session(
    client: MilterClient, *, version: int = 6, actions: int = 0x1FF, protocol: int = 0x1FFFFF
) -> None:
    """Negotiate, connect from 192.0.2.1 with CONNECT_MACROS, HELO client.example.net."""
    await client.negotiate(version, actions, protocol)
    await client.connect(b"client.example.net", b"4", b"192.0.2.1", 40123, macros=CONNECT_MACROS)
    await client.helo(b"client.example.net")


@pytest.fixture
def logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """caplog that sees the 'spambridge' logger at DEBUG, even after log.setup() stopped
    propagation. The records must propagate to the root logger: caplog's handler there is
    replaced between test phases, so a handler added here would miss the test's records."""
    monkeypatch.setattr(logging.getLogger("spambridge"), "propagate", True)
    caplog.set_level(logging.DEBUG, logger="spambridge")  # setLevel also clears level caches
    yield caplog


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


@pytest.fixture
async def spamd() -> AsyncIterator[FakeSpamd]:
    async with FakeSpamd() as server:
        yield server


@pytest.fixture
def dead_spamd() -> Iterator[str]:
    """A reserved 127.0.0.1 port with nothing listening (connects are refused), as host:port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(scope="session")
def spamd_certificate() -> Iterator[Path]:
    """One self-signed certificate for every TLS test (openssl takes a while per key)."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            pem = make_certificate(Path(tmp))
        except FileNotFoundError as exc:
            pytest.skip(str(exc))
        yield pem


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each spamd transport in turn; pin a test to some with
    `@pytest.mark.parametrize("transport", [...], indirect=True)`."""
    name: str = request.param
    if name == "tls":
        return Transport(name, request.getfixturevalue("spamd_certificate"))
    return Transport(name)


@pytest.fixture
def milter_args() -> list[str]:
    return []


@pytest.fixture
async def milter(spamd: FakeSpamd, milter_args: list[str]) -> AsyncIterator[Running]:
    async with running_milter(milter_options(spamd, *milter_args)) as running:
        yield running


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """`await connect(address, **open_kwargs)` -> MilterClient, closed after the test."""
    clients: list[MilterClient] = []

    async def factory(address: tuple[str, int] | str, **kwargs: object) -> MilterClient:
        kwargs.setdefault("read_timeout", 5.0)
        client = await MilterClient.open(address, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        with contextlib.suppress(Exception):
            await client.close()
