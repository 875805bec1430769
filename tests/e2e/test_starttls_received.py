"""The hop spamd sees, judged by the Received line the MTA itself writes.

A client that used STARTTLS: swaks (`--tls`) sends through a real Sendmail (or Postfix) with a
throwaway certificate and the shipped milter snippet. The MTA's own Received line in the
delivered message is the judge of the synthetic one spambridge puts first in spamd's copy:
with Sendmail the same lines, `with ESMTPS` and the `(version=... cipher=... bits=...
verify=...)` comment included, so SpamAssassin reads the last hop as Sendmail records it;
with Postfix the same protocol version, cipher and bits in Sendmail's form (Postfix has no
{verify} macro: `verify=` stays empty, as in Sendmail's template with the macro unset).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.e2e import (
    BRIDGE_ARGS,
    RCPT,
    SENDER,
    BridgeFactory,
    PostfixFactory,
    SendmailFactory,
    require_stack,
)
from tests.support.spamd_recorder import SpamdRecorder
from tools.stack import MTA_HOSTNAME, Mta, Spambridge, Spamd, describe_logs, ham_message, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HELO = "client.example.net"
# Sendmail's ($v/$Z) in its by-clause, where spambridge writes (spambridge).
_SENDMAIL_VERSION = re.compile(rb" \([^()\s]+/[^()\s]+\) with ")


def throwaway_certificate(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(mode=0o700)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", f"/CN={MTA_HOSTNAME}", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    key.chmod(0o600)  # Sendmail refuses a group- or world-readable key
    return cert, key


def first_received(message: bytes) -> list[bytes]:
    """The lines of the first Received field (CRLF line ends), unfolded into a list."""
    head = message.partition(b"\r\n\r\n")[0]
    match = re.search(rb"(?:^|\r\n)(Received:.*?)(?=\r\n(?![ \t])|$)", head, re.S)
    assert match, head
    return match.group(1).split(b"\r\n")


def send_with_starttls(
    mta: Mta, bridge: Spambridge, recorder: SpamdRecorder
) -> tuple[bytes, bytes]:
    """swaks --tls through ``mta``: (the delivered message, the message spamd got)."""
    message = mta.log_path.parent / "message.eml"
    message.write_bytes(ham_message())
    sent = subprocess.run(
        [
            *("swaks", "--tls", "--server", f"127.0.0.1:{mta.port}", "--ehlo", HELO),
            *("--from", SENDER, "--to", RCPT, "--data", str(message), "--timeout", "60"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert sent.returncode == 0, f"{sent.stdout}\n{describe_logs(bridge, mta)}"
    (delivered,) = mta.wait_delivered(1)
    wait_until(lambda: recorder.finished() == 1, 10, "the scan to finish")
    (exchange,) = recorder.take()
    return delivered, exchange.message


def test_starttls_received_line_spamd_sees_is_sendmails_own(
    workdir: Path,
    spamd: Spamd,
    start_bridge: BridgeFactory,
    start_sendmail: SendmailFactory,
) -> None:
    require_stack("swaks", "openssl")
    cert, key = throwaway_certificate(workdir / "tls")
    recorder = SpamdRecorder(spamd.port)
    try:
        bridge = start_bridge(["--spamd-socket", recorder.address, *BRIDGE_ARGS])
        mta = start_sendmail(
            bridge.sendmail_socket,
            extra_mc=(
                f"define(`confCACERT_PATH', `{cert.parent}')dnl\n"
                f"define(`confCACERT', `{cert}')dnl\n"
                f"define(`confSERVER_CERT', `{cert}')dnl\n"
                f"define(`confSERVER_KEY', `{key}')dnl\n"
            ),
        )
        delivered, scanned = send_with_starttls(mta, bridge, recorder)
    finally:
        recorder.close()

    sendmails = first_received(delivered)
    ours = first_received(scanned)
    assert b"with ESMTPS id " in sendmails[1], sendmails  # the judge saw STARTTLS
    # Sendmail: from-line, by-line, TLS comment, `for <rcpt>; date`. Ours: the same three,
    # the comment ending the clauses with ";" (no `for`: the recipients are not yet final),
    # then the date.
    assert ours[0] == sendmails[0]
    assert ours[1] == _SENDMAIL_VERSION.sub(b" (spambridge) with ", sendmails[1])
    assert sendmails[2].startswith(b"\t(version=TLSv1.") and b" verify=NO)" in sendmails[2]
    assert ours[2] == sendmails[2] + b";", (ours, sendmails)


# Postfix's own TLS clause: `(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`.
_POSTFIX_TLS = re.compile(rb"\(using (\S+) with cipher (\S+) \((\d+)/\d+ bits\)")


def test_starttls_received_line_spamd_sees_has_postfixs_tls_values(
    workdir: Path,
    spamd: Spamd,
    start_bridge: BridgeFactory,
    start_postfix: PostfixFactory,
) -> None:
    require_stack("swaks", "openssl")
    cert, key = throwaway_certificate(workdir / "tls")
    recorder = SpamdRecorder(spamd.port)
    try:
        bridge = start_bridge(["--spamd-socket", recorder.address, *BRIDGE_ARGS])
        mta = start_postfix(
            bridge.postfix_socket,
            extra_main_cf=(
                f"smtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
                "smtpd_tls_security_level = may\nsmtpd_tls_received_header = yes\n"
            ),
        )
        delivered, scanned = send_with_starttls(mta, bridge, recorder)
    finally:
        recorder.close()

    postfixs = b" ".join(first_received(delivered))
    found = _POSTFIX_TLS.search(postfixs)
    assert found and b" with ESMTPS id " in postfixs, postfixs  # the judge saw STARTTLS
    version, cipher, bits = found.groups()
    ours = first_received(scanned)
    assert ours[1].startswith(b"\tby ") and ours[1].split(b" with ")[1].startswith(b"ESMTPS")
    assert ours[2] == b"\t(version=%s cipher=%s bits=%s verify=);" % (version, cipher, bits)
