"""Which spamd certificates an ssl: entry accepts, through the pool `run` and `scan` build
from the options: the entry's host name, or its IP address, must be in the certificate
(spamd-verify-name, on by default); -spamd-verify-name checks the CA chain only, as spamc
does; a certificate from another CA is refused either way. The same fake spamd serves
mutual TLS: it sees the client certificate of spamd-cert-file."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from spambridge.daemon import build_pool
from spambridge.errors import SpamdError
from tests.support.certificates import Authority, Leaf
from tests.support.config import make_config
from tools.fake_spamd import FakeSpamd

HAM = b"Subject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | Leaf]:
    directory = tmp_path_factory.mktemp("pki")
    try:
        ca = Authority.create(directory, "ca")
        other = Authority.create(directory, "other")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return {
        "ca": ca.cert,
        "by_name": ca.issue("by-name", "DNS:localhost"),  # no IP address in it
        "foreign": other.issue("foreign", "DNS:localhost,IP:127.0.0.1"),
        "client": ca.issue("client", "DNS:client.example"),
    }


async def serving(leaf: Leaf, client_ca: Path | None = None) -> FakeSpamd:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    if client_ca is not None:  # spamd --ssl-verify --ssl-ca-file
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return await FakeSpamd(tls=context).start()


@pytest.fixture
async def by_name(pki: dict[str, Path | Leaf]) -> AsyncIterator[FakeSpamd]:
    leaf = pki["by_name"]
    assert isinstance(leaf, Leaf)
    spamd = await serving(leaf)
    yield spamd
    await spamd.stop()


async def scan_through(entry: str, *options: str) -> bool:
    """Whether a scan through the options' pool reaches spamd (False: refused by TLS)."""
    return await refusal(entry, *options) is None


async def refusal(entry: str, *options: str) -> str | None:
    """Why a scan through the options' pool failed; None when it reached spamd."""
    config = make_config(f"spamd-socket={entry}", *options)
    pool = build_pool(config)
    try:
        await pool.scan(HAM, command="CHECK")
    except SpamdError as exc:  # a refused handshake, or a connection closed with no reply
        return str(exc)
    finally:
        await pool.close()
    return None


async def test_spamd_tls_names_host_name_in_certificate_accepted(
    by_name: FakeSpamd, pki: dict[str, Path | Leaf]
) -> None:
    assert await scan_through(f"ssl:localhost:{by_name.port}", f"spamd-ca-file={pki['ca']}")


async def test_spamd_tls_names_address_not_in_certificate_refused(
    by_name: FakeSpamd, pki: dict[str, Path | Leaf]
) -> None:
    why = await refusal(by_name.address, f"spamd-ca-file={pki['ca']}")
    assert why is not None and "IP address mismatch" in why, why


async def test_spamd_tls_names_verify_name_off_accepts_the_chain_alone(
    by_name: FakeSpamd, pki: dict[str, Path | Leaf]
) -> None:
    ca = f"spamd-ca-file={pki['ca']}"
    assert await scan_through(by_name.address, ca, "-spamd-verify-name")


async def test_spamd_tls_names_other_ca_refused_even_without_name_check(
    pki: dict[str, Path | Leaf],
) -> None:
    leaf = pki["foreign"]
    assert isinstance(leaf, Leaf)
    spamd = await serving(leaf)
    try:
        ca = f"spamd-ca-file={pki['ca']}"
        assert not await scan_through(spamd.address, ca, "-spamd-verify-name")
    finally:
        await spamd.stop()


async def test_spamd_tls_names_client_certificate_presented(
    pki: dict[str, Path | Leaf],
) -> None:
    leaf, client, ca = pki["by_name"], pki["client"], pki["ca"]
    assert isinstance(leaf, Leaf) and isinstance(client, Leaf) and isinstance(ca, Path)
    spamd = await serving(leaf, client_ca=ca)
    try:
        entry = f"ssl:localhost:{spamd.port}"
        assert not await scan_through(entry, f"spamd-ca-file={ca}")
        assert await scan_through(
            entry, f"spamd-ca-file={ca}", f"spamd-cert-file={client.cert}",
            f"spamd-key-file={client.key}",
        )  # fmt: skip
    finally:
        await spamd.stop()
