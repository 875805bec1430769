"""Sendmail access-map lookups with milter-spamc tags and pattern lists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from spambridge.access import AccessAction, AccessMap, AccessResult
from spambridge.errors import ConfigError


def _map(tmp_path: Path, text: str) -> AccessMap:
    path = tmp_path / "access"
    path.write_text(text)
    return AccessMap.load(f"text!{path}")


def _action(result: AccessResult | None) -> AccessAction | None:
    return None if result is None else result.action


# ---------------------------------------------------------------- file format


def test_access_text_comments_blank_lines_and_case(tmp_path: Path) -> None:
    amap = _map(
        tmp_path,
        "# a comment\n\n   \nCONNECT:192.0.2.1   ok\r\n"
        "From:Spammer@Example.COM\tERROR:550 go away\n",
    )
    assert len(amap) == 2
    assert amap.connect(b"", b"192.0.2.1") == AccessResult(AccessAction.OK, "", "connect:192.0.2.1")
    result = amap.sender(b"<spammer@example.com>")
    assert result == AccessResult(AccessAction.ERROR, "550 go away", "from:spammer@example.com")
    assert result.action.rejects and result.text_bytes == b"550 go away"


def test_access_first_duplicate_wins_and_key_without_value_ignored(tmp_path: Path) -> None:
    amap = _map(tmp_path, "Connect:10.0.0.1 OK\nConnect:10.0.0.1 REJECT\nConnect:10.0.0.2\n")
    assert _action(amap.connect(b"", b"10.0.0.1")) is AccessAction.OK
    assert amap.connect(b"", b"10.0.0.2") is None


def test_access_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="access-db") as info:
        AccessMap.load(f"text!{tmp_path / 'nope'}")
    assert info.value.option == "access-db"
    assert "does not exist" in str(info.value)


def test_access_unsupported_spec_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported map"):
        AccessMap.load(f"socketmap!{tmp_path}")


def test_access_empty_map_finds_nothing() -> None:
    amap = AccessMap.empty()
    assert len(amap) == 0
    assert amap.connect(b"host.example.com", b"192.0.2.1") is None
    assert amap.sender(b"<a@example.com>") is None


def test_access_every_action_word(tmp_path: Path) -> None:
    words = ["OK", "RELAY", "REJECT", "DISCARD", "SKIP", "DUNNO", "FRIEND", "HATER"]
    amap = _map(tmp_path, "".join(f"To:{w.lower()}@example.com {w}\n" for w in words))
    got = [_action(amap.recipient(f"<{w.lower()}@example.com>".encode())) for w in words]
    assert got == [
        AccessAction.OK,
        AccessAction.RELAY,
        AccessAction.REJECT,
        AccessAction.DISCARD,
        AccessAction.SKIP,
        AccessAction.SKIP,
        AccessAction.FRIEND,
        AccessAction.HATER,
    ]
    assert AccessAction.RELAY.accepts and AccessAction.OK.accepts
    assert not AccessAction.SKIP.accepts and not AccessAction.SKIP.rejects


def test_access_smtp_reply_value_is_error(tmp_path: Path) -> None:
    amap = _map(tmp_path, "From:example.net 550 5.7.1 we do not want you\n")
    result = amap.sender(b"<x@example.net>")
    assert result == AccessResult(
        AccessAction.ERROR, "550 5.7.1 we do not want you", "from:example.net"
    )


def test_access_unknown_action_continues(tmp_path: Path) -> None:
    amap = _map(tmp_path, "Connect:192.0.2.1 BOGUS\nConnect:192.0.2 REJECT\n")
    assert amap.connect(b"", b"192.0.2.1") == AccessResult(
        AccessAction.REJECT, "", "connect:192.0.2"
    )


# ---------------------------------------------------------------- connect search order


CONNECT_MAP = """\
milter-spamc-Connect:192.0.2.1 DISCARD
Connect:192.0.2.1 OK
Connect:192.0.2 REJECT
Connect:192.0 SKIP
Connect:192 RELAY
Connect:host.example.com FRIEND
Connect:example.com HATER
Connect:org DISCARD
milter-spamc-Connect: REJECT
"""


@pytest.mark.parametrize(
    ("name", "addr", "key"),
    [
        (b"host.example.com", b"192.0.2.1", "milter-spamc-connect:192.0.2.1"),
        (b"host.example.com", b"192.0.2.9", "connect:192.0.2"),
        (b"host.example.com", b"192.0.9.9", "connect:192.0"),
        (b"host.example.com", b"192.9.9.9", "connect:192"),
        (b"host.example.com", b"10.9.9.9", "connect:host.example.com"),
        (b"mx.example.com", b"10.9.9.9", "connect:example.com"),
        (b"a.b.example.org", b"10.9.9.9", "connect:org"),
        (b"[10.9.9.9]", b"10.9.9.9", "milter-spamc-connect:"),
    ],
)
def test_access_connect_search_order(tmp_path: Path, name: bytes, addr: bytes, key: str) -> None:
    result = _map(tmp_path, CONNECT_MAP).connect(name, addr)
    assert result is not None and result.key == key


def test_access_connect_generic_tag_after_milter_tag(tmp_path: Path) -> None:
    amap = _map(tmp_path, "Connect:192.0.2.1 OK\nmilter-spamc-Connect:192.0.2 REJECT\n")
    # Every key under the milter's own tag comes before the generic Connect: tag.
    assert amap.connect(b"", b"192.0.2.1") == AccessResult(
        AccessAction.REJECT, "", "milter-spamc-connect:192.0.2"
    )


def test_access_connect_ipv6_keys(tmp_path: Path) -> None:
    amap = _map(
        tmp_path,
        "Connect:IPv6:2001:db8::1 OK\nConnect:IPv6:2001:db8:0:0 REJECT\nConnect:IPv6:2001 SKIP\n",
    )
    assert _action(amap.connect(b"", b"2001:DB8:0::1")) is AccessAction.OK
    assert _action(amap.connect(b"", b"IPv6:2001:db8::2")) is AccessAction.REJECT
    assert _action(amap.connect(b"", b"2001:dead::2")) is AccessAction.SKIP
    assert amap.connect(b"", b"2002::1") is None


def test_access_connect_ipv4_mapped_ipv6_uses_ipv4_keys(tmp_path: Path) -> None:
    amap = _map(tmp_path, "Connect:192.0.2 OK\n")
    assert _action(amap.connect(b"", b"::ffff:192.0.2.7")) is AccessAction.OK


# ---------------------------------------------------------------- sender, recipient, auth


SENDER_MAP = """\
From:boss@example.com OK
From:example.com REJECT
milter-spamc-From:news@ DISCARD
From:<> SKIP
"""


@pytest.mark.parametrize(
    ("address", "key"),
    [
        (b"<boss@example.com>", "from:boss@example.com"),
        (b"<Other@Sub.Example.COM>", "from:example.com"),
        (b"<news@anywhere.test>", "milter-spamc-from:news@"),
        (b"<>", "from:<>"),
    ],
)
def test_access_sender_search_order(tmp_path: Path, address: bytes, key: str) -> None:
    result = _map(tmp_path, SENDER_MAP).sender(address)
    assert result is not None and result.key == key


def test_access_sender_no_match(tmp_path: Path) -> None:
    assert _map(tmp_path, SENDER_MAP).sender(b"<a@example.org>") is None


def test_access_recipient_tag_order(tmp_path: Path) -> None:
    amap = _map(
        tmp_path,
        "To:alice@example.com OK\nSpam:alice@example.com FRIEND\n"
        "milter-spamc-To:example.com SKIP\nSpam:bob@example.com HATER\n",
    )
    # milter-spamc-To: (any key) before Spam: before To:.
    assert amap.recipient(b"<alice@example.com>") == AccessResult(
        AccessAction.SKIP, "", "milter-spamc-to:example.com"
    )
    assert _action(amap.recipient(b"<bob@example.com>")) is AccessAction.SKIP
    assert _action(amap.recipient(b"<carol@example.net>")) is None
    amap2 = _map(tmp_path, "Spam:bob@example.com HATER\nTo:bob@example.com OK\n")
    assert _action(amap2.recipient(b"<bob@example.com>")) is AccessAction.HATER


def test_access_auth(tmp_path: Path) -> None:
    amap = _map(tmp_path, "milter-spamc-Auth:alice OK\nmilter-spamc-Auth: SKIP\n")
    assert amap.auth(b"alice") == AccessResult(AccessAction.OK, "", "milter-spamc-auth:alice")
    assert _action(amap.auth(b"bob")) is AccessAction.SKIP
    assert amap.auth(b"") is None


# ---------------------------------------------------------------- pattern lists


def test_access_pattern_cidr_v4_and_v6(tmp_path: Path) -> None:
    amap = _map(
        tmp_path,
        "milter-spamc-Connect: [192.0.2.0/24]OK [IPv6:2001:db8::/32]DISCARD"
        " [10.0.0.1]SKIP REJECT\n",
    )
    assert _action(amap.connect(b"x", b"192.0.2.200")) is AccessAction.OK
    assert _action(amap.connect(b"x", b"2001:db8:1::5")) is AccessAction.DISCARD
    assert _action(amap.connect(b"x", b"10.0.0.1")) is AccessAction.SKIP
    assert _action(amap.connect(b"x", b"198.51.100.1")) is AccessAction.REJECT


def test_access_pattern_glob_and_regex_on_name(tmp_path: Path) -> None:
    amap = _map(
        tmp_path,
        "milter-spamc-Connect: !*.dyn.example.net!REJECT /^mx[0-9]+\\.example\\.org$/OK\n",
    )
    assert _action(amap.connect(b"host-1.DYN.example.net", b"192.0.2.1")) is AccessAction.REJECT
    assert _action(amap.connect(b"MX12.example.org", b"192.0.2.1")) is AccessAction.OK
    # No pattern matched and no plain action: no decision.
    assert amap.connect(b"mail.example.com", b"192.0.2.1") is None


def test_access_pattern_on_sender_with_client_ip(tmp_path: Path) -> None:
    amap = _map(
        tmp_path, "From:example.com [192.0.2.0/24]OK /^bounce-/DISCARD ERROR:550 5.7.1 no\n"
    )
    assert _action(amap.sender(b"<a@example.com>", b"192.0.2.9")) is AccessAction.OK
    assert _action(amap.sender(b"<bounce-1@example.com>", b"10.0.0.1")) is AccessAction.DISCARD
    assert amap.sender(b"<a@example.com>", b"10.0.0.1") == AccessResult(
        AccessAction.ERROR, "550 5.7.1 no", "from:example.com"
    )


def test_access_next_continues_with_next_key(tmp_path: Path) -> None:
    amap = _map(
        tmp_path,
        "Connect:192.0.2.1 [192.0.2.1]NEXT\nConnect:192.0.2 NEXT\nConnect:192.0 DISCARD\n",
    )
    assert amap.connect(b"", b"192.0.2.1") == AccessResult(
        AccessAction.DISCARD, "", "connect:192.0"
    )


def test_access_malformed_patterns_never_match(tmp_path: Path) -> None:
    amap = _map(tmp_path, "milter-spamc-Connect: [not-a-net]OK /([/REJECT !x SKIP\n")
    # "!x" has no closing "!" so it is malformed; the plain SKIP ends the list.
    assert _action(amap.connect(b"x", b"192.0.2.1")) is AccessAction.SKIP


# ---------------------------------------------------------------- Berkeley DB maps


@pytest.mark.skipif(shutil.which("makemap") is None, reason="sendmail's makemap not installed")
@pytest.mark.parametrize(("kind", "spec"), [("hash", "db!{}"), ("btree", "db!btree!{}")])
def test_access_db_map_made_by_makemap(tmp_path: Path, kind: str, spec: str) -> None:
    source = "Connect:192.0.2.1 OK\nFrom:Spammer@Example.com ERROR:550 go away\n"
    source += "milter-spamc-Connect: REJECT\n"
    db_path = tmp_path / "access.db"
    subprocess.run(["makemap", kind, str(db_path)], input=source.encode(), check=True, timeout=30)
    amap = AccessMap.load(spec.format(db_path))
    assert len(amap) == 3
    assert _action(amap.connect(b"", b"192.0.2.1")) is AccessAction.OK
    assert amap.connect(b"", b"10.0.0.1") == AccessResult(
        AccessAction.REJECT, "", "milter-spamc-connect:"
    )
    assert _action(amap.sender(b"<spammer@example.com>")) is AccessAction.ERROR
    # A bare path ending in .db and the sendmail-style name without the suffix also work.
    if kind == "hash":
        assert len(AccessMap.load(str(db_path))) == 3
        assert len(AccessMap.load(f"db!{tmp_path / 'access'}")) == 3


@pytest.mark.skipif(shutil.which("makemap") is None, reason="sendmail's makemap not installed")
def test_access_db_map_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database\n")
    with pytest.raises(ConfigError, match="Berkeley DB"):
        AccessMap.load(f"db!{path}")
