"""Lists of networks and hosts: the peers' comma-separated form, and IPv4-mapped clients."""

from __future__ import annotations

import ipaddress

import pytest

from spambridge import policy
from spambridge.errors import ConfigError
from spambridge.milter.flags import Family
from spambridge.spamd.endpoints import SpamdEndpoint, parse_spamd_sockets, spamd_sockets_text
from spambridge.transaction import Client, Macros
from tests.support.config import make_config


def trusted(*argv: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return make_config(*argv).trusted_networks


def test_network_lists_trusted_networks_take_commas_as_spamass_milter_writes_them() -> None:
    expected = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert trusted("trusted-networks=127.0.0.0/8,::1/128") == expected
    assert trusted("--trusted-networks", "127.0.0.0/8, ::1/128") == expected
    assert trusted("trusted-networks=127.0.0.0/8 ::1/128") == expected


def test_network_lists_bad_entry_in_a_comma_list_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        trusted("trusted-networks=127.0.0.0/8,nonsense")
    assert info.value.option == "trusted-networks" and "'nonsense'" in str(info.value)


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        (b"::ffff:192.0.2.7", True),
        (b"::ffff:c000:207", True),  # the same address written in hex
        (b"192.0.2.7", True),
        (b"::ffff:198.51.100.7", False),
        (b"2001:db8::7", False),
    ],
)
def test_network_lists_ipv4_mapped_client_matches_its_ipv4_network(
    client: bytes, expected: bool
) -> None:
    config = make_config("trusted-networks=192.0.2.0/24")
    who = Client(b"h", Family.INET6, 1, client)
    assert (policy.skip_reason(config, who, Macros()) is not None) is expected


def test_network_lists_spamd_socket_takes_spamc_comma_lists() -> None:
    a = SpamdEndpoint("127.0.0.1:783", host="127.0.0.1", port=783)
    b = SpamdEndpoint("127.0.0.2:784", host="127.0.0.2", port=784)
    assert parse_spamd_sockets(["127.0.0.1,127.0.0.2:784"]) == (a, b)
    assert parse_spamd_sockets(["127.0.0.1:783,127.0.0.2:784"]) == (a, b)
    # milter-spamc's host,port form stays one entry
    assert parse_spamd_sockets(["127.0.0.2,784"]) == (b,)
    assert parse_spamd_sockets(["127.0.0.1,783,127.0.0.2,784"]) == (a, b)
    assert parse_spamd_sockets(["[::1],900,unix:/run/s"]) == (
        SpamdEndpoint("[::1]:900", host="::1", port=900),
        SpamdEndpoint("unix:/run/s", path="/run/s"),
    )


@pytest.mark.parametrize(
    "values",
    [
        ["127.0.0.1,127.0.0.2:784"],
        ["127.0.0.1,783,127.0.0.2,784", "unix:/run/s"],
        ["[::1],900,unix:/run/s;weight=2"],
        ["a.example,,b.example,", "c.example"],
        [],
    ],
)
def test_network_lists_spamd_socket_text_is_given_back_as_written(values: list[str]) -> None:
    endpoints = parse_spamd_sockets(values)
    assert spamd_sockets_text(endpoints) == " ".join(values)
