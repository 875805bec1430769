"""While spamd is slow the MTA gets progress packets, and only after end of message."""

from __future__ import annotations

import pytest

from spambridge.milter.messages import AddHeader, Continue
from tests.support.controller import Running
from tests.support.scenario import BODY, HEADERS, SCANNED_BY, ClientFactory, open_session
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
def milter_args() -> list[str]:
    return ["spamd-command=CHECK", "progress-interval=1", "spamd-timeouts=C:1s;S:1s;R:5s;E:6s"]


async def test_progress_sent_every_interval_while_spamd_is_slow(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    spamd.fault, spamd.delay = "delay", 2.5
    client = await connect(milter.address)  # strict: progress before EOM would raise
    await open_session(client)

    result = await client.send_message(HEADERS, BODY)

    assert result.progress >= 2
    assert client.progress_before_eom == 0
    assert result.edits == [
        AddHeader(b"X-Scanned-By", SCANNED_BY),
        AddHeader(b"X-Spam-Status", b" NO, hits=0.00 required=5.00"),
    ]
    assert result.final == Continue()


async def test_progress_none_when_spamd_is_fast(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, BODY, style="postfix")

    assert result.progress == 0
    assert result.final == Continue()
