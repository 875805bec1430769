"""spamc judges how spambridge reads spamd: the same reply bytes, two clients, one answer.

Every case gives one reply to SpamAssassin's own C client (`spamc` 4.0, in the mode that
sends the same command: `-c`, `-y`, `-R`, `-r`, `--headers`, plain, `-K`; always `-x`) and
to spambridge's spamd pool, both against one loopback server answering with those bytes,
and requires the same class (spam, ham, failure), the same score where spamc prints one and
the same body where it prints one (tests/support/spamc_judge.py). The replies:

- spamd's real replies (spamd 4.0.1, every command spambridge sends, ham and GTUBE spam,
  PING, two EX_* errors), kept in tests/wire/data/spamd-4.0.1/; the last test starts a
  real spamd, captures them again and compares (dates, host name and ids masked);
- their variations: line ends, white space, letter case, flag spellings, numbers, missing
  and extra headers, every EX_* status, protocol versions, Content-length mismatches;
- each real reply cut short at a byte.

Where spamc misreads a reply and spambridge stays strict, the case names its row of the
README table "How spamd's reply is read" (KNOWN below) and must still differ that way.

CI runs all real replies, every variation on one reply, and a seeded sample of the rest
and of the truncation points (a few seconds). The long form, every variation on every reply
and every truncation byte (a few minutes):

    SPAMBRIDGE_SPAMC_DIFF=full python3 -m pytest -q tests/wire/test_spamc_differential.py

SPAMBRIDGE_SPAMC_DIFF_SEED=N draws another CI sample (default 24).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.scripted_spamd import ScriptedSpamd
from tests.support.spamc_judge import (
    FIXTURES,
    both_readings,
    capture_replies,
    fixture_command,
    load_fixtures,
    masked,
    scan_command_reading,
    spamc_reading,
)

FULL = os.environ.get("SPAMBRIDGE_SPAMC_DIFF") == "full"
SEED = int(os.environ.get("SPAMBRIDGE_SPAMC_DIFF_SEED", "24"))
README = Path(__file__).resolve().parents[2] / "README.md"

# The documented differences: key -> (what spambridge answers, the README row's reply cell);
# None: the class spamc gives, with another score; "read": a verdict (spam or ham) where
# spamc fails.
KNOWN: dict[str, tuple[str | None, str]] = {
    "yes-flag": ("spam", "`Spam: Yes` (spamd's REPORT_IFSPAM spam) or `yes`"),
    "other-flag": ("failure", "a flag other than True, False, Yes, No"),
    "not-decimal": ("failure", "a score or threshold that is not a plain decimal"),
    "after-number": ("failure", "more after the threshold or the Content-length"),
    "huge-score": (None, "a score beyond ±10¹⁰"),
    "ex-with-headers": ("failure", "a non-zero `EX_*` code followed by headers"),
    "no-spam-header": ("failure", "no `Spam` header that spamc can read"),
    "ping-not-pong": ("failure", "PING answered with code 0 but not `PONG`"),
    "mashed-status": ("failure", "no space between the code and its name (`SPAMD/1.1 0EX_OK`)"),
    "long-line": ("read", "a header line longer than 8 KB"),
}

pytestmark = pytest.mark.skipif(
    shutil.which("spamc") is None and os.environ.get("CI") != "true",
    reason="spamc is not installed (scripts/install-deps.sh installs it)",
)

# ------------------------------------------------------------------------ reply surgery


@dataclass
class Reply:
    """A reply taken apart at its head's line ends: status line, header lines, body (None:
    a status-only reply)."""

    status: bytes
    headers: list[bytes]
    body: bytes | None

    @classmethod
    def parse(cls, raw: bytes) -> Reply:
        head, blank, body = raw.partition(b"\r\n\r\n")
        status, *headers = head.split(b"\r\n")
        if not blank:
            return cls(status.removesuffix(b"\r\n"), [], None)
        return cls(status, headers, body)

    def encode(self, ends: Callable[[int], bytes] = lambda _: b"\r\n") -> bytes:
        lines = [self.status, *self.headers] if self.body is not None else [self.status]
        out = b"".join(line + ends(i) for i, line in enumerate(lines))
        return out if self.body is None else out + ends(len(lines)) + self.body

    def edit(self, name: bytes, change: Callable[[bytes], bytes | None]) -> bool:
        """Apply `change` to each header line starting with `name` (None drops it)."""
        found = False
        kept: list[bytes] = []
        for line in self.headers:
            if line.startswith(name):
                found = True
                new = change(line)
                if new is not None:
                    kept.append(new)
            else:
                kept.append(line)
        self.headers = kept
        return found


_SPAM = re.compile(rb"Spam: (\w+) ; (\S+) / (\S+)")
Transform = Callable[[Reply], bytes | None]


def spam_line(make: Callable[[bytes, bytes, bytes], bytes]) -> Transform:
    """A transform rewriting the Spam line from its (flag, score, threshold)."""

    def transform(reply: Reply) -> bytes | None:
        def change(line: bytes) -> bytes:
            found = _SPAM.fullmatch(line)
            assert found is not None, line
            flag, score, threshold = found.groups()
            return make(flag, score, threshold)

        return reply.encode() if reply.edit(b"Spam:", change) else None

    return transform


def flag(spam: bytes, ham: bytes) -> Transform:
    is_spam = {b"True": True, b"False": False, b"Yes": True, b"No": False}
    return spam_line(lambda f, s, t: b"Spam: %b ; %b / %b" % (spam if is_spam[f] else ham, s, t))


def score(text: bytes) -> Transform:
    return spam_line(lambda f, s, t: b"Spam: %b ; %b / %b" % (f, text, t))


def threshold(text: bytes) -> Transform:
    return spam_line(lambda f, s, t: b"Spam: %b ; %b / %b" % (f, s, text))


def header(name: bytes, change: Callable[[bytes], bytes | None]) -> Transform:
    return lambda reply: reply.encode() if reply.edit(name, change) else None


def length(change: Callable[[int], bytes]) -> Transform:
    return header(b"Content-length:", lambda line: change(int(line.split(b":")[1])))


def status(change: Callable[[bytes], bytes]) -> Transform:
    def transform(reply: Reply) -> bytes:
        reply.status = change(reply.status)
        return reply.encode()

    return transform


def mashed_status(reply: Reply) -> bytes | None:
    """`SPAMD/1.1 0EX_OK`: a verdict's status line with the space after its code left out
    (an error reply's is no verdict either way)."""
    mashed = re.sub(rb"^(SPAMD/\S+) 0 ", rb"\1 0", reply.status)
    if mashed == reply.status:
        return None
    reply.status = mashed
    return reply.encode()


def add(*lines: bytes, first: bool = False) -> Transform:
    def transform(reply: Reply) -> bytes | None:
        if reply.body is None:
            return None
        reply.headers = [*lines, *reply.headers] if first else [*reply.headers, *lines]
        return reply.encode()

    return transform


def ends(pattern: Callable[[int], bytes]) -> Transform:
    return lambda reply: reply.encode(pattern)


def body(change: Callable[[bytes], bytes]) -> Transform:
    def transform(reply: Reply) -> bytes | None:
        if reply.body is None:
            return None
        reply.body = change(reply.body)
        return reply.encode()

    return transform


def status_only(code: int) -> Transform:
    return lambda reply: b"SPAMD/1.0 %d Some error\r\n" % code


def with_code(code: int) -> Transform:
    return status(lambda line: re.sub(rb" 0 ", b" %d " % code, line, count=1))


@dataclass(frozen=True)
class Variation:
    name: str
    transform: Transform
    known: str | None = None  # a KNOWN key: spamc reads this differently, as documented
    known_for: frozenset[str] | None = None  # only for these commands (None: all)
    spam_only: bool = False  # only for a reply whose verdict is spam

    def known_difference(self, command: str, reply: bytes) -> str | None:
        if self.known_for is not None and command not in self.known_for:
            return None
        if self.spam_only and not re.search(rb"\r\nSpam: (True|Yes) ", reply):
            return None
        return self.known


def no_spam(name: str, transform: Transform) -> Variation:
    """spamc finds no Spam header it can read: it fails in -c mode, passes the rest on."""
    return Variation(name, transform, "no-spam-header", PASS_THROUGH)


def yes_flag(name: str, transform: Transform) -> Variation:
    """spamc reads only True as spam (a ham reply's No stays ham to both)."""
    return Variation(name, transform, "yes-flag", spam_only=True)


# Commands whose spamc mode prints no score and exits 0 when it found no Spam header.
PASS_THROUGH = frozenset({"SYMBOLS", "REPORT", "REPORT_IFSPAM", "HEADERS", "PROCESS"})
SCANS = PASS_THROUGH | {"CHECK"}


class LongLine(Variation):
    """A header line over spamc's 8 KB line buffer: spamc fails on a reply with a body, and
    reads CHECK's reply without a verdict, that is as ham (so they differ where it is spam)."""

    def known_difference(self, command: str, reply: bytes) -> str | None:
        if command in PASS_THROUGH or re.search(rb"\r\nSpam: (True|Yes) ", reply):
            return self.known
        return None


VARIATIONS: tuple[Variation, ...] = (
    # line ends of the head (the body is left as spamd wrote it)
    Variation("lf", ends(lambda _: b"\n")),
    Variation("mixed-ends", ends(lambda i: b"\r\n" if i % 2 else b"\n")),
    Variation("lf-status-line-only", ends(lambda i: b"\n" if i == 0 else b"\r\n")),
    Variation("cr-cr-lf", ends(lambda _: b"\r\r\n")),
    Variation("cr-only", ends(lambda _: b"\r")),
    # white space
    Variation("status-two-spaces", status(lambda s: s.replace(b" ", b"  "))),
    Variation("status-tabs", status(lambda s: s.replace(b" ", b"\t"))),
    Variation("status-trailing-blanks", status(lambda s: s + b" \t ")),
    Variation("status-leading-space", status(lambda s: b" " + s)),
    Variation("status-no-message", status(lambda s: b" ".join(s.split(b" ")[:2]))),
    Variation("status-more-words", status(lambda s: s + b" and more words")),
    Variation("status-mashed", mashed_status, known="mashed-status"),
    Variation("spam-wide", spam_line(lambda f, s, t: b"Spam:   %b   ;   %b   /   %b" % (f, s, t))),
    Variation("spam-tabs", spam_line(lambda f, s, t: b"Spam:\t%b\t;\t%b\t/\t%b" % (f, s, t))),
    Variation(
        "spam-trailing-blanks", spam_line(lambda f, s, t: b"Spam: %b ; %b / %b  " % (f, s, t))
    ),
    Variation(
        "spam-no-blank-after-colon", spam_line(lambda f, s, t: b"Spam:%b ; %b / %b" % (f, s, t))
    ),
    Variation("spam-tight-semicolon", spam_line(lambda f, s, t: b"Spam: %b ;%b / %b" % (f, s, t))),
    no_spam("spam-no-blanks", spam_line(lambda f, s, t: b"Spam: %b;%b/%b" % (f, s, t))),
    no_spam(
        "spam-blank-before-colon", spam_line(lambda f, s, t: b"Spam : %b ; %b / %b" % (f, s, t))
    ),
    no_spam("spam-leading-blank", spam_line(lambda f, s, t: b" Spam: %b ; %b / %b" % (f, s, t))),
    Variation("length-no-blank", length(lambda n: b"Content-length:%d" % n)),
    Variation("length-wide", length(lambda n: b"Content-length:   %d   " % n)),
    Variation("length-leading-zeros", length(lambda n: b"Content-length: 000%d" % n)),
    Variation("length-plus-sign", length(lambda n: b"Content-length: +%d" % n)),
    # letter case
    no_spam("spam-name-lower", header(b"Spam:", lambda line: b"spam:" + line[5:])),
    no_spam("spam-name-upper", header(b"Spam:", lambda line: b"SPAM:" + line[5:])),
    Variation("length-name-Length", length(lambda n: b"Content-Length: %d" % n)),
    Variation("length-name-lower", length(lambda n: b"content-length: %d" % n)),
    Variation("status-lower", status(lambda s: s.replace(b"SPAMD/", b"spamd/"))),
    Variation("message-lower", status(lambda s: s.lower().replace(b"spamd/", b"SPAMD/"))),
    Variation("flag-lower", flag(b"true", b"false")),
    Variation("flag-upper", flag(b"TRUE", b"FALSE")),
    Variation("flag-mixed-case", flag(b"tRuE", b"fAlSe")),
    # flag spellings
    yes_flag("flag-yes-no", flag(b"yes", b"no")),
    yes_flag("flag-Yes-No", flag(b"Yes", b"No")),
    yes_flag("flag-YES-NO", flag(b"YES", b"NO")),
    Variation("flag-1-0", flag(b"1", b"0"), known="other-flag"),
    Variation("flag-maybe", flag(b"maybe", b"maybe"), known="other-flag"),
    Variation("flag-T-F", flag(b"T", b"F"), known="other-flag"),
    no_spam("flag-missing", spam_line(lambda f, s, t: b"Spam: ; %b / %b" % (s, t))),
    no_spam("flag-too-long", flag(b"Truest", b"Falsey")),
    # numbers
    Variation("score-integer", score(b"7")),
    Variation("score-plus-sign", score(b"+7.5")),
    Variation("score-negative", score(b"-3.2")),
    Variation("score-negative-fraction", score(b"-0.5")),
    Variation("score-leading-dot", score(b".5")),
    Variation("score-trailing-dot", score(b"7.")),
    Variation("score-two-decimals", score(b"7.25")),
    Variation("score-leading-zeros", score(b"0007.5")),
    Variation("threshold-integer", threshold(b"5")),
    Variation(
        "score-comma", spam_line(lambda f, s, t: b"Spam: %b ; 7,5 / 5,0" % f), known="not-decimal"
    ),
    Variation("score-nan", score(b"nan"), known="not-decimal"),
    Variation("score-inf", score(b"inf"), known="not-decimal"),
    Variation("threshold-minus-inf", threshold(b"-inf"), known="not-decimal"),
    Variation("score-1e308", score(b"1e308"), known="not-decimal"),
    Variation("score-exponent", score(b"1E3"), known="not-decimal"),
    Variation("score-hex", score(b"0x10"), known="not-decimal"),
    Variation("score-underscore", score(b"1_0"), known="not-decimal"),
    Variation("score-two-dots", score(b"7.5.1"), known="not-decimal"),
    Variation("score-letters-after", score(b"7.5abc"), known="not-decimal"),
    Variation("threshold-word-after", threshold(b"5.0 extra"), known="after-number"),
    Variation("score-huge", score(b"123456789012.0"), "huge-score", frozenset({"CHECK", "REPORT"})),
    no_spam("score-21-characters", score(b"123456789012345678.00")),
    # missing and extra headers
    no_spam("no-spam-header", header(b"Spam:", lambda line: None)),
    Variation("no-content-length", header(b"Content-length:", lambda line: None)),
    Variation("no-headers", lambda r: Reply(r.status, [], r.body).encode() if r.headers else None),
    Variation("extra-unknown-header", add(b"X-Extra: 1")),
    Variation("extra-8bit-header", add(b"X-\xff: \xfe\xfd", first=True)),
    Variation("extra-line-without-colon", add(b"no colon here")),
    Variation("extra-didset", add(b"DidSet: local")),
    LongLine("extra-long-header", add(b"X-Extra: " + b"x" * 9000, first=True), "long-line"),
    Variation("extra-empty-spam-header", add(b"Spam:", first=True)),
    Variation("spam-twice-same", header(b"Spam:", lambda line: line + b"\r\n" + line)),
    Variation(
        "spam-twice-last-wins", header(b"Spam:", lambda line: b"Spam: False ; 9.0 / 5.0\r\n" + line)
    ),
    Variation("spam-malformed-before", header(b"Spam:", lambda line: b"Spam: garbage\r\n" + line)),
    Variation("spam-malformed-after", header(b"Spam:", lambda line: line + b"\r\nSpam: garbage")),
    Variation(
        "length-twice", length(lambda n: b"Content-length: %d\r\nContent-length: %d" % (n, n))
    ),
    Variation("length-garbage", length(lambda n: b"Content-length: x")),
    Variation(
        "length-letters-after", length(lambda n: b"Content-length: %dabc" % n), known="after-number"
    ),
    Variation(
        "headers-reversed",
        lambda r: Reply(r.status, r.headers[::-1], r.body).encode() if r.headers else None,
    ),
    # protocol versions
    Variation("version-1.0", status(lambda s: re.sub(rb"/\S+", b"/1.0", s, count=1))),
    Variation("version-1.5", status(lambda s: re.sub(rb"/\S+", b"/1.5", s, count=1))),
    Variation("version-2.0", status(lambda s: re.sub(rb"/\S+", b"/2.0", s, count=1))),
    Variation("version-0.9", status(lambda s: re.sub(rb"/\S+", b"/0.9", s, count=1))),
    Variation("version-word", status(lambda s: re.sub(rb"/\S+", b"/one", s, count=1))),
    # Content-length against the body
    Variation("length-plus-one", length(lambda n: b"Content-length: %d" % (n + 1))),
    Variation("length-minus-one", length(lambda n: b"Content-length: %d" % (n - 1))),
    Variation("length-zero", length(lambda n: b"Content-length: 0")),
    Variation("length-huge", length(lambda n: b"Content-length: 999999999")),
    Variation("body-extra-bytes", body(lambda b: b + b"junk")),
    Variation("body-missing", body(lambda b: b"")),
    # every EX_* status: alone, as spamd sends it, and followed by the headers
    *(Variation(f"status-only-{code}", status_only(code)) for code in (0, 1, *range(64, 80), 99)),
    *(
        Variation(f"ex-{code}-with-headers", with_code(code), "ex-with-headers", SCANS)
        for code in range(64, 80)
    ),
    # PING's message
    Variation(
        "ping-message-ex-ok",
        status(lambda s: s.replace(b"PONG", b"EX_OK")),
        known="ping-not-pong",
        known_for=frozenset({"PING"}),
    ),
)
# PING has no message to spamc: a PING reply without PONG is answered either way.
PING_KNOWN = {"status-no-message", "status-more-words", "status-only-0"}


@dataclass(frozen=True)
class Case:
    name: str
    command: str
    reply: bytes
    known: str | None  # they must differ, as this KNOWN row says
    may_differ: str | None = None  # they may differ, only as this KNOWN row says


def variation_cases(fixture: str, reply: bytes, variations: tuple[Variation, ...]) -> list[Case]:
    command = fixture_command(fixture)
    cases = []
    for variation in variations:
        raw = variation.transform(Reply.parse(reply))
        if raw is None or raw == reply:
            continue  # not applicable to this reply
        known = variation.known_difference(command, reply)
        if command == "PING" and variation.name in PING_KNOWN:
            known = "ping-not-pong"
        # spamd's own REPORT_IFSPAM spam reply says Yes: where a variation keeps that, spamc
        # still reads it as ham.
        maybe = "yes-flag" if b"\r\nSpam: Yes " in reply else None
        cases.append(Case(f"{fixture}:{variation.name}", command, raw, known, maybe))
    return cases


def all_cases() -> tuple[list[Case], list[Case], list[Case]]:
    """(real replies, variations, truncations) for this run."""
    fixtures = load_fixtures()
    rng = random.Random(SEED)
    real = [
        Case(name, fixture_command(name), raw, "yes-flag" if name == "REPORT_IFSPAM-spam" else None)
        for name, raw in fixtures.items()
    ]
    every = [c for name, raw in fixtures.items() for c in variation_cases(name, raw, VARIATIONS)]
    cuts = [
        Case(f"{name}:cut-at-{at}", fixture_command(name), raw[:at], None)
        for name, raw in fixtures.items()
        for at in range(len(raw))
    ]
    if FULL:
        return real, every, cuts
    one = [c for c in every if c.name.startswith("REPORT-spam:")]
    sample = rng.sample([c for c in every if c not in one], 40)
    return real, one + sample, rng.sample(cuts, 40)


REAL, VARIED, CUT = all_cases()


async def judge(case: Case) -> None:
    spamc, ours = await both_readings(case.reply, case.command)
    assert not ours.detail.startswith("NOT A BAD RESPONSE"), ours.detail
    shown = f"{case.command} reply {case.reply[:300]!r}\n spamc: {spamc}\n spambridge: {ours}"
    if case.known is None:
        if case.may_differ is not None and not spamc.same_as(ours):
            answer, row = KNOWN[case.may_differ]
            assert (spamc.kind, ours.kind) == ("ham", answer), f"not as {row!r}: {shown}"
            return
        assert spamc.same_as(ours), f"spamc and spambridge disagree on {shown}"
        return
    answer, row = KNOWN[case.known]
    assert not spamc.same_as(ours), f"documented difference {row!r} no longer differs: {shown}"
    if answer == "read":
        assert ours.kind in ("spam", "ham"), f"spambridge should read it ({row}): {shown}"
        return
    assert ours.kind == (answer or spamc.kind), (
        f"spambridge should answer {answer} ({row}): {shown}"
    )


@pytest.mark.parametrize("case", REAL, ids=[c.name for c in REAL])
async def test_spamc_differential_real_replies(case: Case) -> None:
    await judge(case)


@pytest.mark.parametrize("case", VARIED, ids=[c.name for c in VARIED])
async def test_spamc_differential_variations(case: Case) -> None:
    await judge(case)


@pytest.mark.parametrize("case", CUT, ids=[c.name for c in CUT])
async def test_spamc_differential_truncated_replies(case: Case) -> None:
    spamc, ours = await both_readings(case.reply, case.command)
    assert spamc.kind == ours.kind == "failure", f"{case.name}: spamc {spamc}, spambridge {ours}"
    assert not ours.detail.startswith("NOT A BAD RESPONSE"), ours.detail


@pytest.mark.parametrize(
    ("fixture", "variation"), [("REPORT-spam", "lf"), ("CHECK-ham", "status-two-spaces")]
)
async def test_spamc_differential_public_scan_command(fixture: str, variation: str) -> None:
    """`spambridge scan`, what an admin runs, reads the two forms the issue found refused."""
    (case,) = [
        c
        for c in variation_cases(fixture, load_fixtures()[fixture], VARIATIONS)
        if c.name == f"{fixture}:{variation}"
    ]
    async with ScriptedSpamd(case.reply) as spamd:
        spamc = await spamc_reading(spamd.port, case.command)
        scan = await scan_command_reading(spamd.port, case.command)
    assert spamc.kind != "failure" and spamc.same_as(scan), f"spamc {spamc}, scan {scan}"


def test_spamc_differential_known_rows_are_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    for key, (_, row) in KNOWN.items():
        assert f"| `{key}` | {row} |" in text, f"README lacks the row for {key}"


def test_spamc_differential_fixtures_match_a_live_spamd(tmp_path: Path) -> None:
    """The committed replies are what spamd answers today; the real ones agree too."""
    if shutil.which("spamd") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("spamd is not installed under CI")
        pytest.skip("spamd is not installed (scripts/install-deps.sh installs it)")
    import asyncio

    from tools import stack
    from tools.stack.messages import gtube_message, ham_message

    spamd = stack.start_spamd(tmp_path, children=1)
    try:
        live = capture_replies(spamd.port, ham_message(), gtube_message())
    finally:
        spamd.stop()
    fixtures = load_fixtures()
    assert sorted(live) == sorted(fixtures), f"refresh {FIXTURES}"
    for name, reply in live.items():
        assert masked(reply) == masked(fixtures[name]), f"{name}: spamd answers differently now"
        known = "yes-flag" if name == "REPORT_IFSPAM-spam" else None
        asyncio.run(judge(Case(name, fixture_command(name), reply, known)))
