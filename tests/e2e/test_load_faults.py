"""Faults under SMTP load through real Sendmail and real spamd, counted by Message-ID.

The invariant for every test: each message the SMTP client saw accepted (250) is delivered
exactly once; every other message got a 4xx or 5xx and is not delivered. Nothing is lost.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.e2e import BRIDGE_ARGS, RCPT, SENDER, BridgeFactory, SendmailFactory
from tests.support.fake_spamd_process import start_fake_spamd
from tools import stack
from tools.stack import (
    Mta,
    Spambridge,
    Spamd,
    describe_logs,
    free_port,
    gtube_message,
    ham_message,
    header_values,
    send_smtp,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.I | re.M)
FAST_TIMEOUTS = ["--spamd-timeouts", "C:2s;S:10s;R:20s;E:30s"]


def message_id(raw: bytes) -> bytes:
    m = MESSAGE_ID.search(raw)
    assert m, raw[:300]
    return m[1]


def send_load(
    port: int,
    messages: Sequence[bytes],
    concurrency: int,
    *,
    during: Callable[[], None] | None = None,
    after_sent: int = 4,
) -> dict[bytes, tuple[int, str]]:
    """Send every message over SMTP from `concurrency` threads; call `during` once
    `after_sent` of them got a reply. Returns Message-ID -> (code, text)."""
    results: dict[bytes, tuple[int, str]] = {}
    lock = threading.Lock()
    fired = threading.Event()

    def one(raw: bytes) -> None:
        try:
            reply = send_smtp(port, SENDER, [RCPT], raw, timeout=90)
        except (OSError, EOFError) as exc:  # connection dropped: the client saw no 250
            reply = (0, f"connection error: {exc}")
        with lock:
            results[message_id(raw)] = reply
            ready = len(results) >= after_sent and not fired.is_set()
            if ready:
                fired.set()
        if ready and during is not None:
            during()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, messages))
    return results


def check_nothing_lost(mta: Mta, results: dict[bytes, tuple[int, str]]) -> Counter[bytes]:
    time.sleep(1.0)  # deliveries of the last accepted messages finish
    delivered = Counter(message_id(raw) for raw in mta.delivered())
    for mid, (code, text) in results.items():
        if code == 250:
            assert delivered[mid] == 1, f"{mid!r} accepted but delivered {delivered[mid]} times"
        else:
            assert 400 <= code < 600 or code == 0, (mid, code, text)
            assert delivered[mid] == 0, f"{mid!r} got {code} {text} but was delivered"
    assert set(delivered) <= set(results), "a message nobody sent was delivered"
    return delivered


@pytest.fixture
def private_spamd(workdir: Path) -> Iterator[Spamd]:
    """A spamd of this test's own, because the test stops it."""
    daemon = stack.start_spamd(workdir / "spamd", children=3)
    yield daemon
    daemon.stop()


@pytest.mark.parametrize(
    ("action", "failure_code"), [("accept", None), ("tempfail", 451), ("reject", 550)]
)
def test_load_spamd_stopped_under_load(
    action: str,
    failure_code: int | None,
    private_spamd: Spamd,
    start_bridge: BridgeFactory,
    start_sendmail: SendmailFactory,
) -> None:
    bridge = start_bridge(
        [
            "--spamd-socket",
            private_spamd.address,
            "--spamd-error-action",
            action,
            *FAST_TIMEOUTS,
            *BRIDGE_ARGS,
        ]
    )
    mta = start_sendmail(bridge.sendmail_socket)
    messages = [ham_message(subject=f"load {i}") for i in range(24)]

    results = send_load(mta.port, messages, 4, during=private_spamd.stop, after_sent=4)

    codes = Counter(code for code, _ in results.values())
    delivered = check_nothing_lost(mta, results)
    log = bridge.wait_log("verdict=error")
    assert "WARNING" in log, describe_logs(bridge)
    scanned = [raw for raw in mta.delivered() if header_values(raw, b"X-Spam-Status")]
    assert scanned, "nothing was scanned before spamd stopped"
    if failure_code is None:
        assert set(codes) == {250}, codes
        assert len(delivered) == len(messages)
        assert len(scanned) < len(messages), "every message claims a scan after spamd stopped"
    else:
        assert codes[failure_code] >= 1, (codes, describe_logs(bridge))
        assert set(codes) <= {250, failure_code}, codes


@pytest.mark.parametrize(
    ("snippet", "down_code"),
    [(stack.SENDMAIL_SNIPPET, None), (stack.SENDMAIL_SNIPPET_FAILCLOSED, 451)],
    ids=["no-F", "F=T"],
)
def test_load_spambridge_killed_and_restarted(
    snippet: Path,
    down_code: int | None,
    spamd: Spamd,
    workdir: Path,
    start_sendmail: SendmailFactory,
) -> None:
    port = free_port()
    args = ["--spamd-socket", spamd.address, *BRIDGE_ARGS]
    bridges: list[Spambridge] = [stack.start_spambridge(args, workdir / "b1", port=port)]
    mta = start_sendmail(f"inet:{port}@127.0.0.1", snippet)

    def kill_then_restart() -> None:
        bridges[0].kill()
        time.sleep(2.0)  # a few sessions meet a dead milter
        bridges.append(stack.start_spambridge(args, workdir / "b2", port=port))

    try:
        messages = [ham_message(subject=f"kill {i}") for i in range(30)]
        results = send_load(mta.port, messages, 4, during=kill_then_restart, after_sent=5)
        codes = Counter(code for code, _ in results.values())
        delivered = check_nothing_lost(mta, results)
        if down_code is None:
            assert set(codes) == {250}, codes  # fail open: everything delivered, once
            assert len(delivered) == len(messages)
        else:
            assert codes[down_code] >= 1, codes  # fail closed: the client retries later
            assert set(codes) <= {250, down_code}, codes
        # after the restart the chain scans again
        last = ham_message()
        assert send_smtp(mta.port, SENDER, [RCPT], last)[0] == 250
        time.sleep(1.0)
        (final,) = [raw for raw in mta.delivered() if message_id(raw) == message_id(last)]
        assert header_values(final, b"X-Spam-Status"), describe_logs(bridges[-1], mta)
    finally:
        for bridge in bridges:
            bridge.stop()


