"""The TLS client context for `ssl:` spamd entries, built once from the admin's files.

spamc's `--ssl-ca-file`, `--ssl-cert` and `--ssl-key` are spamd-ca-file, spamd-cert-file and
spamd-key-file here. Every problem with those files is a ConfigError naming the option, so
`spambridge check` reports it instead of the first scan: a missing or unreadable file, a file
with no certificate or key in it, a key that does not belong to the certificate, a key
protected by a passphrase (nothing could type it in).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from spambridge.errors import ConfigError

__all__ = ["SpamdTls", "client_context"]


@dataclass(frozen=True, slots=True)
class SpamdTls:
    """The TLS settings for spamd: file paths ("" when not given) and the name check."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    verify_name: bool = True  # the host name (or IP address) must be in spamd's certificate

    @property
    def configured(self) -> bool:
        """Whether any file was given: then they are checked even with no ssl: entry."""
        return bool(self.ca_file or self.cert_file or self.key_file)


def _read(option: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(option, f"cannot read {path}: {exc.strerror or exc}") from None


def _no_passphrase() -> bytes:
    raise ConfigError(
        "spamd-key-file", "the private key is protected by a passphrase; give an unencrypted key"
    )


def client_context(settings: SpamdTls) -> ssl.SSLContext:
    """The context every ssl: entry shares: spamd's certificate verified against
    spamd-ca-file (the system's CAs when empty) and, with verify_name, the entry's host name
    or address; the client certificate presented when spamd-cert-file is given.
    Raises ConfigError naming the option at fault."""
    if settings.key_file and not settings.cert_file:
        raise ConfigError("spamd-cert-file", "spamd-key-file is given, but no certificate for it")
    if settings.ca_file:
        _read("spamd-ca-file", settings.ca_file)
    try:
        ctx = ssl.create_default_context(cafile=settings.ca_file or None)
    except ssl.SSLError as exc:
        raise ConfigError(
            "spamd-ca-file", f"no PEM CA certificate in {settings.ca_file} ({exc.reason})"
        ) from None
    if not settings.verify_name:  # the chain is still verified: CERT_REQUIRED stays
        ctx.check_hostname = False
    if settings.cert_file:
        _load_client_certificate(ctx, settings)
    return ctx


def _load_client_certificate(ctx: ssl.SSLContext, settings: SpamdTls) -> None:
    cert = _read("spamd-cert-file", settings.cert_file)
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise ConfigError("spamd-cert-file", f"no PEM certificate in {settings.cert_file}")
    key_option = "spamd-key-file" if settings.key_file else "spamd-cert-file"
    key_path = settings.key_file or settings.cert_file
    if settings.key_file:
        _read("spamd-key-file", settings.key_file)
    try:
        ctx.load_cert_chain(settings.cert_file, settings.key_file or None, _no_passphrase)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                key_option,
                f"the key in {key_path} does not belong to the certificate in {settings.cert_file}",
            ) from None
        where = "" if settings.key_file else " (no spamd-key-file: the key must follow the cert)"
        raise ConfigError(key_option, f"no PEM private key in {key_path}{where}") from None
