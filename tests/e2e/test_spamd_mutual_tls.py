"""Mutual TLS to a real spamd 4 that requires a client certificate (--ssl-verify
--ssl-ca-file): spamc is the reference that the setup is right; spambridge is accepted with
the right certificate and refused with none or with one from another CA, and a refusal is a
spamd failure handled by the admin's spamd-error-action through real Sendmail."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spambridge.cli import main
from tests.support.certificates import Authority, Leaf
from tests.support.e2e import (
    BRIDGE_ARGS,
    RCPT,
    SENDER,
    STATUS_NO,
    BridgeFactory,
    SendmailFactory,
    added_fields,
    deliver_one,
    require_stack,
    stack_unavailable,
)
from tools import stack
from tools.stack import Spamd, SpamdTlsFiles, describe_logs, field_name, header_values

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@dataclass(frozen=True)
class Pki:
    ca: Authority  # signs spamd's certificate and the client's
    server: Leaf
    client: Leaf
    stranger: Leaf  # a client certificate from another CA


@pytest.fixture(scope="module")
def pki(stack_dir: Path) -> Pki:
    require_stack("openssl")
    directory = stack_dir / "pki"
    directory.mkdir(mode=0o755)
    ca = Authority.create(directory, "ca")
    other = Authority.create(directory, "other")
    return Pki(
        ca,
        ca.issue("spamd", "DNS:localhost,IP:127.0.0.1"),
        ca.issue("client", "DNS:client.example"),
        other.issue("stranger", "DNS:client.example"),
    )


@pytest.fixture(scope="module")
def tls_spamd(stack_dir: Path, pki: Pki) -> Iterator[Spamd]:
    require_stack("spamd", "spamc", "perl")
    module = subprocess.run(["perl", "-MIO::Socket::SSL", "-e1"], capture_output=True, check=False)
    if module.returncode != 0:
        stack_unavailable("spamd --ssl needs IO::Socket::SSL (Debian: libio-socket-ssl-perl)")
    files = SpamdTlsFiles(
        cert=pki.server.cert,
        key=pki.server.key,
        ca=pki.ca.cert,
        client_ca=pki.ca.cert,
        client_cert=pki.client.cert,
        client_key=pki.client.key,
    )
    daemon = stack.start_spamd(stack_dir / "spamd-tls", children=2, tls=files)
    yield daemon
    daemon.stop()


def client_options(pki: Pki, leaf: Leaf | None) -> list[str]:
    certificate = [f"spamd-cert-file={leaf.cert}", f"spamd-key-file={leaf.key}"] if leaf else []
    return [f"spamd-ca-file={pki.ca.cert}", *certificate]


def spamc_check(spamd: Spamd, pki: Pki, leaf: Leaf | None, message: bytes) -> tuple[int, str]:
    certificate = ["--ssl-cert", str(leaf.cert), "--ssl-key", str(leaf.key)] if leaf else []
    result = subprocess.run(
        ["spamc", "-d", "127.0.0.1", "-p", str(spamd.port), "--ssl", "--ssl-ca-file",
         str(pki.ca.cert), *certificate, "-x", "-c"],
        input=message, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout.decode().strip()


def scan(
    spamd_socket: str, options: list[str], path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    status = main(["file=", f"spamd-socket={spamd_socket}", *options, "scan", str(path)])
    return status, capsys.readouterr().out


@pytest.fixture
def message_file(tmp_path: Path) -> Path:
    path = tmp_path / "ham.eml"
    path.write_bytes(stack.ham_message())
    return path


def test_spamd_mutual_tls_spamc_reference(tls_spamd: Spamd, pki: Pki) -> None:
    """The judge: spamc is let in with the client certificate, refused without one or with
    one from another CA (EX_IOERR: the handshake or the read failed)."""
    message = stack.ham_message()
    status, out = spamc_check(tls_spamd, pki, pki.client, message)
    assert status == 0 and out.endswith("/5.0") and out != "0/0", out
    assert spamc_check(tls_spamd, pki, None, message) == (74, "0/0")
    assert spamc_check(tls_spamd, pki, pki.stranger, message) == (74, "0/0")


@pytest.mark.parametrize("address", ["ssl:127.0.0.1:{port}", "ssl:localhost:{port}"])
def test_spamd_mutual_tls_scan_accepted_with_the_right_certificate(
    tls_spamd: Spamd,
    pki: Pki,
    message_file: Path,
    capsys: pytest.CaptureFixture[str],
    address: str,
) -> None:
    """By address and by host name: both are in spamd's certificate, names are verified."""
    entry = address.format(port=tls_spamd.port)
    status, out = scan(entry, client_options(pki, pki.client), message_file, capsys)
    assert status == 0, out
    assert out.startswith("verdict: ham score="), out


@pytest.mark.parametrize("who", ["none", "stranger"])
@pytest.mark.parametrize("action", ["accept", "tempfail"])
def test_spamd_mutual_tls_scan_refused_is_a_spamd_failure(
    tls_spamd: Spamd,
    pki: Pki,
    message_file: Path,
    capsys: pytest.CaptureFixture[str],
    who: str,
    action: str,
) -> None:
    leaf = pki.stranger if who == "stranger" else None
    options = [*client_options(pki, leaf), f"spamd-error-action={action}"]
    status, out = scan(tls_spamd.address, options, message_file, capsys)
    assert status == 69, out  # spamc's EX_UNAVAILABLE
    assert out.startswith("verdict: error (unavailable:"), out
    assert f"\naction: {action}\n" in out, out


def test_spamd_mutual_tls_sendmail_scans_with_the_right_certificate(
    tls_spamd: Spamd, pki: Pki, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    options = ["--spamd-socket", tls_spamd.address, *client_options(pki, pki.client)]
    bridge = start_bridge([*options, *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)

    delivered = deliver_one(mta, stack.ham_message(), bridge)
    (status,) = header_values(delivered, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status


def test_spamd_mutual_tls_sendmail_refused_fails_open(
    tls_spamd: Spamd, pki: Pki, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    """No client certificate, spamd-error-action=accept: delivered unchanged, logged as a
    spamd error."""
    options = ["--spamd-socket", tls_spamd.address, *client_options(pki, None)]
    bridge = start_bridge([*options, "spamd-error-action=accept", *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)
    message = stack.ham_message()

    delivered = deliver_one(mta, message, bridge)
    assert [field_name(f) for f in added_fields(message, delivered)] == [b"received"]
    line = bridge.wait_log("verdict=")
    assert "verdict=error" in line and "action=accept" in line, describe_logs(bridge)


def test_spamd_mutual_tls_sendmail_wrong_certificate_fails_closed(
    tls_spamd: Spamd, pki: Pki, start_bridge: BridgeFactory, start_sendmail: SendmailFactory
) -> None:
    """A certificate from another CA, spamd-error-action=tempfail: 451, nothing delivered."""
    options = ["--spamd-socket", tls_spamd.address, *client_options(pki, pki.stranger)]
    bridge = start_bridge([*options, "spamd-error-action=tempfail", *BRIDGE_ARGS])
    mta = start_sendmail(bridge.sendmail_socket)

    code, text = stack.send_smtp(mta.port, SENDER, [RCPT], stack.ham_message())
    assert code == 451, f"{text}\n{describe_logs(bridge, mta)}"
    assert mta.delivered() == []
    assert "verdict=error" in bridge.wait_log("verdict="), describe_logs(bridge)
