"""Spam through the milter: verdict headers, subject tag, forged headers, the report."""

from __future__ import annotations

import pytest

from spambridge.milter.messages import AddHeader, ChangeHeader, Continue
from tests.support.controller import Running
from tests.support.scenario import HEADERS, SCANNED_BY, ClientFactory, open_session
from tools.fake_spamd import GTUBE, FakeSpamd

pytestmark = pytest.mark.timeout(20)

SPAM_BODY = b"Buy now.\r\nX-Fake-Score: 7.5\r\n"


@pytest.mark.parametrize("milter_args", [["spamd-command=CHECK"]])
async def test_spam_flow_tags_subject_and_adds_flag_status_level(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)
    headers = [*HEADERS, (b"X-Spam-Flag", b" NO")]

    result = await client.send_message(headers, SPAM_BODY)

    assert result.edits == [
        ChangeHeader(1, b"X-Spam-Flag", b""),
        AddHeader(b"X-Spam-Flag", b" YES"),  # first, as milter-spamc (tests/oracle)
        AddHeader(b"X-Scanned-By", SCANNED_BY),
        AddHeader(b"X-Spam-Status", b" YES, hits=7.50 required=5.00"),
        AddHeader(b"X-Spam-Level", b" xxxxxxx"),
        ChangeHeader(1, b"Subject", b" [SPAM] hello"),
    ]
    assert result.final == Continue()
    assert len(spamd.requests) == 1


@pytest.mark.parametrize("milter_args", [["spamd-command=CHECK", "subject-tag="]])
async def test_spam_flow_empty_subject_tag_leaves_subject(
    milter: Running, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, SPAM_BODY)

    assert [e for e in result.edits if isinstance(e, ChangeHeader)] == []
    assert AddHeader(b"X-Spam-Flag", b" YES") in result.edits
    assert result.final == Continue()


async def test_spam_flow_report_header_lists_rules(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    client = await connect(milter.address)
    await open_session(client)

    result = await client.send_message(HEADERS, GTUBE + b"\r\n")

    assert spamd.requests[0].method == "REPORT"
    names = [e.name for e in result.edits if isinstance(e, AddHeader)]
    assert names == [
        b"X-Spam-Flag",  # milter-spamc's order (tests/oracle)
        b"X-Scanned-By",
        b"X-Spam-Status",
        b"X-Spam-Level",
        b"X-Spam-Report",
    ]
    report = next(
        e.value for e in result.edits if isinstance(e, AddHeader) and e.name == b"X-Spam-Report"
    )
    assert b"1000 GTUBE" in report
    assert b"\r" not in report  # folded with LF: the MTA adds its own line ends
    assert AddHeader(b"X-Spam-Status", b" YES, hits=1000.00 required=5.00") in result.edits
    assert result.final == Continue()


@pytest.mark.parametrize("milter_args", [["spamd-command=CHECK"]])
async def test_spam_flow_two_messages_one_connection(
    milter: Running, spamd: FakeSpamd, connect: ClientFactory
) -> None:
    """A spam then a ham: nothing of the first verdict leaks into the second."""
    client = await connect(milter.address)
    await open_session(client)

    spam = await client.send_message(HEADERS, SPAM_BODY, macros={"M": {"i": "Q1"}})
    ham = await client.send_message(HEADERS, b"fine\r\n", macros={"M": {"i": "Q2"}})

    assert AddHeader(b"X-Spam-Flag", b" YES") in spam.edits
    assert ham.edits == [
        AddHeader(b"X-Scanned-By", SCANNED_BY),
        AddHeader(b"X-Spam-Status", b" NO, hits=0.00 required=5.00"),
    ]
    assert [b" id Q1;" in r.body for r in spamd.requests] == [True, False]
    assert b" id Q2;" in spamd.requests[1].body
