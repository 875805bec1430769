from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from spambridge import pipeline, policy, recipients
from spambridge.errors import SpamdTimeout, SpamdUnavailable
from spambridge.milter.flags import Family
from spambridge.milter.messages import (
    AddHeader,
    AddRecipient,
    ChangeHeader,
    Continue,
    DeleteRecipient,
    Discard,
    Quarantine,
    ReplyCode,
)
from spambridge.options import Config
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Client, Macros, Recipient, Transaction
from tests.support.config import make_config

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
REPORT = (
    b"Spam detection software\r\n\r\nContent analysis details:   (1000.0 points)\r\n\r\n"
    b" pts rule name              description\r\n"
    b"---- ---------------------- ------------------------\r\n"
    b"1000 GTUBE                  BODY: Generic Test for 100% Unsolicited Bulk Email\r\n"
    b"-0.0 NO_RELAYS              Informational: message was not relayed\r\n"
)


def cfg(*argv: str) -> Config:
    return make_config(*argv)


def txn(*headers: tuple[bytes, bytes], rcpts: int = 1) -> Transaction:
    t = Transaction(sender=b"<a@example.net>")
    for name, value in headers:
        t.add_header(name, value)
    for i in range(rcpts):
        t.recipients.append(
            Recipient(f"<u{i}@example.org>".encode(), (), b"local", b"", f"u{i}".encode())
        )
    return t


def spam(score: float = 1000.0, command: str = "REPORT") -> Verdict:
    return Verdict(True, score, 5.0, REPORT, command, "127.0.0.1:783", 0.1)


def ham(score: float = -1.7) -> Verdict:
    return Verdict(False, score, 5.0, b"", "REPORT", "127.0.0.1:783", 0.1)


def decide(config: Config, t: Transaction, v: Verdict) -> policy.Decision:
    """The decision as it leaves the end-of-message seam (dry-run applied there), with an
    MTA that grants every action."""
    return pipeline.settle(
        config, policy.decide(config, t, v, macros=Macros(), now=NOW), 0x1FF
    ).decision


def added(d: policy.Decision) -> dict[bytes, bytes]:
    return {e.name: e.value for e in d.edits if isinstance(e, AddHeader)}


def test_policy_ham_gets_status_only() -> None:
    d = decide(cfg(), txn((b"Subject", b" hi")), ham())
    assert d.final == Continue() and d.verdict == "ham" and d.action == "accept"
    h = added(d)
    assert h[b"X-Spam-Status"] == b" NO, hits=-1.70 required=5.00"
    assert b"X-Spam-Flag" not in h and b"X-Spam-Level" not in h
    assert h[b"X-Scanned-By"].startswith(b" spambridge/")


def test_policy_ham_always_add_flag_and_level() -> None:
    h = added(decide(cfg("+always-add-flag", "+always-add-level"), txn(), ham(3.2)))
    assert h[b"X-Spam-Flag"] == b" NO" and h[b"X-Spam-Level"] == b" xxx"


def test_policy_spam_tagged_with_flag_level_report_subject() -> None:
    d = decide(cfg("level-character=*"), txn((b"Subject", b" buy now")), spam(7.5))
    h = added(d)
    assert h[b"X-Spam-Flag"] == b" YES"
    assert h[b"X-Spam-Status"] == b" YES, hits=7.50 required=5.00"
    assert h[b"X-Spam-Level"] == b" *******"
    assert h[b"X-Spam-Report"].startswith(b" Spam detection software\n  | \n  | Content")
    assert ChangeHeader(1, b"Subject", b" [SPAM] buy now") in d.edits
    assert d.action == "tag"


def test_policy_subject_tag_score_and_no_double_tag() -> None:
    d = decide(cfg("+subject-tag-score"), txn((b"Subject", b" x")), spam(7.5))
    assert ChangeHeader(1, b"Subject", b" [SPAM] (7.50/5.00) x") in d.edits
    d = decide(cfg(), txn((b"Subject", b" [spam] already")), spam())
    assert not any(isinstance(e, ChangeHeader) and e.name == b"Subject" for e in d.edits)
    d = decide(cfg("subject-tag="), txn((b"Subject", b" x")), spam())
    assert not any(isinstance(e, ChangeHeader) and e.name == b"Subject" for e in d.edits)


