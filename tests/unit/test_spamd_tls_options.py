"""spamd-ca-file, spamd-cert-file, spamd-key-file and spamd-verify-name: parsed into the TLS
context ssl: entries share, every bad file a ConfigError naming its option at `check` time."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from spambridge.cli import main, resolve
from spambridge.errors import ConfigError
from spambridge.options import Config
from spambridge.spamd.tls import SpamdTls, client_context
from tests.support.certificates import Authority, Leaf


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    directory = tmp_path_factory.mktemp("pki")
    try:
        ca = Authority.create(directory, "ca")
        other = Authority.create(directory, "other")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    client: Leaf = ca.issue("client", "DNS:client.example")
    stranger: Leaf = other.issue("stranger", "DNS:client.example")
    combined = directory / "combined.pem"
    combined.write_bytes(client.cert.read_bytes() + client.key.read_bytes())
    encrypted = directory / "encrypted.key"
    subprocess.run(
        ["openssl", "pkey", "-in", str(client.key), "-out", str(encrypted), "-aes256",
         "-passout", "pass:secret"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    yield {
        "ca": ca.cert,
        "cert": client.cert,
        "key": client.key,
        "other_key": stranger.key,
        "combined": combined,
        "encrypted": encrypted,
        "missing": directory / "missing.pem",
    }


def config_of(*argv: str) -> Config:
    return resolve(["file=", "spamd-socket=ssl:127.0.0.1:783", *argv])[1].config


def error_of(*argv: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        config_of(*argv)
    return caught.value


def test_spamd_tls_options_defaults_verify_names_without_client_certificate() -> None:
    config = config_of()
    assert config.spamd_tls == SpamdTls("", "", "", verify_name=True)
    ctx = client_context(config.spamd_tls)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


def test_spamd_tls_options_client_certificate_and_key_parse(pki: dict[str, Path]) -> None:
    config = config_of(
        f"spamd-ca-file={pki['ca']}", f"--spamd-cert-file={pki['cert']}",
        f"spamd-key-file={pki['key']}",
    )  # fmt: skip
    assert config.spamd_tls == SpamdTls(str(pki["ca"]), str(pki["cert"]), str(pki["key"]))
    client_context(config.spamd_tls)


def test_spamd_tls_options_key_may_follow_the_certificate(pki: dict[str, Path]) -> None:
    assert config_of(f"spamd-cert-file={pki['combined']}").spamd_cert_file == str(pki["combined"])


def test_spamd_tls_options_verify_name_off_still_verifies_the_chain() -> None:
    config = config_of("-spamd-verify-name")
    assert config.spamd_verify_name is False
    ctx = client_context(config.spamd_tls)
    assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("args", "option", "words"),
    [
        (("spamd-ca-file={missing}",), "spamd-ca-file", "cannot read"),
        (("spamd-ca-file={key}",), "spamd-ca-file", "no PEM CA certificate"),
        (("spamd-cert-file={missing}", "spamd-key-file={key}"), "spamd-cert-file", "cannot read"),
        (("spamd-cert-file={key}", "spamd-key-file={key}"), "spamd-cert-file", "no PEM cert"),
        (("spamd-cert-file={cert}", "spamd-key-file={missing}"), "spamd-key-file", "cannot read"),
        (("spamd-cert-file={cert}", "spamd-key-file={other_key}"), "spamd-key-file",
         "does not belong"),
        (("spamd-cert-file={cert}", "spamd-key-file={cert}"), "spamd-key-file", "no PEM private"),
        (("spamd-cert-file={cert}",), "spamd-cert-file", "no PEM private key"),
        (("spamd-key-file={key}",), "spamd-cert-file", "no certificate"),
        (("spamd-cert-file={cert}", "spamd-key-file={encrypted}"), "spamd-key-file",
         "passphrase"),
    ],
)  # fmt: skip
def test_spamd_tls_options_bad_files_name_the_option(
    pki: dict[str, Path], args: tuple[str, ...], option: str, words: str
) -> None:
    error = error_of(*(arg.format(**pki) for arg in args))
    assert error.option == option
    assert words in str(error)


def test_spamd_tls_options_checked_without_an_ssl_entry(pki: dict[str, Path]) -> None:
    """A client certificate given for later is checked now, not when an ssl: entry appears."""
    with pytest.raises(ConfigError) as caught:
        resolve(["file=", "spamd-socket=127.0.0.1:783", f"spamd-cert-file={pki['missing']}"])
    assert caught.value.option == "spamd-cert-file"


def test_spamd_tls_options_check_exits_2_naming_the_option(
    pki: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["file=", "spamd-socket=ssl:127.0.0.1:783", f"spamd-cert-file={pki['cert']}",
         f"spamd-key-file={pki['other_key']}", "check"]
    )  # fmt: skip
    assert status == 2
    assert "spamd-key-file" in capsys.readouterr().err


def test_spamd_tls_options_certificate_without_ssl_entry_is_noted(pki: dict[str, Path]) -> None:
    """An admin who forgot the ssl: prefix hears about it at start-up."""
    args = [f"spamd-cert-file={pki['cert']}", f"spamd-key-file={pki['key']}"]
    _, plain = resolve(["file=", "spamd-socket=127.0.0.1:783", *args])
    assert any("no spamd-socket entry is ssl:" in note for note in plain.warnings)
    _, tls = resolve(["file=", "spamd-socket=ssl:127.0.0.1:783", *args])
    assert not any("spamd-cert-file" in note for note in tls.warnings)
