"""No-reply steps that cannot hang a mail flow unseen.

Some MTA-side milter clients offer every `SMFIP_NR_*` flag, take our request for them, and
then wait for a reply anyway. When the MTA goes quiet after a step it agreed not to wait
on, the session logs one WARNING per connection naming `milter-no-reply`; with
`-milter-no-reply` every step is answered and such a client works.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

import spambridge.session
from spambridge.milter.flags import Family
from spambridge.milter.messages import Connect, Continue, Helo
from tests.scenarios.conftest import BODY, CONNECT_MACROS, HEADERS, ClientFactory, messages
from tests.support.controller import Running

pytestmark = pytest.mark.timeout(20)

STALL = 0.2  # the session's NO_REPLY_STALL, shortened for the test


@pytest.fixture(autouse=True)
def _short_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spambridge.session, "NO_REPLY_STALL", STALL)


def _warnings(logs: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in messages(logs, logging.WARNING) if "milter-no-reply" in m]


async def test_no_reply_stall_after_connect_warns_once_naming_the_option(
    milter: Running, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = await connect(milter.address)
    reply = await client.negotiate()  # offers every NR flag, as the client in the field did
    assert reply.protocol & reply.protocol.NR_CONNECT
    # ... and then waits for a reply to CONNECT anyway.
    client.send(Connect(b"client.example.net", Family.INET, 25, b"192.0.2.1"))
    with pytest.raises(TimeoutError):
        await client.receive(read_timeout=STALL * 2.5)
    (warning,) = _warnings(logs)
    assert "after Connect" in warning
    assert "milter-no-reply=0" in warning

    # A second stall on the same connection: still one warning.
    client.send(Helo(b"client.example.net"))
    with pytest.raises(TimeoutError):
        await client.receive(read_timeout=STALL * 2.5)
    assert len(_warnings(logs)) == 1


async def test_no_reply_stall_then_mta_goes_on_is_noted_and_mail_flows(
    milter: Running, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    # A conforming MTA may pause after CONNECT itself (Sendmail's greet_pause): the warning
    # is followed by a note once it goes on without a reply, and the message is served.
    client = await connect(milter.address)
    await client.negotiate()
    await client.connect(b"client.example.net", b"4", b"192.0.2.1", 25, macros=CONNECT_MACROS)
    await asyncio.sleep(STALL * 2.5)
    assert len(_warnings(logs)) == 1
    await client.helo(b"client.example.net")
    result = await client.send_message(HEADERS, BODY)
    assert result.final == Continue()
    await asyncio.sleep(STALL * 2.5)
    assert any("went on without a reply" in m for m in messages(logs, logging.INFO))
    assert len(_warnings(logs)) == 1


@pytest.mark.parametrize("milter_args", [["-milter-no-reply"]])
async def test_no_reply_off_answers_connect_and_never_warns(
    milter: Running, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = await connect(milter.address)
    reply = await client.negotiate()
    assert not reply.protocol & reply.protocol.NR_CONNECT
    client.send(Connect(b"client.example.net", Family.INET, 25, b"192.0.2.1"))
    assert await client.receive() == Continue()
    await asyncio.sleep(STALL * 2)
    assert _warnings(logs) == []


async def test_no_reply_quiet_between_messages_is_not_a_stall(
    milter: Running, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    client = await connect(milter.address)
    await client.negotiate()
    await client.connect(b"client.example.net", b"4", b"192.0.2.1", 25, macros=CONNECT_MACROS)
    await client.helo(b"client.example.net")
    await client.send_message(HEADERS, BODY)  # ends on our final reply: the MTA is not waiting
    await asyncio.sleep(STALL * 2)
    assert _warnings(logs) == []