def test_policy_missing_subject_is_added() -> None:
    d = decide(cfg(), txn(), spam())
    assert AddHeader(b"Subject", b" [SPAM]") in d.edits


def test_policy_forged_headers_deleted_last_first() -> None:
    t = txn((b"X-Spam-Flag", b" YES"), (b"x-spam-FLAG", b" YES"), (b"X-Spam-Status", b" Yes"))
    d = decide(cfg(), t, ham())
    deletes = [e for e in d.edits if isinstance(e, ChangeHeader) and e.value == b""]
    assert [(e.index, e.name.lower()) for e in deletes if e.name.lower() == b"x-spam-flag"] == [
        (2, b"x-spam-flag"),
        (1, b"x-spam-flag"),
    ]
    assert any(e.name == b"X-Spam-Status" for e in deletes)


def test_policy_extra_reject_zero_rejects_all_spam_with_detailed_reply() -> None:
    d = decide(cfg("extra-reject=0"), txn(), spam())
    assert isinstance(d.final, ReplyCode) and d.action == "reject" and d.edits == ()
    assert d.final.text.startswith(
        b"550-5.7.1 message was identified as junk mail, score 1000.00/5.00\r\n"
    )
    assert (
        b"550 5.7.1 1000 GTUBE                  BODY: Generic Test for 100p Unsolicited"
        in d.final.text
    )
    assert b"NO_RELAYS" not in d.final.text  # zero-score rules are left out


def test_policy_plain_reject_reply_and_threshold_margin() -> None:
    assert decide(cfg("extra-reject=3"), txn(), spam(7.9)).action == "tag"
    d = decide(cfg("extra-reject=3", "-smtp-detailed-reply"), txn(), spam(8.0))
    assert d.final == ReplyCode(b"550 5.7.1 This looks like spam.")


def test_policy_single_line_reject_for_check_command() -> None:
    d = decide(cfg("extra-reject=0", "spamd-command=CHECK"), txn(), spam(command="CHECK"))
    assert d.final == ReplyCode(
        b"550 5.7.1 message was identified as junk mail, score 1000.00/5.00"
    )


def test_policy_discard_and_low_precedence() -> None:
    assert decide(cfg("extra-discard=10"), txn(), spam()).final == Discard()
    t = txn((b"Precedence", b" bulk"))
    d = decide(cfg("extra-reject=0", "+discard-low-precedence"), t, spam())
    assert d.final == Discard() and d.action == "discard"


def test_policy_absolute_scores_and_quarantine() -> None:
    assert decide(cfg("reject-score=15"), txn(), ham(16)).action == "reject"
    assert decide(cfg("discard-score=100"), txn(), spam()).final == Discard()
    d = decide(cfg("quarantine-score=6"), txn(), spam(7.0))
    assert Quarantine(b"spam score 7.00/5.00") in d.edits and d.final == Continue()


def test_policy_custom_reject_reply() -> None:
    d = decide(
        cfg("extra-reject=0", "reject-reply=554 5.7.0 no thanks", "-smtp-detailed-reply"),
        txn(),
        spam(),
    )
    assert d.final == ReplyCode(b"554 5.7.0 This looks like spam.")
    d = decide(
        cfg("extra-reject=0", "reject-reply=554 5.7.0 no thanks", "spamd-command=CHECK"),
        txn(),
        spam(command="CHECK"),
    )
    assert d.final == ReplyCode(b"554 5.7.0 no thanks, score 1000.00/5.00")


def test_policy_dry_run_changes_nothing() -> None:
    d = decide(cfg("extra-reject=0", "+dry-run"), txn((b"X-Spam-Flag", b" YES")), spam())
    assert d.final == Continue() and d.edits == () and d.action == "dry-run:reject"


