"""Recipient rules: which spamd user a message is scanned for, whether a recipient is local,
and the recipient edits of mail-policy, mail-ham and mail-archive.

The one place with I/O on the decision path is here: the passwd look-up behind
spamd-user-from=passwd, behind a small cache. The rest is values in, values out.
"""

from __future__ import annotations

import ipaddress
import pwd
import re
import time
from collections.abc import Callable

from spambridge.milter.messages import AddRecipient, DeleteRecipient, Edit
from spambridge.options import Config
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Recipient, Transaction


def spamd_user(config: Config, txn: Transaction) -> str:
    """milter-spamc's rule: the last local recipient with a passwd entry, else spamd-user.

    A configured spamd-user wins when there are several recipients (or with no-user-config);
    with no spamd-user, several recipients still give the last local one, as in milter-spamc.
    spamd-user-from other than passwd names the same recipient by its local part, address
    or domain (virtual users have no passwd entry, so the last recipient decides).
    """
    if (
        config.no_user_config
        or config.spamd_user_from == "fixed"
        or (config.spamd_user and len(txn.recipients) > 1)
    ):
        return config.spamd_user
    if config.spamd_user_from != "passwd":
        rcpt = txn.recipients[-1] if txn.recipients else None
        return (rcpt and _user_key(config.spamd_user_from, rcpt)) or config.spamd_user
    found = ""
    for rcpt in txn.recipients:
        found = _local_user(config, rcpt) or found
    return found or config.spamd_user


def _user_key(source: str, rcpt: Recipient) -> str:
    """The recipient's local part, address (domain lower-cased) or domain."""
    addr = (rcpt.addr or rcpt.address).strip(b"<>").decode("ascii", "replace")
    local, at, domain = addr.rpartition("@")
    if not at:
        local, domain = addr, ""
    domain = domain.lower()
    if source == "local-part":
        return local
    if source == "domain":
        return domain
    return f"{local}@{domain}" if domain else local


def _local_user(config: Config, rcpt: Recipient) -> str:
    """The spamd user for one recipient when it is local (passwd entry or is-gateway)."""
    addr = (rcpt.addr or rcpt.address).strip(b"<>")
    local = addr.split(b"@", 1)[0].decode("ascii", "replace")
    if not local:
        return ""
    if config.is_gateway and _local_use_literal(rcpt.host):
        return local
    if not is_local(config, rcpt):
        return ""
    return local if _PASSWD.has_user(local) else ""


def is_local(config: Config, rcpt: Recipient) -> bool:
    """milter-spamc's local recipient: {rcpt_host} empty (Sendmail's local mailer), a cyrus*
    mailer, or with is-gateway a local-use address literal."""
    if not rcpt.host or rcpt.mailer.lower().startswith(b"cyrus"):
        return True
    return config.is_gateway and _local_use_literal(rcpt.host)


class PasswdCache:
    """Whether a passwd entry exists, remembered for `ttl` seconds (misses too).

    getpwnam goes through NSS for every message otherwise, which was the largest hot spot
    in spambridge's own code under load. Bounded: when full, the whole cache is dropped.
    """

    def __init__(
        self, ttl: float = 60.0, max_size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._entries: dict[str, tuple[float, bool]] = {}

    def has_user(self, name: str) -> bool:
        now = self._clock()
        entry = self._entries.get(name)
        if entry is not None and entry[0] > now:
            return entry[1]
        try:
            pwd.getpwnam(name)
            found = True
        except KeyError:
            found = False
        if len(self._entries) >= self.max_size:
            self._entries.clear()
        self._entries[name] = (now + self.ttl, found)
        return found


_PASSWD = PasswdCache()


def _local_use_literal(host: bytes) -> bool:
    text = host.decode("ascii", "replace").strip("[]")
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local


# ------------------------------------------------------------------ recipient edits


def mail_policy_edits(
    config: Config, txn: Transaction, verdict: Verdict, *, copies_only: bool = False
) -> list[Edit]:
    """The recipient edits: mail-archive, mail-ham, and for spam mail-policy (copy or
    redirect). `copies_only` (outbound mail tagged only) leaves mail-policy out."""
    edits: list[Edit] = []
    if config.mail_archive:
        edits.append(AddRecipient(bare_address(config.mail_archive)))
    if not verdict.is_spam:
        if config.mail_ham:
            edits.append(AddRecipient(bare_address(config.mail_ham)))
        return edits
    if copies_only or config.mail_policy == "none":
        return edits
    target = config.mail_spam
    if (
        config.extra_low_spam >= 0
        and config.mail_low_spam
        and verdict.score <= verdict.threshold + config.extra_low_spam
    ):
        target = config.mail_low_spam
    if config.mail_policy == "copy":
        edits.append(AddRecipient(bare_address(target)))
        return edits
    # redirect: every original recipient is replaced
    all_local = all(is_local(config, r) for r in txn.recipients)
    for rcpt in txn.recipients:
        edits.append(DeleteRecipient(bare_address(rcpt.address)))
        if config.mail_format and all_local:
            edits.append(
                AddRecipient(
                    bare_address(format_recipient(config.mail_format, rcpt.address, txn.sender))
                )
            )
    if not (config.mail_format and all_local):
        edits.append(AddRecipient(bare_address(target)))
    return edits


def bare_address(address: str | bytes) -> bytes:
    """A recipient edit's address, bare as milter-spamc gives it (the MTA takes both forms)."""
    raw = address.encode() if isinstance(address, str) else address
    raw = raw.strip()
    return raw[1:-1] if raw.startswith(b"<") and raw.endswith(b">") else raw


def format_recipient(fmt: str, recipient: bytes, sender: bytes) -> str:
    """milter-spamc's mail-format, as libsnert's formatPath(): %A address, %D domain, %L local
    part without its +detail, %P local part with it (%L+%R), %R the detail, %S the source
    route (@a,@b of <@a,@b:user@host>), %T the source route and a colon when there is one,
    %% a percent. An unknown escape gives nothing. (`sender` is kept for callers.)"""
    addr = recipient.strip().strip(b"<>").decode("ascii", "replace")
    route = ""
    if addr.startswith("@") and ":" in addr:
        route, _, addr = addr.partition(":")
    local, _, domain = addr.rpartition("@") if "@" in addr else (addr, "", "")
    base, _, detail = local.partition("+")
    table = {
        "A": addr,
        "D": domain,
        "L": base,
        "P": f"{base}+{detail}" if detail else base,
        "R": detail,
        "S": route,
        "T": f"{route}:" if route else "",
        "%": "%",
    }
    return re.sub(r"%(.?)", lambda m: table.get(m[1], ""), fmt, flags=re.S)
