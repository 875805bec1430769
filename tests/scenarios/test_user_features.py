"""What admins of the peers keep asking for: the soft reject band, outbound scanning of our
own users' mail, the spamd user for virtual users, the subject template, and whole rule
descriptions in the detailed reject reply."""

from __future__ import annotations

import pytest

from spambridge import cli
from spambridge.milter.messages import ChangeHeader, Continue, ReplyCode
from tests.support.policy_messages import (
    SPAM_BODY,
    captured_log,
    headers_with,
    one_message,
    score_body,
    verdict_lines,
)
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(30)

AUTH = {"M": {"{auth_authen}": "alice", "{auth_type}": "PLAIN"}}


# ------------------------------------------------------------------ soft reject


async def test_soft_reject_tempfail_score_band() -> None:
    options = ["tempfail-score=8", "reject-score=15", "spamd-command=CHECK"]
    tagged = await one_message(options, body=score_body(7.9))
    deferred = await one_message(options, body=score_body(8))
    rejected = await one_message(options, body=score_body(15))
    assert tagged.final == Continue()
    assert deferred.final == ReplyCode(b"451 4.7.1 message looks like spam, try again later")
    assert deferred.edits == []
    assert rejected.final == ReplyCode(
        b"550 5.7.1 message was identified as junk mail, score 15.00/5.00"
    )


async def test_soft_reject_extra_tempfail_with_own_reply(caplog: pytest.LogCaptureFixture) -> None:
    options = ["extra-tempfail=2", "extra-reject=10", "tempfail-reply=450 4.7.0 later please"]
    with captured_log(caplog):
        below = await one_message(options, body=score_body(6.9))
        deferred = await one_message(options, body=score_body(7))
        rejected = await one_message(options, body=score_body(15))
    assert below.final == Continue()
    assert deferred.final == ReplyCode(b"450 4.7.0 later please")
    assert isinstance(rejected.final, ReplyCode) and rejected.final.text.startswith(b"550")
    actions = [r.getMessage().split(" action=")[1].split()[0] for r in verdict_lines(caplog)]
    assert actions == ["tag", "tempfail", "reject"]


async def test_soft_reject_reject_reply_may_be_4xx() -> None:
    out = await one_message(
        ["extra-reject=0", "spamd-command=CHECK", "reject-reply=451 4.7.1 deferred as spam"],
        body=SPAM_BODY,
    )
    assert out.final == ReplyCode(b"451 4.7.1 deferred as spam, score 1000.00/5.00")


# ------------------------------------------------------------------ outbound


async def test_outbound_skip_is_the_default() -> None:
    out = await one_message([], body=SPAM_BODY, macros=AUTH)
    assert out.requests == []


async def test_outbound_tag_scans_but_never_rejects(caplog: pytest.LogCaptureFixture) -> None:
    with captured_log(caplog):
        out = await one_message(
            ["scan-authenticated=tag", "extra-reject=0", "tempfail-score=1"],
            body=SPAM_BODY,
            macros=AUTH,
        )
    assert len(out.requests) == 1
    assert out.final == Continue()
    assert out.added(b"X-Spam-Flag") == [b" YES"]
    (line,) = verdict_lines(caplog)
    assert " action=tag " in line.getMessage()
    assert line.getMessage().endswith(" direction=outbound")


async def test_outbound_trusted_network_full_policy_with_own_threshold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    options = [
        "scan-authenticated=full",
        "trusted-networks=198.51.100.0/24",
        "extra-reject=0",
        "outbound-reject-score=10",
        "spamd-command=CHECK",
    ]
    with captured_log(caplog):
        tagged = await one_message(options, body=score_body(9))
        rejected = await one_message(options, body=score_body(10))
        inbound = await one_message(options, body=score_body(9), client_addr=b"203.0.113.9")
    assert tagged.final == Continue()
    assert rejected.final == ReplyCode(
        b"550 5.7.1 message was identified as junk mail, score 10.00/5.00"
    )
    assert isinstance(inbound.final, ReplyCode)  # extra-reject=0 still rules inbound mail
    lines = [r.getMessage() for r in verdict_lines(caplog)]
    assert [line.endswith("direction=outbound") for line in lines] == [True, True, False]


# ------------------------------------------------------------------ spamd user


