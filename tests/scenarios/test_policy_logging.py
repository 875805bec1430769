"""The one INFO line per message: verdict, score/required, action, client, sender,
recipients, spamd host and milliseconds; and no message text in the log."""

from __future__ import annotations

import logging
import re

import pytest

from tests.support.policy_messages import (
    captured_log,
    headers_with,
    one_message,
    score_body,
    verdict_lines,
)
from tools.fake_spamd import FakeSpamd

SECRET = b"the-secret-body-text-0451"
MACROS = {"M": {"i": "4AB12CD34"}, "R": {"i": "4AB12CD34"}}


async def test_one_info_line_per_message_with_every_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakeSpamd() as spamd:
        with captured_log(caplog):
            await one_message(
                ["extra-reject=0"],
                body=score_body(7),
                rcpts=(b"<a@example.org>", b"<b@example.org>"),
                macros=MACROS,
                spamd=spamd,
            )
        host = spamd.address
    (record,) = verdict_lines(caplog)
    assert record.levelno == logging.INFO
    line = record.getMessage()
    assert re.match(
        r"verdict=spam score=7\.00/5\.00 action=reject client=client\.example\.net "
        r"\[198\.51\.100\.7\] from=<sender@example\.net> "
        r"rcpts=<a@example\.org>,<b@example\.org> size=\d+ spamd=\S+ ms=\d+",
        line,
    ), line
    assert host.rsplit(":", 1)[1] in line.split("spamd=", 1)[1].split()[0]
    assert getattr(record, "qid", None) in (None, "4AB12CD34")


async def test_ham_and_unscanned_lines(caplog: pytest.LogCaptureFixture) -> None:
    with captured_log(caplog):
        await one_message([], body=score_body(1))
        await one_message([], body=score_body(1), macros={"M": {"{auth_authen}": "alice"}})
    first, second = (r.getMessage() for r in verdict_lines(caplog))
    assert first.startswith("verdict=ham score=1.00/5.00 action=accept ")
    assert second.startswith("verdict=unscanned action=accept ")
    assert "reason='authenticated sender'" in second


async def test_no_body_or_header_text_logged_at_default_verbosity(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = b"Dear friend,\r\n" + SECRET + b"\r\nX-Fake-Score: 9\r\n"
    with captured_log(caplog, logging.INFO):
        await one_message(
            ["extra-reject=0"], headers_with(b" subject-" + SECRET), body=body, macros=MACROS
        )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "verdict=spam" in text
    assert SECRET.decode() not in text
    assert "Dear friend" not in text
