"""spamd-socket and spamd-timeouts parsing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spambridge.errors import ConfigError
from spambridge.spamd.endpoints import (
    NO_LIMIT_SECONDS,
    SpamdEndpoint,
    SpamdTimeouts,
    parse_spamd_socket,
    parse_spamd_sockets,
    parse_spamd_timeouts,
)
from spambridge.spamd.protocol import sanitize_user

_USER_VARS = ("USER", "LOGNAME", "LNAME", "USERNAME")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:783", SpamdEndpoint("127.0.0.1:783", host="127.0.0.1", port=783)),
        ("127.0.0.1:10783", SpamdEndpoint("127.0.0.1:10783", host="127.0.0.1", port=10783)),
        ("spamd.example.org,784", SpamdEndpoint("spamd.example.org:784", "spamd.example.org", 784)),
        ("localhost", SpamdEndpoint("localhost:783", host="localhost", port=783)),
        ("[::1]:7830", SpamdEndpoint("[::1]:7830", host="::1", port=7830)),
        ("[2001:db8::5]", SpamdEndpoint("[2001:db8::5]:783", host="2001:db8::5", port=783)),
        ("[::1],900", SpamdEndpoint("[::1]:900", host="::1", port=900)),
        ("2001:db8::5", SpamdEndpoint("[2001:db8::5]:783", host="2001:db8::5", port=783)),
        ("/run/spamd.sock", SpamdEndpoint("unix:/run/spamd.sock", path="/run/spamd.sock")),
        ("unix:/run/spamd.sock", SpamdEndpoint("unix:/run/spamd.sock", path="/run/spamd.sock")),
        ("UNIX:/tmp/s", SpamdEndpoint("unix:/tmp/s", path="/tmp/s")),
        ("ssl:mail.example:783", SpamdEndpoint("ssl:mail.example:783", "mail.example", tls=True)),
        ("ssl:[::1]:7830", SpamdEndpoint("ssl:[::1]:7830", host="::1", port=7830, tls=True)),
        ("ssl:spamd", SpamdEndpoint("ssl:spamd:783", host="spamd", port=783, tls=True)),
        ("  10.0.0.2:783  ", SpamdEndpoint("10.0.0.2:783", host="10.0.0.2", port=783)),
    ],
)
def test_spamd_parse_socket_accepts_form(text: str, expected: SpamdEndpoint) -> None:
    assert parse_spamd_socket(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("host:", "port '' is not a number"),
        ("host:abc", "port 'abc' is not a number"),
        ("host:0", "outside 1-65535"),
        ("host:65536", "outside 1-65535"),
        (",783", "host is empty"),
        (":783", "host is empty"),
        ("[::1", "missing ']'"),
        ("[nothex]:783", "not an IPv6 address"),
        ("[::1]x", "unexpected 'x'"),
        ("1:2:zz", "not an IPv6 address"),
        ("bad_host!:783", "not a host name"),
        ("unix:relative/path", "must be absolute"),
        ("ssl:/run/spamd.sock", "is not a host name"),
        ("999.1.1.1", "not a host name"),
    ],
)
def test_spamd_parse_socket_rejects_with_clear_message(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spamd_socket(text)
    message = str(info.value)
    assert info.value.option == "spamd-socket"
    assert message.startswith("spamd-socket: ")
    assert fragment in message
    assert repr(text) in message  # names the bad entry
    assert "accepted forms" in message and "unix:/path" in message


def test_spamd_parse_sockets_splits_on_whitespace() -> None:
    endpoints = parse_spamd_sockets(["127.0.0.1:1 127.0.0.2,2\t/run/s", "unix:/x"])
    assert [e.label for e in endpoints] == [
        "127.0.0.1:1",
        "127.0.0.2:2",
        "unix:/run/s",
        "unix:/x",
    ]


def test_spamd_parse_sockets_empty_disables_scanning() -> None:
    assert parse_spamd_sockets([]) == ()
    assert parse_spamd_sockets(["  "]) == ()


def test_spamd_parse_sockets_reports_bad_entry_among_good() -> None:
    with pytest.raises(ConfigError, match="'host:x'"):
        parse_spamd_sockets(["127.0.0.1 host:x"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("C:5s;S:10s;R:60s;E:120s", SpamdTimeouts(5, 10, 60, 120)),
        ("C:1;S:2;R:3;E:4", SpamdTimeouts(1, 2, 3, 4)),
        ("R:2m", SpamdTimeouts(read=120.0)),
        ("E:1h", SpamdTimeouts(end=3600.0)),
        ("c:0.5s; e:3", SpamdTimeouts(connect=0.5, end=3.0)),
        ("C:2s;", SpamdTimeouts(connect=2.0)),
        ("120", SpamdTimeouts(120, 120, 120, 120)),
        ("2m", SpamdTimeouts(120, 120, 120, 120)),
        ("0", SpamdTimeouts(*(NO_LIMIT_SECONDS,) * 4)),
        ("R:0", SpamdTimeouts(read=NO_LIMIT_SECONDS)),
        ("E:5h", SpamdTimeouts(end=NO_LIMIT_SECONDS)),
        ("", SpamdTimeouts()),
    ],
)
def test_spamd_parse_timeouts_accepts(text: str, expected: SpamdTimeouts) -> None:
    assert parse_spamd_timeouts(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("X:5s", "unknown field 'X:5s'"),
        ("C5s", "not a duration"),
        ("C:", "'' is not a duration"),
        ("C:5x", "'5x' is not a duration"),
        ("C:-1", "'-1' is not a duration"),
        ("C:1;C:2", "field C given twice"),
        ("abc", "'abc' is not a duration"),
        ("R:5s,E:3", "not a duration"),
    ],
)
def test_spamd_parse_timeouts_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spamd_timeouts(text)
    assert info.value.option == "spamd-timeouts"
    assert fragment in str(info.value)
    assert "C:5s;S:10s;R:60s;E:120s" in str(info.value)


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("alice", "alice"),
        ("bob@example.org", "bob@example.org"),
        ("a.b+c_d-e", "a.b+c_d-e"),
        ("bob\r\nCompress: zlib", "bobCompresszlib"),
        ("jürgen", "jrgen"),
        ("", ""),
        (None, ""),
    ],
)
def test_spamd_sanitize_user_keeps_safe_ascii(user: str | None, expected: str) -> None:
    assert sanitize_user(user) == expected


def test_spamd_import_survives_uid_without_passwd_entry() -> None:
    # aiospamc calls getpass.getuser() at import; simulate a uid unknown to passwd, no USER.
    code = (
        "import pwd\n"
        "def missing(uid):\n"
        "    raise KeyError('getpwuid(): uid not found')\n"
        "pwd.getpwuid = missing\n"
        "import os, spambridge.cli\n"
        "print(os.environ['USER'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in _USER_VARS}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.strip() == b"spambridge"


@pytest.mark.parametrize(
    ("text", "label", "weight"),
    [
        ("127.0.0.1:783;weight=4", "127.0.0.1:783", 4),
        ("spamd.example.org;WEIGHT=2", "spamd.example.org:783", 2),
        ("[::1]:784;weight=1000", "[::1]:784", 1000),
        ("unix:/run/spamd.sock;weight=3", "unix:/run/spamd.sock", 3),
        ("127.0.0.1:783", "127.0.0.1:783", 1),
    ],
)
def test_spamd_parse_socket_weight(text: str, label: str, weight: int) -> None:
    endpoint = parse_spamd_socket(text)
    assert (endpoint.label, endpoint.weight) == (label, weight)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("127.0.0.1:783;weight=0", "weight '0' is not a whole number 1-1000"),
        ("127.0.0.1:783;weight=1001", "1-1000"),
        ("127.0.0.1:783;weight=x", "weight 'x'"),
        ("127.0.0.1:783;weight", "unknown parameter 'weight'"),
        ("127.0.0.1:783;speed=2", "unknown parameter 'speed=2'"),
        (";weight=2", "the entry is empty"),
    ],
)
def test_spamd_parse_socket_bad_weight_names_the_option(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spamd_socket(text)
    assert info.value.option == "spamd-socket"
    assert fragment in str(info.value)


def test_spamd_parse_sockets_weight_in_lists() -> None:
    endpoints = parse_spamd_sockets(["a.example:783;weight=2,b.example host,784;weight=3"])
    assert [(e.label, e.weight) for e in endpoints] == [
        ("a.example:783", 2),
        ("b.example:783", 1),
        ("host:784", 3),
    ]
