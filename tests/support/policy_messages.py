"""Shared helpers for the policy and operations scenarios: one message through the real
server (in-process, loopback) to a fake spamd, and the edits and final reply it produced."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pytest

from spambridge.milter.flags import Family
from spambridge.milter.messages import AddHeader
from tests.support.controller import running_milter
from tools.fake_spamd import GTUBE, FakeSpamd, RecordedRequest
from tools.milter_client import EomResult, MilterClient

TIMEOUT = 10.0
HAM_BODY = b"Hello,\r\njust a normal message.\r\n"
SPAM_BODY = b"Buy now\r\n" + GTUBE + b"\r\n"
CONNECT_MACROS = {"{if_name}": "mx.example.org", "{if_addr}": "192.0.2.25", "j": "mx.example.org"}


def score_body(score: float) -> bytes:
    """A body the fake spamd scores exactly `score` (threshold 5)."""
    return f"Some text\r\nX-Fake-Score: {score}\r\n".encode()


def headers_with(
    subject: bytes | None = b" hello", *extra: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    """Headers as a Sendmail-style MTA sends them with HEADER_LEADING_SPACE negotiated."""
    out = [(b"From", b" sender@example.net"), (b"To", b" rcpt@example.org")]
    if subject is not None:
        out.append((b"Subject", subject))
    return [*out, *extra]


SCANNED_BY = re.compile(
    rb"^ spambridge/\S+ \((?P<name>[^ ]+) \[(?P<addr>[^]]+)\]\); "
    rb"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$"
)


def split_scanned_by(edits: Sequence[object]) -> tuple[bytes, list[object]]:
    """The X-Scanned-By value (checked for format) and the other edits, in order."""
    rest = []
    found = []
    for edit in edits:
        if isinstance(edit, AddHeader) and edit.name == b"X-Scanned-By":
            found.append(edit.value)
        else:
            rest.append(edit)
    assert len(found) == 1, edits
    assert SCANNED_BY.match(found[0]), found[0]
    return found[0], rest


@dataclass
class Outcome:
    result: EomResult
    requests: list[RecordedRequest]

    @property
    def edits(self) -> list[object]:
        return list(self.result.edits)

    @property
    def final(self) -> object:
        return self.result.final

    def added(self, name: bytes) -> list[bytes]:
        """Values of AddHeader edits named `name`, in order."""
        return [e.value for e in self.result.edits if isinstance(e, AddHeader) and e.name == name]

    def rest(self) -> list[object]:
        """The edits other than X-Scanned-By (whose format is checked)."""
        return split_scanned_by(self.result.edits)[1]

    @property
    def request(self) -> RecordedRequest:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


async def deliver(
    client: MilterClient,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    *,
    sender: bytes = b"<sender@example.net>",
    rcpts: Sequence[bytes] = (b"<rcpt@example.org>",),
    macros: Mapping[str, Mapping[str, str]] | None = None,
) -> EomResult:
    return await client.send_message(headers, body, sender, rcpts, macros=macros)


async def open_client(
    address: tuple[str, int] | str,
    *,
    client_addr: bytes = b"198.51.100.7",
    family: Family = Family.INET,
    connect_macros: Mapping[str, str] | None = None,
    actions: int = 0x1FF,
) -> MilterClient:
    client = await MilterClient.open(address, read_timeout=TIMEOUT)
    await client.negotiate(actions=actions)
    await client.connect(
        b"client.example.net",
        family,
        client_addr,
        4242,
        macros=dict(CONNECT_MACROS if connect_macros is None else connect_macros),
    )
    await client.helo(b"client.example.net")
    return client


async def one_message(
    options: Sequence[str],
    headers: Sequence[tuple[bytes, bytes]] | None = None,
    body: bytes = HAM_BODY,
    *,
    sender: bytes = b"<sender@example.net>",
    rcpts: Sequence[bytes] = (b"<rcpt@example.org>",),
    macros: Mapping[str, Mapping[str, str]] | None = None,
    client_addr: bytes = b"198.51.100.7",
    family: Family = Family.INET,
    connect_macros: Mapping[str, str] | None = None,
    actions: int = 0x1FF,
    spamd: FakeSpamd | None = None,
) -> Outcome:
    """Serve `options`, send one message, return what came back and what spamd saw."""
    async with asyncio.timeout(30):
        own = spamd is None
        fake = spamd if spamd is not None else await FakeSpamd().start()
        try:
            async with running_milter([f"spamd-socket={fake.address}", *options]) as m:
                client = await open_client(
                    m.address,
                    client_addr=client_addr,
                    family=family,
                    connect_macros=connect_macros,
                    actions=actions,
                )
                try:
                    result = await deliver(
                        client,
                        headers if headers is not None else headers_with(),
                        body,
                        sender=sender,
                        rcpts=rcpts,
                        macros=macros,
                    )
                    await client.quit()
                finally:
                    await client.close()
        finally:
            if own:
                await fake.stop()
        return Outcome(result, list(fake.requests))


@contextlib.contextmanager
def captured_log(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> Iterator[None]:
    """Capture the 'spambridge' logger directly (log.setup() turns propagation off)."""
    log = logging.getLogger("spambridge")
    old_level, old_propagate = log.level, log.propagate
    log.setLevel(level)
    log.propagate = False
    log.addHandler(caplog.handler)
    try:
        yield
    finally:
        log.removeHandler(caplog.handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


def verdict_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("verdict=")]
