"""`spambridge scan` and the daemon share one pipeline: the same message, client and envelope
give the same decision (verdict, action, edits, final reply) and the same bytes to spamd."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from spambridge import cli
from spambridge.decision import Decision
from spambridge.milter.flags import Family
from tests.support.config import make_config
from tests.support.controller import frozen_clock, running_milter
from tests.support.policy_messages import SPAM_BODY, score_body
from tests.support.scan_process import run_scan
from tests.support.scenario import milter_options
from tools.fake_spamd import FakeSpamd, RecordedRequest
from tools.milter_client import EomResult, MilterClient

pytestmark = pytest.mark.timeout(120)

HEADERS = [
    (b"From", b" sender@example.net"),
    (b"To", b" rcpt@example.org"),
    (b"Subject", b" cheap pills"),
    (b"X-Spam-Flag", b" NO"),  # forged: deleted, and never shown to spamd
    (b"Precedence", b" bulk"),
]


@dataclass(frozen=True)
class Case:
    name: str
    options: tuple[str, ...]
    body: bytes = SPAM_BODY
    client_address: str = "198.51.100.7"
    sender: str = "<sender@example.net>"
    recipients: tuple[str, ...] = ("<rcpt@example.org>",)


def cases(tmp: Path) -> list[Case]:
    access = tmp / "access"
    access.write_text("From:friend@example.net OK\nConnect:203.0.113.9 REJECT\n")
    amap = f"access-db=text!{access}"
    return [
        Case("ham", (), body=score_body(1)),
        Case("spam tagged", ()),
        Case("spam rejected", ("extra-reject=0",)),
        Case("low precedence discarded", ("extra-reject=0", "+discard-low-precedence")),
        Case("quarantine", ("quarantine-score=6",), body=score_body(7)),
        Case("mail-policy copy", ("mail-policy=copy", "mail-spam=spam@example.org")),
        Case(
            "mail-policy redirect",
            ("mail-policy=redirect", "mail-spam=spam@example.org"),
            recipients=("<a@example.org>", "<b@example.org>"),
        ),
        Case("access map white-lists the sender", (amap,), sender="<friend@example.net>"),
        Case("access map rejects the client", (amap,), client_address="203.0.113.9"),
        Case("trusted network skipped", ("trusted-networks=198.51.100.0/24",)),
        Case(
            "trusted network scanned, outbound tag only",
            ("trusted-networks=198.51.100.0/24", "scan-authenticated=tag", "extra-reject=0"),
        ),
        Case(
            "over spamd-max-size skipped",
            ("spamd-max-size=1", "oversize-action=skip"),
            body=b"x" * 4000 + SPAM_BODY,
        ),
        Case(
            "over spamd-max-size, milter-spamc's whole-chunk truncation",
            ("spamd-max-size=64",),
            body=SPAM_BODY + b"x" * 70000 + b"\r\n" + b"y" * 70000,
        ),
        Case(
            "over spamd-max-size truncated",
            ("spamd-max-size=1", "oversize-action=truncate"),
            body=SPAM_BODY + b"x" * 4000,
        ),
        Case("spamd user from the local recipient", (), recipients=("<root@example.org>",)),
        Case(
            "fixed spamd user with several recipients",
            ("spamd-user=filter",),
            recipients=("<root@example.org>", "<rcpt@example.org>"),
        ),
        Case("dry-run", ("+dry-run", "extra-reject=0")),
        Case("spamd failing, tempfail", ("spamd-error-action=tempfail",)),
        Case("IPv6 client", (), client_address="2001:db8::7"),
    ]


def message_file(case: Case) -> bytes:
    head = b"".join(name + b":" + value + b"\r\n" for name, value in HEADERS)
    return head + b"\r\n" + case.body


async def through_daemon(
    case: Case, spamd: FakeSpamd
) -> tuple[EomResult, tuple[str, str], list[RecordedRequest]]:
    """The message as an MTA passes it: connect, helo, envelope, headers, body."""
    spamd.requests.clear()
    async with running_milter(milter_options(spamd, *case.options)) as running:
        client = await MilterClient.open(running.address, read_timeout=10)
        try:
            await client.negotiate()
            family = Family.INET6 if ":" in case.client_address else Family.INET
            address = case.client_address.encode()
            await client.connect(b"[" + address + b"]", family, address, 4242)
            await client.helo(b"localhost")
            result = await client.send_message(
                HEADERS, case.body, case.sender.encode(), [r.encode() for r in case.recipients]
            )
        finally:
            await client.close()
        ((verdict, action),) = running.services.metrics.messages
    return result, (str(verdict), str(action)), list(spamd.requests)


async def through_scan(case: Case, spamd: FakeSpamd) -> tuple[Decision, list[RecordedRequest]]:
    """The same message as a file for `scan`, with the same client and envelope."""
    spamd.requests.clear()
    config = make_config(*milter_options(spamd, *case.options))
    envelope = cli.Envelope(case.client_address, case.sender, case.recipients)
    txn = cli.scan_transaction(message_file(case), envelope, config)
    decision, _ = await cli.scan_decision(config, txn, envelope, clock=frozen_clock)
    return decision, list(spamd.requests)


async def test_scan_identity_same_decisions_as_the_daemon(tmp_path: Path) -> None:
    seen_actions = set()
    for case in cases(tmp_path):
        fault = "refuse" if "failing" in case.name else None
        async with FakeSpamd(fault=fault) as spamd:
            result, (verdict, action), daemon_requests = await through_daemon(case, spamd)
            decision, scan_requests = await through_scan(case, spamd)
        assert (verdict, action) == (decision.verdict, decision.action), case.name
        assert result.final == decision.final, case.name
        assert result.edits == list(decision.edits), case.name
        # the bytes spamd saw, and the User it was asked to scan for
        assert [(r.headers, r.body) for r in daemon_requests] == [
            (r.headers, r.body) for r in scan_requests
        ], case.name
        seen_actions.add((verdict, action))
    # the cases reach every branch of the pipeline they are meant to
    assert {verdict for verdict, _ in seen_actions} == {"ham", "spam", "unscanned", "error"}
    assert len(seen_actions) >= 10, seen_actions


async def test_scan_envelope_flags_reach_the_pipeline(tmp_path: Path) -> None:
    """--client-address in a trusted network skips the scan, as the daemon does."""
    path = tmp_path / "m.eml"
    path.write_bytes(message_file(Case("", ())))
    async with FakeSpamd() as spamd:
        args = [f"spamd-socket={spamd.address}", "trusted-networks=198.51.100.0/24", "scan"]
        code, out, err = await run_scan([*args, "--client-address", "198.51.100.7", str(path)])
        assert code == 0, err
        assert out.startswith("verdict: unscanned (trusted network 198.51.100.0/24)\n")
        assert spamd.requests == []
        code, out, err = await run_scan([*args, "--client-address=203.0.113.9", str(path)])
        assert code == 1, err
        assert out.startswith("verdict: spam ")


async def test_scan_applies_the_access_map(tmp_path: Path) -> None:
    """scan used to skip the access map: a white-listed sender was scanned and tagged."""
    access = tmp_path / "access"
    access.write_text("From:friend@example.net OK\n")
    path = tmp_path / "m.eml"
    path.write_bytes(message_file(Case("", ())))
    async with FakeSpamd() as spamd:
        code, out, err = await run_scan(
            [
                f"spamd-socket={spamd.address}",
                f"access-db=text!{access}",
                "scan",
                "--sender",
                "friend@example.net",
                "--recipient=rcpt@example.org",
                str(path),
            ]
        )
        assert spamd.requests == []
    assert code == 0, err
    assert out.startswith("verdict: unscanned (access From: from:friend@example.net OK)\n")


def test_scan_envelope_flag_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["file=", "scan", "--client-address", "nowhere", "-"]) == 2
    assert "client-address" in capsys.readouterr().err
    assert cli.main(["file=", "check", "--sender", "a@example.net"]) == 2
    assert "only for scan" in capsys.readouterr().err


async def test_scan_applies_the_access_map_to_its_default_client(tmp_path: Path) -> None:
    access = tmp_path / "access"
    access.write_text("Connect:127.0.0.1 OK\n")
    path = tmp_path / "m.eml"
    path.write_bytes(message_file(Case("", ())))
    async with FakeSpamd() as spamd:
        args = [f"spamd-socket={spamd.address}", f"access-db=text!{access}", "scan", str(path)]
        code, out, err = await run_scan(args)
        assert spamd.requests == []
    assert code == 0, err
    assert out.startswith("verdict: unscanned (access Connect: connect:127.0.0.1 OK)\n")
