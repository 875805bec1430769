"""One spamd of two is dead: the scan fails over and the verdict is applied."""

from __future__ import annotations

import pytest

from spambridge.milter.messages import AddHeader, ChangeHeader, Continue, ReplyCode
from tests.support.controller import running_milter
from tests.support.scenario import (
    HEADERS,
    SCANNED_BY,
    ClientFactory,
    milter_options,
    open_session,
)
from tools.fake_spamd import GTUBE, FakeSpamd

pytestmark = pytest.mark.timeout(20)


async def test_spamd_pool_failover_dead_first_host_verdict_applied(
    dead_spamd: str, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    options = milter_options(f"{dead_spamd} {spamd.address}", "spamd-command=CHECK")
    async with running_milter(options) as milter:
        client = await connect(milter.address)
        await open_session(client)

        result = await client.send_message(HEADERS, b"X-Fake-Score: 6\r\n")

    assert result.edits == [
        AddHeader(b"X-Spam-Flag", b" YES"),  # first, as milter-spamc (tests/oracle)
        AddHeader(b"X-Scanned-By", SCANNED_BY),
        AddHeader(b"X-Spam-Status", b" YES, hits=6.00 required=5.00"),
        AddHeader(b"X-Spam-Level", b" xxxxxx"),
        ChangeHeader(1, b"Subject", b" [SPAM] hello"),
    ]
    assert result.final == Continue()
    assert len(spamd.requests) == 1


async def test_spamd_pool_failover_reject_applied_via_second_host(
    dead_spamd: str, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    options = milter_options(
        f"{dead_spamd} {spamd.address}",
        "spamd-command=CHECK",
        "extra-reject=0",
        "spamd-error-action=tempfail",
    )
    async with running_milter(options) as milter:
        client = await connect(milter.address)
        await open_session(client)
        first = await client.send_message(HEADERS, GTUBE + b"\r\n")
        second = await client.send_message(HEADERS, GTUBE + b"\r\n")

    expected = ReplyCode(b"550 5.7.1 message was identified as junk mail, score 1000.00/5.00")
    assert first.final == expected
    assert second.final == expected
    assert len(spamd.requests) == 2


async def test_spamd_pool_failover_reset_host_then_good_host(
    spamd: FakeSpamd, connect: ClientFactory
) -> None:
    """A host that resets mid-reply is also a reason to try the next one."""
    async with FakeSpamd(fault="reset") as broken:
        options = milter_options(f"{broken.address} {spamd.address}", "spamd-command=CHECK")
        async with running_milter(options) as milter:
            client = await connect(milter.address)
            await open_session(client)
            result = await client.send_message(HEADERS, b"plain\r\n")

    assert result.final == Continue()
    assert AddHeader(b"X-Spam-Status", b" NO, hits=0.00 required=5.00") in result.edits
    assert len(spamd.requests) == 1