@pytest.mark.parametrize(
    ("action", "final", "label"),
    [
        ("accept", Continue(), "accept"),
        ("tempfail", ReplyCode(b"451 4.7.1 spam scanner unavailable, try again later"), "tempfail"),
        ("reject", ReplyCode(b"550 5.7.1 spam scanner unavailable"), "reject"),
    ],
)
def test_policy_spamd_error_action(action: str, final: object, label: str) -> None:
    d = policy.on_error(
        cfg(f"spamd-error-action={action}"),
        txn(),
        SpamdUnavailable("connection refused", "127.0.0.1:783"),
    )
    assert d.final == final and d.action == label and d.verdict == "error"
    assert "refused" in d.reason


def test_policy_spamd_error_custom_text() -> None:
    d = policy.on_error(
        cfg("spamd-error-action=tempfail", "spamd-tempfail-reply=421 4.3.2 scanner down"),
        txn(),
        SpamdTimeout("read timeout"),
    )
    assert d.final == ReplyCode(b"421 4.3.2 scanner down")


def test_policy_fail_open_still_removes_forged_headers() -> None:
    d = policy.on_error(cfg(), txn((b"X-Spam-Flag", b" YES")), SpamdTimeout("t"))
    assert d.final == Continue()
    assert d.edits == (ChangeHeader(1, b"X-Spam-Flag", b""),)


def test_policy_skip_reasons() -> None:
    m = Macros()
    c = Client(b"h", Family.INET, 1, b"10.1.2.3")
    assert policy.skip_reason(cfg(), c, m) is None
    assert "trusted network" in str(policy.skip_reason(cfg("trusted-networks=10.0.0.0/8"), c, m))
    v6 = Client(b"h", Family.INET6, 1, b"2001:db8::5")
    assert policy.skip_reason(cfg("trusted-networks=2001:db8::/32 10.0.0.0/8"), v6, m)
    m.define(b"M", ((b"{auth_authen}", b"bob"),))
    assert policy.skip_reason(cfg(), c, m) == "authenticated sender"
    assert policy.skip_reason(cfg("-smtp-auth-ok"), c, m) is None
    assert "disabled" in str(policy.skip_reason(cfg("spamd-socket="), c, Macros()))


def test_policy_spamd_user_rules() -> None:
    t = txn()
    t.recipients[0] = Recipient(b"<root@example.org>", (), b"local", b"", b"root")
    assert recipients.spamd_user(cfg("spamd-user=fallback"), t) == "root"
    assert recipients.spamd_user(cfg("spamd-user=fallback", "+no-user-config"), t) == "fallback"
    assert recipients.spamd_user(cfg("spamd-user=fallback"), txn(rcpts=2)) == "fallback"
    t.recipients[0] = Recipient(b"<nosuchuser9@example.org>", (), b"local", b"", b"nosuchuser9")
    assert recipients.spamd_user(cfg("spamd-user=fallback"), t) == "fallback"
    t.recipients[0] = Recipient(
        b"<carol@[10.0.0.5]>", (), b"esmtp", b"[10.0.0.5]", b"carol@[10.0.0.5]"
    )
    assert recipients.spamd_user(cfg("+is-gateway"), t) == "carol"
    assert recipients.spamd_user(cfg("spamd-user=f"), t) == "f"


def test_policy_mail_policy_copy_redirect_and_low_spam() -> None:
    d = decide(cfg("mail-policy=copy", "mail-spam=trap@example.org"), txn(), spam())
    assert AddRecipient(b"trap@example.org") in d.edits and d.action == "copy"
    d = decide(cfg("mail-policy=redirect", "mail-spam=trap@example.org"), txn(rcpts=2), spam())
    assert DeleteRecipient(b"u0@example.org") in d.edits
    assert DeleteRecipient(b"u1@example.org") in d.edits
    assert AddRecipient(b"trap@example.org") in d.edits
    assert added(d)[b"X-Original-Recipient"] in (b" u0@example.org", b" u1@example.org")
    d = decide(
        cfg("mail-policy=copy", "mail-spam=hi@x", "mail-low-spam=lo@x", "extra-low-spam=5"),
        txn(),
        spam(8),
    )
    assert AddRecipient(b"lo@x") in d.edits
    d = decide(
        cfg("mail-policy=redirect", "mail-spam=hi@x", "mail-format=%L+spam@%D"), txn(), spam()
    )
    assert AddRecipient(b"u0+spam@example.org") in d.edits


