"""The copy spamd scans, judged by SpamAssassin's own scan of what Sendmail delivered.

A sender's own Return-Path (or Content-Length, Bcc) never reaches the recipient: the MTA
drops it. Left in spamd's copy after our synthetic Received line, a Return-Path makes
SpamAssassin distrust the envelope sender ("cannot trust envelope-from") and the rules that
compare it with From: stay silent.
"""

from __future__ import annotations

import pytest

from tests.support import fidelity
from tests.support.e2e import BRIDGE_ARGS, RCPT, SENDER, BridgeFactory, SendmailFactory
from tools.stack import Spamd, describe_logs, send_smtp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

# The headers spambridge adds (milter-spamc style); the judge scans the delivery without them.
BRIDGE_HEADERS = (b"x-spam-flag", b"x-spam-status", b"x-spam-level", b"x-spam-report")
BRIDGE_PREFIXES = (b"x-scanned-by",)

FREEMAIL_FORGED = (
    b"Return-Path: <bounces+carol=gmail.com@lists.example.net>\r\n"
    b"Content-Length: 12\r\n"
    b"Bcc: someone@example.test\r\n"
    b"From: Carol <carol.example@gmail.com>\r\n"
    b"To: Bob <bob@example.test>\r\n"
    b"Subject: lunch on friday\r\n"
    b"Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <lunch-20261204@mail.example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"Hi Bob, are we still on for lunch on Friday? The usual place at noon.\r\n"
)


def test_spamd_copy_envelope_rules_fire_as_in_a_direct_scan_of_the_delivery(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(["--spamd-socket", spamd.address, *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)

    code, text = send_smtp(mta.port, SENDER, [RCPT], FREEMAIL_FORGED)
    assert code == 250, f"{text}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    for name in (b"\nReturn-Path:", b"\nContent-Length:", b"\nBcc:"):
        assert delivered.find(name) < 0, "Sendmail delivered a header it is documented to drop"

    judged = fidelity.with_return_path(
        SENDER,
        fidelity.without_fields(delivered, BRIDGE_HEADERS, prefixes=BRIDGE_PREFIXES),
    )
    direct = fidelity.direct_scan(spamd.port, judged)
    # The judge itself must see the envelope sender, or this test proves nothing.
    assert "HEADER_FROM_DIFFERENT_DOMAINS" in direct.rules, direct
    acted_on = fidelity.bridge_scan(delivered)
    assert acted_on == direct, f"spambridge {acted_on} != spamd {direct}"
