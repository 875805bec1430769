"""The PyPI `miltertest` client (a blocking socket, so it runs in a thread) as the MTA."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import miltertest
import pytest

from tests.support.controller import running_milter
from tests.support.scenario import CONNECT_MACROS, milter_options
from tools.fake_spamd import GTUBE, FakeSpamd

pytestmark = pytest.mark.timeout(30)

EomReply = tuple[str, dict[str, Any]]


def conversation(port: int, body: str) -> list[EomReply]:
    """One message from connect to end of message; returns the end-of-message replies.

    This client takes text (it encodes strings itself), hence `body: str`."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        conn = miltertest.MilterConnection(sock)
        # Offer version-2 protocol bits only: the milter can promise no NR_* "no reply"
        # flags, and this client expects a reply to every step. Without SETSYMLIST the
        # reply carries no macro lists, which this client cannot decode.
        conn.optneg_mta(
            actions=miltertest.SMFI_V6_ACTS & ~miltertest.SMFIF_SETSYMLIST,
            protocol=miltertest.SMFI_V2_PROT,
        )
        conn.send_macro(miltertest.SMFIC_CONNECT, **{k: v for k, v in CONNECT_MACROS.items()})
        conn.send(
            miltertest.SMFIC_CONNECT,
            hostname="client.example.net",
            family=miltertest.SMFIA_INET,
            port=40000,
            address="192.0.2.1",
        )
        conn.send(miltertest.SMFIC_HELO, helo="client.example.net")
        conn.send_macro(miltertest.SMFIC_MAIL, i="PYPI1")
        conn.send(miltertest.SMFIC_MAIL, args=["<sender@example.net>"])
        conn.send(miltertest.SMFIC_RCPT, args=["<rcpt@example.org>"])
        conn.send_headers([("From", "sender@example.net"), ("Subject", "pypi miltertest")])
        conn.send(miltertest.SMFIC_EOH)
        conn.send_body(body)
        replies: list[EomReply] = conn.send_eom()
        conn._send(miltertest.SMFIC_QUIT)
        return replies


def added(replies: list[EomReply]) -> dict[str, str]:
    return {d["name"]: d["value"] for cmd, d in replies if cmd == miltertest.SMFIR_ADDHEADER}


async def run_conversation(spamd: FakeSpamd, body: str) -> list[EomReply]:
    async with running_milter(milter_options(spamd, "spamd-command=CHECK")) as milter:
        assert isinstance(milter.address, tuple)
        return await asyncio.wait_for(asyncio.to_thread(conversation, milter.address[1], body), 20)


async def test_miltertest_pypi_ham(spamd: FakeSpamd) -> None:
    replies = await run_conversation(spamd, "Hello there.\r\n")

    assert replies[-1][0] == miltertest.SMFIR_CONTINUE
    headers = added(replies)
    assert headers["X-Spam-Status"] == "NO, hits=0.00 required=5.00"
    assert "X-Spam-Flag" not in headers
    assert headers["X-Scanned-By"].startswith("spambridge/")
    assert b" id PYPI1;" in spamd.requests[0].body


async def test_miltertest_pypi_spam(spamd: FakeSpamd) -> None:
    replies = await run_conversation(spamd, GTUBE.decode() + "\r\n")

    assert replies[-1][0] == miltertest.SMFIR_CONTINUE
    headers = added(replies)
    assert headers["X-Spam-Flag"] == "YES"
    assert headers["X-Spam-Status"] == "YES, hits=1000.00 required=5.00"
    changed = [d for cmd, d in replies if cmd == miltertest.SMFIR_CHGHEADER]
    assert [(d["index"], d["name"], d["value"]) for d in changed] == [
        (1, "Subject", "[SPAM] pypi miltertest")
    ]
