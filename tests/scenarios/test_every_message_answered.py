"""Every message gets exactly one final reply and one verdict line, whatever goes wrong after
its last byte: edits the MTA did not grant, edits too large for a frame, garbage from spamd,
oversized spamd replies, headers-only messages over spamd-max-size."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import spambridge.policy
from spambridge.milter.flags import MAX_PAYLOAD, ActionFlags
from spambridge.milter.messages import (
    AddHeader,
    ChangeHeader,
    Continue,
    DeleteRecipient,
    Reply,
    ReplyCode,
)
from spambridge.milter.negotiate import required_action
from tests.support.controller import running_milter
from tests.support.policy_messages import one_message as policy_message
from tests.support.policy_messages import score_body
from tests.support.scenario import BODY, HEADERS, ClientFactory, messages, open_session
from tests.support.scripted_spamd import ScriptedSpamd, spamd_reply
from tools.fake_spamd import GTUBE, FakeSpamd
from tools.milter_client import EomResult

FAST = ("file=", "spamd-timeouts=C:1s;S:1s;R:1s;E:3s", "spamd-cooldown=0")
FORGED = [*HEADERS, (b"X-Spam-Flag", b" YES")]


def verdict_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in messages(caplog, logging.INFO) if m.startswith("verdict=")]


def assert_granted(edits: list[Reply], actions: ActionFlags) -> None:
    for edit in edits:
        needed = required_action(edit)
        assert not needed or actions & needed, f"{edit!r} needs {needed!r}"


async def one_message(
    connect: ClientFactory,
    address: tuple[str, int] | str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    actions: int = 0x1FF,
    rcpts: tuple[bytes, ...] = (b"<rcpt@example.org>",),
) -> EomResult:
    client = await connect(address)
    await open_session(client, actions=actions)
    return await client.send_message(headers, body, rcpts=rcpts)


# ------------------------------------------------------------------ 1. edits not granted


@pytest.mark.parametrize(
    ("actions", "granted"),
    [
        (0, ActionFlags(0x0F)),  # libmilter reads 0 as the version-1 set: no CHANGE_HEADERS
        (0x01, ActionFlags.ADD_HEADERS),
        (0x10, ActionFlags.CHANGE_HEADERS),
    ],
)
async def test_eom_edits_not_granted_are_dropped_and_the_message_answered(
    connect: ClientFactory,
    logs: pytest.LogCaptureFixture,
    actions: int,
    granted: ActionFlags,
) -> None:
    async with (
        FakeSpamd() as spamd,
        running_milter([*FAST, f"spamd-socket={spamd.address}", "subject-tag=[SPAM]"]) as milter,
    ):
        client = await connect(milter.address)
        await open_session(client, actions=actions)
        first = await client.send_message(FORGED, GTUBE + b"\r\n")
        second = await client.send_message(FORGED, GTUBE + b"\r\n")
    for result in (first, second):
        assert result.final == Continue()
        assert_granted(result.edits, granted)
    if granted & ActionFlags.ADD_HEADERS:
        assert any(isinstance(e, AddHeader) and e.name == b"X-Spam-Flag" for e in first.edits)
    if granted & ActionFlags.CHANGE_HEADERS:
        assert ChangeHeader(1, b"X-Spam-Flag", b"") in first.edits
    assert len(verdict_lines(logs)) == 2
    withheld = [m for m in messages(logs, logging.WARNING) if "not granted" in m]
    assert len(withheld) == 1, withheld  # once per connection, not once per message


async def test_eom_redirect_without_delete_recipient_still_answers(
    connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    actions = ActionFlags.ADD_HEADERS | ActionFlags.CHANGE_HEADERS | ActionFlags.ADD_RECIPIENT
    async with (
        FakeSpamd() as spamd,
        running_milter(
            [
                *FAST,
                f"spamd-socket={spamd.address}",
                "mail-policy=redirect",
                "mail-spam=spam@example.org",
            ]
        ) as milter,
    ):
        result = await one_message(
            connect, milter.address, FORGED, GTUBE + b"\r\n", actions=int(actions)
        )
    assert result.final == Continue()
    assert not any(isinstance(e, DeleteRecipient) for e in result.edits)
    assert_granted(result.edits, actions)
    assert len(verdict_lines(logs)) == 1


# ------------------------------------------------------------------ 2. edits over one frame


def assert_frames_fit(edits: list[Reply]) -> None:
    for edit in edits:
        if isinstance(edit, AddHeader | ChangeHeader):
            assert len(edit.name) + len(edit.value) + 6 <= MAX_PAYLOAD


async def test_eom_huge_spamd_report_is_capped_on_a_line_boundary(
    connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    rules = b"".join(
        b" 0.1 RULE_%04d           Some rule that hit this message\n" % i for i in range(1400)
    )
    async with (
        ScriptedSpamd(spamd_reply(rules)) as spamd,
        running_milter([*FAST, f"spamd-socket={spamd.address}"]) as milter,
    ):
        result = await one_message(connect, milter.address, HEADERS, BODY)
    assert result.final == Continue()
    assert_frames_fit(result.edits)
    report = next(
        e for e in result.edits if isinstance(e, AddHeader) and e.name == b"X-Spam-Report"
    )
    lines = report.value.split(b"\n")
    assert b"truncated" in lines[-1]
    # Every kept rule line is whole.
    assert all(line.endswith(b"Some rule that hit this message") for line in lines[1:-1])
    assert len(verdict_lines(logs)) == 1


async def test_eom_huge_header_in_a_headers_reply_is_capped(
    connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    block = (
        b"X-Spam-Flag: YES\r\nX-Spam-Report: "
        + b"\r\n\t* 0.1 RULE text".join(b"line%d" % i for i in range(8000))
        + b"\r\n\r\n"
    )
    async with (
        ScriptedSpamd(spamd_reply(block)) as spamd,
        running_milter(
            [
                *FAST,
                f"spamd-socket={spamd.address}",
                "header-style=spamassassin",
                "spamd-command=HEADERS",
            ]
        ) as milter,
    ):
        result = await one_message(connect, milter.address, HEADERS, BODY)
    assert result.final == Continue()
    assert_frames_fit(result.edits)
    assert AddHeader(b"X-Spam-Flag", b" YES") in result.edits
    assert len(verdict_lines(logs)) == 1


async def test_eom_subject_too_long_to_tag_is_left_alone(
    connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    subject = b" " + b"word " * 20000  # 100 KB, folded by nothing: one Header packet
    headers = [(b"From", b" a@example.net"), (b"Subject", subject)]
    async with (
        FakeSpamd() as spamd,
        running_milter([*FAST, f"spamd-socket={spamd.address}", "subject-tag=[SPAM]"]) as milter,
    ):
        result = await one_message(connect, milter.address, headers, GTUBE + b"\r\n")
    assert result.final == Continue()
    assert_frames_fit(result.edits)
    assert not any(getattr(e, "name", b"") == b"Subject" for e in result.edits)
    assert any(isinstance(e, AddHeader) and e.name == b"X-Spam-Flag" for e in result.edits)
    assert len(verdict_lines(logs)) == 1


# ------------------------------------------------------------------ 3. and 4. spamd garbage


TEMPFAIL = ReplyCode(b"451 4.7.1 spam scanner unavailable, try again later")


async def tempfail_scan(connect: ClientFactory, reply: bytes, *options: str) -> EomResult:
    """One message through a milter with spamd-error-action=tempfail whose spamd sends
    `reply`."""
    async with (
        ScriptedSpamd(reply) as spamd,
        running_milter(
            [*FAST, f"spamd-socket={spamd.address}", "spamd-error-action=tempfail", *options]
        ) as milter,
    ):
        return await one_message(connect, milter.address, HEADERS, BODY)


@pytest.mark.parametrize(
    "reply",
    [
        b"SPAMD/1.1 0 EX_OK\r\nSp\xe4m: True ; 5.0 / 5.0\r\n\r\n",  # 8-bit header name
        b"SPAMD/1.1 0 EX_\xffOK\r\nSpam: True ; 5.0 / 5.0\r\n\r\n",  # 8-bit status line
        spamd_reply(spam=b"True ; nan / 5.0"),
        spamd_reply(spam=b"True ; inf / 5.0"),
        spamd_reply(spam=b"False ; 1e999 / 5.0"),
        spamd_reply(spam=b"True ; 5.0 / nan"),
        spamd_reply(spam=b"True ; 5.0 / -inf"),
    ],
    ids=["8bit-header", "8bit-status", "nan", "inf", "1e999", "nan-threshold", "-inf-threshold"],
)
async def test_eom_spamd_garbage_gets_the_error_action(
    connect: ClientFactory, logs: pytest.LogCaptureFixture, reply: bytes
) -> None:
    result = await tempfail_scan(connect, reply)
    assert result.final == TEMPFAIL
    assert result.edits == []
    lines = verdict_lines(logs)
    assert len(lines) == 1 and "verdict=error" in lines[0] and "bad-response" in lines[0]


async def test_eom_spamd_reply_over_the_limit_is_a_bad_response(
    connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    body = b"x" * 100 + b"\n"
    reply = spamd_reply(body * 3000)  # about 300 KB
    result = await tempfail_scan(connect, reply, "spamd-max-reply-size=64")
    assert result.final == TEMPFAIL
    lines = verdict_lines(logs)
    assert len(lines) == 1 and "bad-response" in lines[0]
    assert any("64 KB" in m or "65536" in m for m in messages(logs, logging.WARNING))


async def test_eom_spamd_reply_of_50_mb_is_refused_by_default(
    connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    reply = spamd_reply(b"0.1 RULE text\n" * (50 * 1024 * 1024 // 14))
    result = await tempfail_scan(connect, reply)
    assert result.final == TEMPFAIL
    assert len(verdict_lines(logs)) == 1


# ------------------------------------------------------------------ 5. headers-only messages


BIG_HEADERS = [*HEADERS, *((b"X-Filler-%d" % i, b" " + b"f" * 990) for i in range(40))]


async def test_eom_headers_only_message_over_the_limit_is_not_scanned(
    connect: ClientFactory, logs: pytest.LogCaptureFixture
) -> None:
    async with (
        FakeSpamd() as spamd,
        running_milter(
            [*FAST, f"spamd-socket={spamd.address}", "spamd-max-size=16", "oversize-action=skip"]
        ) as milter,
    ):
        result = await one_message(connect, milter.address, BIG_HEADERS, b"")
        assert spamd.requests == []
    assert result.final == Continue()
    lines = verdict_lines(logs)
    assert len(lines) == 1 and "over spamd-max-size" in lines[0]


async def test_eom_headers_only_message_is_truncated_to_the_limit(
    connect: ClientFactory,
) -> None:
    async with (
        FakeSpamd() as spamd,
        running_milter(
            [
                *FAST,
                f"spamd-socket={spamd.address}",
                "spamd-max-size=16",
                "oversize-action=truncate",
            ]
        ) as milter,
    ):
        result = await one_message(connect, milter.address, BIG_HEADERS, b"")
        assert len(spamd.requests) == 1
        assert len(spamd.requests[0].body) <= 16 * 1024
    assert result.final == Continue()


# ------------------------------------------------------------------ 9. dry-run changes nothing


async def test_eom_dry_run_access_reject_reaches_the_mta_as_continue(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    access = tmp_path / "access"
    access.write_text("Connect:198.51.100.7 REJECT\n")
    out = await policy_message(
        ["+dry-run", f"access-db=text!{access}", "+access-db-blacklist"], body=score_body(9)
    )
    assert out.result.stage == "eom"
    assert out.final == Continue() and out.edits == []
    lines = verdict_lines(logs)
    assert len(lines) == 1 and "action=dry-run:reject" in lines[0]


async def test_eom_dry_run_max_untrusted_accepts_every_recipient(
    logs: pytest.LogCaptureFixture,
) -> None:
    out = await policy_message(
        ["+dry-run", "max-untrusted=1"],
        body=score_body(1),
        rcpts=(b"<a@example.org>", b"<b@example.org>"),
    )
    assert out.result.stage == "eom"
    assert out.final == Continue()
    assert any("would answer 452" in m for m in messages(logs, logging.INFO))
    assert len(verdict_lines(logs)) == 1


# ------------------------------------------------------------------ the README failure table


@pytest.mark.parametrize(
    "garbage",
    [
        b"SPAMD/1.1 0 EX_OK\r\nSp\xe4m: True ; 5.0 / 5.0\r\n\r\n",
        spamd_reply(spam=b"True ; nan / 5.0"),
        b"\x00\xff\xfeHTTP/9.9 this is not spamd\r\n\r\n",
    ],
    ids=["8bit-header", "nan", "not-spamd"],
)
async def test_eom_garbage_reply_fails_over_to_the_next_host(
    connect: ClientFactory, logs: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    async with (
        ScriptedSpamd(garbage) as bad,
        FakeSpamd() as good,
        running_milter([*FAST, f"spamd-socket={bad.address} {good.address}"]) as milter,
    ):
        result = await one_message(connect, milter.address, HEADERS, GTUBE + b"\r\n")
        assert len(bad.requests) == 1 and len(good.requests) == 1
    assert result.final == Continue()
    assert AddHeader(b"X-Spam-Flag", b" YES") in result.edits
    lines = verdict_lines(logs)
    assert len(lines) == 1 and "verdict=spam" in lines[0] and good.address in lines[0]
    assert any("trying" in m and bad.address in m for m in messages(logs, logging.WARNING))


# ------------------------------------------------------------------ the invariant's last resort


@pytest.mark.parametrize(
    ("action", "final"),
    [("accept", Continue()), ("tempfail", TEMPFAIL)],
)
async def test_eom_internal_error_becomes_the_error_action(
    connect: ClientFactory,
    logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    action: str,
    final: Reply,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the policy")

    monkeypatch.setattr(spambridge.policy, "decide", broken)
    async with (
        FakeSpamd() as spamd,
        running_milter(
            [*FAST, f"spamd-socket={spamd.address}", f"spamd-error-action={action}"]
        ) as milter,
    ):
        client = await connect(milter.address)
        await open_session(client)
        first = await client.send_message(FORGED, GTUBE + b"\r\n")
        second = await client.send_message(FORGED, GTUBE + b"\r\n")  # the connection lives on
        assert milter.services.metrics.counters["internal_errors"] == 2
    for result in (first, second):
        assert result.final == final
        if action == "accept":  # fail open still removes the forged verdict
            assert result.edits == [ChangeHeader(1, b"X-Spam-Flag", b"")]
    lines = verdict_lines(logs)
    assert len(lines) == 2
    assert all("verdict=error" in line and "internal: RuntimeError" in line for line in lines)
    errors = [r for r in logs.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all(r.exc_info for r in errors)