def test_load_sigterm_during_slow_scan_still_delivers_once(
    workdir: Path, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    fake = start_fake_spamd(workdir, fault="delay", delay=4.0)
    try:
        bridge = start_bridge(["--spamd-socket", fake.address, *BRIDGE_ARGS])
        mta = start_sendmail(bridge.sendmail_socket)
        message = ham_message()
        reply: list[tuple[int, str]] = []
        sender = threading.Thread(
            target=lambda: reply.append(send_smtp(mta.port, SENDER, [RCPT], message))
        )
        sender.start()
        time.sleep(1.5)  # the scan is in flight
        bridge.proc.send_signal(signal.SIGTERM)
        sender.join(60)
        assert reply and reply[0][0] == 250, (reply, describe_logs(bridge, mta))
        assert bridge.proc.wait(30) == 0
        (delivered,) = mta.wait_delivered(1)
        assert header_values(delivered, b"X-Spam-Status"), delivered[:600]
        assert "stopping: finishing 1 message" in bridge.log_text()
    finally:
        fake.stop()


SITE_OPTIONS = """\
# A realistic site option file (milter-spamc syntax, several options at once).
spamd-command=REPORT
extra-reject=2000
subject-tag=[** SPAM **]
+subject-tag-score
+always-add-flag
level-character=*
mail-policy=copy
mail-spam=spamtrap@example.test
mail-archive=archive@example.test
-smtp-auth-ok
"""


def test_load_site_option_file_through_sendmail(
    spamd: Spamd, workdir: Path, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    cf = workdir / "site.cf"
    cf.write_text(SITE_OPTIONS + f"spamd-socket={spamd.address}\n")
    bridge = start_bridge([f"file={cf}", *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)

    assert send_smtp(mta.port, SENDER, [RCPT], gtube_message())[0] == 250
    assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
    mta.wait_delivered(5)  # spam: rcpt + spamtrap + archive; ham: rcpt + archive
    time.sleep(0.5)
    by_rcpt: dict[str, list[bytes]] = {}
    for rcpt, raw in mta.deliveries():
        by_rcpt.setdefault(rcpt.strip("<>"), []).append(raw)
    assert sorted((k, len(v)) for k, v in by_rcpt.items()) == [
        ("archive@example.test", 2),
        (RCPT, 2),
        ("spamtrap@example.test", 1),
    ], by_rcpt.keys()
    spam_copy = by_rcpt["spamtrap@example.test"][0]
    assert header_values(spam_copy, b"X-Spam-Flag") == [b"YES"]
    (subject,) = header_values(spam_copy, b"Subject")
    assert re.match(rb"\[\*\* SPAM \*\*\] \(\d{3,4}\.\d\d/5\.00\) Test spam", subject), subject
    (level,) = header_values(spam_copy, b"X-Spam-Level")
    assert level == b"*" * 982
    hams = [raw for raw in by_rcpt[RCPT] if header_values(raw, b"X-Spam-Flag") == [b"NO"]]
    assert len(hams) == 1, "always-add-flag: ham carries X-Spam-Flag: NO"
    assert header_values(hams[0], b"X-Spam-Level") == []


def test_load_site_redirect_sends_spam_only_to_the_trap(
    spamd: Spamd, workdir: Path, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    cf = workdir / "site.cf"
    cf.write_text(
        "mail-policy=redirect\nmail-spam=spamtrap@example.test\nsubject-tag=[SPAM]\n"
        f"spamd-socket={spamd.address}\n"
    )
    bridge = start_bridge([f"file={cf}", *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)

    assert send_smtp(mta.port, SENDER, [RCPT], gtube_message())[0] == 250
    assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
    mta.wait_delivered(2)
    time.sleep(0.5)
    deliveries = mta.deliveries()
    assert sorted(rcpt.strip("<>") for rcpt, _ in deliveries) == [RCPT, "spamtrap@example.test"]
    (trap,) = [raw for rcpt, raw in deliveries if "spamtrap" in rcpt]
    assert header_values(trap, b"X-Original-Recipient") == [RCPT.encode()]  # bare, as milter-spamc
    assert header_values(trap, b"X-Spam-Flag") == [b"YES"]
    (subject,) = header_values(trap, b"Subject")
    assert subject.startswith(b"[SPAM] ")
    (ham,) = [raw for rcpt, raw in deliveries if RCPT in rcpt]
    assert header_values(ham, b"X-Spam-Flag") == []
