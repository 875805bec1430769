"""The one end-of-message seam: the daemon's session and `spambridge scan` both come here.

It asks the policy whether to scan, looks up the spamd user, has the caller scan, asks the
policy what the verdict (or spamd's failure) means, and then applies, in this one place, what
every decision gets: dry-run (nothing but Continue reaches the MTA), the edits the MTA did not
grant left out, and for a failure of our own the admin's spamd-error-action. The callers do
the I/O around it: the session the milter wire and the progress replies, `scan` its own
spamd connection and the printing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from spambridge import headers, policy, recipients
from spambridge.decision import ERROR, Action, Decision
from spambridge.errors import SpamdError
from spambridge.log import logger
from spambridge.milter.flags import ActionFlags
from spambridge.milter.messages import Continue, FinalReply, Reject, ReplyCode, TempFail
from spambridge.milter.reply import smtp_reply
from spambridge.options import Config
from spambridge.policy import ScanPlan
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Client, Macros, Transaction

# The caller's scan: one SPAMC exchange for the plan, spamd's failure returned, not raised.
Scan = Callable[[ScanPlan], Awaitable[Verdict | SpamdError]]

_CONTINUE = Continue()
# Every action bit an edit can need (all but SETSYMLIST): an MTA that granted them all, as
# Sendmail and Postfix do, withholds nothing, and the edits need not be looked at.
_EVERY_EDIT = int(ActionFlags(0x1FF) & ~ActionFlags.SET_MACRO_LIST)
_TOO_MANY = smtp_reply("452", "4.5.3", ["too many untrusted recipients"])


@dataclass(slots=True)
class Outcome:
    """The final decision and what the caller reports about it."""

    decision: Decision
    withheld: tuple[str, ...] = ()  # kinds of edit the MTA did not grant, left out
    spamd: Verdict | SpamdError | None = None  # None: not scanned (or failed before)
    failure: BaseException | None = None  # our own error, answered with spamd-error-action


async def end_of_message(
    config: Config,
    client: Client,
    macros: Macros,
    txn: Transaction,
    *,
    now: datetime,
    actions: ActionFlags,
    scan: Scan,
) -> Outcome:
    """The decision for one collected message. Never raises: our own failure becomes the
    spamd-error-action (`failed`)."""
    spamd: Verdict | SpamdError | None = None
    try:
        planned = policy.before_scan(config, client, macros, txn, now=now, actions=actions)
        if isinstance(planned, Decision):
            return settle(config, planned, actions)
        planned.user = recipients.spamd_user(config, txn)  # the passwd look-up, cached
        spamd = await scan(planned)
        return settle(config, policy.after_scan(planned, spamd), actions, spamd)
    except Exception as exc:
        return failed(config, txn, exc, actions, spamd)


def settle(
    config: Config,
    decision: Decision,
    actions: int,
    spamd: Verdict | SpamdError | None = None,
) -> Outcome:
    """What every decision gets on its way out: dry-run, every header edit made a valid
    field (`headers.wire_edits`: no edit may inject a header), then what the MTA granted.

    An MTA may offer fewer actions than we ask for (a milter proxy, a minimal MTA); libmilter
    answers such an edit with MI_FAILURE and the filter carries on, and so do we.
    """
    if config.dry_run:  # the log line keeps what would have happened
        decision = dataclasses.replace(
            decision, final=_CONTINUE, edits=(), action=decision.action.dry_run()
        )
    edits, dropped = headers.wire_edits(decision.edits)  # whatever the MTA or spamd gave
    if edits is not decision.edits:
        if dropped:
            logger.warning("header edits dropped, not an RFC 5322 field name: %r", dropped)
        decision = dataclasses.replace(decision, edits=edits)
    withheld: tuple[str, ...] = ()
    granted = int(actions)  # plain int operations: an IntFlag's & costs an enum call each
    if decision.edits and granted & _EVERY_EDIT != _EVERY_EDIT:
        decision, withheld = policy.grant(decision, granted)
    return Outcome(decision, withheld, spamd)


def failed(
    config: Config,
    txn: Transaction,
    exc: BaseException,
    actions: int,
    spamd: Verdict | SpamdError | None = None,
) -> Outcome:
    """Our own failure after the last byte: the same action as for spamd trouble, or, if even
    that fails, the bare final reply of spamd-error-action without edits."""
    logger.error(
        "internal error at end of message; applying spamd-error-action=%s",
        config.spamd_error_action,
        exc_info=exc,
    )
    try:
        outcome = settle(config, policy.on_internal_error(config, txn, exc), actions, spamd)
    except Exception:
        logger.error("internal error while applying spamd-error-action", exc_info=True)
        outcome = Outcome(last_resort(config), (), spamd)
    outcome.failure = exc
    return outcome


def last_resort(config: Config) -> Decision:
    """spamd-error-action as a bare final reply: what is answered when nothing else can be."""
    action = config.spamd_error_action
    final: FinalReply = _CONTINUE
    if not config.dry_run and action == "tempfail":
        final = TempFail()
    elif not config.dry_run and action == "reject":
        final = Reject()
    label = Action(action).dry_run() if config.dry_run else Action(action)
    return Decision(final, (), ERROR, label, "internal")


def recipient_refusal(config: Config, client: Client, txn: Transaction) -> ReplyCode | None:
    """max-untrusted, after each RCPT: the reply refusing the recipient just added, or None
    to take it (with dry-run, always None: the refusal is only logged)."""
    limit = config.max_untrusted
    if limit <= 0 or policy.untrusted_recipients(config, client, txn) <= limit:
        return None
    if config.dry_run:
        logger.info("dry-run: would answer 452 4.5.3 too many untrusted recipients")
        return None
    return _TOO_MANY
