"""The issue's end-to-end requirements through a real MTA (Sendmail 8 and Postfix 3.7, each
test runs with both) + real spamd + spambridge, then what is particular to each MTA.

Sendmail is configured from the shipped sendmail/spambridge.mc snippet, Postfix from the
sendmail/postfix-main*.cf snippets. Postfix's pipe transport delivers with LF line ends, so
for it sent messages are compared in that form.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.support.e2e import (
    BRIDGE_ARGS,
    RCPT,
    REJECT_TEXT,
    SENDER,
    STATUS_NO,
    STATUS_YES,
    BridgeFactory,
    PostfixFactory,
    SendmailFactory,
    added_fields,
    deliver_one,
)
from tools import stack
from tools.stack import (
    Mta,
    Spambridge,
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


@dataclass(frozen=True)
class Front:
    """The MTA in front of spambridge: how to start it, and how it delivers a sent message."""

    start: Callable[[Spambridge], Mta]
    as_delivered: Callable[[bytes], bytes]


@pytest.fixture(params=["sendmail", "postfix"])
def front(request: pytest.FixtureRequest) -> Front:
    # Looked up lazily, so a missing Postfix skips (or under CI fails) only its own half.
    if request.param == "sendmail":
        sendmail: SendmailFactory = request.getfixturevalue("start_sendmail")
        return Front(lambda bridge: sendmail(bridge.sendmail_socket), lambda m: m)
    postfix: PostfixFactory = request.getfixturevalue("start_postfix")
    return Front(lambda bridge: postfix(bridge.postfix_socket), _lf)


def _lf(message: bytes) -> bytes:
    """A sent message as Postfix's pipe transport delivers it: LF line ends."""
    return message.replace(b"\r\n", b"\n")


# ------------------------------------------------------------------ both MTAs


def test_gtube_rejected_at_end_of_data_with_extra_reject_zero(
    spamd: Spamd, start_bridge: BridgeFactory, front: Front
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, "--extra-reject", "0", *BRIDGE_ARGS])
    mta = front.start(bridge)

    code, text = send_smtp(mta.port, SENDER, [RCPT], gtube_message())

    assert code == 550, describe_logs(bridge, mta)
    assert REJECT_TEXT.match(text), text
    assert mta.delivered() == []
    assert "action=reject" in bridge.wait_log("verdict=")


def test_ham_delivered_with_status_no(
    spamd: Spamd, start_bridge: BridgeFactory, front: Front
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = front.start(bridge)
    message = ham_message()

    delivered = deliver_one(mta, message, bridge)
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status
    assert header_values(delivered, b"X-Spam-Flag") == []
    assert header_values(delivered, b"X-Scanned-By")[0].startswith(b"spambridge/")
    added = added_fields(front.as_delivered(message), delivered)
    names = Counter(field_name(f) for f in added)
    assert names[b"received"] == names[b"x-spam-status"] == names[b"x-scanned-by"] == 1, added
    assert field_name(split_message(delivered)[0][0]) == b"received"
    assert "verdict=ham" in bridge.wait_log("verdict=")


def test_gtube_delivered_with_spam_flag_by_default(
    spamd: Spamd, start_bridge: BridgeFactory, front: Front
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = front.start(bridge)

    delivered = deliver_one(mta, gtube_message(), bridge)
    assert header_values(delivered, b"X-Spam-Flag") == [b"YES"]
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_YES.fullmatch(status), status
    (level,) = header_values(delivered, b"X-Spam-Level")
    assert set(level) == {ord("x")} and len(level) >= 5


def test_forged_spam_headers_removed_from_ham(
    spamd: Spamd, start_bridge: BridgeFactory, front: Front
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = front.start(bridge)
    forged = b"X-Spam-Flag: YES\r\nX-Spam-Status: YES, hits=99.00 required=5.00\r\n"

    delivered = deliver_one(mta, ham_message(extra_headers=forged), bridge)
    assert header_values(delivered, b"X-Spam-Flag") == []
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status


def test_spamd_down_delivers_ham_unchanged_and_logs_why(
    start_bridge: BridgeFactory, front: Front
) -> None:
    dead_port = free_port()
    bridge = start_bridge(["--spamd-socket", f"127.0.0.1:{dead_port}", *BRIDGE_ARGS])
    mta = front.start(bridge)
    message = ham_message()

    delivered = deliver_one(mta, message, bridge)
    added = added_fields(front.as_delivered(message), delivered)
    assert [field_name(f) for f in added] == [b"received"], added
    warnings = [line for line in bridge.log_text().splitlines() if "WARNING" in line]
    assert any(str(dead_port) in line for line in warnings), bridge.log_text()


@pytest.mark.parametrize("skip_body", [False, True], ids=["streamed", "skip-body"])
def test_oversize_message_delivered_whole_and_unscanned(
    spamd: Spamd, start_bridge: BridgeFactory, front: Front, skip_body: bool
) -> None:
    """Over spamd-max-size: by default the MTA streams the body unanswered and the milter
    drops what it does not keep; with +skip-body it answers SKIP. Either way the message
    arrives byte for byte, without verdict headers."""
    args = ["--spamd-socket", spamd.address, "--spamd-max-size", "64", "--oversize-action", "skip"]
    args += BRIDGE_ARGS
    bridge = start_bridge([*args, "--skip-body"] if skip_body else args)
    mta = front.start(bridge)
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?\r\n"
    message = ham_message(subject="big") + line * 4000  # about 300 KB

    delivered = deliver_one(mta, message, bridge)
    added = added_fields(front.as_delivered(message), delivered)
    names = {field_name(f) for f in added}
    assert b"x-spam-status" not in names and b"x-spam-flag" not in names, added
    assert "over spamd-max-size" in bridge.wait_log("verdict=")


# ------------------------------------------------------------------ Sendmail


def test_sendmail_delivery_is_byte_exact_apart_from_added_headers(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)
    message = stack.awkward_message()

    delivered = deliver_one(mta, message, bridge)
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

    delivered = deliver_one(mta, ham_message(), bridge)
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status


# ------------------------------------------------------------------ Postfix


def test_postfix_failopen_snippet_delivers_when_spambridge_is_down(
    start_postfix: PostfixFactory,
) -> None:
    mta = start_postfix(f"inet:127.0.0.1:{free_port()}", stack.POSTFIX_SNIPPET)
    message = ham_message()

    delivered = deliver_one(mta, message)
    assert [field_name(f) for f in added_fields(_lf(message), delivered)] == [b"received"]


def test_postfix_failclosed_snippet_tempfails_when_spambridge_is_down(
    start_postfix: PostfixFactory,
) -> None:
    mta = start_postfix(f"inet:127.0.0.1:{free_port()}", stack.POSTFIX_SNIPPET_FAILCLOSED)

    code, text = send_smtp(mta.port, SENDER, [RCPT], ham_message())

    assert code == 451, f"{text}\n{describe_logs(mta)}"
    assert text.startswith("4.7.1"), text
    assert mta.delivered() == []
