"""A real gray failure: a spamd whose DNS lookups hang, beside a healthy one, behind Sendmail.

The gray spamd runs its network tests (DNS blocklists on the relay's address, URI blocklists
on the body's links) against a local DNS server that reads every query and answers none, so
each scan waits out its DNS timeouts while SPAMC PING is answered at once. spambridge's pool
(least-loaded, the default) must set it aside although it answers PING, keep it out while it
stays slow (its probation message moves on at the bound, and the cool-down doubles), and take
it back once the DNS server answers again (NXDOMAIN at once).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.e2e import BRIDGE_ARGS, RCPT, SENDER, SendmailFactory
from tests.support.silent_dns import SilentDns
from tools import stack
from tools.stack import Spamd, describe_logs, ham_message, send_smtp, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

# An untrusted relay with a public address (DNSBL lookups) and a link (URIBL lookups).
RELAY = (
    b"Received: from mail.gray-relay.net (mail.gray-relay.net [81.2.69.160])\r\n"
    b"\tby mx.example.test with ESMTP id 4AB13; Mon, 7 Dec 2026 08:00:00 +0000\r\n"
)
LINK = b"\r\nThe notes are at http://www.spambridge-gray-notes.net/budget for everyone.\r\n"


def gray_message() -> bytes:
    return ham_message(extra_headers=RELAY) + LINK


@pytest.fixture
def dns() -> Iterator[SilentDns]:
    server = SilentDns()
    yield server
    server.close()


def start_gray_spamd(workdir: Path, dns: SilentDns) -> Spamd:
    """Network tests on, every lookup to `dns`, short DNS timeouts (the scan waits ~2-8 s
    for answers that never come)."""
    return stack.start_spamd(
        workdir / "gray-spamd",
        children=2,
        local_only=False,
        extra_args=[
            f"--cf=dns_server {dns.address}",
            "--cf=dns_available yes",
            "--cf=rbl_timeout 2",
        ],
    )


def test_spamd_gray_dns_hang_is_set_aside_kept_out_and_taken_back(
    spamd: Spamd, workdir: Path, start_sendmail: SendmailFactory, dns: SilentDns
) -> None:
    gray = start_gray_spamd(workdir, dns)
    bridge = stack.start_spambridge(
        [
            "--spamd-socket",
            f"{gray.address} {spamd.address}",
            "--spamd-timeouts",
            "C:2s;S:5s;R:30s;E:60s",
            "--spamd-cooldown",
            "2",
            "--spamd-cooldown-max",
            "4",
            "--spamd-slow-samples",
            "2",
            *BRIDGE_ARGS,
        ],
        workdir / "bridge",
    )
    sent: list[tuple[int, float]] = []
    stop = threading.Event()

    def send_one() -> None:
        started = time.monotonic()
        code, _ = send_smtp(mta.port, SENDER, [RCPT], gray_message(), timeout=60)
        sent.append((code, time.monotonic() - started))

    def trickle() -> None:  # mail keeps coming, one message at a time
        while not stop.is_set():
            send_one()
            stop.wait(0.2)

    try:
        mta = start_sendmail(bridge.sendmail_socket)
        # 1. Slow for scans, instant for PING: set aside on its first two answers.
        with ThreadPoolExecutor(3) as pool:
            for _ in range(6):
                pool.submit(send_one)
        logs = bridge.wait_log(f"spamd {gray.address} set aside (slow", 30)
        assert dns.queries > 0, "the gray spamd made no DNS query: its network tests are off"
        with ThreadPoolExecutor(1) as pool:
            trickler = pool.submit(trickle)
            try:
                # 2. It answers PING, goes on probation, and is set aside again on its
                # first probation message (which moves on to the healthy spamd).
                logs = bridge.wait_log(f"spamd {gray.address} set aside (slow: probation", 30)
                assert re.search(
                    rf"spamd {re.escape(gray.address)} on probation .*PING answered \(PONG", logs
                ), describe_logs(bridge)
                assert re.search(
                    rf"spamd {re.escape(gray.address)} set aside \(slow: probation.*PING in 4s "
                    r"\(doubled",
                    logs,
                ), describe_logs(bridge)
                assert "back in the pool" not in logs
                # 3. DNS answers again: its next probation passes and it is back.
                dns.answering = True
                logs = bridge.wait_log(f"spamd {gray.address} back in the pool", 30)
                mark = len(logs)
                wait_until(
                    lambda: f"spamd={gray.address}" in bridge.log_text()[mark:],
                    20,
                    "a verdict from the recovered spamd",
                )
            finally:
                stop.set()
                trickler.result(timeout=90)
        assert sent and all(code == 250 for code, _ in sent), sent
        # While it was out no message waited for it: the probation message moved on at
        # the bound (5 x the healthy spamd's time) and the others never went there.
        gray_scans = len(re.findall(rf"spamd={re.escape(gray.address)}", bridge.log_text()))
        assert "verdict=error" not in bridge.log_text(), describe_logs(bridge)
        assert gray_scans >= 2 + 3
    finally:
        bridge.stop()
        gray.stop()
