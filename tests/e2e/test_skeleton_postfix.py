"""The issue's end-to-end requirements through real Postfix 3.7 + real spamd + spambridge.

Postfix's milter settings come from the shipped sendmail/postfix-main*.cf snippets. Its pipe
transport delivers with LF line ends, so sent messages are compared in that form.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import (
    BRIDGE_ARGS,
    RCPT,
    REJECT_TEXT,
    SENDER,
    STATUS_NO,
    STATUS_YES,
    BridgeFactory,
    PostfixFactory,
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
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _lf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n")


def test_postfix_gtube_rejected_at_end_of_data_with_extra_reject_zero(
    spamd: Spamd, start_bridge: BridgeFactory, start_postfix: PostfixFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, "--extra-reject", "0", *BRIDGE_ARGS])
    mta = start_postfix(bridge.postfix_socket)

    code, text = send_smtp(mta.port, SENDER, [RCPT], gtube_message())

    assert code == 550, describe_logs(bridge, mta)
    assert REJECT_TEXT.match(text), text
    assert mta.delivered() == []
    assert "action=reject" in bridge.log_text()


def test_postfix_ham_delivered_with_status_no(
    spamd: Spamd, start_bridge: BridgeFactory, start_postfix: PostfixFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_postfix(bridge.postfix_socket)
    message = ham_message()

    code, text = send_smtp(mta.port, SENDER, [RCPT], message)

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status
    assert header_values(delivered, b"X-Spam-Flag") == []
    added = added_fields(_lf(message), delivered)
    assert sorted(field_name(f) for f in added)[0] == b"received"


def test_postfix_gtube_delivered_with_spam_flag_by_default(
    spamd: Spamd, start_bridge: BridgeFactory, start_postfix: PostfixFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_postfix(bridge.postfix_socket)

    code, text = send_smtp(mta.port, SENDER, [RCPT], gtube_message())

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    assert header_values(delivered, b"X-Spam-Flag") == [b"YES"]
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_YES.fullmatch(status), status


def test_postfix_forged_spam_headers_removed_from_ham(
    spamd: Spamd, start_bridge: BridgeFactory, start_postfix: PostfixFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_postfix(bridge.postfix_socket)
    forged = b"X-Spam-Flag: YES\r\nX-Spam-Status: YES, hits=99.00 required=5.00\r\n"

    code, text = send_smtp(mta.port, SENDER, [RCPT], ham_message(extra_headers=forged))

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    assert header_values(delivered, b"X-Spam-Flag") == []
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status


def test_postfix_spamd_down_delivers_ham_unchanged_and_logs_why(
    start_bridge: BridgeFactory, start_postfix: PostfixFactory
) -> None:
    dead_port = free_port()
    bridge = start_bridge(["--spamd-socket", f"127.0.0.1:{dead_port}", *BRIDGE_ARGS])
    mta = start_postfix(bridge.postfix_socket)
    message = ham_message()

    code, text = send_smtp(mta.port, SENDER, [RCPT], message)

    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    added = added_fields(_lf(message), delivered)
    assert [field_name(f) for f in added] == [b"received"], added
    warnings = [line for line in bridge.log_text().splitlines() if "WARNING" in line]
    assert any(str(dead_port) in line for line in warnings), bridge.log_text()


def test_postfix_failopen_snippet_delivers_when_spambridge_is_down(
    start_postfix: PostfixFactory,
) -> None:
    mta = start_postfix(f"inet:127.0.0.1:{free_port()}", realstack.POSTFIX_SNIPPET)
    message = ham_message()

    code, text = send_smtp(mta.port, SENDER, [RCPT], message)

    assert code == 250, f"{text}\n{describe_logs(mta)}"
    (delivered,) = mta.wait_delivered(1)
    assert [field_name(f) for f in added_fields(_lf(message), delivered)] == [b"received"]


def test_postfix_failclosed_snippet_tempfails_when_spambridge_is_down(
    start_postfix: PostfixFactory,
) -> None:
    mta = start_postfix(f"inet:127.0.0.1:{free_port()}", realstack.POSTFIX_SNIPPET_FAILCLOSED)

    code, text = send_smtp(mta.port, SENDER, [RCPT], ham_message())

    assert code == 451, f"{text}\n{describe_logs(mta)}"
    assert text.startswith("4.7.1"), text
    assert mta.delivered() == []
