"""What every header style is: the headers it owns, writes and how it tags the Subject.

A style is a value with no state; `policy` asks it for the header edits of one verdict. The
parts every style shares (X-Scanned-By, the X-Spam-Score of score-header, the recipients a
redirect replaced) are built here, so a style says only where they go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from spambridge import headers
from spambridge.milter.messages import AddHeader, ChangeHeader, Edit

if TYPE_CHECKING:
    from spambridge.options import Config
    from spambridge.spamd.protocol import Verdict
    from spambridge.transaction import Transaction

Field = tuple[bytes, bytes]  # a header name and its value, without the leading space

SCORE_HEADER = b"X-Spam-Score"
_SCORE_KEY = SCORE_HEADER.lower()


class HeaderStyle:
    """One header style. Subclasses set the class attributes and write `fields`."""

    name: ClassVar[str]
    # The spamd commands whose reply this style reads; the first is its usual one.
    commands: ClassVar[tuple[str, ...]]
    # Incoming headers with these names (any letter case) are forgeries: deleted.
    owned: ClassVar[frozenset[bytes]] = frozenset()
    # ... and those whose name starts with one of these, unless it starts with an exempt one.
    owned_prefixes: ClassVar[tuple[bytes, ...]] = ()
    exempt_prefixes: ClassVar[tuple[bytes, ...]] = ()
    # The option help line that describes the style.
    summary: ClassVar[str]

    def __init__(self) -> None:
        self._owned_with_score = self.owned | {_SCORE_KEY}

    def forged_deletions(self, config: Config, txn: Transaction) -> list[ChangeHeader]:
        """Deletions of every incoming header this style (or score-header) would write."""
        return headers.forged_header_deletions(
            txn.headers,
            self._owned_with_score if config.score_header else self.owned,
            prefixes=self.owned_prefixes,
            exempt_prefixes=self.exempt_prefixes,
        )

    def fields(
        self, config: Config, txn: Transaction, verdict: Verdict, scanned_by: bytes | None
    ) -> list[Field]:
        """The verdict headers to add, in order. `scanned_by` is X-Scanned-By's value, or
        None without add-scanned-by."""
        raise NotImplementedError

    def subject(self, config: Config, txn: Transaction, verdict: Verdict) -> Edit | None:
        """The Subject edit that tags the message, or None to leave the Subject alone."""
        return None

    def edits(
        self,
        config: Config,
        txn: Transaction,
        verdict: Verdict,
        scanned_by: bytes | None,
        *,
        body_ok: bool,
    ) -> list[Edit]:
        """Forged-header deletions, the verdict headers and the subject tag. `body_ok`: the
        MTA granted the body-change action (a style that rewrites the body needs it)."""
        edits: list[Edit] = list(self.forged_deletions(config, txn))
        fields = self.fields(config, txn, verdict, scanned_by)
        if config.score_header and not any(name.lower() == _SCORE_KEY for name, _ in fields):
            fields.append(score_field(verdict))
        for name, value in fields:
            edits.append(AddHeader(name, b" " + value))
        tag = self.subject(config, txn, verdict)
        if tag is not None:
            edits.append(tag)
        return edits


def score_field(verdict: Verdict) -> Field:
    """score-header: X-Spam-Score with the bare score, as Sieve's spamtest reads a number."""
    return (SCORE_HEADER, b"%.2f" % verdict.score)


def original_recipients(config: Config, txn: Transaction, verdict: Verdict) -> list[Field]:
    """mail-policy=redirect: the recipients the redirect replaces, one X-Original-Recipient
    each, so the spam box shows whom the message was for."""
    if config.mail_policy != "redirect" or not verdict.is_spam:
        return []
    name = b"X-Original-Recipient"
    out: list[Field] = []
    for rcpt in txn.recipients:
        raw = rcpt.address.strip()
        if raw.startswith(b"<") and raw.endswith(b">"):
            raw = raw[1:-1]
        out.append((name, headers.sanitize_value(raw, len(name))))
    return out


def set_subject(current: bytes | None, new: bytes) -> Edit:
    """The edit that makes `new` the Subject (added when the message had none)."""
    value = new
    if not value.startswith((b" ", b"\t")):
        value = b" " + value
    if current is None:
        return AddHeader(b"Subject", value)
    return ChangeHeader(1, b"Subject", value)


def first_subject(txn: Transaction) -> bytes | None:
    values = txn.header_values(b"Subject")
    return values[0] if values else None
