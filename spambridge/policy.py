"""Pure decisions: whether to scan, and what to do with a verdict or a spamd error.

Everything here is a function of values (config, transaction, verdict), so the whole policy is
tested without sockets or an event loop.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import pwd
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from spambridge import __version__, headers, rewrite
from spambridge.access import AccessAction, AccessResult, unmapped
from spambridge.decision import (
    ACCEPT,
    DISCARD,
    ERROR,
    HAM,
    INBOUND,
    OUTBOUND,
    QUARANTINE,
    REJECT,
    SPAM,
    TAG,
    TEMPFAIL,
    UNSCANNED,
    Action,
)
from spambridge.decision import Decision as Decision  # the type callers know it by
from spambridge.errors import ConfigError, SpamdError
from spambridge.milter.flags import ActionFlags
from spambridge.milter.messages import (
    AddHeader,
    AddRecipient,
    ChangeHeader,
    Continue,
    DeleteRecipient,
    Discard,
    Edit,
    FinalReply,
    Quarantine,
    ReplyCode,
)
from spambridge.milter.negotiate import required_action
from spambridge.milter.reply import smtp_reply
from spambridge.options import Config
from spambridge.replies import parse_reply_option
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Client, Macros, Recipient, Transaction, message_for_spamd

# Headers whose incoming copies are forged by definition: only we set them.
VERDICT_HEADERS = frozenset(name.lower() for name in headers.MILTER_SPAMC_HEADERS)
_LOW_PRECEDENCE = re.compile(rb"^\s*(list|junk|bulk)\b", re.I)


# ------------------------------------------------------------------ the pipeline
#
# The daemon's session and `spambridge scan FILE` both call these two and nothing else:
# before_scan, then (when it asks for a scan) spamd, then after_scan.


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a call per field, per message
class ScanPlan:
    """A message to scan: what goes to spamd, and what after_scan needs to decide."""

    config: Config
    txn: Transaction
    macros: Macros
    message: bytes  # the exact bytes spamd sees
    user: str  # the spamd user, "" for spamd's own default
    command: str  # the SPAMC command
    now: datetime
    actions: ActionFlags  # what the MTA granted: edits needing others are left out
    outbound: bool  # authenticated or trusted-network sender, scanned (scan-authenticated)


def before_scan(
    config: Config,
    client: Client,
    macros: Macros,
    txn: Transaction,
    *,
    now: datetime,
    actions: ActionFlags,
) -> Decision | ScanPlan:
    """At end of message: a Decision without scanning (access map, skip reasons, size), or
    the plan of the scan. Header values carry their leading space (the session adds it when
    the MTA strips it), and so do the values of the edits decided."""
    ruled = access_decision(config, client, macros, txn)
    if ruled is not None:
        return ruled
    reason = skip_reason(config, client, macros)
    limit = config.max_scan_bytes
    # The limit covers the headers too: a message of headers alone (no body chunk at all)
    # would otherwise go to spamd whole.
    over = not txn.body_complete or (limit and txn.header_bytes > limit)
    if reason is None and over and config.oversize_action == "skip":
        reason = f"message over spamd-max-size ({txn.size} bytes)"
    if reason is not None:
        return on_unscanned(config, txn, reason)
    message = message_for_spamd(
        txn,
        client,
        macros,
        drop=VERDICT_HEADERS,
        now=now,
        authenticated=bool(macros.get("auth_authen")),
    )
    if limit and txn.header_bytes > limit:
        message = message[:limit]  # oversize-action=truncate: the whole message, cut
    return ScanPlan(
        config,
        txn,
        macros,
        message,
        spamd_user(config, txn),
        config.spamd_command,
        now,
        actions,
        config.scan_authenticated != "skip" and outbound_reason(config, client, macros) is not None,
    )


def after_scan(plan: ScanPlan, outcome: Verdict | SpamdError) -> Decision:
    """What to do with spamd's verdict, or with its failure."""
    if isinstance(outcome, SpamdError):
        return on_error(plan.config, plan.txn, outcome)
    actions = plan.actions
    return decide(
        plan.config,
        plan.txn,
        outcome,
        macros=plan.macros,
        now=plan.now,
        quarantine_ok=bool(actions & ActionFlags.QUARANTINE),
        recipients_ok=bool(actions & ActionFlags.ADD_RECIPIENT),
        body_ok=bool(actions & ActionFlags.CHANGE_BODY),
        outbound=plan.outbound,
    )


