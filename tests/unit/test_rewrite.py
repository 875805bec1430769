"""SpamAssassin's PROCESS result turned into milter edits: applied the way both MTAs apply
them (InsertHeader 0 is the top, above the MTA's own Received; ChangeHeader counts only the
headers the milter saw; AddHeader appends), the header section must come out exactly as
spamd returned it, with the MTA's Received where our synthetic one was."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from spambridge.milter.messages import AddHeader, ChangeHeader, Edit, InsertHeader, ReplaceBody
from spambridge.milter.negotiate import edit_for_mta
from spambridge.rewrite import rewrite_edits, split_fields

MTA = (b"Received", b" by the MTA itself")
SENDER = b"<alice@example.org>"
SYNTHETIC = (
    b"Return-Path: <alice@example.org>\r\n"
    b"Received: from client.example.org (client [192.0.2.7])\r\n"
    b"\tby mx.example.test (spambridge) with ESMTP id 4AB12;\r\n"
    b"\tFri, 4 Dec 2026 19:13:21 +0000\r\n"
)


def mta_apply(
    visible: Sequence[tuple[bytes, bytes]], body: bytes, edits: Sequence[Edit]
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    full = [MTA, *visible]
    for edit in edits:
        if isinstance(edit, InsertHeader):
            # Sendmail's list holds entries it never writes out: only the top is exact
            assert edit.index == 0, edit
            full.insert(edit.index, (edit.name, edit.value))
        elif isinstance(edit, AddHeader):
            full.append((edit.name, edit.value))
        elif isinstance(edit, ChangeHeader):
            seen = 0
            for i, (name, _) in enumerate(full):
                if i == 0 and full[0] is MTA:
                    continue
                if name.lower() == edit.name.lower():
                    seen += 1
                    if seen == edit.index:
                        if edit.value:
                            full[i] = (name, edit.value)
                        else:
                            del full[i]
                        break
            else:
                raise AssertionError(f"no header for {edit}")
        elif isinstance(edit, ReplaceBody):
            body = edit.data
    return full, body


def fields_bytes(fields: Sequence[tuple[bytes, bytes]]) -> bytes:
    return b"".join(n + b":" + v.replace(b"\n", b"\r\n") + b"\r\n" for n, v in fields)


HAM_HEADERS = [
    (b"From", b" Alice <alice@example.org>"),
    (b"To", b" bob@example.test"),
    (b"Subject", b" Budget\n\tnotes"),
    (b"X-Spam-Checker-Version", b" forged"),
]
BODY = b"Hi Bob,\r\n\r\nthe notes.\r\n"


def test_rewrite_ham_puts_spamassassins_headers_above_the_mtas_received() -> None:
    spam_headers = (
        b"X-Spam-Checker-Version: SpamAssassin 4.0.1 (2024-03-25) on vm\r\n"
        b"X-Spam-Level: \r\n"
        b"X-Spam-Status: No, score=-1.0 required=5.0 tests=ALL_TRUSTED\r\n"
        b"\tautolearn=disabled version=4.0.1\r\n"
    )
    synthetic_rp, synthetic_received = SYNTHETIC.split(b"\r\n", 1)
    result = (
        synthetic_rp
        + b"\r\n"
        + spam_headers
        + synthetic_received
        + fields_bytes(HAM_HEADERS[:3])
        + b"\r\n"
        + BODY
    )
    out = rewrite_edits(HAM_HEADERS, result, sender=SENDER, body=BODY)
    assert not out.body_replaced
    full, body = mta_apply(HAM_HEADERS, BODY, out.edits)
    expected, _ = split_fields(spam_headers + b"\r\n")
    assert full == [*expected, MTA, *HAM_HEADERS[:3]]
    assert body == BODY


def test_rewrite_report_safe_replaces_body_and_the_top_level_headers() -> None:
    headers = [
        (b"Received", b" from older.example.net by client.example.org"),
        (b"From", b" Spammer <spammer@example.org>"),
        (b"Subject", b" Test spam mail (GTUBE)"),
        (b"Message-ID", b" <1@client.example.org>"),
        (b"MIME-Version", b" 1.0"),
        (b"Content-Type", b" text/plain; charset=us-ascii"),
    ]
    new_head = (
        b"Received: from localhost by vm\r\n\twith SpamAssassin (version 4.0.1);\r\n"
        b"\tFri, 04 Dec 2026 19:13:27 +0000\r\n"
        b"From: Spammer <spammer@example.org>\r\n"
        b"Subject: Test spam mail (GTUBE)\r\n"
        b"Message-Id: <1@client.example.org>\r\n"
        b"X-Spam-Flag: YES\r\n"
        b"X-Spam-Status: Yes, score=999.0 required=5.0 tests=ALL_TRUSTED,GTUBE\r\n"
        b"\tautolearn=disabled version=4.0.1\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="----------=_6B1310D7.D60EA544"\r\n'
    )
    new_body = b"This is a multi-part message in MIME format.\r\n\r\n--...\r\n"
    out = rewrite_edits(headers, new_head + b"\r\n" + new_body, sender=SENDER, body=BODY)
    assert out.body_replaced
    assert isinstance(out.edits[-1], ReplaceBody)
    full, body = mta_apply(headers, BODY, out.edits)
    expected, _ = split_fields(new_head + b"\r\n")
    assert full == [MTA, *expected]  # the MTA's own Received cannot go: it stays on top
    assert body == new_body


def test_rewrite_without_leading_space_sends_bare_values() -> None:
    # Inside spambridge the value keeps its space; the MTA without HDR_LEADSPC holds it bare
    # and gets the edits with the space taken off where they leave (session, edit_for_mta).
    headers = [(b"Subject", b" hello")]
    result = SYNTHETIC + b"Subject: [SPAM] hello\r\nX-Spam-Flag: YES\r\n\r\n" + BODY
    out = rewrite_edits(headers, result, sender=SENDER, body=BODY)
    sent = [edit_for_mta(edit, False) for edit in out.edits]
    full, _ = mta_apply([(b"Subject", b"hello")], BODY, sent)
    assert full == [MTA, (b"Subject", b"[SPAM] hello"), (b"X-Spam-Flag", b"YES")]


names = st.sampled_from([b"Received", b"X-Spam-Flag", b"Subject", b"To", b"X-A"])
field = st.tuples(names, st.sampled_from([b" 1", b" 2", b" 3\n\tfolded"]))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(field, max_size=8),
    st.lists(field, max_size=8),
    st.integers(min_value=0, max_value=8),
)
def test_rewrite_any_target_comes_out_exactly(
    have: list[tuple[bytes, bytes]], want: list[tuple[bytes, bytes]], mta_at: int
) -> None:
    synthetic_rp, synthetic_received = SYNTHETIC.split(b"\r\n", 1)
    mta_at = min(mta_at, len(want))
    result = (
        synthetic_rp
        + b"\r\n"
        + fields_bytes(want[:mta_at])
        + synthetic_received
        + fields_bytes(want[mta_at:])
        + b"\r\n"
        + BODY
    )
    out = rewrite_edits(have, result, sender=SENDER, body=BODY)
    full, _ = mta_apply(have, BODY, out.edits)
    assert full == [*want[:mta_at], MTA, *want[mta_at:]]
