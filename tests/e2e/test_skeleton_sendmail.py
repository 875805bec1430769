"""The issue's end-to-end requirements through real Sendmail + real spamd + spambridge."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.conftest import (
    BRIDGE_ARGS,
    RCPT,
    REJECT_TEXT,
    SENDER,
    STATUS_NO,
    STATUS_YES,
    BridgeFactory,
    SendmailFactory,
    added_fields,
)
from tests.support import realstack
from tests.support.realstack import (
    Spamd,
    describe_logs,
    field_name,
    free_port,
    gtube_message,
    ham_message,
    header_values,
    send_smtp,
    split_message,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_sendmail_gtube_rejected_at_end_of_data_with_extra_reject_zero(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, "--extra-reject", "0", *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)

    code, text = send_smtp(mta.port, SENDER, [RCPT], gtube_message())

    assert code == 550, describe_logs(bridge, mta)
    assert REJECT_TEXT.match(text), text
    assert mta.delivered() == []
    assert "action=reject" in bridge.log_text()


def test_sendmail_ham_delivered_with_status_no(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)
    message = ham_message()

    code, text = send_smtp(mta.port, SENDER, [RCPT], message)

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status
    assert header_values(delivered, b"X-Spam-Flag") == []
    assert header_values(delivered, b"X-Scanned-By")[0].startswith(b"spambridge/")
    assert "verdict=ham" in bridge.log_text()


def test_sendmail_gtube_delivered_with_spam_flag_by_default(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)

    code, text = send_smtp(mta.port, SENDER, [RCPT], gtube_message())

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    assert header_values(delivered, b"X-Spam-Flag") == [b"YES"]
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_YES.fullmatch(status), status
    (level,) = header_values(delivered, b"X-Spam-Level")
    assert set(level) == {ord("x")} and len(level) >= 5


def test_sendmail_forged_spam_headers_removed_from_ham(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)
    forged = b"X-Spam-Flag: YES\r\nX-Spam-Status: YES, hits=99.00 required=5.00\r\n"

    code, text = send_smtp(mta.port, SENDER, [RCPT], ham_message(extra_headers=forged))

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    assert header_values(delivered, b"X-Spam-Flag") == []
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status


def test_sendmail_spamd_down_delivers_ham_unchanged_and_logs_why(
    start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    dead_port = free_port()
    bridge = start_bridge(["--spamd-socket", f"127.0.0.1:{dead_port}", *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)
    message = ham_message()

    code, text = send_smtp(mta.port, SENDER, [RCPT], message)

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    added = added_fields(message, delivered)
    assert [field_name(f) for f in added] == [b"received"], added
    warnings = [line for line in bridge.log_text().splitlines() if "WARNING" in line]
    assert any(str(dead_port) in line for line in warnings), bridge.log_text()


def test_sendmail_delivery_is_byte_exact_apart_from_added_headers(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)
    message = realstack.awkward_message()

    code, text = send_smtp(mta.port, SENDER, [RCPT], message)

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    added = added_fields(message, delivered)
    counts = Counter(field_name(f) for f in added)
    assert counts[b"received"] == 1
    assert counts[b"x-spam-status"] == 1
    assert counts[b"x-scanned-by"] == 1
    assert field_name(split_message(delivered)[0][0]) == b"received"
    assert all(f.endswith(b"\r\n") for f in added)


@pytest.mark.parametrize("legacy_syntax", [False, True], ids=["gnu", "milter-spamc"])
def test_sendmail_both_cli_syntaxes_serve(
    legacy_syntax: bool,
    spamd: Spamd,
    start_bridge: BridgeFactory,
    start_sendmail: SendmailFactory,
) -> None:
    args = (
        [f"spamd-socket={spamd.address}", "verbose=info"]
        if legacy_syntax
        else ["--spamd-socket", spamd.address, *BRIDGE_ARGS]
    )
    bridge = start_bridge(args, legacy_syntax=legacy_syntax)
    mta = start_sendmail(bridge.sendmail_socket)

    code, text = send_smtp(mta.port, SENDER, [RCPT], ham_message())

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status