def untrusted_recipients(config: Config, client: Client, txn: Transaction) -> int:
    """How many recipients the access map does not white-list (max-untrusted counts them)."""
    access = config.access_db
    if not len(access):
        return len(txn.recipients)
    relay_ok = config.smdb_relay_ok
    return sum(
        1
        for rcpt in txn.recipients
        if (result := access.recipient(rcpt.address, client.address)) is None
        or not trusted(result, relay_ok)
    )


def take_body(config: Config, txn: Transaction, chunk: bytes) -> bool:
    """Buffer one body chunk under the size rule; False once the message is over it."""
    if config.oversize_action == "truncate":
        return txn.add_body_chunk(chunk, config.truncate_bytes)
    return txn.add_body(chunk, config.max_scan_bytes)


# ------------------------------------------------------------------ whether to scan


def skip_reason(config: Config, client: Client, macros: Macros) -> str | None:
    """Why this message is not scanned, or None to scan it."""
    if not config.spamd_socket:
        return "scanning disabled (spamd-socket is empty)"
    if config.scan_authenticated == "skip":
        return outbound_reason(config, client, macros)
    return None


def outbound_reason(config: Config, client: Client, macros: Macros) -> str | None:
    """Why this message counts as outbound (our own users' mail), or None for inbound."""
    if config.smtp_auth_ok and macros.get("auth_authen"):
        return "authenticated sender"
    if config.trusted_networks and client.address:
        try:
            ip = ipaddress.ip_address(client.address.decode("ascii"))
        except ValueError:
            ip = None
        if ip is not None:
            mapped = unmapped(ip)
            for net in config.trusted_networks:
                if (ip.version == net.version and ip in net) or (
                    mapped is not ip and net.version == 4 and mapped in net
                ):
                    return f"trusted network {net}"
    return None


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


def access_decision(
    config: Config, client: Client, macros: Macros, txn: Transaction
) -> Decision | None:
    """What the sendmail access map says (milter-spamc's tags first, then the generic ones).

    Connect:, Auth: and From: entries decide for the whole message; To:/Spam: entries skip
    the scan only when every recipient is white-listed (FRIEND or OK), and one HATER forces it.
    """
    amap = config.access_db
    if not len(amap):
        return None
    addr = client.address
    name = macros.get("client_name") or client.hostname
    checks = [("Connect", amap.connect(name, addr))]
    authen = macros.get("auth_authen")
    if authen:
        checks.append(("Auth", amap.auth(authen, addr)))
    checks.append(("From", amap.sender(txn.sender, addr)))
    for tag, result in checks:
        if result is None or result.action is AccessAction.SKIP:
            continue
        if result.action is AccessAction.HATER:
            return None
        why = f"access {tag}: {result.key} {result.action.value}"
        if trusted(result, config.smdb_relay_ok):
            return on_unscanned(config, txn, why)
        if not config.access_db_blacklist:
            continue  # milter-spamc's build: black-list entries do not reject or discard
        if result.action.rejects:
            return _unless_dry_run(
                config, Decision(_access_reply(result.text), (), UNSCANNED, REJECT, why)
            )
        if result.action is AccessAction.DISCARD:
            return _unless_dry_run(config, Decision(Discard(), (), UNSCANNED, DISCARD, why))
    results = [amap.recipient(r.address, addr) for r in txn.recipients]
    if any(r is not None and r.action is AccessAction.HATER for r in results):
        return None
    if results and all(r is not None and trusted(r, config.smdb_relay_ok) for r in results):
        keys = ", ".join(r.key for r in results if r is not None)
        return on_unscanned(config, txn, f"access To: every recipient white-listed ({keys})")
    return None


def _unless_dry_run(config: Config, decision: Decision) -> Decision:
    """With dry-run nothing but Continue reaches the MTA; the log line keeps the action."""
    if not config.dry_run:
        return decision
    return dataclasses.replace(
        decision, final=Continue(), edits=(), action=decision.action.dry_run()
    )


def trusted(result: AccessResult, relay_ok: bool = False) -> bool:
    """A white-list entry: OK or FRIEND, and RELAY only with smdb-relay-ok (libsnert)."""
    if result.action is AccessAction.RELAY:
        return relay_ok
    return result.action.accepts or result.action is AccessAction.FRIEND


def _access_reply(text: str) -> ReplyCode:
    # Sendmail's documented form quotes the reply: ERROR:"550 5.7.1 text".
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if text:
        try:
            return parse_reply_option("access-db", text, "5").reply
        except ConfigError:
            pass
    return smtp_reply("550", "5.7.1", ["access denied"])


# ------------------------------------------------------------------ what to do


