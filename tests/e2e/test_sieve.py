"""The README's Sieve rules ("Filtering in the mailbox"), judged by Pigeonhole's own
`sieve-test` on messages spambridge really tagged: GTUBE and a ham message through Postfix,
spambridge and a real spamd, with each header style the rules claim to support."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.e2e import BRIDGE_ARGS, BridgeFactory, PostfixFactory, deliver_one
from tests.support.sieve import folders, require_sieve_test
from tools.stack import Spamd, gtube_message, ham_message, header_values

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
SIEVE = Path(__file__).resolve().parents[2] / "deploy" / "sieve"

# style: its options, the flag rules that must work with it, the spamtest settings
STYLES = {
    "milter-spamc": ((), ("junk.sieve",), ("spamtest-milter-spamc.conf",)),
    "spamassassin": (
        ("--spamd-command", "HEADERS"),
        ("junk.sieve",),
        ("spamtest-spamassassin.conf",),
    ),
    "rspamd": (
        ("--subject-tag", "*** SPAM *** %s"),
        ("junk.sieve", "junk-rspamd.sieve"),
        ("spamtest-rspamd.conf",),
    ),
}
# the header each style's spam carries, so a rule is judged on the style it names
FLAG = {"milter-spamc": b"X-Spam-Flag", "spamassassin": b"X-Spam-Flag", "rspamd": b"X-Spam"}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_sieve_rules_file_spambridge_spam_into_junk(
    style: str,
    spamd: Spamd,
    start_bridge: BridgeFactory,
    start_postfix: PostfixFactory,
    workdir: Path,  # traversable by `nobody`, whom sieve-test runs as under root
) -> None:
    require_sieve_test()
    options, scripts, settings = STYLES[style]
    bridge = start_bridge(
        [
            *("--spamd-socket", spamd.address),
            *("--header-style", style, *options),
            "--score-header",
            *("--extra-reject", "2000"),  # GTUBE delivered and tagged, not rejected
            *BRIDGE_ARGS,
        ]
    )
    mta = start_postfix(bridge.postfix_socket)
    spam = deliver_one(mta, gtube_message(), bridge)
    mta.clear_delivered()
    ham = deliver_one(mta, ham_message(), bridge)
    assert header_values(spam, FLAG[style]) and not header_values(ham, FLAG[style])
    assert len(header_values(spam, b"X-Spam-Score")) == 1

    def judged(script: str, message: bytes, conf: str = "") -> set[str]:
        text = (SIEVE / conf).read_text() if conf else ""
        name = f"{script}-{conf}-{'spam' if message is spam else 'ham'}"
        return folders(SIEVE / script, message, workdir / "sieve" / name, text)

    for script in scripts:
        assert judged(script, spam) == {"Junk"}, script
        assert judged(script, ham) == {"INBOX"}, script
    for conf in (*settings, "spamtest-score-header.conf"):
        assert judged("junk-spamtest.sieve", spam, conf) == {"Junk"}, conf
        assert judged("junk-spamtest.sieve", ham, conf) == {"INBOX"}, conf
