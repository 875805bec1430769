"""The real-mail corpus (scripts/corpus.py, docs/corpus.md) through real Sendmail and real
Postfix with real spamd: spambridge beside the MTA's no-milter delivery and beside
spamass-milter.

For each MTA:
- every message is accepted and delivered exactly once;
- the delivery is the MTA's no-milter delivery of the same message, less forged
  X-Spam-Flag/Status/Level/Report, plus spambridge's X-Scanned-By and X-Spam-* at the end of
  the header, byte for byte (fields the MTA writes per delivery, such as its Received line,
  compared by name);
- verdict fidelity: the score and rules spambridge acted on equal spamd's own scan of the
  delivered message (with the Return-Path the local mailer writes, spambridge's headers
  taken out); every difference is attributed to a documented inherent cause by rescanning
  step by step (tests/support/corpus_run.py), any other difference fails;
- spamass-milter runs over the same messages; spambridge's score-identical count must be at
  least spamass-milter's.

The default suite runs a subset (every source, two messages of each feature: about 24).
The whole corpus: ``SPAMBRIDGE_CORPUS=full python -m pytest -p no:randomly -s
tests/e2e/test_corpus.py`` (5 to 7 minutes); the figures are printed and written to
var/corpus/results-<mta>.txt.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import corpus_run, fidelity
from tests.support.corpus_run import CORPUS_CACHE, CorpusMessage, Outcome, Tally
from tests.support.e2e import BRIDGE_ARGS
from tests.support.spamd_recorder import SpamdRecorder
from tools import stack
from tools.stack import Mta, Spamd, field_name, wait_until

FULL = os.environ.get("SPAMBRIDGE_CORPUS") == "full"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600 if FULL else 600)]

MAX_SIZE_KB = 2048  # above the largest corpus message, for both milters


@pytest.fixture(scope="module")
def corpus() -> list[CorpusMessage]:
    messages = corpus_run.load_corpus()
    return messages if FULL else corpus_run.subset(messages)


def test_corpus_doc_matches_the_corpus(corpus: list[CorpusMessage]) -> None:
    result = subprocess.run(
        [sys.executable, str(corpus_run.CORPUS_SCRIPT), "doc", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


StartMta = Callable[[Path, str | None], Mta]


@pytest.fixture(params=["sendmail", "postfix"])
def mta_kind(request: pytest.FixtureRequest) -> tuple[str, StartMta]:
    if request.param == "sendmail":
        request.getfixturevalue("start_sendmail")  # skips (or fails under CI) without it

        def sendmail(workdir: Path, milter: str | None) -> Mta:
            return stack.start_sendmail(workdir, milter)

        return "sendmail", sendmail
    request.getfixturevalue("postfix_root")

    def postfix(workdir: Path, milter: str | None) -> Mta:
        return stack.start_postfix(workdir, milter)

    return "postfix", postfix


@contextlib.contextmanager
def running(mta: Mta) -> Iterator[Mta]:
    try:
        yield mta
    finally:
        mta.stop()


def test_corpus_delivered_once_exact_and_scored_as_spamd_scores_the_delivery(
    mta_kind: tuple[str, StartMta],
    spamd: Spamd,
    workdir: Path,
    corpus: list[CorpusMessage],
) -> None:
    kind, start = mta_kind
    sendmail = kind == "sendmail"
    missing = stack.require_binaries(["spamass-milter", "spamc"])
    if missing and os.environ.get("CI") != "true":
        pytest.skip(f"missing binaries: {', '.join(missing)}")
    assert not missing, f"e2e stack incomplete under CI: missing {', '.join(missing)}"
    recorder = SpamdRecorder(spamd.port)
    tally = Tally(kind, total=len(corpus))
    try:
        with running(start(workdir / "plain", None)) as mta:
            plain = corpus_run.deliver_each(mta, corpus)

        args = ["--spamd-socket", recorder.address, "--spamd-max-size", str(MAX_SIZE_KB)]
        bridge = stack.start_spambridge([*args, "--subject-tag=", *BRIDGE_ARGS], workdir)
        try:
            socket = bridge.sendmail_socket if sendmail else bridge.postfix_socket
            with running(start(workdir / "bridge", socket)) as mta:
                for index, message in enumerate(corpus):
                    tally.bridge.append(
                        _bridge_one(mta, index, message, plain[index], recorder, spamd)
                    )
        finally:
            bridge.stop()

        samilter = stack.start_spamass_milter(
            workdir, spamd.port, spamc_args=("-s", str(MAX_SIZE_KB * 1024))
        )
        try:
            socket = samilter.sendmail_socket if sendmail else samilter.postfix_socket
            with running(start(workdir / "samilter", socket)) as mta:
                for delivered, message in zip(
                    corpus_run.deliver_each(mta, corpus), corpus, strict=True
                ):
                    tally.samilter.append(_samilter_one(message, delivered, spamd))
        finally:
            samilter.stop()
    finally:
        recorder.close()

    _report(tally)
    unexplained = [f"{o.name}: {o.unexplained}" for o in tally.bridge if o.unexplained]
    assert not unexplained, "\n".join(unexplained)
    bridge_identical = sum(o.score_identical for o in tally.bridge)
    samilter_identical = sum(o.score_identical for o in tally.samilter)
    assert bridge_identical >= samilter_identical, tally.line()


def _bridge_one(
    mta: Mta,
    index: int,
    message: CorpusMessage,
    plain: bytes,
    recorder: SpamdRecorder,
    spamd: Spamd,
) -> Outcome:
    code, text = stack.send_smtp(mta.port, corpus_run.SENDER, [corpus_run.RCPT], message.wire)
    assert code == 250, f"{message.name}: {code} {text}"
    delivered = mta.wait_delivered(index + 1, timeout=60)
    assert len(delivered) == index + 1, f"{message.name}: delivered {len(delivered)} times"
    filtered = delivered[-1]
    wait_until(lambda: recorder.finished() >= 1, 30, "the spamd exchange")
    exchanges = recorder.take()
    assert len(exchanges) == 1, f"{message.name}: {len(exchanges)} spamd requests"

    ours, without_ours = corpus_run.check_edits(
        message,
        plain,
        filtered,
        removed=corpus_run.BRIDGE_HEADERS,
        added=corpus_run.BRIDGE_ADDED,
    )
    names = [field_name(f) for f in ours]
    assert names.count(b"x-spam-status") == 1 and names.count(b"x-scanned-by") == 1, names

    judged = fidelity.with_return_path(corpus_run.SENDER, fidelity.wire(without_ours))
    direct = fidelity.direct_scan(spamd.port, judged)
    acted_on = fidelity.bridge_scan(filtered)
    assert acted_on is not None

    def rescan(variant: bytes) -> fidelity.Scan:
        return fidelity.direct_scan(spamd.port, variant)

    return corpus_run.attribute(message, plain, judged, exchanges[0], acted_on, direct, rescan)


def _samilter_one(message: CorpusMessage, delivered: bytes, spamd: Spamd) -> Outcome:
    acted_on = fidelity.samilter_scan(delivered)
    assert acted_on is not None, f"{message.name}: spamass-milter added no X-Spam-Status"
    judged = fidelity.with_return_path(
        corpus_run.SENDER,
        fidelity.wire(fidelity.without_fields(delivered, (), prefixes=(b"x-spam-",))),
    )
    return Outcome(message.name, acted_on, fidelity.direct_scan(spamd.port, judged))


def _report(tally: Tally) -> None:
    lines = [tally.line(), ""]
    for mine, theirs in zip(tally.bridge, tally.samilter, strict=True):
        if mine.identical and theirs.identical:
            continue
        lines.append(
            f"{mine.name}: direct {mine.direct.describe()}\n"
            f"  spambridge {mine.acted_on.describe()} causes={','.join(mine.causes) or '-'}"
            f"{' UNEXPLAINED: ' + mine.unexplained if mine.unexplained else ''}\n"
            f"  spamass-milter {theirs.acted_on.describe()} (direct {theirs.direct.describe()})"
        )
    text = "\n".join(lines) + "\n"
    scope = "full" if FULL else "subset"
    with contextlib.suppress(OSError):
        (CORPUS_CACHE / f"results-{tally.mta}-{scope}.txt").write_text(text)
    print("\n" + text)