def grant(decision: Decision, actions: int) -> tuple[Decision, tuple[str, ...]]:
    """The decision without the edits the MTA did not grant, and the names of those dropped.

    An MTA may offer fewer actions than we ask for (a milter proxy, a minimal MTA, an offer
    of 0 read as the version-1 set); libmilter answers such an edit with MI_FAILURE and the
    filter carries on, and so do we: the final reply always goes out.
    """
    withheld: list[str] = []
    kept: list[Edit] = []
    for edit in decision.edits:
        needed = required_action(edit)
        if not needed or actions & needed:
            kept.append(edit)
        else:
            withheld.append(type(edit).__name__)
    if not withheld:
        return decision, ()
    return dataclasses.replace(decision, edits=tuple(kept)), tuple(dict.fromkeys(withheld))


def forged_deletions(txn: Transaction, config: Config) -> list[ChangeHeader]:
    if config.header_style == "spamassassin":
        return headers.forged_header_deletions(
            txn.headers, VERDICT_HEADERS, prefixes=(b"X-Spam-",), exempt_prefixes=(b"X-Spam-Prev-",)
        )
    return headers.forged_header_deletions(txn.headers, VERDICT_HEADERS)


def on_unscanned(config: Config, txn: Transaction, reason: str) -> Decision:
    """Not scanned on purpose (auth, trusted network, size, access map): deliver as is."""
    edits = () if config.dry_run else tuple(forged_deletions(txn, config))
    return Decision(Continue(), edits, UNSCANNED, ACCEPT, reason)


def on_error(config: Config, txn: Transaction, error: SpamdError) -> Decision:
    """spamd failed: the admin's spamd-error-action decides (fail open or closed)."""
    return _error_decision(config, txn, f"spamd {error.kind}: {error}")


def on_internal_error(config: Config, txn: Transaction, error: BaseException) -> Decision:
    """Our own failure after the message arrived: the same action as for spamd trouble."""
    return _error_decision(config, txn, f"internal: {type(error).__name__}: {error}")


def _error_decision(config: Config, txn: Transaction, reason: str) -> Decision:
    action = config.spamd_error_action
    if config.dry_run:
        return Decision(Continue(), (), ERROR, Action(action).dry_run(), reason)
    if action != "accept":
        spec = config.spamd_tempfail_reply if action == "tempfail" else config.spamd_reject_reply
        reply = spec.reply
        return Decision(reply, (), ERROR, Action(action), reason)
    return Decision(Continue(), tuple(forged_deletions(txn, config)), ERROR, ACCEPT, reason)


def decide(
    config: Config,
    txn: Transaction,
    verdict: Verdict,
    *,
    macros: Macros,
    now: datetime,
    quarantine_ok: bool = True,
    recipients_ok: bool = True,
    outbound: bool = False,
    body_ok: bool = True,
) -> Decision:
    """Apply the score policy to a verdict: header edits plus one final reply.

    Outbound mail (see outbound_reason) follows scan-authenticated: tag only, or the whole
    policy with outbound-reject-score in place of the inbound reject thresholds.
    """
    kind = SPAM if verdict.is_spam else HAM
    score, threshold = verdict.score, verdict.threshold
    direction = OUTBOUND if outbound else INBOUND
    tag_only = outbound and config.scan_authenticated == "tag"
    if tag_only:
        action = TAG
    elif outbound and config.outbound_reject_score is not None:
        action = _action(
            replace(config, reject_score=config.outbound_reject_score, extra_reject=-1),
            txn,
            verdict,
        )
    else:
        action = _action(config, txn, verdict)

    def done(final: FinalReply, edits: tuple[Edit, ...], label: Action) -> Decision:
        return Decision(
            final, edits, kind, label, score=score, threshold=threshold, direction=direction
        )

    if config.dry_run:
        return done(Continue(), (), action.dry_run())
    if action is REJECT:
        return done(_reject_reply(config, verdict), (), action)
    if action is TEMPFAIL:
        return done(config.tempfail_reply.reply, (), action)
    if action is DISCARD:
        return done(Discard(), (), action)

    if (
        config.spamd_rewrite_body
        and body_ok
        and txn.body_complete
        and rewrite.looks_processed(verdict.body)
    ):
        edits = list(_spamassassin_rewrite(config, txn, verdict, macros, now))
    else:
        edits = _header_edits(config, txn, verdict, macros, now)
    if action is QUARANTINE and quarantine_ok:
        reason = config.quarantine_reason.replace("%score%", f"{score:.2f}").replace(
            "%threshold%", f"{threshold:.2f}"
        )
        edits.append(Quarantine(reason.encode("ascii", "replace")))
    if recipients_ok and tag_only:
        edits.extend(_mail_policy(replace(config, mail_policy="none"), txn, verdict))
    elif recipients_ok:
        edits.extend(_mail_policy(config, txn, verdict))
    final: FinalReply = Continue()
    label: Action = action if action is QUARANTINE else (TAG if verdict.is_spam else ACCEPT)
    if (
        verdict.is_spam
        and config.mail_policy != "none"
        and recipients_ok
        and action is TAG
        and not tag_only
    ):
        label = Action(config.mail_policy)
    return done(final, tuple(edits), label)


