"""Edits gated on the negotiated actions, and dry-run that lets nothing but Continue out."""

from __future__ import annotations

from pathlib import Path

from spambridge import pipeline, policy
from spambridge.access import AccessMap
from spambridge.decision import Action, Kind
from spambridge.milter.flags import ActionFlags, Family
from spambridge.milter.messages import (
    AddHeader,
    AddRecipient,
    ChangeHeader,
    Continue,
    DeleteRecipient,
    Quarantine,
)
from spambridge.options import Config
from spambridge.transaction import Client, Macros, Transaction
from tests.support.config import make_config

EDITS = (
    ChangeHeader(1, b"X-Spam-Flag", b""),
    AddHeader(b"X-Spam-Flag", b" YES"),
    DeleteRecipient(b"<a@example.org>"),
    AddRecipient(b"<spam@example.org>"),
    Quarantine(b"spam"),
)


def decision() -> policy.Decision:
    return policy.Decision(Continue(), EDITS, Kind.SPAM, Action.TAG)


def test_policy_grant_keeps_what_the_mta_granted() -> None:
    granted, withheld = policy.grant(decision(), int(ActionFlags.ADD_HEADERS))
    assert granted.edits == (AddHeader(b"X-Spam-Flag", b" YES"),)
    assert withheld == ("ChangeHeader", "DeleteRecipient", "AddRecipient", "Quarantine")
    assert granted.final == Continue()
    everything, none = policy.grant(decision(), 0x1FF)
    assert everything.edits == EDITS and none == ()


def cfg(*argv: str) -> Config:
    return make_config(*argv)


def access_file(tmp_path: Path, line: str) -> str:
    path = tmp_path / "access"
    path.write_text(line + "\n")
    return f"text!{path}"


def test_policy_dry_run_access_reject_and_discard_answer_continue(tmp_path: Path) -> None:
    client = Client(b"bad.example", Family.INET, 1, b"192.0.2.66")
    for line, label in (
        ("Connect:192.0.2.66 REJECT", "dry-run:reject"),
        ('Connect:192.0.2.66 ERROR:"550 5.7.1 go away"', "dry-run:reject"),
        ("Connect:192.0.2.66 DISCARD", "dry-run:discard"),
    ):
        spec = access_file(tmp_path, line)
        config = cfg(f"access-db={spec}", "+dry-run", "+access-db-blacklist")
        assert config.access_db == AccessMap.load(spec)
        ruled = policy.access_decision(config, client, Macros(), Transaction(sender=b"<a@b.c>"))
        assert ruled is not None
        found = pipeline.settle(config, ruled, 0x1FF).decision  # dry-run: applied in the seam
        assert found.final == Continue() and found.edits == ()
        assert found.action == label and "access Connect" in found.reason
