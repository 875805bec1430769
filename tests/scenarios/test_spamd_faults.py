"""spamd answering badly or too slowly, for each spamd-error-action."""

from __future__ import annotations

import pytest

from tests.support.controller import running_milter
from tests.support.scenario import ClientFactory, milter_options
from tests.support.spamd_failures import ACTIONS, assert_spamd_failure_handled
from tests.support.spamd_transports import Transport
from tools.fake_spamd import EX_NAMES, FakeSpamd

pytestmark = pytest.mark.timeout(20)

# fault mode -> text the WARNING must contain
FAULTS = {
    "reset": "reset by peer",
    "garbage": "bad-response",
    "close": "bad-response",
    "ex-75": "EX code 75",
    "hang": "timeout",
    "hang-before-read": "timeout",
}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("fault", FAULTS)
async def test_spamd_faults_each_fault_each_action(
    spamd: FakeSpamd,
    connect: ClientFactory,
    logs: pytest.LogCaptureFixture,
    fault: str,
    action: str,
) -> None:
    spamd.fault = fault
    options = milter_options(spamd, "spamd-command=CHECK", f"spamd-error-action={action}")
    async with running_milter(options) as milter:
        await assert_spamd_failure_handled(milter, connect, logs, action, FAULTS[fault])
    assert len(spamd.requests) >= (0 if fault == "hang-before-read" else 1)


@pytest.mark.parametrize("code", sorted(EX_NAMES))
async def test_spamd_faults_every_ex_status_fails_open(
    spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture, code: int
) -> None:
    spamd.fault = f"ex-{code}"
    async with running_milter(milter_options(spamd, "spamd-command=CHECK")) as milter:
        await assert_spamd_failure_handled(milter, connect, logs, "accept", f"EX code {code}")


async def test_spamd_faults_slow_trickle_hits_end_timeout(
    spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    """Each byte comes in time for the read timeout; the whole-scan (E) limit cuts it off."""
    spamd.fault, spamd.trickle_delay = "trickle", 0.1
    options = milter_options(
        spamd,
        "spamd-command=CHECK",
        "spamd-error-action=tempfail",
        "spamd-timeouts=C:1s;S:1s;R:1s;E:2s",
    )
    async with running_milter(options) as milter:
        await assert_spamd_failure_handled(milter, connect, logs, "tempfail", "timeout")


# The same faults through the whole milter on each transport spamd-socket offers: the reply
# the admin's action prescribes must not depend on how spamd is reached.
# A unix socket has no reset: the fake's cut-off reply reads as a short reply there.
ON_TRANSPORT = {("unix", "reset"): "bad-response"}


@pytest.mark.parametrize("fault", FAULTS)
async def test_spamd_faults_each_fault_each_transport(
    transport: Transport,
    connect: ClientFactory,
    logs: pytest.LogCaptureFixture,
    fault: str,
) -> None:
    async with transport.serve(fault=fault) as spamd:
        extra = [f"spamd-ca-file={spamd.ca_file}"] if spamd.ca_file else []
        options = milter_options(
            spamd, "spamd-command=CHECK", "spamd-error-action=tempfail", *extra
        )
        reason = ON_TRANSPORT.get((transport.name, fault), FAULTS[fault])
        async with running_milter(options) as milter:
            await assert_spamd_failure_handled(milter, connect, logs, "tempfail", reason)
        assert len(spamd.requests) >= (0 if fault == "hang-before-read" else 1)
