"""Failure handling through real Sendmail: the shipped F= policies, a dying spambridge,
spambridge's own spamd-error policy, and progress packets against Sendmail's read timeout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e import (
    BRIDGE_ARGS,
    RCPT,
    SENDER,
    STATUS_NO,
    BridgeFactory,
    SendmailFactory,
    added_fields,
    deliver_one,
)
from tests.support.fake_spamd_process import FakeSpamdProcess, start_fake_spamd
from tools import stack
from tools.stack import (
    Spamd,
    describe_logs,
    field_name,
    free_port,
    ham_message,
    header_values,
    send_smtp,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

# Sendmail's own default read timeout; spambridge's 5 s progress packets must beat it.
SENDMAIL_DEFAULT_TIMEOUTS = "C:1m;S:1m;R:10s;E:5m"
SLOW_SCAN_SECONDS = 14.0


@pytest.fixture
def slow_spamd(workdir: Path) -> Iterator[FakeSpamdProcess]:
    fake = start_fake_spamd(workdir, fault="delay", delay=SLOW_SCAN_SECONDS)
    yield fake
    fake.stop()


def test_sendmail_failopen_snippet_delivers_unchanged_when_spambridge_is_down(
    start_sendmail: SendmailFactory,
) -> None:
    mta = start_sendmail(f"inet:{free_port()}@127.0.0.1", stack.SENDMAIL_SNIPPET)
    message = ham_message()

    delivered = deliver_one(mta, message)
    assert [field_name(f) for f in added_fields(message, delivered)] == [b"received"]


def test_sendmail_failclosed_snippet_tempfails_when_spambridge_is_down(
    start_sendmail: SendmailFactory,
) -> None:
    mta = start_sendmail(f"inet:{free_port()}@127.0.0.1", stack.SENDMAIL_SNIPPET_FAILCLOSED)

    code, text = send_smtp(mta.port, SENDER, [RCPT], ham_message())

    assert code == 451, f"{text}\n{describe_logs(mta)}"
    assert text.startswith("4.3.2"), text
    assert mta.delivered() == []


def test_sendmail_failclosed_snippet_scans_when_spambridge_is_up(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket, stack.SENDMAIL_SNIPPET_FAILCLOSED)

    delivered = deliver_one(mta, ham_message(), bridge)
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status


def test_sendmail_killed_spambridge_fails_open_on_next_session(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)
    assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
    mta.wait_delivered(1)

    bridge.kill()
    message = ham_message()
    code, text = send_smtp(mta.port, SENDER, [RCPT], message)

    assert code == 250, f"{text}\n{describe_logs(mta)}"
    first, second = mta.wait_delivered(2)
    assert len(header_values(first, b"X-Spam-Status")) == 1
    assert [field_name(f) for f in added_fields(message, second)] == [b"received"]


def test_sendmail_spamd_error_action_tempfail_answers_451(
    start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    bridge = start_bridge(
        ["--spamd-socket", dead, "--spamd-error-action", "tempfail", *BRIDGE_ARGS]
    )
    mta = start_sendmail(bridge.sendmail_socket)

    code, text = send_smtp(mta.port, SENDER, [RCPT], ham_message())

    assert code == 451, f"{text}\n{describe_logs(bridge, mta)}"
    assert mta.delivered() == []
    assert "WARNING" in bridge.log_text()


def test_sendmail_progress_keeps_slow_scan_within_read_timeout(
    slow_spamd: FakeSpamdProcess, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(
        ["--spamd-socket", slow_spamd.address, "--progress-interval", "5", *BRIDGE_ARGS]
    )
    mta = start_sendmail(bridge.sendmail_socket, timeouts=SENDMAIL_DEFAULT_TIMEOUTS)

    delivered = deliver_one(mta, ham_message(), bridge)
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status


def test_sendmail_slow_scan_without_progress_hits_read_timeout_and_fails_open(
    slow_spamd: FakeSpamdProcess, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(
        ["--spamd-socket", slow_spamd.address, "--progress-interval", "60", *BRIDGE_ARGS]
    )
    mta = start_sendmail(bridge.sendmail_socket, timeouts=SENDMAIL_DEFAULT_TIMEOUTS)
    message = ham_message()

    delivered = deliver_one(mta, message, bridge)
    assert [field_name(f) for f in added_fields(message, delivered)] == [b"received"]
