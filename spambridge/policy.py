"""Pure decisions: whether to scan, and what to do with a verdict or a spamd error.

Everything here is a function of values (config, transaction, verdict), so the whole policy is
tested without sockets or an event loop. What the MTA granted, dry-run, the spamd user (a
passwd look-up) and the fallback for our own failures are applied around these calls, in
`pipeline`; the header style writes the headers (`styles`), the recipient rules live in
`recipients`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from spambridge import __version__, headers, recipients, styles
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
    ChangeHeader,
    Continue,
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
from spambridge.transaction import Client, Macros, Transaction, message_for_spamd

# Headers whose incoming copies are forged by definition: only we set them.
VERDICT_HEADERS = frozenset(name.lower() for name in headers.MILTER_SPAMC_HEADERS)
_LOW_PRECEDENCE = re.compile(rb"^\s*(list|junk|bulk)\b", re.I)


# ------------------------------------------------------------------ the pipeline
#
# The daemon's session and `spambridge scan FILE` both call these two through
# pipeline.end_of_message: before_scan, then (when it asks for a scan) spamd, then after_scan.


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a call per field, per message
class ScanPlan:
    """A message to scan: what goes to spamd, and what after_scan needs to decide."""

    config: Config
    txn: Transaction
    macros: Macros
    message: bytes  # the exact bytes spamd sees
    user: str  # the spamd user, "" for spamd's own default (pipeline sets it: passwd)
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
        "",
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
            return Decision(_access_reply(result.text), (), UNSCANNED, REJECT, why)
        if result.action is AccessAction.DISCARD:
            return Decision(Discard(), (), UNSCANNED, DISCARD, why)
    results = [amap.recipient(r.address, addr) for r in txn.recipients]
    if any(r is not None and r.action is AccessAction.HATER for r in results):
        return None
    if results and all(r is not None and trusted(r, config.smdb_relay_ok) for r in results):
        keys = ", ".join(r.key for r in results if r is not None)
        return on_unscanned(config, txn, f"access To: every recipient white-listed ({keys})")
    return None


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
    """Deletions of the incoming headers the configured style would write (forgeries)."""
    return styles.style(config.header_style).forged_deletions(config, txn)


def on_unscanned(config: Config, txn: Transaction, reason: str) -> Decision:
    """Not scanned on purpose (auth, trusted network, size, access map): deliver as is."""
    return Decision(Continue(), tuple(forged_deletions(txn, config)), UNSCANNED, ACCEPT, reason)


def on_error(config: Config, txn: Transaction, error: SpamdError) -> Decision:
    """spamd failed: the admin's spamd-error-action decides (fail open or closed)."""
    return _error_decision(config, txn, f"spamd {error.kind}: {error}")


def on_internal_error(config: Config, txn: Transaction, error: BaseException) -> Decision:
    """Our own failure after the message arrived: the same action as for spamd trouble."""
    return _error_decision(config, txn, f"internal: {type(error).__name__}: {error}")


def _error_decision(config: Config, txn: Transaction, reason: str) -> Decision:
    action = config.spamd_error_action
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
        action = _action(config, txn, verdict, config.outbound_reject_score, -1)
    else:
        action = _action(config, txn, verdict, config.reject_score, config.extra_reject)

    def done(final: FinalReply, edits: tuple[Edit, ...], label: Action) -> Decision:
        return Decision(
            final, edits, kind, label, score=score, threshold=threshold, direction=direction
        )

    if action is REJECT:
        return done(_reject_reply(config, verdict), (), action)
    if action is TEMPFAIL:
        return done(config.tempfail_reply.reply, (), action)
    if action is DISCARD:
        return done(Discard(), (), action)

    scanned_by = None
    if config.add_scanned_by:
        scanned_by = headers.format_scanned_by(
            __version__,
            macros.get("if_name") or macros.get("j"),
            macros.get("if_addr") or macros.get("daemon_addr"),
            now,
        )
    style = styles.style(config.header_style)
    edits = style.edits(config, txn, verdict, scanned_by, body_ok=body_ok)
    if action is QUARANTINE and quarantine_ok:
        reason = config.quarantine_reason.replace("%score%", f"{score:.2f}").replace(
            "%threshold%", f"{threshold:.2f}"
        )
        edits.append(Quarantine(reason.encode("ascii", "replace")))
    if recipients_ok:
        edits.extend(recipients.mail_policy_edits(config, txn, verdict, copies_only=tag_only))
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


def _action(
    config: Config,
    txn: Transaction,
    verdict: Verdict,
    reject_score: float | None,
    extra_reject: float,
) -> Action:
    """The action the scores call for; outbound mail passes its own reject thresholds."""
    score, threshold = verdict.score, verdict.threshold
    low_precedence = config.discard_low_precedence and precedence_is_low(
        txn.header_values(b"Precedence")
    )
    if config.discard_score is not None and score >= config.discard_score:
        return DISCARD
    if reject_score is not None and score >= reject_score:
        return DISCARD if low_precedence else REJECT
    if verdict.is_spam:
        if config.extra_discard >= 0 and score >= threshold + config.extra_discard:
            return DISCARD
        if low_precedence:
            return DISCARD  # milter-spamc discards all low-precedence spam, rejected or not
        if extra_reject >= 0 and score >= threshold + extra_reject:
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


def precedence_is_low(values: Sequence[bytes]) -> bool:
    return any(_LOW_PRECEDENCE.match(v) for v in values)
