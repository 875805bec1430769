"""Run the real-mail corpus (scripts/corpus.py) through a real MTA, with and without a milter,
and judge each verdict against SpamAssassin's own scan of the delivered message.

For every message whose milter verdict differs from the direct scan, the exact bytes spamd
saw (kept by `spamd_recorder.SpamdRecorder`) are changed one documented step at a time into the
judged message and rescanned after each step:

1. ``mta-received``: our synthetic Received line replaced by the one the MTA wrote after the
   milters ran;
2. ``mta-headers``: the header edits the MTA made after the milters (fields it added, such
   as Date, Message-Id, From, Resent-*; fields it rewrote or dropped at delivery);
3. ``mta-body``: the body as the MTA delivered it (MIME repair, long-line splitting).

A step counts as explained only if the no-milter delivery shows the MTA doing the same thing
to the sent message; the difference is attributed to the steps where the verdict changed.
Anything else (a header the milter saw but spamd did not, an unstable scan) is unexplained.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import fidelity
from tests.support.fidelity import Scan
from tests.support.spamd_recorder import Exchange
from tools.stack import REPO_ROOT, Mta, field_name, send_smtp, split_message

CORPUS_SCRIPT = REPO_ROOT / "scripts" / "corpus.py"
CORPUS_CACHE = REPO_ROOT / "var" / "corpus"
SENDER = "alice@example.org"
RCPT = "bob@example.test"

# spambridge's own headers (milter-spamc style); forged copies of the first four are removed.
BRIDGE_HEADERS = frozenset({b"x-spam-flag", b"x-spam-status", b"x-spam-level", b"x-spam-report"})
BRIDGE_ADDED = BRIDGE_HEADERS | {b"x-scanned-by"}
# Headers an MTA drops at delivery that spambridge cannot leave out for it, since the other
# MTA delivers them (README "What spamd sees"): Sendmail drops Full-Name, Postfix keeps it.
INHERENT_DROPS = frozenset({b"full-name"})
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class CorpusMessage:
    name: str
    raw: bytes
    features: tuple[str, ...]

    @property
    def wire(self) -> bytes:
        """What is sent over SMTP: every line end (CRLF, bare LF, bare CR) as CRLF, as RFC
        5321 requires (Sendmail refuses a bare CR or LF), and a CRLF at the end."""
        data = _LINE_END.sub(b"\r\n", self.raw)
        return data if data.endswith(b"\r\n") else data + b"\r\n"


def load_corpus(cache: Path = CORPUS_CACHE) -> list[CorpusMessage]:
    """Every corpus message, fetched first if the cache has none."""
    manifest = cache / "manifest.json"
    if not manifest.exists():
        subprocess.run(
            [sys.executable, str(CORPUS_SCRIPT), "fetch", "--cache", str(cache)],
            check=True,
            timeout=1800,
        )
    entries = json.loads(manifest.read_text())
    return [
        CorpusMessage(
            e["file"], (cache / "messages" / e["file"]).read_bytes(), tuple(e["features"])
        )
        for e in entries
    ]


def subset(messages: Sequence[CorpusMessage], per_feature: int = 2) -> list[CorpusMessage]:
    """A small selection for the default suite: every source's first message and the first
    few messages with each feature, in corpus order."""
    chosen: dict[str, CorpusMessage] = {}
    sources: set[str] = set()
    seen: Counter[str] = Counter()
    for message in messages:
        source = message.name.split("--", 1)[0]
        wanted = source not in sources
        for feature in message.features:
            if feature != "lf-only" and seen[feature] < per_feature:
                wanted = True
        if wanted:
            chosen[message.name] = message
            sources.add(source)
            seen.update(message.features)
    return list(chosen.values())


# ------------------------------------------------------------------------------ delivery


def deliver_each(mta: Mta, messages: Sequence[CorpusMessage]) -> list[bytes]:
    """Send the messages one at a time; each must be accepted and delivered exactly once."""
    out = []
    for index, message in enumerate(messages):
        code, text = send_smtp(mta.port, SENDER, [RCPT], message.wire)
        assert code == 250, f"{message.name}: {code} {text}"
        delivered = mta.wait_delivered(index + 1, timeout=60)
        assert len(delivered) == index + 1, f"{message.name}: delivered {len(delivered)} times"
        out.append(delivered[-1])
    # Nothing late: every message exactly once.
    assert len(mta.delivered()) == len(messages)
    return out


def check_edits(
    message: CorpusMessage,
    plain: bytes,
    filtered: bytes,
    *,
    removed: frozenset[bytes],
    added: frozenset[bytes],
) -> tuple[list[bytes], bytes]:
    """Assert ``filtered`` is the no-milter delivery ``plain`` less the header fields named in
    ``removed`` plus new fields named in ``added``, byte for byte apart from the fields the
    MTA itself wrote for this delivery (trace, queue ids, dates: compared by name).

    New fields go at the end of the header, except that Sendmail puts an added field in the
    place of a deleted one of the same name. Returns (the added fields, ``filtered`` without
    them)."""
    sent_fields = {f.replace(b"\r\n", b"\n") for f in split_message(message.wire)[0]}
    plain_fields, plain_body = split_message(plain)
    got_fields, got_body = split_message(filtered)
    assert got_body == plain_body, f"{message.name}: body differs from the no-milter delivery"
    expected = [f for f in plain_fields if field_name(f) not in removed]
    # Every field named in `removed` is ours (forged ones are gone); so are the last
    # X-Scanned-By fields beyond those the sender wrote.
    extra = Counter(field_name(f) for f in got_fields if field_name(f) in added)
    extra.subtract(field_name(f) for f in expected)
    ours: list[bytes] = []
    kept: list[bytes] = []
    for item in reversed(got_fields):
        name = field_name(item)
        if extra[name] > 0:
            extra[name] -= 1
            ours.insert(0, item)
        else:
            kept.insert(0, item)
    assert len(kept) == len(expected), f"{message.name}: {kept!r} vs {expected!r}"
    for want, got in zip(expected, kept, strict=True):
        if want.replace(b"\r\n", b"\n") in sent_fields:
            assert got == want, f"{message.name}: {want!r} delivered as {got!r}"
        else:  # written by the MTA for this delivery
            assert field_name(got) == field_name(want), f"{message.name}: {want!r} vs {got!r}"
    separator = b"\r\n" if filtered.find(b"\r\n") >= 0 else b"\n"
    return ours, b"".join(kept) + separator + got_body


# ------------------------------------------------------------------------------ fidelity


def scan_from_reply(exchange: Exchange) -> Scan:
    """The verdict in spamd's REPORT (or PROCESS) reply, for the chain's first step."""
    head, _, body = exchange.reply.partition(b"\r\n\r\n")
    match = re.search(rb"(?m)^Spam: \w+ ; (-?\d+\.\d+) /", head)
    assert match, exchange.reply[:300]
    return Scan(round(float(match[1]), 1), fidelity.report_rules(body.decode("utf-8", "replace")))


@dataclass
class Outcome:
    name: str
    acted_on: Scan
    direct: Scan
    causes: tuple[str, ...] = ()  # the steps that changed the verdict
    unexplained: str = ""

    @property
    def score_identical(self) -> bool:
        return self.acted_on.score == self.direct.score

    @property
    def identical(self) -> bool:
        return self.acted_on == self.direct


def _fields(message: bytes) -> tuple[list[bytes], bytes]:
    fields, body = split_message(message)
    return fields, body


def _join(fields: Sequence[bytes], body: bytes) -> bytes:
    return b"".join(fields) + b"\r\n" + body


def attribute(
    message: CorpusMessage,
    plain: bytes,
    judged: bytes,
    exchange: Exchange,
    acted_on: Scan,
    direct: Scan,
    rescan: Callable[[bytes], Scan],
) -> Outcome:
    """Explain a difference between ``acted_on`` and ``direct`` step by step (module doc)."""
    outcome = Outcome(message.name, acted_on, direct)
    if acted_on == direct:
        return outcome
    seen = exchange.message
    start = scan_from_reply(exchange)
    if start != acted_on:
        outcome.unexplained = f"spamd replied {start.describe()}, milter acted on another"
        return outcome
    if rescan(seen) != start:
        outcome.unexplained = "rescanning spamd's copy gives another verdict (unstable)"
        return outcome
    seen_fields, seen_body = _fields(seen)
    judged_fields, judged_body = _fields(judged)
    sent_fields, sent_body = split_message(message.wire)
    plain_fields, plain_body = split_message(fidelity.wire(plain))
    problems = []
    if seen_fields[0] != judged_fields[0]:
        problems.append(f"Return-Path {seen_fields[0]!r} vs {judged_fields[0]!r}")
    # Step 2's header edits must all be the MTA's own: what the delivery has and spamd did
    # not see was never sent (the MTA wrote it); what spamd saw and the delivery lacks was
    # rewritten by the MTA (a field of that name was delivered instead) or is a documented
    # drop spambridge cannot mirror. A header the MTA always drops (Return-Path ...) left in
    # spamd's copy is spambridge's fault, not the MTA's.
    only_seen = [f for f in seen_fields[2:] if f not in judged_fields]
    only_judged = [f for f in judged_fields[2:] if f not in seen_fields]
    rewritten = {field_name(f) for f in only_judged}
    for item in only_seen:
        if item in plain_fields:
            problems.append(f"spamd saw {item!r}: delivered without the milter, not with it")
        elif field_name(item) not in rewritten | INHERENT_DROPS:
            problems.append(f"spamd saw {item!r}, which the MTA drops before delivery")
    problems += [f"delivered {f!r}, spamd did not see it" for f in only_judged if f in sent_fields]
    if seen_body != judged_body and plain_body == sent_body:
        problems.append("the body spamd saw differs from the delivered one")
    if problems:
        outcome.unexplained = "; ".join(problems)
        return outcome
    steps = [
        ("mta-received", _join([seen_fields[0], judged_fields[1], *seen_fields[2:]], seen_body)),
        ("mta-headers", _join(judged_fields, seen_body)),
        ("mta-body", judged),
    ]
    causes = []
    before = start
    for cause, variant in steps:
        after = direct if variant == judged else rescan(variant)
        if after != before:
            detail = cause
            if cause == "mta-headers":
                names = sorted({field_name(f).decode() for f in only_seen + only_judged})
                detail += "(" + ",".join(names) + ")"
            causes.append(detail)
        before = after
    outcome.causes = tuple(causes)
    return outcome


@dataclass
class Tally:
    """Side-by-side figures for one MTA."""

    mta: str
    total: int = 0
    bridge: list[Outcome] = field(default_factory=list)
    samilter: list[Outcome] = field(default_factory=list)

    def line(self) -> str:
        def figures(outcomes: list[Outcome]) -> str:
            scores = sum(o.score_identical for o in outcomes)
            rules = sum(o.identical for o in outcomes)
            return f"score-identical {scores}/{len(outcomes)}, score+rules {rules}/{len(outcomes)}"

        causes = Counter(c for o in self.bridge for c in o.causes)
        return (
            f"{self.mta}: {self.total} messages | spambridge {figures(self.bridge)} | "
            f"spamass-milter {figures(self.samilter)} | spambridge differences by cause: "
            f"{dict(sorted(causes.items())) or '{}'}"
        )
