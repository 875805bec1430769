"""Option negotiation and the legal-reply table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spambridge.errors import LocalProtocolError, RemoteProtocolError
from spambridge.milter.flags import ActionFlags as A
from spambridge.milter.flags import Family, Stage
from spambridge.milter.flags import ProtocolFlags as P
from spambridge.milter.messages import (
    Abort,
    Accept,
    AddHeader,
    AddRecipient,
    BodyChunk,
    ChangeFrom,
    ChangeHeader,
    Connect,
    Continue,
    Data,
    DeleteRecipient,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    InsertHeader,
    Macro,
    MailFrom,
    Negotiate,
    Progress,
    Quarantine,
    Quit,
    QuitNewConnection,
    RcptTo,
    Reject,
    ReplaceBody,
    ReplyCode,
    Skip,
    TempFail,
    Unknown,
)
from spambridge.milter.negotiate import LEGAL_REPLIES, Negotiated, Wanted, check_reply, negotiate

ALL_ACTIONS = A(0x1FF)
ALL_PROTOCOL = P(0x1FFFFF)
NR_CONTENT = P.NR_HEADER | P.NR_END_OF_HEADERS | P.NR_BODY
WANT = Wanted(
    actions=A.ADD_HEADERS | A.CHANGE_HEADERS,
    protocol=P.HEADER_LEADING_SPACE | NR_CONTENT | P.NO_UNKNOWN | P.SKIP,
)


def test_negotiate_v6_full_offer_grants_what_we_want() -> None:
    reply, neg = negotiate(Negotiate(6, ALL_ACTIONS, ALL_PROTOCOL), WANT)
    assert reply == Negotiate(6, WANT.actions, WANT.protocol)
    assert neg == Negotiated(6, WANT.actions, WANT.protocol)
    assert neg.leading_space
    assert neg.can_skip


def test_negotiate_requests_only_offered_bits() -> None:
    offer = Negotiate(6, A.ADD_HEADERS, P.NR_HEADER | P.NO_UNKNOWN)
    reply, neg = negotiate(offer, WANT)
    assert reply.actions == A.ADD_HEADERS
    assert reply.protocol == P.NR_HEADER | P.NO_UNKNOWN
    assert not reply.protocol & ~offer.protocol
    assert not neg.leading_space
    assert not neg.can_skip


def test_negotiate_never_requests_mds_bits() -> None:
    want = Wanted(A.ADD_HEADERS, P(0x30000000) | P.NR_HEADER)
    reply, _ = negotiate(Negotiate(6, ALL_ACTIONS, P(0x301FFFFF)), want)
    assert reply.protocol == P.NR_HEADER


def test_negotiate_reply_version_is_min_of_offer_and_six() -> None:
    assert negotiate(Negotiate(7, ALL_ACTIONS, ALL_PROTOCOL), WANT)[0].version == 6
    for version in (2, 3, 4, 6):
        reply, neg = negotiate(Negotiate(version, ALL_ACTIONS, ALL_PROTOCOL), WANT)
        assert reply.version == neg.version == version


@pytest.mark.parametrize("version", [0, 1])
def test_negotiate_rejects_versions_below_two(version: int) -> None:
    with pytest.raises(RemoteProtocolError, match=str(version)):
        negotiate(Negotiate(version, ALL_ACTIONS, ALL_PROTOCOL), WANT)


@pytest.mark.parametrize("version", [0x80000000, 0xFFFFFFFF])
def test_negotiate_rejects_versions_libmilter_reads_as_negative(version: int) -> None:
    # st_optionneg reads the version into a signed 32-bit int: these are below 2 for it.
    with pytest.raises(RemoteProtocolError, match=str(version)):
        negotiate(Negotiate(version, ALL_ACTIONS, ALL_PROTOCOL), WANT)


def test_negotiate_byte_swapped_version_six_is_a_large_version() -> None:
    # 0x06000000 is positive as libmilter reads it: a version above 6, answered with 6.
    assert negotiate(Negotiate(0x06000000, ALL_ACTIONS, ALL_PROTOCOL), WANT)[0].version == 6


@pytest.mark.parametrize("version", [2, 3, 4])
def test_negotiate_old_versions_drop_v6_bits_and_reply_to_everything(version: int) -> None:
    want = Wanted(ALL_ACTIONS, ALL_PROTOCOL, ((Stage.MAIL, ("i",)),))
    reply, neg = negotiate(Negotiate(version, ALL_ACTIONS, ALL_PROTOCOL), want)
    assert reply.actions == A(0x3F)
    assert not reply.protocol & (P.NR_HEADER | P.NR_BODY | P.SKIP | P.HEADER_LEADING_SPACE)
    assert reply.macro_lists == ()
    for command in (Connect(b"h", Family.INET), Helo(b"h"), Header(b"a", b"b"), BodyChunk(b"")):
        assert neg.expects_reply(command)
    assert not neg.can_skip
    assert not neg.leading_space


def test_negotiate_forces_nounknown_v2_and_nodata_v3() -> None:
    want = Wanted(A.ADD_HEADERS, P(0))
    _, v2 = negotiate(Negotiate(2, ALL_ACTIONS, P(0x7F)), want)
    _, v3 = negotiate(Negotiate(3, ALL_ACTIONS, P(0x17F)), want)
    _, v4 = negotiate(Negotiate(4, ALL_ACTIONS, P(0x37F)), want)
    assert not v2.sends(Unknown) and not v2.sends(Data)
    assert v3.sends(Unknown) and not v3.sends(Data)
    assert v4.sends(Unknown) and v4.sends(Data)


def test_negotiate_v1_zero_words_mean_v1_masks() -> None:
    want = Wanted(A.ADD_HEADERS | A.QUARANTINE, P.NO_HELO | P.NO_UNKNOWN)
    reply, _ = negotiate(Negotiate(6, A(0), P(0)), want)
    assert reply.actions == A.ADD_HEADERS  # V1 actions 0x0F: no QUARANTINE
    assert reply.protocol == P.NO_HELO  # V1 protocol 0x3F: no NOUNKNOWN


def test_negotiate_macro_lists_only_with_setsymlist_and_v6() -> None:
    want = Wanted(A.ADD_HEADERS, P(0), ((Stage.MAIL, ("i", "{auth_authen}")),))
    reply, neg = negotiate(Negotiate(6, ALL_ACTIONS, ALL_PROTOCOL), want)
    assert reply.macro_lists == ((Stage.MAIL, b"i {auth_authen}"),)
    assert reply.actions == A.ADD_HEADERS | A.SET_MACRO_LIST
    assert neg.actions & A.SET_MACRO_LIST
    reply, _ = negotiate(Negotiate(6, A.ADD_HEADERS, ALL_PROTOCOL), want)
    assert reply.macro_lists == ()
    assert reply.actions == A.ADD_HEADERS


def test_negotiate_sendmail_eom_list_also_sent_as_eoh_list() -> None:
    want = Wanted(A.ADD_HEADERS, P(0), ((Stage.END_OF_MESSAGE, ("{msg_id}", "i")),))
    reply, _ = negotiate(Negotiate(6, ALL_ACTIONS, ALL_PROTOCOL), want)
    assert dict(reply.macro_lists) == {
        Stage.END_OF_MESSAGE: b"{msg_id} i",
        Stage.END_OF_HEADERS: b"{msg_id} i",
    }


def test_negotiate_explicit_eoh_list_is_kept() -> None:
    want = Wanted(
        A.ADD_HEADERS,
        P(0),
        ((Stage.END_OF_MESSAGE, ("i",)), (Stage.END_OF_HEADERS, ("j",))),
    )
    reply, _ = negotiate(Negotiate(6, ALL_ACTIONS, ALL_PROTOCOL), want)
    assert dict(reply.macro_lists)[Stage.END_OF_HEADERS] == b"j"


def test_negotiate_bad_macro_name_is_local_error() -> None:
    want = Wanted(A.ADD_HEADERS, P(0), ((Stage.MAIL, ("two words",)),))
    with pytest.raises(LocalProtocolError, match="two words"):
        negotiate(Negotiate(6, ALL_ACTIONS, ALL_PROTOCOL), want)


def test_negotiate_expects_reply_follows_nr_flags() -> None:
    neg = Negotiated(6, A.ADD_HEADERS, NR_CONTENT | P.NR_CONNECT)
    assert not neg.expects_reply(Header(b"a", b"b"))
    assert not neg.expects_reply(EndOfHeaders())
    assert not neg.expects_reply(BodyChunk(b"x"))
    assert not neg.expects_reply(Connect(b"h", Family.INET))
    assert neg.expects_reply(Helo(b"h"))
    assert neg.expects_reply(MailFrom(b"<>"))
    assert neg.expects_reply(RcptTo(b"<a@b>"))
    assert neg.expects_reply(EndOfMessage())
    for silent in (Macro(b"C", ()), Abort(), Quit(), QuitNewConnection(), Negotiate(6, A(0), P(0))):
        assert not neg.expects_reply(silent)


def test_negotiate_legal_reply_table_covers_every_command() -> None:
    import spambridge.milter.messages as m

    assert set(LEGAL_REPLIES) == set(m.Command.__args__)


FULL = Negotiated(6, ALL_ACTIONS, P.SKIP)


def test_negotiate_check_reply_allows_edits_only_at_eom() -> None:
    check_reply(EndOfMessage, AddHeader(b"X-Spam-Flag", b" YES"), FULL)
    check_reply(EndOfMessage, Progress(), FULL)
    check_reply(EndOfMessage, Quarantine(b"spam"), FULL)
    for after in (Connect, Helo, MailFrom, RcptTo, Header, EndOfHeaders, BodyChunk):
        for reply in (AddHeader(b"a", b"b"), Progress(), Quarantine(b"q")):
            with pytest.raises(LocalProtocolError, match="not a legal reply"):
                check_reply(after, reply, FULL)


def test_negotiate_check_reply_never_after_silent_commands() -> None:
    for after in (Macro, Abort, Quit, QuitNewConnection):
        with pytest.raises(LocalProtocolError):
            check_reply(after, Continue(), FULL)


def test_negotiate_check_reply_skip_needs_body_and_negotiation() -> None:
    check_reply(BodyChunk, Skip(), FULL)
    with pytest.raises(LocalProtocolError, match="Skip was not negotiated"):
        check_reply(BodyChunk, Skip(), Negotiated(6, ALL_ACTIONS, P(0)))
    with pytest.raises(LocalProtocolError):
        check_reply(Header, Skip(), FULL)


def test_negotiate_check_reply_refuses_reply_after_nr_promise() -> None:
    with pytest.raises(LocalProtocolError, match="promised"):
        check_reply(Header, Continue(), Negotiated(6, ALL_ACTIONS, P.NR_HEADER))


def test_negotiate_check_reply_needs_negotiated_action() -> None:
    only_add = Negotiated(6, A.ADD_HEADERS, P(0))
    check_reply(EndOfMessage, AddHeader(b"a", b"b"), only_add)
    with pytest.raises(LocalProtocolError, match="CHANGE_HEADERS"):
        check_reply(EndOfMessage, ChangeHeader(1, b"a", b""), only_add)
    with pytest.raises(LocalProtocolError, match="ADD_RECIPIENT_WITH_ARGS"):
        check_reply(
            EndOfMessage, AddRecipient(b"<a>", b"X=1"), Negotiated(6, A.ADD_RECIPIENT, P(0))
        )


def test_negotiate_check_reply_final_replies_per_stage() -> None:
    for reply in (Continue(), Accept(), Reject(), ReplyCode(b"550 5.7.1 no")):
        check_reply(Connect, reply, FULL)
        check_reply(RcptTo, reply, FULL)
    check_reply(RcptTo, Discard(), FULL)
    with pytest.raises(LocalProtocolError):
        check_reply(Connect, Discard(), FULL)
    check_reply(Negotiate, Negotiate(6, A(0), P(0)), FULL)


_SAMPLE_REPLIES = (
    Negotiate(6, A(0), P(0)),
    Continue(),
    Accept(),
    Reject(),
    TempFail(),
    Discard(),
    ReplyCode(b"550 5.7.1 no"),
    Skip(),
    Progress(),
    AddHeader(b"a", b"b"),
    InsertHeader(0, b"a", b"b"),
    ChangeHeader(1, b"a", b"b"),
    AddRecipient(b"<a>"),
    AddRecipient(b"<a>", b"X=1"),
    DeleteRecipient(b"<a>"),
    ChangeFrom(b"<a>"),
    ReplaceBody(b"x"),
    Quarantine(b"q"),
)


def _passes(after: type, reply: object, neg: Negotiated) -> bool:
    try:
        check_reply(after, reply, neg)  # type: ignore[arg-type]
    except LocalProtocolError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    version=st.integers(2, 6),
    actions=st.integers(0, 0x1FF),
    protocol=st.integers(0, 0x1FFFFF),
)
def test_negotiate_precomputed_answers_agree_with_the_flags(
    version: int, actions: int, protocol: int
) -> None:
    """`replied`, `legal`, `can_skip` and `leading_space` are worked out once per
    negotiation; they must say what the flag arithmetic and check_reply say."""
    neg = Negotiated(version, A(actions), P(protocol))
    v6 = version >= 6
    for kind, flag in _NO_REPLY_FLAGS.items():
        assert (kind in neg.replied) == (not v6 or not protocol & flag)
    assert EndOfMessage in neg.replied
    for kind in (Negotiate, Macro, Abort, Quit, QuitNewConnection):
        assert kind not in neg.replied
    assert neg.can_skip == (v6 and bool(protocol & P.SKIP))
    assert neg.leading_space == (v6 and bool(protocol & P.HEADER_LEADING_SPACE))
    for after in LEGAL_REPLIES:
        for reply in _SAMPLE_REPLIES:
            passes = _passes(after, reply, neg)
            if (after, type(reply)) in neg.legal:
                assert passes, (after, reply)
            elif type(reply) is not AddRecipient:
                assert not passes, (after, reply)


_NO_REPLY_FLAGS = {
    Connect: P.NR_CONNECT,
    Helo: P.NR_HELO,
    MailFrom: P.NR_MAIL,
    RcptTo: P.NR_RCPT,
    Data: P.NR_DATA,
    Unknown: P.NR_UNKNOWN,
    Header: P.NR_HEADER,
    EndOfHeaders: P.NR_END_OF_HEADERS,
    BodyChunk: P.NR_BODY,
}
