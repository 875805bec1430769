"""spamd not running at all (connection refused), for each spamd-error-action."""

from __future__ import annotations

import pytest

from tests.support.controller import running_milter
from tests.support.scenario import ClientFactory, milter_options
from tests.support.spamd_failures import ACTIONS, assert_spamd_failure_handled
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize("action", ACTIONS)
async def test_spamd_down_refused(
    spamd: FakeSpamd, connect: ClientFactory, logs: pytest.LogCaptureFixture, action: str
) -> None:
    spamd.refuse()
    options = milter_options(spamd, f"spamd-error-action={action}")
    async with running_milter(options) as milter:
        await assert_spamd_failure_handled(milter, connect, logs, action, "unavailable")
    assert spamd.requests == []


@pytest.mark.parametrize("action", ACTIONS)
async def test_spamd_down_all_hosts_dead(
    dead_spamd: str, connect: ClientFactory, logs: pytest.LogCaptureFixture, action: str
) -> None:
    async with FakeSpamd() as other:
        other.refuse()
        pool = f"{dead_spamd} {other.address}"
        options = milter_options(pool, f"spamd-error-action={action}")
        async with running_milter(options) as milter:
            await assert_spamd_failure_handled(milter, connect, logs, action, "unavailable")
