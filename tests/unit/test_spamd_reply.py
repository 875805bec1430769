"""spamd's reply to a scan: parse_reply gives a Verdict or SpamdBadResponse, nothing else."""

from __future__ import annotations

import pytest

from spambridge.errors import SpamdBadResponse, SpamdErrorStatus
from spambridge.spamd.protocol import Verdict, parse_reply

OK = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n"


def test_spamd_reply_report_gives_a_verdict() -> None:
    raw = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: True ; 7.5 / 5.0\r\n\r\nhello"
    assert parse_reply(raw, command="REPORT", host="h") == Verdict(
        True, 7.5, 5.0, b"hello", "REPORT", "h", 0.0
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfeHTTP/9.9 this is not spamd\r\n\r\n",
        OK + b"Sp\xe4m: True ; 5.0 / 5.0\r\n\r\n",
        OK + b"Spam: True ; nan / 5.0\r\n\r\n",
        OK + b"Spam: True ; inf / 5.0\r\n\r\n",
        OK + b"Spam: False ; 1e999 / 5.0\r\n\r\n",
        OK + b"Spam: True ; 5.0 / -inf\r\n\r\n",
        OK + b"Spam: maybe ; 5.0 / 5.0\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 99\r\nSpam: True ; 5.0 / 5.0\r\n\r\nshort",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: x\r\nSpam: True ; 5.0 / 5.0\r\n\r\n",
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


# spamc (SpamAssassin's C client, spamc/libspamc.c) reads these as spamd meant them; the
# differential suite (tests/wire/test_spamc_differential.py) holds the two side by side.
SPAMC_READS = [
    (b"SPAMD/1.1 0 EX_OK\nContent-length: 2\nSpam: True ; 7.5 / 5.0\n\nhi", True, 7.5),
    (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 2\nSpam: True ; 7.5 / 5.0\r\n\nhi", True, 7.5),
    (b"SPAMD/1.1  0  EX_OK\r\nContent-length: 2\r\nSpam: True ; 7.5 / 5.0\r\n\r\nhi", True, 7.5),
    (
        b"SPAMD/1.1\t0\tEX_OK \r\nContent-length:2\r\nSpam:\tTrue\t;\t7.5\t/\t5.0 \r\n\r\nhi",
        True,
        7.5,
    ),
    (b"SPAMD/1.1 0\r\nContent-length: 2\r\nSpam: False ; 1.0 / 5.0\r\n\r\nhi", False, 1.0),
    (
        b"SPAMD/1.1 0 EX_OK\r\nX-\xff: \xfe\r\nContent-length: 2\r\nSpam: No ; 1 / 5\r\n\r\nhi",
        False,
        1.0,
    ),
    (
        b"SPAMD/1.1 0 EX_OK\r\nSpam: garbage\r\nContent-length: 2\r\n"
        b"Spam: True ; 7.5 / 5.0\r\n\r\nhi",
        True,
        7.5,
    ),
    (
        b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 9 / 5\r\nContent-length: 2\r\n"
        b"Spam: False ; .5 / 5.\r\n\r\nhi",
        False,
        0.5,
    ),
]


@pytest.mark.parametrize(("raw", "is_spam", "score"), SPAMC_READS)
def test_spamd_reply_read_as_spamc_reads_it(raw: bytes, is_spam: bool, score: float) -> None:
    verdict = parse_reply(raw, command="REPORT", host="h")
    assert (verdict.is_spam, verdict.score, verdict.body) == (is_spam, score, b"hi")


def test_spamd_reply_check_reads_no_further_than_its_blank_line() -> None:
    # spamc -c stops at the blank line: neither a body nor its Content-length matters.
    raw = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\nSpam: True ; 7.5 / 5.0\r\n\r\nextra"
    assert parse_reply(raw, command="CHECK", host="h").body == b""


@pytest.mark.parametrize(
    "raw",
    [
        # spamc refuses these too
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True;7.5/5.0\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam : True ; 7.5 / 5.0\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\n Spam: True ; 7.5 / 5.0\r\n\r\n",
        b"SPAMD/0.9 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 7.5 / 5.0\r\n\r\n",
        b" SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 7.5 / 5.0\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 7.5 / 5.0\r\n\r\n",  # REPORT needs a length
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 7.5 / 5.0\r\n\r",
        # spamc reads a number in these (1, 1, 1, 7, 5); spambridge stays strict
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 1e308 / 5.0\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 1E3 / 5.0\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 1_0 / 5.0\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 7,5 / 5,0\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: True ; 7.5 / 5.0 more\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0abc\r\nSpam: True ; 7.5 / 5.0\r\n\r\n",
    ],
)
def test_spamd_reply_refused_as_spamc_would_or_stricter(raw: bytes) -> None:
    with pytest.raises(SpamdBadResponse):
        parse_reply(raw, command="REPORT", host="h")
