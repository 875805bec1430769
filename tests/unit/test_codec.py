"""Golden byte vectors and error cases for the milter codec."""

from __future__ import annotations

import pytest

from spambridge.errors import LocalProtocolError, RemoteProtocolError
from spambridge.milter.codec import CommandDecoder, ReplyDecoder, encode
from spambridge.milter.flags import ActionFlags, Family, ProtocolFlags, Stage
from spambridge.milter.messages import (
    Abort,
    Accept,
    AddHeader,
    AddRecipient,
    BodyChunk,
    ChangeFrom,
    ChangeHeader,
    Command,
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
    Reply,
    ReplyCode,
    Skip,
    TempFail,
    Unknown,
)


def frame(code: bytes, payload: bytes = b"") -> bytes:
    return (len(payload) + 1).to_bytes(4, "big") + code + payload


# Hand-written wire bytes; the length prefix is spelled out for the first few on purpose.
COMMAND_VECTORS: list[tuple[Command, bytes]] = [
    (
        Negotiate(6, ActionFlags(0x1FF), ProtocolFlags(0x1FFFFF)),
        b"\x00\x00\x00\x0dO\x00\x00\x00\x06\x00\x00\x01\xff\x00\x1f\xff\xff",
    ),
    (
        Macro(b"C", ((b"j", b"mx.example"), (b"{daemon_name}", b"MTA"))),
        frame(b"D", b"Cj\x00mx.example\x00{daemon_name}\x00MTA\x00"),
    ),
    (Macro(b"L", ()), b"\x00\x00\x00\x02DL"),
    (
        Connect(b"mail.example.net", Family.INET, 4567, b"192.0.2.1"),
        b"\x00\x00\x00\x1fCmail.example.net\x004\x11\xd7192.0.2.1\x00",
    ),
    (
        Connect(b"h", Family.INET6, 25, b"2001:db8::1"),
        frame(b"C", b"h\x006\x00\x192001:db8::1\x00"),
    ),
    (
        Connect(b"localhost", Family.UNIX, 0, b"/run/s"),
        frame(b"C", b"localhost\x00L\x00\x00/run/s\x00"),
    ),
    (Connect(b"unknown", Family.UNKNOWN), frame(b"C", b"unknown\x00U")),
    (Helo(b"mail.example.net"), frame(b"H", b"mail.example.net\x00")),
    (MailFrom(b"<a@example.net>"), frame(b"M", b"<a@example.net>\x00")),
    (
        MailFrom(b"<a@example.net>", (b"SIZE=100", b"BODY=8BITMIME")),
        frame(b"M", b"<a@example.net>\x00SIZE=100\x00BODY=8BITMIME\x00"),
    ),
    (
        RcptTo(b"<b@example.org>", (b"NOTIFY=NEVER",)),
        frame(b"R", b"<b@example.org>\x00NOTIFY=NEVER\x00"),
    ),
    (Data(), b"\x00\x00\x00\x01T"),
    (
        Header(b"Subject", b" hello\n\tworld \xe4"),
        frame(b"L", b"Subject\x00 hello\n\tworld \xe4\x00"),
    ),
    (EndOfHeaders(), b"\x00\x00\x00\x01N"),
    (BodyChunk(b"line\r\n"), frame(b"B", b"line\r\n")),
    (EndOfMessage(), b"\x00\x00\x00\x01E"),
    (EndOfMessage(b"tail\r\n"), frame(b"E", b"tail\r\n")),
    (Abort(), b"\x00\x00\x00\x01A"),
    (Quit(), b"\x00\x00\x00\x01Q"),
    (QuitNewConnection(), b"\x00\x00\x00\x01K"),
    (Unknown(b"XFOO bar"), frame(b"U", b"XFOO bar\x00")),
]

