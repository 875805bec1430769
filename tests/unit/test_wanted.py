"""What spambridge asks the MTA for at negotiation, by option."""

from __future__ import annotations

import pytest

from spambridge.milter.flags import ProtocolFlags as P
from spambridge.services import wanted
from tests.support.config import make_config


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
    protocol = wanted(make_config(*options)).protocol
    assert bool(protocol & P.SKIP) == answered
    assert bool(protocol & P.NR_BODY) == (not answered)


def test_wanted_no_reply_for_every_step_before_end_of_message_by_default() -> None:
    protocol = wanted(make_config()).protocol
    steps = P.NR_CONNECT | P.NR_HELO | P.NR_MAIL | P.NR_RCPT | P.NR_DATA | P.NR_HEADER
    assert protocol & (steps | P.NR_END_OF_HEADERS | P.NR_BODY) == (
        steps | P.NR_END_OF_HEADERS | P.NR_BODY
    )