@pytest.mark.parametrize(
    ("source", "user"),
    [
        ("address", b"Bob+news@example.org"),
        ("local-part", b"Bob+news"),
        ("domain", b"example.org"),
        ("fixed", b"spamuser"),
    ],
)
async def test_spamd_user_from(source: str, user: bytes) -> None:
    out = await one_message(
        [f"spamd-user-from={source}", "spamd-user=spamuser"],
        rcpts=(b"<Bob+news@Example.ORG>",),
    )
    assert out.request.header(b"User") == user


async def test_spamd_user_from_address_several_recipients_takes_the_last() -> None:
    out = await one_message(
        ["spamd-user-from=address"], rcpts=(b"<a@example.org>", b"<b@example.net>")
    )
    assert out.request.header(b"User") == b"b@example.net"


async def test_spamd_user_from_passwd_is_milter_spamcs_rule() -> None:
    out = await one_message(["spamd-user=spamuser"], rcpts=(b"<nosuchuser@example.org>",))
    assert out.request.header(b"User") == b"spamuser"


# ------------------------------------------------------------------ subject template


@pytest.mark.parametrize(
    ("template", "subject", "expected"),
    [
        ("***SPAM*** %s", b" hello", b" ***SPAM*** hello"),
        ("[SPAM %.1f] %s", b" hello", b" [SPAM 1000.0] hello"),
        ("%s (spam score %d)", b" hello", b" hello (spam score 1000)"),
        ("[SPAM]", b" hello", b" [SPAM] hello"),  # a plain prefix, as before
    ],
)
async def test_subject_template(template: str, subject: bytes, expected: bytes) -> None:
    out = await one_message([f"subject-tag={template}"], headers_with(subject), SPAM_BODY)
    assert ChangeHeader(1, b"Subject", expected) in out.edits


async def test_subject_template_keeps_an_encoded_subject_intact() -> None:
    encoded = b" =?UTF-8?B?w6l0w6k=?="
    out = await one_message(["subject-tag=%s ★"], headers_with(encoded), SPAM_BODY)
    (change,) = [e for e in out.edits if isinstance(e, ChangeHeader) and e.name == b"Subject"]
    assert change.value.startswith(encoded + b" =?UTF-8?B?")
    from email.header import decode_header, make_header

    assert str(make_header(decode_header(change.value.decode().strip()))) == "été ★"


# ------------------------------------------------------------------ detailed reply

WRAPPED_REPORT = (
    b"Spam detection software has identified this incoming email as possible spam.\n\n"
    b"Content analysis details:   (1003.5 points, 5.0 required)\n\n"
    b" pts rule name              description\n"
    b"---- ---------------------- --------------------------------------------------\n"
    b"1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\n"
    b" 0.0 NO_RELAYS              Informational: message was not relayed via SMTP\n"
    b"                            and so on\n"
    b" 3.5 FREEMAIL_FORGED_FROMDOMAIN 2nd level domains in From and EnvelopeFrom freemail\n"
    b"                            headers are different\n"
)


async def test_detailed_reply_keeps_wrapped_rule_descriptions() -> None:
    async with FakeSpamd() as spamd:
        spamd.report_override = WRAPPED_REPORT
        out = await one_message(["extra-reject=0"], body=SPAM_BODY, spamd=spamd)
    assert out.final == ReplyCode(
        b"550-5.7.1 message was identified as junk mail, score 1000.00/5.00\r\n"
        # the rule line verbatim, as milter-spamc; the wrapped rest joined with one space
        b"550-5.7.1 1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email\r\n"
        b"550 5.7.1  3.5 FREEMAIL_FORGED_FROMDOMAIN 2nd level domains in From and EnvelopeFrom"
        b" freemail headers are different"
    )


# ------------------------------------------------------------------ option errors


@pytest.mark.parametrize(
    ("args", "option", "words"),
    [
        (["tempfail-reply=550 5.7.1 no"], "tempfail-reply", "4xx"),
        (["reject-reply=250 ok"], "reject-reply", "4xx or 5xx"),
        (["spamd-user-from=fixed"], "spamd-user", "needs a spamd-user"),
        (["spamd-user-from=ldap"], "spamd-user-from", "passwd, local-part, address"),
        (["scan-authenticated=yes"], "scan-authenticated", "skip, tag, full"),
        (["extra-tempfail=soon"], "extra-tempfail", "not a number"),
    ],
)
def test_user_feature_option_errors_name_the_option(
    args: list[str], option: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["file=", *args, "check"]) == 2
    err = capsys.readouterr().err
    assert f"error: {option}: " in err and words in err, err
