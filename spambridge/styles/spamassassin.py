"""header-style=spamassassin: SpamAssassin's own X-Spam-* headers, as spamd wrote them.

spamd-command=HEADERS returns the headers SpamAssassin's configuration asks for
(add_header, rewrite_header Subject); they are copied as they are, sanitised. With
spamd-command=PROCESS and +spamd-rewrite-body the whole rewritten message is delivered (see
`rewrite`). Every incoming X-Spam-* header but X-Spam-Prev-* is a forgery here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spambridge import headers, rewrite
from spambridge.milter.messages import AddHeader, Edit
from spambridge.styles.base import Field, HeaderStyle, first_subject, set_subject

if TYPE_CHECKING:
    from spambridge.options import Config
    from spambridge.spamd.protocol import Verdict
    from spambridge.transaction import Transaction


class SpamAssassin(HeaderStyle):
    name = "spamassassin"
    commands = ("HEADERS", "PROCESS")
    owned = frozenset(name.lower() for name in headers.MILTER_SPAMC_HEADERS)
    owned_prefixes = (b"X-Spam-",)
    exempt_prefixes = (b"X-Spam-Prev-",)
    summary = "copy SpamAssassin's own X-Spam-* headers (spamd-command=HEADERS)"

    def fields(
        self, config: Config, txn: Transaction, verdict: Verdict, scanned_by: bytes | None
    ) -> list[Field]:
        out: list[Field] = [] if scanned_by is None else [(b"X-Scanned-By", scanned_by)]
        out.extend(headers.spamassassin_headers(verdict.body))
        return out

    def edits(
        self,
        config: Config,
        txn: Transaction,
        verdict: Verdict,
        scanned_by: bytes | None,
        *,
        body_ok: bool,
    ) -> list[Edit]:
        if (
            config.spamd_rewrite_body
            and body_ok
            and txn.body_complete
            and rewrite.looks_processed(verdict.body)
        ):
            return self._rewritten(txn, verdict, scanned_by)
        return super().edits(config, txn, verdict, scanned_by, body_ok=body_ok)

    def _rewritten(
        self, txn: Transaction, verdict: Verdict, scanned_by: bytes | None
    ) -> list[Edit]:
        """The message as spamd's PROCESS returned it (spamc's delivery), plus X-Scanned-By."""
        result = rewrite.rewrite_edits(
            txn.headers, verdict.body, sender=txn.sender, body=bytes(txn.body)
        )
        edits = list(result.edits)
        if scanned_by is not None:
            at = len(edits) - 1 if result.body_replaced else len(edits)
            edits.insert(at, AddHeader(b"X-Scanned-By", b" " + scanned_by))  # REPLBODY last
        return edits

    def subject(self, config: Config, txn: Transaction, verdict: Verdict) -> Edit | None:
        new = headers.spamassassin_subject(verdict.body)
        return None if new is None else set_subject(first_subject(txn), new)


STYLE = SpamAssassin()
