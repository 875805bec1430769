"""Property tests for the codec: round trips, chunking independence, hostile input.

Profiles: "default-codec" (200 examples) and "thorough" (5000); pick with HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from spambridge.errors import RemoteProtocolError
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

settings.register_profile("default-codec", max_examples=200, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
# Applied per test so that loading this module does not change other modules' settings.
try:
    CODEC = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "default-codec"))
except InvalidArgument:  # a profile only another module registers
    CODEC = settings.get_profile("default-codec")

text = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b""))
u32 = st.integers(0, 0xFFFFFFFF)
macro_lists = st.lists(st.tuples(st.sampled_from(Stage), text), max_size=3).map(tuple)
negotiates = st.builds(Negotiate, u32, u32.map(ActionFlags), u32.map(ProtocolFlags), macro_lists)

commands: st.SearchStrategy[Command] = st.one_of(
    negotiates,
    st.builds(
        Macro,
        st.binary(min_size=1, max_size=1),
        st.lists(st.tuples(text, text), max_size=4).map(tuple),
    ),
    st.builds(
        Connect,
        text,
        st.sampled_from([Family.INET, Family.INET6, Family.UNIX]),
        st.integers(0, 0xFFFF),
        text.filter(lambda a: a[:5].lower() != b"ipv6:"),
    ),
    st.builds(Connect, text, st.just(Family.UNKNOWN)),
    st.builds(Helo, text),
    st.builds(MailFrom, text, st.lists(text, max_size=3).map(tuple)),
    st.builds(RcptTo, text, st.lists(text, max_size=3).map(tuple)),
    st.just(Data()),
    # A header packet without a name is refused, as libmilter's dec_arg2 refuses it.
    st.builds(Header, text.filter(bool), text),
    st.just(EndOfHeaders()),
    st.builds(BodyChunk, st.binary(max_size=300)),
    st.builds(EndOfMessage, st.binary(max_size=50)),
    st.just(Abort()),
    st.just(Quit()),
    st.just(QuitNewConnection()),
    st.builds(Unknown, text),
)

replies: st.SearchStrategy[Reply] = st.one_of(
    negotiates,
    st.sampled_from([Continue(), Accept(), Reject(), TempFail(), Discard(), Skip(), Progress()]),
    st.builds(ReplyCode, text),
    st.builds(Quarantine, text),
    st.builds(AddHeader, text, text),
    st.builds(InsertHeader, u32, text, text),
    st.builds(ChangeHeader, u32, text, text),
    st.builds(AddRecipient, text, st.none() | text),
    st.builds(DeleteRecipient, text),
    st.builds(ChangeFrom, text, st.none() | text),
    st.builds(ReplaceBody, st.binary(max_size=300)),
)


def feed_bytewise(decoder: CommandDecoder | ReplyDecoder, wire: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(wire)):
        out += decoder.feed(wire[i : i + 1])
    return out


@CODEC
@given(st.lists(commands, max_size=6))
def test_codec_properties_commands_round_trip(messages: list[Command]) -> None:
    wire = b"".join(encode(m) for m in messages)
    assert CommandDecoder().feed(wire) == messages
    assert feed_bytewise(CommandDecoder(), wire) == messages


@CODEC
@given(st.lists(replies, max_size=6))
def test_codec_properties_replies_round_trip(messages: list[Reply]) -> None:
    wire = b"".join(encode(m) for m in messages)
    assert ReplyDecoder().feed(wire) == messages
    assert feed_bytewise(ReplyDecoder(), wire) == messages


def decode_or_error(
    decoder: CommandDecoder | ReplyDecoder, chunks: list[bytes]
) -> tuple[object, ...]:
    out: list[object] = []
    try:
        for chunk in chunks:
            out += decoder.feed(chunk)
    except RemoteProtocolError:
        return ("error", out)
    return ("ok", out, decoder.buffered)


def chunkings(wire: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(wire) + 1) for c in cuts})
    bounds = [0, *points, len(wire)]
    return [wire[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("decoder_type", [CommandDecoder, ReplyDecoder])
@CODEC
@given(st.binary(max_size=200), st.lists(st.integers(0, 1000), max_size=8))
def test_codec_properties_arbitrary_bytes_chunking_invariant(
    decoder_type: type[CommandDecoder] | type[ReplyDecoder], wire: bytes, cuts: list[int]
) -> None:
    # Either every chunking decodes to the same messages, or every chunking raises
    # RemoteProtocolError; nothing else may escape.
    whole = decode_or_error(decoder_type(max_frame=4096), [wire])
    split = decode_or_error(decoder_type(max_frame=4096), chunkings(wire, cuts))
    if whole[0] == "ok":
        assert split == whole
    else:
        assert split[0] == "error"
        assert whole[1] == []


@CODEC
@given(st.lists(commands, min_size=1, max_size=3), st.binary(max_size=60))
def test_codec_properties_valid_prefix_then_garbage(messages: list[Command], junk: bytes) -> None:
    wire = b"".join(encode(m) for m in messages) + junk
    whole = decode_or_error(CommandDecoder(), [wire])
    bytewise = decode_or_error(CommandDecoder(), [wire[i : i + 1] for i in range(len(wire))])
    assert whole[0] == bytewise[0]
    # Byte by byte, the good messages come out before any error the junk causes.
    decoded = bytewise[1]
    assert isinstance(decoded, list)
    assert decoded[: len(messages)] == messages
    if whole[0] == "ok":
        assert whole == bytewise


@pytest.mark.parametrize("decoder_type", [CommandDecoder, ReplyDecoder])
@CODEC
@given(st.integers((1 << 20) + 1, 0xFFFFFFFF), st.binary(max_size=8))
def test_codec_properties_huge_length_prefix_fails_at_once(
    decoder_type: type[CommandDecoder] | type[ReplyDecoder], length: int, rest: bytes
) -> None:
    decoder = decoder_type()
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decoder.feed(length.to_bytes(4, "big") + rest)
    assert decoder.buffered == 0
