"""header-style=milter-spamc: milter-spamc's own X-Spam-* headers and subject tag.

X-Spam-Flag (spam, or always-add-flag), X-Scanned-By, X-Spam-Status ("YES, hits=S
required=T"), X-Spam-Level (level-character once per point), X-Spam-Report (from a REPORT
or SYMBOLS reply), and the subject-tag prefix or template.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spambridge import headers
from spambridge.milter.messages import Edit
from spambridge.styles.base import Field, HeaderStyle, original_recipients, set_subject
from spambridge.subject import is_subject_template, tag_subject, template_subject

if TYPE_CHECKING:
    from spambridge.options import Config
    from spambridge.spamd.protocol import Verdict
    from spambridge.transaction import Transaction


class MilterSpamc(HeaderStyle):
    name = "milter-spamc"
    commands = ("REPORT", "CHECK", "SYMBOLS", "REPORT_IFSPAM")
    owned = frozenset(name.lower() for name in headers.MILTER_SPAMC_HEADERS)
    summary = "X-Spam-* headers in milter-spamc's formats"

    def fields(
        self, config: Config, txn: Transaction, verdict: Verdict, scanned_by: bytes | None
    ) -> list[Field]:
        out: list[Field] = []
        spam = verdict.is_spam
        if spam or config.always_add_flag:
            out.append((b"X-Spam-Flag", headers.format_flag(spam)))  # milter-spamc adds it first
        if scanned_by is not None:
            out.append((b"X-Scanned-By", scanned_by))
        out.append(
            (b"X-Spam-Status", headers.format_status(spam, verdict.score, verdict.threshold))
        )
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
            out.extend(original_recipients(config, txn, verdict))
        return out

    def subject(self, config: Config, txn: Transaction, verdict: Verdict) -> Edit | None:
        if not (verdict.is_spam and config.subject_tag):
            return None
        subject = txn.header_values(b"Subject")
        current = subject[0] if subject else None
        tag = config.subject_tag.encode("utf-8", "surrogateescape")  # the bytes as configured
        if is_subject_template(config.subject_tag):
            new = template_subject(current, tag, verdict.score)
        else:
            detail = None
            if config.subject_tag_score:
                detail = f"({verdict.score:.2f}/{verdict.threshold:.2f})".encode()
            new = tag_subject(current, tag, detail=detail)
        return None if new is None else set_subject(current, new)


STYLE = MilterSpamc()