REPLY_VECTORS: list[tuple[Reply, bytes]] = [
    (
        Negotiate(6, ActionFlags(0x111), ProtocolFlags(0x1C0080)),
        frame(b"O", b"\x00\x00\x00\x06\x00\x00\x01\x11\x00\x1c\x00\x80"),
    ),
    (
        Negotiate(
            6,
            ActionFlags.ADD_HEADERS,
            ProtocolFlags(0),
            ((Stage.MAIL, b"i {auth_authen}"), (Stage.END_OF_HEADERS, b"i")),
        ),
        frame(
            b"O",
            b"\x00\x00\x00\x06\x00\x00\x00\x01\x00\x00\x00\x00"
            b"\x00\x00\x00\x02i {auth_authen}\x00\x00\x00\x00\x06i\x00",
        ),
    ),
    (Continue(), b"\x00\x00\x00\x01c"),
    (Accept(), b"\x00\x00\x00\x01a"),
    (Reject(), b"\x00\x00\x00\x01r"),
    (TempFail(), b"\x00\x00\x00\x01t"),
    (Discard(), b"\x00\x00\x00\x01d"),
    (ReplyCode(b"550 5.7.1 no"), frame(b"y", b"550 5.7.1 no\x00")),
    (Skip(), b"\x00\x00\x00\x01s"),
    (Progress(), b"\x00\x00\x00\x01p"),
    (Quarantine(b"spam"), frame(b"q", b"spam\x00")),
    (AddHeader(b"X-Spam-Flag", b" YES"), frame(b"h", b"X-Spam-Flag\x00 YES\x00")),
    (InsertHeader(0, b"X-A", b" b"), frame(b"i", b"\x00\x00\x00\x00X-A\x00 b\x00")),
    (ChangeHeader(2, b"X-Spam-Status", b""), frame(b"m", b"\x00\x00\x00\x02X-Spam-Status\x00\x00")),
    (AddRecipient(b"<c@example.com>"), frame(b"+", b"<c@example.com>\x00")),
    (
        AddRecipient(b"<c@example.com>", b"NOTIFY=NEVER"),
        frame(b"2", b"<c@example.com>\x00NOTIFY=NEVER\x00"),
    ),
    (DeleteRecipient(b"<b@example.org>"), frame(b"-", b"<b@example.org>\x00")),
    (ChangeFrom(b"<d@example.com>"), frame(b"e", b"<d@example.com>\x00")),
    (ChangeFrom(b"<d@example.com>", b"SIZE=1"), frame(b"e", b"<d@example.com>\x00SIZE=1\x00")),
    (ReplaceBody(b"new body\r\n"), frame(b"b", b"new body\r\n")),
]


@pytest.mark.parametrize(("message", "wire"), COMMAND_VECTORS, ids=lambda v: type(v).__name__)
def test_codec_command_golden_bytes(message: Command, wire: bytes) -> None:
    assert encode(message) == wire
    assert CommandDecoder().feed(wire) == [message]


@pytest.mark.parametrize(("message", "wire"), REPLY_VECTORS, ids=lambda v: type(v).__name__)
def test_codec_reply_golden_bytes(message: Reply, wire: bytes) -> None:
    assert encode(message) == wire
    assert ReplyDecoder().feed(wire) == [message]


def test_codec_vectors_cover_every_message_type() -> None:
    import spambridge.milter.messages as m

    commands = {type(msg) for msg, _ in COMMAND_VECTORS}
    replies = {type(msg) for msg, _ in REPLY_VECTORS}
    assert commands == set(m.Command.__args__)
    assert replies == set(m.Reply.__args__)


def test_codec_connect_strips_ipv6_prefix_case_insensitively() -> None:
    for prefix in (b"IPv6:", b"ipv6:", b"IPV6:"):
        wire = frame(b"C", b"h\x006\x00\x19" + prefix + b"2001:db8::1\x00")
        assert CommandDecoder().feed(wire) == [Connect(b"h", Family.INET6, 25, b"2001:db8::1")]


def test_codec_connect_unknown_family_ignores_trailing_port_and_address() -> None:
    wire = frame(b"C", b"h\x00U\x30\x39unspec\x00")
    assert CommandDecoder().feed(wire) == [Connect(b"h", Family.UNKNOWN)]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # A milter client seen in the field writes one NUL too many after the address.
        (b"h\x004\x11\xd7192.0.2.1\x00\x00", Connect(b"h", Family.INET, 4567, b"192.0.2.1")),
        (b"h\x006\x00\x192001:db8::1\x00\x00", Connect(b"h", Family.INET6, 25, b"2001:db8::1")),
        (b"h\x00L\x00\x00/run/s\x00\x00", Connect(b"h", Family.UNIX, 0, b"/run/s")),
        # libmilter's st_connectinfo reads the address up to the first NUL, whatever follows.
        (b"h\x004\x00\x19192.0.2.1\x00junk\x00", Connect(b"h", Family.INET, 25, b"192.0.2.1")),
        (b"h\x00L\x00\x00\x00\x00", Connect(b"h", Family.UNIX, 0, b"")),
    ],
)
def test_codec_connect_reads_address_up_to_first_nul_as_libmilter(
    payload: bytes, expected: Connect
) -> None:
    assert CommandDecoder().feed(frame(b"C", payload)) == [expected]


@pytest.mark.parametrize(
    "payload",
    [
        b"h\x004\x00\x19192.0.2.1",  # libmilter: the packet must end in NUL
        b"h\x004\x00\x19",  # libmilter: at least one byte after the port
        b"h\x004\x00",
    ],
)
def test_codec_connect_refuses_what_libmilter_refuses(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="CONNECT"):
        CommandDecoder().feed(frame(b"C", payload))


def test_codec_mail_with_only_address_has_no_args() -> None:
    assert CommandDecoder().feed(frame(b"M", b"<>\x00")) == [MailFrom(b"<>")]


def test_codec_macro_any_stage_zero_pairs() -> None:
    assert CommandDecoder().feed(frame(b"D", b"B")) == [Macro(b"B", ())]


