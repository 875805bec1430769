"""header-style=rspamd: the headers rspamd's milter writes, from SpamAssassin's verdict.

So that mailbox rules and Sieve scripts written for rspamd keep working. What rspamd writes,
from its own source (rspamd 3.x):

- `X-Spam: Yes` on spam: its milter (src/libserver/milter.c, RSPAMD_MILTER_SPAM_HEADER)
  removes every incoming X-Spam and sets this one at the "add header" action. Here: when
  SpamAssassin says spam (score >= required_score).
- `X-Spamd-Result` (milter_headers routine x-spamd-result): `default: True|False [score /
  required]`, then one `NAME(score)[options]` per symbol, sorted by absolute score, the
  highest first, joined by "; " and folded after every ";" (rspamd_header_value_fold with
  stop characters). True is rspamd's reject; here, SpamAssassin's spam, so that True means
  "the score reached the number on the right" in both. The symbols are SpamAssassin's rules
  from a REPORT reply with the points it shows (one decimal); their options stay empty.
- `X-Spamd-Bar` (routine x-spamd-bar): "+" per whole point at or above 1, "-" per whole
  point at or below -1, "/" between; capped at 982 characters so the line stays within
  RFC 5322's 998 (rspamd writes a 1000-point message's 1000 "+" on one line).
- The subject rewrite (the "rewrite subject" action): the Subject becomes subject-tag, with
  %s the original subject; rspamd's default template is "*** SPAM *** %s" (src/rspamd.h,
  SPAM_SUBJECT), which subject-tag='*** SPAM *** %s' reproduces.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from spambridge import headers
from spambridge.milter.messages import Edit
from spambridge.styles.base import Field, HeaderStyle, original_recipients, set_subject
from spambridge.subject import is_subject_template, tag_subject, template_subject

if TYPE_CHECKING:
    from spambridge.options import Config
    from spambridge.spamd.protocol import Verdict
    from spambridge.transaction import Transaction

# A rule line of SpamAssassin's report: " pts rule name description".
_RULE = re.compile(rb"^\s*(-?\d+(?:\.\d+)?)\s+([A-Za-z0-9_.\-]+)(?:\s|$)")
_SEPARATOR = re.compile(rb"^-+ -+")


class Rspamd(HeaderStyle):
    name = "rspamd"
    commands = ("REPORT", "REPORT_IFSPAM", "CHECK")
    owned = frozenset((b"x-spam", b"x-spamd-result", b"x-spamd-bar"))
    summary = (
        "the headers rspamd's milter writes (X-Spam: Yes, X-Spamd-Result, X-Spamd-Bar), "
        "from SpamAssassin's verdict (spamd-command=REPORT, REPORT_IFSPAM or CHECK)"
    )

    def fields(
        self, config: Config, txn: Transaction, verdict: Verdict, scanned_by: bytes | None
    ) -> list[Field]:
        out: list[Field] = []
        if verdict.is_spam:
            out.append((b"X-Spam", b"Yes"))
        if scanned_by is not None:
            out.append((b"X-Scanned-By", scanned_by))
        with_report = verdict.command.startswith("REPORT")
        result = spamd_result(verdict, report_rules(verdict.body) if with_report else [])
        out.append((b"X-Spamd-Result", result))
        out.append((b"X-Spamd-Bar", spamd_bar(verdict.score)))
        out.extend(original_recipients(config, txn, verdict))
        return out

    def subject(self, config: Config, txn: Transaction, verdict: Verdict) -> Edit | None:
        if not (verdict.is_spam and config.subject_tag):
            return None
        values = txn.header_values(b"Subject")
        current = values[0] if values else None
        tag = config.subject_tag.encode("utf-8", "surrogateescape")
        if is_subject_template(config.subject_tag):
            new = template_subject(current, tag, verdict.score)
        else:
            new = tag_subject(current, tag)
        return None if new is None else set_subject(current, new)


def report_rules(report: bytes) -> list[tuple[bytes, float]]:
    """The (rule, points) pairs of a SpamAssassin report, in its order."""
    rules: list[tuple[bytes, float]] = []
    started = False
    for line in report.splitlines():
        if not started:
            started = _SEPARATOR.match(line.strip()) is not None
            continue
        m = _RULE.match(line)
        if m is not None:
            rules.append((m[2], float(m[1])))
    return rules


def spamd_result(verdict: Verdict, rules: list[tuple[bytes, float]]) -> bytes:
    """X-Spamd-Result as rspamd's x-spamd-result routine writes it (LF + TAB folds)."""
    parts = [
        b"default: %s [%.2f / %.2f]"
        % (b"True" if verdict.is_spam else b"False", verdict.score, verdict.threshold)
    ]
    # rspamd's sort_by=score: the largest absolute score first (Python's sort is stable)
    for name, points in sorted(rules, key=lambda rule: -abs(rule[1])):
        parts.append(b"%s(%.2f)[]" % (name, points))
    return headers.cap_lines(b";\n\t".join(parts), headers.MAX_REPORT)


def spamd_bar(score: float) -> bytes:
    """X-Spamd-Bar as rspamd's x-spamd-bar routine writes it, capped as X-Spam-Level."""
    if score >= 1:
        return headers.format_level(score, b"+")
    if score <= -1:
        return headers.format_level(-score, b"-")
    return b"/"


STYLE = Rspamd()
