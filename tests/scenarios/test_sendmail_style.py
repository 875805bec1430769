"""Sendmail's quirks: `IPv6:` prefixed addresses, family U, Quit at session end."""

from __future__ import annotations

import pytest

from spambridge.milter.messages import AddHeader, Continue
from tests.scenarios.conftest import (
    BODY,
    CONNECT_MACROS,
    HEADERS,
    NOW_TEXT,
    SCANNED_BY,
    ClientFactory,
)
from tests.support.controller import Running
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(20)

HAM_EDITS = [
    AddHeader(b"X-Scanned-By", SCANNED_BY),
    AddHeader(b"X-Spam-Status", b" NO, hits=0.00 required=5.00"),
]


@pytest.fixture
def milter_args() -> list[str]:
    return ["spamd-command=CHECK"]


async def test_sendmail_style_ipv6_prefix_is_stripped(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await client.negotiate()
    await client.connect(
        b"v6.example.net", b"6", b"IPv6:2001:db8::25", 40000, macros=CONNECT_MACROS
    )
    await client.helo(b"v6.example.net")

    result = await client.send_message(HEADERS, BODY, macros={"M": {"i": "Q6"}})

    assert result.edits == HAM_EDITS
    assert spamd.requests[0].body.startswith(
        b"Return-Path: <sender@example.net>\r\n"
        b"Received: from v6.example.net (v6.example.net [IPv6:2001:db8::25])\r\n"
        b"\tby mx.example.org (spambridge) with ESMTP id Q6;\r\n"
        b"\t" + NOW_TEXT + b"\r\n"
    )


@pytest.mark.parametrize("milter_args", [["spamd-command=CHECK", "trusted-networks=2001:db8::/32"]])
async def test_sendmail_style_ipv6_prefix_matches_trusted_network(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await client.negotiate()
    await client.connect(b"v6.example.net", b"6", b"IPv6:2001:DB8::25", 40000)

    result = await client.send_message(HEADERS, BODY)

    assert result.final == Continue()
    assert result.edits == []
    assert spamd.requests == []


async def test_sendmail_style_family_unknown(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await client.negotiate()
    await client.connect(b"localhost", b"U", macros=CONNECT_MACROS)

    result = await client.send_message(HEADERS, BODY, macros={"M": {"i": "QU"}})

    assert result.edits == HAM_EDITS
    assert spamd.requests[0].body.startswith(
        b"Return-Path: <sender@example.net>\r\n"
        b"Received: from localhost (localhost)\r\n"
        b"\tby mx.example.org (spambridge) with ESMTP id QU;\r\n"
    )


async def test_sendmail_style_quit_closes_connection(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await client.negotiate()
    await client.connect(b"client.example.net", b"4", b"192.0.2.1", 25, macros=CONNECT_MACROS)
    await client.send_message(HEADERS, BODY)

    await client.quit()

    assert await client.at_eof()
    assert len(spamd.requests) == 1


@pytest.mark.parametrize(
    ("family", "address", "received"),
    [
        (b"4", b"192.0.2.7", b"[192.0.2.7]"),
        (b"6", b"IPv6:2001:db8::7", b"[IPv6:2001:db8::7]"),
    ],
)
async def test_sendmail_style_connect_with_extra_nul_is_served(
    milter: Running,
    spamd: FakeSpamd,
    connect: ClientFactory,
    family: bytes,
    address: bytes,
    received: bytes,
) -> None:
    # A milter client seen in the field ends CONNECT with two NULs; libmilter reads the
    # address up to the first one and serves it, so must we.
    client = await connect(milter.address)
    await client.negotiate(protocol=0)  # no NR: every step answers, so a refusal shows
    payload = b"nul.example.net\x00" + family + (25).to_bytes(2, "big") + address + b"\x00\x00"
    client.send_raw((len(payload) + 1).to_bytes(4, "big") + b"C" + payload)
    assert await client.receive() == Continue()

    result = await client.send_message(HEADERS, BODY, macros={"M": {"i": "QN"}})

    assert result.final == Continue()
    assert [e.name for e in result.edits if isinstance(e, AddHeader)] == [
        b"X-Scanned-By",
        b"X-Spam-Status",
    ]
    assert b"(nul.example.net " + received + b")" in spamd.requests[0].body
