"""What is not scanned: authenticated senders, trusted networks, and the sendmail access map
(Connect:/From:/To:/Spam: with [cidr], !glob! and /regex/ patterns, REJECT/DISCARD/OK)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spambridge.milter.flags import Family
from spambridge.milter.messages import Continue, Discard, ReplyCode
from tests.support.policy_messages import SPAM_BODY, one_message

AUTH = {"M": {"{auth_authen}": "alice", "{auth_type}": "PLAIN"}}


async def test_smtp_auth_ok_skips_authenticated_senders() -> None:
    out = await one_message([], body=SPAM_BODY, macros=AUTH)
    assert out.requests == []
    assert (out.final, out.edits) == (Continue(), [])


async def test_smtp_auth_ok_off_scans_authenticated_senders() -> None:
    out = await one_message(["-smtp-auth-ok"], body=SPAM_BODY, macros=AUTH)
    assert len(out.requests) == 1
    assert out.added(b"X-Spam-Flag") == [b" YES"]


@pytest.mark.parametrize(
    ("networks", "addr", "family", "scanned"),
    [
        ("192.0.2.0/24", b"192.0.2.77", Family.INET, False),
        ("192.0.2.0/24", b"198.51.100.7", Family.INET, True),
        ("10.0.0.0/8 2001:db8::/32", b"2001:db8::25", Family.INET6, False),
        ("10.0.0.0/8 2001:db8::/32", b"2001:db9::25", Family.INET6, True),
        ("2001:db8::/32", b"2001:db8:1::1", Family.INET6, False),
        ("2001:db8::/32", b"::ffff:192.0.2.1", Family.INET6, True),
    ],
)
async def test_trusted_networks_skip_scanning(
    networks: str, addr: bytes, family: Family, scanned: bool
) -> None:
    out = await one_message(
        [f"trusted-networks={networks}"], body=SPAM_BODY, client_addr=addr, family=family
    )
    assert len(out.requests) == (1 if scanned else 0)
    assert out.final == Continue()
    assert (out.added(b"X-Spam-Flag") == [b" YES"]) is scanned


def access_map(tmp_path: Path, text: str) -> str:
    path = tmp_path / "access"
    path.write_text(text)
    return f"access-db=text!{path}"


async def test_access_db_relay_white_lists_only_with_smdb_relay_ok(tmp_path: Path) -> None:
    """libsnert's default: RELAY (Sendmail's "relay for this domain") is not a white-list, so
    To:example.org RELAY on a gateway does not stop the scan (tests/oracle access-to-relay)."""
    for entry in ("To:example.org RELAY\n", "From:example.net RELAY\n"):
        out = await one_message([access_map(tmp_path, entry)], body=SPAM_BODY)
        assert len(out.requests) == 1, entry
        out = await one_message([access_map(tmp_path, entry), "+smdb-relay-ok"], body=SPAM_BODY)
        assert out.requests == [], entry


@pytest.mark.parametrize(
    "entry",
    [
        "Connect:198.51.100.7 OK",
        "Connect:198.51.100 OK",
        "Connect:client.example.net OK",
        "Connect:example.net OK",
        "milter-spamc-Connect:198.51.100.7 OK",
        "milter-spamc-Connect: [198.51.100.0/24]OK REJECT",
        "milter-spamc-Connect: !*.example.net!OK REJECT",
        "milter-spamc-Connect: /^client[0-9]*\\./OK REJECT",
        "From:sender@example.net OK",
        "milter-spamc-From:sender@ OK",
        "To:rcpt@example.org OK",
        "Spam:rcpt@example.org FRIEND",
        "milter-spamc-To:example.org OK",
    ],
)
async def test_access_db_white_list_skips_scan(tmp_path: Path, entry: str) -> None:
    out = await one_message([access_map(tmp_path, entry + "\n")], body=SPAM_BODY)
    assert out.requests == []
    assert (out.final, out.edits) == (Continue(), [])


@pytest.mark.parametrize(
    "entry",
    [
        "Connect:203.0.113.9 OK",
        "milter-spamc-Connect: [203.0.113.0/24]OK",
        "milter-spamc-Connect: !*.example.com!OK",
        "milter-spamc-Connect: /^mx[0-9]+\\./OK",
        "From:other@example.net OK",
        "Connect:198.51.100.7 SKIP",
    ],
)
async def test_access_db_non_matching_entries_still_scan(tmp_path: Path, entry: str) -> None:
    out = await one_message([access_map(tmp_path, entry + "\n")], body=SPAM_BODY)
    assert len(out.requests) == 1
    assert out.added(b"X-Spam-Flag") == [b" YES"]


async def test_access_db_reject_and_error_text(tmp_path: Path) -> None:
    out = await one_message(
        [access_map(tmp_path, "Connect:198.51.100.7 REJECT\n"), "+access-db-blacklist"]
    )
    assert out.final == ReplyCode(b"550 5.7.1 access denied")
    assert out.requests == []
    out = await one_message(
        [
            access_map(tmp_path, 'From:sender@example.net ERROR:"553 5.7.1 go away"\n'),
            "+access-db-blacklist",
        ]
    )
    assert out.final == ReplyCode(b"553 5.7.1 go away")
    out = await one_message(
        [
            access_map(tmp_path, "From:sender@example.net 554 5.7.0 no thanks\n"),
            "+access-db-blacklist",
        ]
    )
    assert out.final == ReplyCode(b"554 5.7.0 no thanks")


async def test_access_db_cidr_pattern_reject(tmp_path: Path) -> None:
    entry = "milter-spamc-Connect: [198.51.100.0/24]REJECT OK\n"
    out = await one_message([access_map(tmp_path, entry), "+access-db-blacklist"])
    assert out.final == ReplyCode(b"550 5.7.1 access denied")


async def test_access_db_discard(tmp_path: Path) -> None:
    out = await one_message(
        [access_map(tmp_path, "From:example.net DISCARD\n"), "+access-db-blacklist"]
    )
    assert out.final == Discard()
    assert out.requests == []


async def test_access_db_hater_forces_scan_over_other_friends(tmp_path: Path) -> None:
    entries = "Spam:a@example.org FRIEND\nSpam:b@example.org HATER\n"
    out = await one_message(
        [access_map(tmp_path, entries)],
        body=SPAM_BODY,
        rcpts=(b"<a@example.org>", b"<b@example.org>"),
    )
    assert len(out.requests) == 1


async def test_access_db_one_white_listed_recipient_of_two_still_scans(tmp_path: Path) -> None:
    out = await one_message(
        [access_map(tmp_path, "To:a@example.org OK\n")],
        body=SPAM_BODY,
        rcpts=(b"<a@example.org>", b"<b@example.org>"),
    )
    assert len(out.requests) == 1


async def test_access_db_ipv6_cidr(tmp_path: Path) -> None:
    entry = "milter-spamc-Connect: [IPv6:2001:db8::/32]OK\n"
    out = await one_message(
        [access_map(tmp_path, entry)],
        body=SPAM_BODY,
        client_addr=b"2001:db8::1",
        family=Family.INET6,
    )
    assert out.requests == []