def _header_edits(
    config: Config,
    txn: Transaction,
    verdict: Verdict,
    macros: Macros,
    now: datetime,
) -> list[Edit]:
    """Forged-header deletions, our verdict headers and the subject tag."""
    score, threshold = verdict.score, verdict.threshold
    edits: list[Edit] = list(forged_deletions(txn, config))
    for name, value in _verdict_headers(config, txn, verdict, macros, now):
        edits.append(AddHeader(name, b" " + value))
    if verdict.is_spam and config.subject_tag and config.header_style == "milter-spamc":
        subject = txn.header_values(b"Subject")
        detail = f"({score:.2f}/{threshold:.2f})".encode() if config.subject_tag_score else None
        current = subject[0] if subject else None
        tag = config.subject_tag.encode("utf-8", "surrogateescape")  # the bytes as configured
        if headers.is_subject_template(config.subject_tag):
            new = headers.template_subject(current, tag, score)
        else:
            new = headers.tag_subject(current, tag, detail=detail)
        if new is not None:
            edits.append(_set_subject(current, new))
    if config.header_style == "spamassassin":
        new_subject = headers.spamassassin_subject(verdict.body)
        if new_subject is not None:
            values = txn.header_values(b"Subject")
            edits.append(_set_subject(values[0] if values else None, new_subject))
    return edits


def _spamassassin_rewrite(
    config: Config, txn: Transaction, verdict: Verdict, macros: Macros, now: datetime
) -> tuple[Edit, ...]:
    """The message as spamd's PROCESS returned it (spamc's delivery), plus X-Scanned-By."""
    result = rewrite.rewrite_edits(
        txn.headers, verdict.body, sender=txn.sender, body=bytes(txn.body)
    )
    edits = list(result.edits)
    if config.add_scanned_by:
        name, value = next(
            header
            for header in _verdict_headers(
                replace(config, header_style="milter-spamc"), txn, verdict, macros, now
            )
            if header[0] == b"X-Scanned-By"
        )
        at = len(edits) - 1 if result.body_replaced else len(edits)
        edits.insert(at, AddHeader(name, b" " + value))  # REPLBODY packets come last
    return tuple(edits)


def _action(config: Config, txn: Transaction, verdict: Verdict) -> Action:
    score, threshold = verdict.score, verdict.threshold
    low_precedence = config.discard_low_precedence and precedence_is_low(
        txn.header_values(b"Precedence")
    )
    if config.discard_score is not None and score >= config.discard_score:
        return DISCARD
    if config.reject_score is not None and score >= config.reject_score:
        return DISCARD if low_precedence else REJECT
    if verdict.is_spam:
        if config.extra_discard >= 0 and score >= threshold + config.extra_discard:
            return DISCARD
        if low_precedence:
            return DISCARD  # milter-spamc discards all low-precedence spam, rejected or not
        if config.extra_reject >= 0 and score >= threshold + config.extra_reject:
            return REJECT  # low-precedence spam was discarded just above
    if config.tempfail_score is not None and score >= config.tempfail_score:
        return TEMPFAIL
    if (
        verdict.is_spam
        and config.extra_tempfail >= 0
        and score >= threshold + config.extra_tempfail
    ):
        return TEMPFAIL
    if config.quarantine_score is not None and score >= config.quarantine_score:
        return QUARANTINE
    return TAG


def _reject_reply(config: Config, verdict: Verdict) -> ReplyCode:
    spec = config.reject_reply
    if not config.smtp_detailed_reply:
        return spec.with_lines(["This looks like spam."])
    lines = [f"{spec.text}, score {verdict.score:.2f}/{verdict.threshold:.2f}"]
    if verdict.command in ("REPORT", "REPORT_IFSPAM"):
        lines.extend(report_rule_lines(verdict.body, limit=31))
    return spec.with_lines(lines)


_RULE_LINE = re.compile(rb"^\s*(-?\d+(?:\.\d+)?)\s+(\S+)\s+(.*)$")


