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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.controller import Running, running_milter
from tests.support.scenario import ClientFactory, milter_options
from tests.support.spamd_transports import TRANSPORTS, Transport, make_certificate
from tools.fake_spamd import FakeSpamd
from tools.milter_client import MilterClient


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    # A leaked socket surfaces as a ResourceWarning at GC; collect inside the test that leaked.
    yield
    gc.collect()


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
