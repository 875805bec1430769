"""The user features through a real MTA and a real spamd: soft reject, outbound scanning,
the spamd user for virtual users (real spamd's own per-user preferences are the judge), the
subject template, the Prometheus scrape, and `scan` exit statuses against a real spamd."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.e2e import (
    BRIDGE_ARGS,
    RCPT,
    SENDER,
    BridgeFactory,
    PostfixFactory,
    SendmailFactory,
    deliver_one,
)
from tests.support.spamd_recorder import SpamdRecorder
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
    split_message,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Front:
    name: str
    start: Callable[[Spambridge], Mta]


@pytest.fixture(params=["sendmail", "postfix"])
def front(request: pytest.FixtureRequest) -> Front:
    if request.param == "sendmail":
        sendmail: SendmailFactory = request.getfixturevalue("start_sendmail")
        return Front("sendmail", lambda bridge: sendmail(bridge.sendmail_socket))
    postfix: PostfixFactory = request.getfixturevalue("start_postfix")
    return Front("postfix", lambda bridge: postfix(bridge.postfix_socket))


def test_soft_reject_gtube_gets_451_from_the_mta(
    spamd: Spamd, start_bridge: BridgeFactory, front: Front
) -> None:
    bridge = start_bridge(
        [
            *("--spamd-socket", spamd.address),
            *("--extra-tempfail", "0", "--extra-reject", "2000"),
            *BRIDGE_ARGS,
        ]
    )
    mta = front.start(bridge)
    code, text = send_smtp(mta.port, SENDER, [RCPT], gtube_message())
    assert code == 451, f"{code} {text}\n{describe_logs(bridge, mta)}"
    assert "4.7.1 message looks like spam, try again later" in text
    assert mta.delivered() == []
    bridge.wait_log("action=tempfail")


def test_outbound_tag_only_delivers_and_logs_direction(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    # the SMTP client is on loopback: a trusted network, so its mail counts as outbound
    bridge = start_bridge(
        [
            *("--spamd-socket", spamd.address, "--extra-reject", "0"),
            *("--trusted-networks", "127.0.0.0/8", "--scan-authenticated", "tag"),
            *BRIDGE_ARGS,
        ]
    )
    mta = start_sendmail(bridge.sendmail_socket)
    delivered = deliver_one(mta, gtube_message(), bridge)
    assert header_values(delivered, b"X-Spam-Flag") == [b"YES"]
    line = bridge.wait_log("verdict=spam")
    assert "action=tag" in line and "direction=outbound" in line


def test_spamd_user_from_address_reaches_spamds_per_user_preferences(
    workdir: Path, start_bridge: BridgeFactory, start_postfix: PostfixFactory
) -> None:
    # spamd's --virtual-config-dir reads per-address preferences, as SQL user prefs would:
    # only bob@example.test has required_score 3.5
    prefs = workdir / "prefs"
    (prefs / "example.test" / "bob").mkdir(parents=True)
    (prefs / "example.test" / "bob" / "user_prefs").write_text("required_score 3.5\n")
    for path in [prefs, *prefs.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    own = stack.start_spamd(workdir / "spamd", extra_args=[f"--virtual-config-dir={prefs}/%d/%l"])
    try:
        by_address = start_bridge(
            ["--spamd-socket", own.address, "--spamd-user-from", "address", *BRIDGE_ARGS]
        )
        mta = start_postfix(by_address.postfix_socket)
        delivered = deliver_one(mta, ham_message(), by_address, own)
        (status,) = header_values(delivered, b"X-Spam-Status")
        assert status.endswith(b"required=3.50"), status
        assert "for bob@example.test:" in own.log_text()
    finally:
        own.stop()


def test_subject_template_through_the_mta(
    spamd: Spamd, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    bridge = start_bridge(
        ["--spamd-socket", spamd.address, "--subject-tag", "***SPAM %.1f*** %s", *BRIDGE_ARGS]
    )
    mta = start_sendmail(bridge.sendmail_socket)
    delivered = deliver_one(mta, gtube_message(), bridge)
    (subject,) = header_values(delivered, b"Subject")
    (status,) = header_values(delivered, b"X-Spam-Status")
    score = status.split(b"hits=")[1].split()[0]  # real spamd's score, e.g. 1000.00
    assert subject == b"***SPAM %.1f*** Test spam mail (GTUBE)" % float(score)


def test_metrics_scrape_parsed_by_prometheus_client(
    spamd: Spamd, start_bridge: BridgeFactory, start_postfix: PostfixFactory
) -> None:
    port = free_port()
    bridge = start_bridge(
        ["--spamd-socket", spamd.address, "--metrics-listen", f"127.0.0.1:{port}", *BRIDGE_ARGS]
    )
    bridge.wait_log("metrics on")
    mta = start_postfix(bridge.postfix_socket)
    deliver_one(mta, ham_message(), bridge)
    bridge.wait_log("verdict=ham")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (ham,) = [
        s
        for s in families["spambridge_messages"].samples
        if s.labels == {"verdict": "ham", "action": "accept"} and s.name.endswith("_total")
    ]
    assert ham.value == 1
    assert families["process_cpu_seconds"].samples[0].value > 0


@pytest.mark.parametrize(
    ("message", "status"), [(gtube_message(), 1), (ham_message(), 0), (b"", 69)]
)
def test_scan_exit_status_against_real_spamd(spamd: Spamd, message: bytes, status: int) -> None:
    target = spamd.address if message else f"127.0.0.1:{free_port()}"  # nothing listens
    result = subprocess.run(
        [sys.executable, "-m", "spambridge", "file=", f"spamd-socket={target}", "scan", "-"],
        input=message or ham_message(),
        capture_output=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        check=False,
    )
    assert result.returncode == status, result.stderr.decode()
    assert result.stdout.startswith(b"verdict: ")


# ------------------------------------------------------------------ SpamAssassin's rewrite


def spamd_body(reply: bytes) -> bytes:
    return reply.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("kind", ["ham", "spam"])
def test_spamassassin_rewrite_delivers_what_spamc_would(
    spamd: Spamd, start_bridge: BridgeFactory, front: Front, kind: str
) -> None:
    proxy = SpamdRecorder(spamd.port)
    try:
        bridge = start_bridge(
            [
                *("--spamd-socket", f"127.0.0.1:{proxy.port}"),
                *("--header-style", "spamassassin", "--spamd-command", "PROCESS"),
                *("--spamd-rewrite-body", "--no-add-scanned-by", *BRIDGE_ARGS),
            ]
        )
        mta = front.start(bridge)
        sent = gtube_message() if kind == "spam" else ham_message()
        delivered = deliver_one(mta, sent, bridge)
        (reply,) = [exchange.reply for exchange in proxy.take()]
    finally:
        proxy.close()
    spamc = spamd_body(reply)  # what `spamc` prints for this message
    if b"\r\n" not in delivered:  # Postfix's pipe transport delivers LF line ends
        spamc = spamc.replace(b"\r\n", b"\n")
    expected, expected_body = split_message(spamc)
    got, got_body = split_message(delivered)
    assert got_body == expected_body
    # ours: the synthetic Return-Path and Received in front; the MTA's own Received stands
    # where our synthetic one was (on top when report_safe moved the trace away)
    synthetic = [i for i, f in enumerate(expected) if b"(spambridge)" in f]
    expected = [f for f in expected if not f.lower().startswith(b"return-path:")]
    mta_at = next((i for i, f in enumerate(expected) if b"(spambridge)" in f), None)
    expected = [f for f in expected if b"(spambridge)" not in f]
    (mta_received,) = [f for f in got if f not in expected]
    assert mta_received.lower().startswith(b"received:")
    rest = [f for f in got if f is not mta_received]
    if kind == "spam" and front.name == "sendmail":
        # report_safe rebuilt the header section; Sendmail puts a re-added Date, From or
        # Message-Id where its own header table has them, so only the order can differ
        assert sorted(rest) == sorted(expected)
    else:
        assert got.index(mta_received) == (mta_at if mta_at is not None else 0)
        assert rest == expected
    assert len(synthetic) == (1 if kind == "ham" else 0)
    if kind == "spam":
        assert b"multipart/mixed" in b"".join(header_values(delivered, b"Content-Type"))


LONG_DESCRIPTION = (
    "Test rule with a description long enough that SpamAssassin wraps it onto a second line"
)


def test_reject_reply_keeps_wrapped_rule_descriptions(
    workdir: Path, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    # a real spamd with one rule whose description SpamAssassin's report wraps
    own = stack.start_spamd(
        workdir / "spamd",
        extra_args=[
            "--cf=body LONG_DESC_RULE /GTUBE/",
            f"--cf=describe LONG_DESC_RULE {LONG_DESCRIPTION}",
            "--cf=score LONG_DESC_RULE 0.5",
        ],
    )
    try:
        bridge = start_bridge(["--spamd-socket", own.address, "--extra-reject", "0", *BRIDGE_ARGS])
        mta = start_sendmail(bridge.sendmail_socket)
        code, text = send_smtp(mta.port, SENDER, [RCPT], gtube_message())
    finally:
        own.stop()
    assert code == 550, f"{code} {text}\n{describe_logs(bridge, mta)}"
    (line,) = [line for line in text.splitlines() if "LONG_DESC_RULE" in line]
    # the rule line as spamd wrote it (milter-spamc), the wrapped rest joined with one space
    assert line.endswith(f"0.5 LONG_DESC_RULE         BODY: {LONG_DESCRIPTION}"), text
