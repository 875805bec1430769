"""What spambridge asks the MTA for at negotiation, by option."""

from __future__ import annotations

import pytest

from spambridge.cli import resolve
from spambridge.milter.flags import ProtocolFlags as P
from spambridge.session import wanted


@pytest.mark.parametrize(
    ("options", "answered"),
    [
        ([], False),  # the default: body chunks stream unanswered
        (["+skip-body"], True),
        (["+skip-body", "oversize-action=truncate"], False),  # truncating never skips
        (["+skip-body", "spamd-max-size=0"], False),  # no limit: nothing to skip
    ],
)
def test_wanted_body_chunks_are_answered_only_to_offer_skip(
    options: list[str], answered: bool
) -> None:
    protocol = wanted(resolve(["file=", "+milter-no-reply", *options])[1].config).protocol
    assert bool(protocol & P.SKIP) == answered
    assert bool(protocol & P.NR_BODY) == (not answered)


def test_wanted_no_reply_for_every_step_before_end_of_message_with_milter_no_reply() -> None:
    protocol = wanted(resolve(["file=", "+milter-no-reply"])[1].config).protocol
    steps = P.NR_CONNECT | P.NR_HELO | P.NR_MAIL | P.NR_RCPT | P.NR_DATA | P.NR_HEADER
    assert protocol & (steps | P.NR_END_OF_HEADERS | P.NR_BODY) == (
        steps | P.NR_END_OF_HEADERS | P.NR_BODY
    )


_EVERY_NR = (
    P.NR_CONNECT
    | P.NR_HELO
    | P.NR_MAIL
    | P.NR_RCPT
    | P.NR_DATA
    | P.NR_UNKNOWN
    | P.NR_HEADER
    | P.NR_END_OF_HEADERS
    | P.NR_BODY
)


@pytest.mark.parametrize(
    "off", [["-milter-no-reply"], ["milter-no-reply=0"], ["--no-milter-no-reply"]]
)
@pytest.mark.parametrize("extra", [[], ["+skip-body"], ["max-untrusted=0"]])
def test_wanted_milter_no_reply_off_asks_for_no_no_reply_step(
    off: list[str], extra: list[str]
) -> None:
    # As a libmilter filter without xxfi_negotiate (milter-spamc): every step is answered.
    protocol = wanted(resolve(["file=", *extra, *off])[1].config).protocol
    assert protocol & _EVERY_NR == P(0)


def test_wanted_milter_no_reply_default_is_the_option_table_row() -> None:
    from spambridge.options import OPTIONS

    (row,) = [opt for opt in OPTIONS if opt.name == "milter-no-reply"]
    protocol = wanted(resolve(["file="])[1].config).protocol
    assert bool(protocol & P.NR_CONNECT) == (row.default == "+")
    on = wanted(resolve(["file=", "+milter-no-reply"])[1].config).protocol
    assert on & P.NR_CONNECT and on & P.NR_HEADER and on & P.NR_BODY
