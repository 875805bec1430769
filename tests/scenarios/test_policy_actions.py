"""Action options: reject, discard, quarantine and their thresholds, reply texts, dry-run."""

from __future__ import annotations

import logging

import pytest

from spambridge.milter.flags import ActionFlags
from spambridge.milter.messages import AddHeader, Continue, Discard, Quarantine, ReplyCode
from tests.support.policy_messages import (
    SPAM_BODY,
    headers_with,
    one_message,
    score_body,
)

DETAILED_7 = ReplyCode(
    b"550-5.7.1 message was identified as junk mail, score 7.00/5.00\r\n"
    b"550 5.7.1  7.0 FAKE_SCORE             Score forced by the X-Fake-Score test line"
)


async def test_extra_reject_zero_rejects_all_spam_with_detailed_reply() -> None:
    out = await one_message(["extra-reject=0"], body=score_body(7))
    assert out.final == DETAILED_7
    assert out.edits == []


async def test_extra_reject_leaves_spam_below_threshold_plus_n_tagged() -> None:
    out = await one_message(["extra-reject=3"], body=score_body(7.9))
    assert out.final == Continue()
    assert out.added(b"X-Spam-Flag") == [b" YES"]
    out = await one_message(["extra-reject=3"], body=score_body(8))
    assert isinstance(out.final, ReplyCode) and out.final.text.startswith(b"550-5.7.1 ")


async def test_extra_reject_never_rejects_ham() -> None:
    out = await one_message(["extra-reject=0"], body=score_body(4.9))
    assert out.final == Continue()


async def test_detailed_reply_lists_only_rules_with_nonzero_score() -> None:
    out = await one_message(["extra-reject=0"], body=SPAM_BODY)
    assert out.final == ReplyCode(
        b"550-5.7.1 message was identified as junk mail, score 1000.00/5.00\r\n"
        b"550 5.7.1 1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email"
    )


async def test_smtp_detailed_reply_off_gives_plain_text() -> None:
    out = await one_message(["extra-reject=0", "-smtp-detailed-reply"], body=score_body(7))
    assert out.final == ReplyCode(b"550 5.7.1 This looks like spam.")


async def test_reject_reply_sets_code_and_text() -> None:
    out = await one_message(
        ["extra-reject=0", "reject-reply=554 5.7.0 go away", "-smtp-detailed-reply"],
        body=score_body(7),
    )
    assert out.final == ReplyCode(b"554 5.7.0 This looks like spam.")
    out = await one_message(
        ["extra-reject=0", "reject-reply=554 5.7.0 go away"], body=score_body(7)
    )
    assert isinstance(out.final, ReplyCode)
    assert out.final.text.startswith(b"554-5.7.0 go away, score 7.00/5.00\r\n554 5.7.0 ")


async def test_extra_discard_discards_spam_and_wins_over_reject() -> None:
    out = await one_message(["extra-discard=10", "extra-reject=0"], body=score_body(15))
    assert out.final == Discard()
    assert out.edits == []
    out = await one_message(["extra-discard=10", "extra-reject=0"], body=score_body(14.9))
    assert isinstance(out.final, ReplyCode)


@pytest.mark.parametrize("precedence", [b" bulk", b" list", b" junk", b" Bulk"])
async def test_discard_low_precedence_discards_instead_of_reject(precedence: bytes) -> None:
    headers = headers_with(b" hi", (b"Precedence", precedence))
    out = await one_message(["extra-reject=0", "+discard-low-precedence"], headers, score_body(7))
    assert out.final == Discard()


async def test_discard_low_precedence_discards_spam_even_without_reject() -> None:
    headers = headers_with(b" hi", (b"Precedence", b" list"))
    out = await one_message(["+discard-low-precedence"], headers, score_body(6))
    assert out.final == Discard()
    ham = await one_message(["+discard-low-precedence"], headers, score_body(4))
    assert ham.final == Continue()
    assert ham.added(b"X-Spam-Status") == [b" NO, hits=4.00 required=5.00"]


async def test_discard_low_precedence_keeps_reject_for_other_precedence() -> None:
    headers = headers_with(b" hi", (b"Precedence", b" first-class"))
    out = await one_message(["extra-reject=0", "+discard-low-precedence"], headers, score_body(7))
    assert isinstance(out.final, ReplyCode)


async def test_low_precedence_without_option_still_rejects() -> None:
    headers = headers_with(b" hi", (b"Precedence", b" bulk"))
    out = await one_message(["extra-reject=0"], headers, score_body(7))
    assert isinstance(out.final, ReplyCode)


async def test_reject_score_is_absolute() -> None:
    out = await one_message(["reject-score=12"], body=score_body(12))
    assert isinstance(out.final, ReplyCode)
    assert out.final.text.startswith(b"550-5.7.1 message was identified as junk mail, score 12.00")
    out = await one_message(["reject-score=12"], body=score_body(11.5))
    assert out.final == Continue()


async def test_discard_score_is_absolute_and_wins_over_reject_score() -> None:
    out = await one_message(["discard-score=20", "reject-score=10"], body=score_body(20))
    assert out.final == Discard()
    out = await one_message(["discard-score=20", "reject-score=10"], body=score_body(19))
    assert isinstance(out.final, ReplyCode)


async def test_quarantine_score_adds_quarantine_edit_after_headers() -> None:
    out = await one_message(["quarantine-score=6"], body=score_body(7))
    assert out.final == Continue()
    assert out.edits[-1] == Quarantine(b"spam score 7.00/5.00")
    assert out.added(b"X-Spam-Flag") == [b" YES"]


async def test_quarantine_reason_is_configurable() -> None:
    out = await one_message(
        ["quarantine-score=6", "quarantine-reason=held: %score% of %threshold%"],
        body=score_body(7),
    )
    assert Quarantine(b"held: 7.00 of 5.00") in out.edits


async def test_quarantine_below_score_is_not_quarantined() -> None:
    out = await one_message(["quarantine-score=6"], body=score_body(5.5))
    assert not any(isinstance(e, Quarantine) for e in out.edits)


async def test_quarantine_only_when_the_mta_offers_the_action() -> None:
    actions = 0x1FF & ~int(ActionFlags.QUARANTINE)
    out = await one_message(["quarantine-score=6"], body=score_body(7), actions=actions)
    assert out.final == Continue()
    assert not any(isinstance(e, Quarantine) for e in out.edits)
    assert out.added(b"X-Spam-Flag") == [b" YES"]


async def test_dry_run_changes_nothing_and_logs_what_it_would_do(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="spambridge")
    headers = headers_with(b" hi", (b"X-Spam-Flag", b" YES"))
    out = await one_message(["+dry-run", "extra-reject=0"], headers, score_body(7))
    assert out.final == Continue()
    assert out.edits == []
    lines = [r.getMessage() for r in caplog.records if "verdict=" in r.getMessage()]
    assert len(lines) == 1
    assert "verdict=spam" in lines[0] and "action=dry-run:reject" in lines[0]


async def test_dry_run_discard_and_ham_are_accepted_unchanged() -> None:
    out = await one_message(["+dry-run", "extra-discard=0"], body=score_body(9))
    assert (out.final, out.edits) == (Continue(), [])
    out = await one_message(["+dry-run", "+always-add-flag"], body=score_body(1))
    assert (out.final, out.edits) == (Continue(), [])
    assert not any(isinstance(e, AddHeader) for e in out.edits)