def test_codec_decodes_several_frames_and_keeps_partial_tail() -> None:
    wire = encode(Helo(b"a")) + encode(Data()) + encode(BodyChunk(b"xyz"))
    decoder = CommandDecoder()
    assert decoder.feed(wire[:-2]) == [Helo(b"a"), Data()]
    assert decoder.buffered == len(encode(BodyChunk(b"xyz"))) - 2
    assert decoder.feed(wire[-2:]) == [BodyChunk(b"xyz")]
    assert decoder.buffered == 0


def test_codec_large_body_chunk_fed_in_pieces() -> None:
    body = bytes(range(256)) * 256
    wire = encode(BodyChunk(body))
    decoder = CommandDecoder()
    out: list[Command] = []
    for i in range(0, len(wire), 1000):
        out += decoder.feed(wire[i : i + 1000])
    assert out == [BodyChunk(body)]


@pytest.mark.parametrize(
    ("wire", "needle"),
    [
        (b"\x00\x00\x00\x00", "length 0"),
        (b"\xff\xff\xff\xff", "exceeds"),
        (frame(b"Z"), "b'Z'"),
        (frame(b"O", b"\x00" * 11), "OPTNEG"),
        (frame(b"H", b"no-nul"), "HELO"),
        (frame(b"H", b"a\x00b\x00"), "HELO"),
        (frame(b"M", b""), "MAIL"),
        (frame(b"C", b"h\x00X\x00\x00a\x00"), "family"),
        (frame(b"C", b"h\x004\x00"), "CONNECT"),
        (frame(b"C", b"hostname-only"), "CONNECT"),
        (frame(b"D", b""), "MACRO"),
        (frame(b"D", b"Cname-without-value\x00"), "MACRO"),
        (frame(b"L", b"Subject\x00"), "HEADER"),
        (frame(b"T", b"x"), "DATA"),
    ],
)
def test_codec_command_decoder_rejects_malformed(wire: bytes, needle: str) -> None:
    decoder = CommandDecoder()
    with pytest.raises(RemoteProtocolError, match=needle.replace("(", r"\(")):
        decoder.feed(wire)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(encode(Quit()))  # stays broken


def test_codec_hostile_length_fails_before_payload_arrives() -> None:
    decoder = CommandDecoder(max_frame=1000)
    with pytest.raises(RemoteProtocolError, match="1001"):
        decoder.feed(b"\x00\x00\x03\xe9")
    assert decoder.buffered == 0


def test_codec_unknown_code_fails_before_payload_arrives() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown code"):
        CommandDecoder().feed(b"\x00\x00\x10\x00z")


def test_codec_max_frame_counts_code_byte() -> None:
    assert CommandDecoder(max_frame=4).feed(frame(b"B", b"abc")) == [BodyChunk(b"abc")]
    with pytest.raises(RemoteProtocolError):
        CommandDecoder(max_frame=3).feed(frame(b"B", b"abc"))


@pytest.mark.parametrize(
    "wire",
    [
        frame(b"c", b"x"),
        frame(b"y", b"550 no-nul"),
        frame(b"i", b"\x00\x00"),
        frame(b"e", b"a\x00b\x00c\x00"),
        frame(b"C"),  # a command code is not a reply
    ],
)
def test_codec_reply_decoder_rejects_malformed(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        ReplyDecoder().feed(wire)


def test_codec_replace_body_is_split_into_max_size_packets() -> None:
    data = b"x" * 65535 * 2 + b"tail"
    wire = encode(ReplaceBody(data))
    assert len(wire) == 3 * 5 + len(data)
    parts = ReplyDecoder().feed(wire)
    assert [len(p.data) for p in parts if isinstance(p, ReplaceBody)] == [65535, 65535, 4]
    assert b"".join(p.data for p in parts if isinstance(p, ReplaceBody)) == data


def test_codec_header_edit_over_max_payload_raises() -> None:
    with pytest.raises(LocalProtocolError, match="65535"):
        encode(AddHeader(b"X-Big", b"x" * 65535))
    assert len(encode(AddHeader(b"X", b"x" * (65535 - 3)))) == 5 + 65535


def test_codec_encode_rejects_nul_in_string_fields() -> None:
    with pytest.raises(LocalProtocolError, match="NUL"):
        encode(AddHeader(b"X-A", b"bad\x00value"))
    with pytest.raises(LocalProtocolError, match="NUL"):
        encode(MailFrom(b"<a\x00b>"))


def test_codec_encode_rejects_out_of_range_numbers() -> None:
    with pytest.raises(LocalProtocolError):
        encode(InsertHeader(-1, b"X", b"y"))
    with pytest.raises(LocalProtocolError):
        encode(Connect(b"h", Family.INET, 70000, b"1.2.3.4"))


def test_codec_oversize_command_header_is_allowed_from_mta_side() -> None:
    # Postfix writes headers over 64 KiB as one packet; our MTA-side client must be able to.
    value = b"v" * 70000
    assert CommandDecoder().feed(encode(Header(b"X-Long", value))) == [Header(b"X-Long", value)]
