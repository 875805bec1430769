"""What a session needs from the server, and what it asks the MTA for.

`Services` is swapped whole on reload; `wanted` is the negotiation we ask for (only the steps
and actions the configuration uses); `MACROS` the macros read at each stage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from spambridge.metrics import Metrics
from spambridge.milter.codec import encode
from spambridge.milter.flags import ActionFlags, ProtocolFlags, Stage
from spambridge.milter.messages import Negotiate
from spambridge.milter.negotiate import Negotiated, Wanted, negotiate
from spambridge.options import Config
from spambridge.spamd.pool import SpamdPool

# Macros we read, requested per stage in the negotiation reply (setsymlist).
MACROS: tuple[tuple[Stage, tuple[str, ...]], ...] = (
    (
        Stage.CONNECT,
        (
            "j",
            "_",
            "{daemon_name}",
            "{daemon_addr}",
            "{if_name}",
            "{if_addr}",
            "{client_name}",
            "{client_addr}",
            "{client_resolve}",
        ),
    ),
    # STARTTLS details for the Received line (Sendmail's default HELO list lacks {verify}).
    (Stage.HELO, ("{tls_version}", "{cipher}", "{cipher_bits}", "{verify}")),
    (Stage.MAIL, ("i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}")),
    (Stage.RCPT, ("i", "{rcpt_mailer}", "{rcpt_host}", "{rcpt_addr}")),
    (Stage.END_OF_HEADERS, ("i",)),
    (Stage.END_OF_MESSAGE, ("i", "{msg_id}")),
)


def wanted(config: Config) -> Wanted:
    """What we ask the MTA for: only the steps we use, no replies where we never answer."""
    actions = ActionFlags.ADD_HEADERS | ActionFlags.CHANGE_HEADERS
    if config.quarantine_score is not None:
        actions |= ActionFlags.QUARANTINE
    if config.mail_policy != "none" or config.mail_ham or config.mail_archive:
        actions |= ActionFlags.ADD_RECIPIENT | ActionFlags.DELETE_RECIPIENT
    if config.spamd_rewrite_body:  # SpamAssassin's report_safe body, only when asked for
        actions |= ActionFlags.CHANGE_BODY
    protocol = ProtocolFlags.NO_UNKNOWN | ProtocolFlags.HEADER_LEADING_SPACE
    no_reply = config.milter_no_reply  # off: every step answered, as a libmilter filter does
    if no_reply:
        protocol |= (
            ProtocolFlags.NR_CONNECT
            | ProtocolFlags.NR_HELO
            | ProtocolFlags.NR_MAIL
            | ProtocolFlags.NR_DATA
            | ProtocolFlags.NR_HEADER
            | ProtocolFlags.NR_END_OF_HEADERS
        )
    if no_reply and config.max_untrusted <= 0:
        protocol |= ProtocolFlags.NR_RCPT
    if config.skip_body and config.oversize_action == "skip" and config.spamd_max_size:
        # SKIP needs a reply to body chunks, so no NR_BODY: one round trip per 64 KiB for
        # every message (and with Sendmail a ~40 ms Nagle stall before end of message).
        protocol |= ProtocolFlags.SKIP
    elif no_reply:
        protocol |= ProtocolFlags.NR_BODY
    return Wanted(actions=actions, protocol=protocol, macros=MACROS)


def local_now() -> datetime:
    """The wall clock in local time, as X-Scanned-By and the synthetic Received show it."""
    return datetime.now(UTC).astimezone()


@dataclass(slots=True)
class Services:
    """What a session needs from the server; swapped whole on reload."""

    config: Config
    pool: SpamdPool
    metrics: Metrics
    clock: Callable[[], datetime] = local_now  # tests pass a fixed one
    wanted: Wanted = dataclasses.field(init=False)  # computed once, not per connection
    # Answers by (version, actions, protocol) offered, the reply already encoded: an MTA
    # offers the same every time, and working the answer out costs more than the rest of a
    # connection's set-up.
    _answers: dict[tuple[int, int, int], tuple[bytes, Negotiated]] = dataclasses.field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self.wanted = wanted(self.config)

    def negotiate(self, offer: Negotiate) -> tuple[bytes, Negotiated]:
        """The encoded reply to `offer` and the options then in force."""
        key = (offer.version, int(offer.actions), int(offer.protocol))
        answer = self._answers.get(key)
        if answer is None:
            reply, negotiated = negotiate(offer, self.wanted)
            answer = (encode(reply), negotiated)
            if len(self._answers) >= 16:  # a fuzzing MTA must not grow it without bound
                self._answers.clear()
            self._answers[key] = answer
        return answer
