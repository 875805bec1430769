"""spamd's reply to a scan: parse_reply gives a Verdict or SpamdBadResponse, nothing else."""

from __future__ import annotations

import pytest

from spambridge.errors import SpamdBadResponse, SpamdErrorStatus
from spambridge.spamd.protocol import Verdict, parse_reply

OK = b"SPAMD/1.1 0 EX_OK\r\n"


def test_spamd_reply_report_gives_a_verdict() -> None:
    raw = OK + b"Content-length: 5\r\nSpam: True ; 7.5 / 5.0\r\n\r\nhello"
    assert parse_reply(raw, command="REPORT", host="h") == Verdict(
        True, 7.5, 5.0, b"hello", "REPORT", "h", 0.0
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfeHTTP/9.9 this is not spamd\r\n\r\n",
        OK + b"Sp\xe4m: True ; 5.0 / 5.0\r\n\r\n",
        OK + b"Spam: True ; 5.0 / 5.0\r\nX-\xff: 1\r\n\r\n",
        OK + b"Spam: True ; nan / 5.0\r\n\r\n",
        OK + b"Spam: True ; inf / 5.0\r\n\r\n",
        OK + b"Spam: False ; 1e999 / 5.0\r\n\r\n",
        OK + b"Spam: True ; 5.0 / -inf\r\n\r\n",
        OK + b"Spam: maybe ; 5.0 / 5.0\r\n\r\n",
        OK + b"Content-length: 99\r\nSpam: True ; 5.0 / 5.0\r\n\r\nshort",
        OK + b"Content-length: x\r\nSpam: True ; 5.0 / 5.0\r\n\r\n",
        OK + b"\r\n",  # no Spam header
    ],
)
def test_spamd_reply_garbage_is_a_bad_response(raw: bytes) -> None:
    with pytest.raises(SpamdBadResponse) as info:
        parse_reply(raw, command="REPORT", host="h")
    assert info.value.host == "h"


def test_spamd_reply_ex_status_carries_its_code() -> None:
    with pytest.raises(SpamdErrorStatus) as info:
        parse_reply(b"SPAMD/1.0 76 Bad header line\r\n", command="REPORT", host="h")
    assert info.value.code == 76 and info.value.kind == "bad-response"
