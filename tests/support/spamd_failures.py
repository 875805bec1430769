"""What every spamd failure must lead to, per spamd-error-action (shared by the spamd_* files)."""

from __future__ import annotations

import logging

import pytest

from spambridge.milter.messages import ChangeHeader, Continue, FinalReply, Reply, ReplyCode
from tests.support.controller import Running
from tests.support.scenario import BODY, HEADERS, ClientFactory, messages, open_session

ACTIONS = ("accept", "tempfail", "reject")
# A forged verdict header in the message: only its deletion survives a fail-open accept.
FORGED = (b"X-Spam-Status", b" No, forged by the sender")
EXPECTED: dict[str, tuple[list[Reply], FinalReply]] = {
    "accept": ([ChangeHeader(1, b"X-Spam-Status", b"")], Continue()),
    "tempfail": ([], ReplyCode(b"451 4.7.1 spam scanner unavailable, try again later")),
    "reject": ([], ReplyCode(b"550 5.7.1 spam scanner unavailable")),
}


async def assert_spamd_failure_handled(
    milter: Running,
    connect: ClientFactory,
    logs: pytest.LogCaptureFixture,
    action: str,
    reason: str = "",
) -> None:
    """Send one message; check the reply `action` prescribes and the WARNING with the reason."""
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message([*HEADERS, FORGED], BODY)

    edits, final = EXPECTED[action]
    assert result.edits == edits
    assert result.final == final
    warnings = [m for m in messages(logs, logging.WARNING) if "spamd failed" in m]
    assert warnings, messages(logs)
    assert reason in warnings[-1], warnings
    verdict_lines = [m for m in messages(logs) if m.startswith("verdict=error")]
    assert verdict_lines and f"action={action}" in verdict_lines[-1], verdict_lines
