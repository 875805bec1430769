"""The end-of-message seam: dry-run, what the MTA granted and our own failures, applied in
one place for the daemon and `scan` alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from spambridge import pipeline, policy
from spambridge.cli import resolve
from spambridge.errors import SpamdError, SpamdUnavailable
from spambridge.milter.flags import ActionFlags, Family
from spambridge.milter.messages import AddHeader, Continue, ReplyCode, TempFail
from spambridge.options import Config
from spambridge.policy import ScanPlan
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Client, Macros, Recipient, Transaction

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
ALL = ActionFlags(0x1FF)


def cfg(*argv: str) -> Config:
    return resolve(["file=", "spamd-socket=127.0.0.1:783", *argv])[1].config


def txn() -> Transaction:
    t = Transaction(sender=b"<a@example.net>")
    t.add_header(b"X-Spam-Flag", b" YES")  # forged
    t.recipients.append(Recipient(b"<u@example.org>", (), b"local", b"", b"u"))
    return t


def run(
    config: Config, outcome: Verdict | SpamdError | Exception, actions: ActionFlags = ALL
) -> pipeline.Outcome:
    async def scan(plan: ScanPlan) -> Verdict | SpamdError:
        if isinstance(outcome, Exception) and not isinstance(outcome, SpamdError):
            raise outcome
        return outcome

    client = Client(b"mx.example.net", Family.INET, 25, b"192.0.2.7")
    return asyncio.run(
        pipeline.end_of_message(
            config, client, Macros(), txn(), now=NOW, actions=actions, scan=scan
        )
    )


def verdict(spam: bool, score: float) -> Verdict:
    return Verdict(spam, score, 5.0, b"", "REPORT", "127.0.0.1:783", 0.1)


@pytest.mark.parametrize(
    ("argv", "outcome", "label"),
    [
        ((), verdict(False, 1.0), "dry-run:accept"),
        ((), verdict(True, 9.0), "dry-run:tag"),
        (("extra-reject=0",), verdict(True, 9.0), "dry-run:reject"),
        (("mail-policy=copy", "mail-spam=s@example.org"), verdict(True, 9.0), "dry-run:copy"),
        (("spamd-error-action=tempfail",), SpamdUnavailable("refused"), "dry-run:tempfail"),
        (("spamd-socket=",), verdict(True, 9.0), "dry-run:accept"),  # not scanned
    ],
)
def test_pipeline_dry_run_labels_what_would_have_happened(
    argv: tuple[str, ...], outcome: Verdict | SpamdError, label: str
) -> None:
    """The label is the decision's own action, marked dry-run; nothing but Continue goes out."""
    real = run(cfg(*argv), outcome).decision
    dry = run(cfg("+dry-run", *argv), outcome).decision
    assert dry.action == label == f"dry-run:{real.action}"
    assert dry.final == Continue() and dry.edits == ()


def test_pipeline_leaves_out_what_the_mta_did_not_grant() -> None:
    granted = run(cfg(), verdict(True, 9.0), ActionFlags.ADD_HEADERS)
    assert granted.withheld == ("ChangeHeader",)  # the forged header's deletion
    assert granted.decision.edits and all(isinstance(e, AddHeader) for e in granted.decision.edits)
    assert run(cfg(), verdict(True, 9.0)).withheld == ()


def test_pipeline_our_own_failure_is_the_spamd_error_action() -> None:
    outcome = run(cfg("spamd-error-action=tempfail"), RuntimeError("boom"))
    assert isinstance(outcome.failure, RuntimeError)
    assert isinstance(outcome.decision.final, ReplyCode) and outcome.decision.verdict == "error"
    assert "internal: RuntimeError: boom" in outcome.decision.reason


def test_pipeline_last_resort_when_even_the_error_decision_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: object) -> policy.Decision:
        raise ValueError("no decision")

    monkeypatch.setattr(policy, "on_internal_error", broken)
    outcome = run(cfg("spamd-error-action=tempfail"), RuntimeError("boom"))
    assert outcome.decision.final == TempFail() and outcome.decision.edits == ()
    assert isinstance(outcome.failure, RuntimeError)