def report_rule_lines(report: bytes, *, limit: int) -> list[str]:
    """The rules that hit with a non-zero score, one reply line each (milter-spamc)."""
    out: list[str] = []
    wanted = False  # whether the last rule line was kept (its continuations follow it)
    for raw in report.splitlines():
        if len(raw) - len(raw.lstrip()) > 8 and raw.strip():
            # SpamAssassin wraps a long description onto lines indented past the rule name:
            # they belong to the rule above, so the reply keeps the whole description
            if wanted:
                out[-1] = (out[-1] + " " + _reply_text(raw))[:900]
            continue
        m = _RULE_LINE.match(raw)
        if m is None:
            wanted = False
            continue
        wanted = float(m[1]) != 0 and len(out) < limit
        if wanted:
            out.append(_reply_text(raw.rstrip(), squeeze=False)[:900])  # verbatim, as milter-spamc
    return out


def _reply_text(raw: bytes, *, squeeze: bool = True) -> str:
    text = (b" ".join(raw.split()) if squeeze else raw).decode("ascii", "replace")
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text).replace("%", "p")


def _verdict_headers(
    config: Config, txn: Transaction, verdict: Verdict, macros: Macros, now: datetime
) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    spam = verdict.is_spam
    milter_spamc = config.header_style != "spamassassin"
    if milter_spamc and (spam or config.always_add_flag):
        out.append((b"X-Spam-Flag", headers.format_flag(spam)))  # milter-spamc adds it first
    if config.add_scanned_by:
        out.append(
            (
                b"X-Scanned-By",
                headers.format_scanned_by(
                    __version__,
                    macros.get("if_name") or macros.get("j"),
                    macros.get("if_addr") or macros.get("daemon_addr"),
                    now,
                ),
            )
        )
    if config.header_style == "spamassassin":
        out.extend(headers.spamassassin_headers(verdict.body))
        return out
    out.append((b"X-Spam-Status", headers.format_status(spam, verdict.score, verdict.threshold)))
    if config.level_character and (spam or config.always_add_level):
        # present even when empty (score < 1), as milter-spamc and SpamAssassin do
        level = headers.format_level(
            verdict.score, config.level_character.encode("utf-8", "surrogateescape")
        )
        out.append((b"X-Spam-Level", level))
    # SYMBOLS: milter-spamc puts spamd's comma-separated rule names in X-Spam-Report too
    with_report = verdict.command.startswith("REPORT") or verdict.command == "SYMBOLS"
    report = headers.format_report(verdict.body) if with_report else b""
    if report:
        out.append((b"X-Spam-Report", report))
    if config.mail_policy == "redirect" and spam:
        for rcpt in txn.recipients:
            out.append(
                (
                    b"X-Original-Recipient",
                    headers.sanitize_value(_angle(rcpt.address), len(b"X-Original-Recipient")),
                )
            )
    return out


def _set_subject(current: bytes | None, new: bytes) -> Edit:
    value = new
    if not value.startswith((b" ", b"\t")):
        value = b" " + value
    if current is None:
        return AddHeader(b"Subject", value)
    return ChangeHeader(1, b"Subject", value)


def _mail_policy(config: Config, txn: Transaction, verdict: Verdict) -> list[Edit]:
    edits: list[Edit] = []
    if config.mail_archive:
        edits.append(AddRecipient(_angle(config.mail_archive)))
    if not verdict.is_spam:
        if config.mail_ham:
            edits.append(AddRecipient(_angle(config.mail_ham)))
        return edits
    if config.mail_policy == "none":
        return edits
    target = config.mail_spam
    if (
        config.extra_low_spam >= 0
        and config.mail_low_spam
        and verdict.score <= verdict.threshold + config.extra_low_spam
    ):
        target = config.mail_low_spam
    if config.mail_policy == "copy":
        edits.append(AddRecipient(_angle(target)))
        return edits
    # redirect: every original recipient is replaced
    all_local = all(is_local(config, r) for r in txn.recipients)
    for rcpt in txn.recipients:
        edits.append(DeleteRecipient(_angle(rcpt.address)))
        if config.mail_format and all_local:
            edits.append(
                AddRecipient(_angle(format_recipient(config.mail_format, rcpt.address, txn.sender)))
            )
    if not (config.mail_format and all_local):
        edits.append(AddRecipient(_angle(target)))
    return edits


def _angle(address: str | bytes) -> bytes:
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


def precedence_is_low(values: Sequence[bytes]) -> bool:
    return any(_LOW_PRECEDENCE.match(v) for v in values)