def test_policy_mail_ham_and_archive() -> None:
    d = decide(cfg("mail-ham=h@x", "mail-archive=a@x"), txn(), ham())
    assert AddRecipient(b"h@x") in d.edits and AddRecipient(b"a@x") in d.edits
    d = decide(cfg("mail-ham=h@x"), txn(), spam())
    assert AddRecipient(b"h@x") not in d.edits


def test_policy_spamassassin_style_copies_headers() -> None:
    block = (
        b"Received: from localhost\r\nX-Spam-Flag: YES\r\n"
        b"X-Spam-Status: Yes, score=1000.0 required=5.0 tests=GTUBE\r\n"
        b"X-Spam-Prev-Subject: hi\r\nSubject: [SPAM] hi\r\n\r\n"
    )
    v = Verdict(True, 1000.0, 5.0, block, "HEADERS", "h", 0.1)
    config = cfg("header-style=spamassassin", "spamd-command=HEADERS")
    d = decide(config, txn((b"Subject", b" hi"), (b"X-Spam-Whatever", b" forged")), v)
    h = added(d)
    assert h[b"X-Spam-Flag"] == b" YES"
    assert h[b"X-Spam-Status"].startswith(b" Yes, score=1000.0")
    assert ChangeHeader(1, b"X-Spam-Whatever", b"") in d.edits
    assert ChangeHeader(1, b"Subject", b" [SPAM] hi") in d.edits


def test_policy_access_map_decisions(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    from spambridge.access import AccessMap

    path = Path(str(tmp_path)) / "access"
    path.write_text(
        "milter-spamc-Connect:192.0.2.1 OK\n"
        "Connect:198.51.100.66 ERROR:550 5.7.1 go away\n"
        "From:dump@example.com DISCARD\n"
        "Spam:friend@example.org FRIEND\n"
        "Spam:hater@example.org HATER\n"
        "From:example.net OK\n"
    )
    amap = AccessMap.load(f"text!{path}")
    config = cfg("+access-db-blacklist")

    def run(addr: bytes, sender: bytes, *rcpts: bytes) -> policy.Decision | None:
        t = Transaction(sender=sender)
        for r in rcpts:
            t.recipients.append(Recipient(r, (), b"local", b"", r.strip(b"<>")))
        return policy.access_decision(
            replace(config, access_db=amap), Client(b"h", Family.INET, 1, addr), Macros(), t
        )

    d = run(b"192.0.2.1", b"<x@y.z>", b"<a@b.c>")
    assert d is not None and d.verdict == "unscanned" and "192.0.2.1" in d.reason
    d = run(b"198.51.100.66", b"<x@y.z>", b"<a@b.c>")
    assert d is not None and d.final == ReplyCode(b"550 5.7.1 go away")
    d = run(b"203.0.113.9", b"<dump@example.com>", b"<a@b.c>")
    assert d is not None and d.final == Discard()
    assert run(b"203.0.113.9", b"<x@y.z>", b"<friend@example.org>") is not None
    assert run(b"203.0.113.9", b"<x@y.z>", b"<friend@example.org>", b"<a@b.c>") is None
    assert run(b"203.0.113.9", b"<x@y.z>", b"<a@b.c>") is None
    # a white-listed sender wins before recipients are looked at (milter-spamc accepts at MAIL)
    d = run(b"203.0.113.9", b"<x@example.net>", b"<hater@example.org>")
    assert d is not None and "From" in d.reason
    # a recipient who hates spam keeps the message scanned even beside a friend
    assert run(b"203.0.113.9", b"<x@y.z>", b"<friend@example.org>", b"<hater@example.org>") is None
