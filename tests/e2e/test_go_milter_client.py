"""A third MTA-side milter implementation: emersion/go-milter's client (Go, Debian's
golang-github-emersion-go-milter-dev), neither Sendmail's, Postfix's nor ours, drives
spambridge and the real milter-spamc 1.17.1 with the same SMTP scripts in front of the same
real spamd. spambridge must deliver ham (with its headers) and reject spam exactly as
milter-spamc does; with spamd dead both deliver unscanned (milter-spamc has no other choice),
and spambridge tempfails when spamd-error-action=tempfail asks it to. One difference is
documented (README): milter-spamc lets a client of the unix family through unfiltered.

The client offers what Sendmail 8.17 offers, every no-reply step included. The driver
(tests/e2e/gomilter/main.go) is built offline with Debian's Go.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import go_milter
from tests.support.oracle import build_oracle, start_oracle
from tools import stack
from tools.stack import GTUBE, Daemon, Spamd

pytestmark = [pytest.mark.e2e, pytest.mark.oracle, pytest.mark.timeout(600)]

# Sendmail 8.17's offer: version 6 (the library's), every action, every protocol flag, so
# every no-reply step is on offer. (With the library's default offer, no protocol flag,
# libmilter closes the connection at negotiation: milter-spamc cannot be run behind it.)
SENDMAIL_OFFER = {"actions": 0x1FF, "protocol": 0x1FFFFF}
NO_REPLY_FLAGS = 0xFF080  # SMFIP_NR_HDR and SMFIP_NR_CONN .. SMFIP_NR_BODY

# Both milters read the same option file (milter-spamc's syntax): reject what spamd calls
# spam, with the plain reply (the detailed one differs on purpose: README, scores >= 1000).
OPTIONS = "spamd-socket=@SPAMD@\naccess-db=\nextra-reject=0\n-smtp-detailed-reply\n"
# spamd refuses: nothing listens on the discard port
DEAD = OPTIONS.replace("@SPAMD@", "127.0.0.1,9")

HAM_BODY = (
    "Hello Bob,\r\n\r\nthe budget notes for next week are attached below. Please read them\r\n"
    "before the meeting on Tuesday and send me your questions.\r\n\r\nThanks,\r\nAlice\r\n"
)
SPAM_BODY = "This is the GTUBE test message.\r\n\r\n" + GTUBE.decode() + "\r\n"


def message(
    body: str, *, rcpts: tuple[str, ...] = ("bob@example.com",), chunk: int = 0
) -> dict[str, Any]:
    subject = " Buy now" if body == SPAM_BODY else " Budget notes"
    return {
        "sender": "alice@example.org",
        "rcpts": list(rcpts),
        "headers": [
            ["From", " Alice <alice@example.org>"],
            ["To", " Bob <bob@example.com>"],
            ["Date", " Fri, 04 Dec 2026 10:00:00 +0000"],
            ["Message-ID", " <go-1@example.org>"],
            ["Subject", subject],
        ],
        "body": body,
        "chunk": chunk,
        "macros": {
            "M": ["i", "4AQGO12345", "{mail_mailer}", "esmtp", "{mail_addr}", "alice@example.org"],
            "R": ["{rcpt_mailer}", "esmtp", "{rcpt_host}", "example.com"],
        },
    }


def connection(
    messages: list[dict[str, Any]], family: str = "4", address: str = "192.0.2.25"
) -> dict[str, Any]:
    return {
        "hostname": "mail.example.org",
        "family": family,
        "port": 25 if family in "46" else 0,
        "address": address,
        "helo": "mail.example.org",
        "macros": {
            "C": ["j", "mx.example.test", "{if_name}", "mx.example.test", "{if_addr}", "127.0.0.1"],
        },
        "messages": messages,
    }


HAM, SPAM = message(HAM_BODY), message(SPAM_BODY)
TWO_RCPTS = ("bob@example.com", "carol@example.com")
# The sessions; what the MTA must end up doing with each message, in order.
SESSIONS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "ham": (connection([HAM]), ["ham"]),
    "spam": (connection([SPAM]), ["spam"]),
    "ham-inet6": (connection([HAM], "6", "2001:db8::25"), ["ham"]),
    "spam-inet6": (connection([SPAM], "6", "2001:db8::25"), ["spam"]),
    # 25-byte chunks: milter-spamc drops the last byte of chunks under 20 (README)
    "ham-small-chunks": (connection([message(HAM_BODY, chunk=25)]), ["ham"]),
    "spam-small-chunks": (connection([message(SPAM_BODY, chunk=25)]), ["spam"]),
    "ham-two-rcpts": (connection([message(HAM_BODY, rcpts=TWO_RCPTS)]), ["ham"]),
    "spam-two-rcpts": (connection([message(SPAM_BODY, rcpts=TWO_RCPTS)]), ["spam"]),
    "two-messages": (connection([HAM, SPAM]), ["ham", "spam"]),
}
# A client on a unix socket: milter-spamc accepts the connection unfiltered (its filterOpen
# takes only inet and inet6), spambridge scans it (README: "clients of other families").
UNIX = {
    "ham-unix": (connection([HAM], "L", "/var/run/client.sock"), ["ham"]),
    "spam-unix": (connection([SPAM], "L", "/var/run/client.sock"), ["spam"]),
}


def outcome(result: dict[str, Any]) -> list[str]:
    """What the MTA does with each message of one connection: 'ham' (delivered with an
    X-Spam-Status NO header), 'unscanned' (delivered without a verdict), 'spam' (a 5xx),
    'tempfail', 'accepted at connect' (the whole connection unfiltered), or what else."""
    (conn,) = result["connections"]
    if conn.get("error") and not conn["messages"]:
        return [f"error before the first message: {conn['error']}"]
    if conn["steps"] == ["connect accept"]:
        return ["accepted at connect"]
    out = []
    for msg in conn["messages"]:
        final = msg["final"]
        names = {e["name"].lower() for e in msg["edits"] if e["kind"] == "addheader"}
        status = [e["value"] for e in msg["edits"] if e.get("name") == "X-Spam-Status"]
        if final in ("continue", "accept") and not names & {"x-spam-status", "x-spam-flag"}:
            out.append("unscanned")
        elif final in ("continue", "accept") and status and status[0].strip().startswith("NO"):
            out.append("ham")
        elif final == "reject" or final.startswith("reply 5"):
            out.append("spam")
        elif final == "tempfail" or final.startswith("reply 4"):
            out.append("tempfail")
        else:
            out.append(f"{final}: {msg['steps']} {conn.get('error', '')}")
    return out


def ham_header_names(result: dict[str, Any]) -> list[list[str]]:
    """The names of the headers added to each delivered message (a refused message's edits
    are dropped by the MTA: milter-spamc sends them, spambridge not, tests/oracle)."""
    (conn,) = result["connections"]
    return [
        sorted(e["name"] for e in m["edits"] if e["kind"] == "addheader")
        for m in conn["messages"]
        if m["final"] in ("continue", "accept")
    ]


@dataclass
class Milters:
    oracle: int
    bridge: int


@pytest.fixture(scope="module")
def driver() -> Path:
    try:
        return go_milter.build()
    except go_milter.Unavailable as reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the Go milter client is unavailable: {reason}")
        pytest.skip(str(reason))
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def oracle_binary() -> Path:
    return build_oracle()


@pytest.fixture(scope="module")
def start_pair(
    oracle_binary: Path, spamd: Spamd, stack_dir: Path
) -> Iterator[Callable[[str], Milters]]:
    """start(option text) -> milter-spamc and spambridge on the same option file (@SPAMD@:
    the real spamd); stopped when the module ends."""
    if os.geteuid() != 0:
        pytest.skip("milter-spamc drops privileges to nobody: needs root")
    daemons: list[Daemon] = []
    pairs: dict[str, Milters] = {}

    def start(options: str) -> Milters:
        if options in pairs:
            return pairs[options]
        workdir = stack_dir / f"go-milter-{len(pairs)}"
        workdir.mkdir()
        workdir.chmod(0o777)
        option_file = workdir / "milter-spamc.cf"
        option_file.write_text(options.replace("@SPAMD@", f"127.0.0.1,{spamd.port}"))
        option_file.chmod(0o644)
        oracle, oracle_port = start_oracle(oracle_binary, option_file, workdir)
        daemons.append(oracle)
        bridge = stack.start_spambridge(
            [f"file={option_file}", "-daemon", "run-user=", "run-group=", "log=stderr"],
            workdir,
            legacy_syntax=True,
        )
        daemons.append(bridge)
        pairs[options] = Milters(oracle_port, bridge.port)
        return pairs[options]

    yield start
    for daemon in daemons:
        daemon.stop()


def drive(driver: Path, port: int, conn: dict[str, Any]) -> dict[str, Any]:
    """One connection through the Go client with Sendmail 8.17's offer."""
    script = {"network": "tcp", "address": f"127.0.0.1:{port}", "timeout_ms": 20_000}
    return go_milter.run(driver, {**script, **SENDMAIL_OFFER, "connections": [conn]})


def test_go_milter_client_sessions_end_as_through_milter_spamc(
    driver: Path, start_pair: Callable[[str], Milters]
) -> None:
    milters = start_pair(OPTIONS)
    (conn,) = drive(driver, milters.bridge, SESSIONS["ham"][0])["connections"]
    assert conn["protocol"] & NO_REPLY_FLAGS, "by default spambridge asks for no-reply steps"
    wrong: dict[str, object] = {}
    for name, (conn, expected) in SESSIONS.items():
        oracle = drive(driver, milters.oracle, conn)
        bridge = drive(driver, milters.bridge, conn)
        seen = {"milter-spamc": outcome(oracle), "spambridge": outcome(bridge)}
        if seen["milter-spamc"] != expected or seen["spambridge"] != expected:
            wrong[name] = seen
        elif ham_header_names(oracle) != ham_header_names(bridge):
            wrong[name] = {
                "milter-spamc": ham_header_names(oracle),
                "spambridge": ham_header_names(bridge),
            }
    if wrong:
        pytest.fail(f"{len(wrong)}/{len(SESSIONS)} sessions wrong:\n{json.dumps(wrong, indent=1)}")


@pytest.mark.parametrize("name", sorted(UNIX))
def test_go_milter_client_unix_client_is_scanned_where_milter_spamc_lets_it_pass(
    driver: Path, start_pair: Callable[[str], Milters], name: str
) -> None:
    conn, expected = UNIX[name]
    milters = start_pair(OPTIONS)
    assert outcome(drive(driver, milters.oracle, conn)) == ["accepted at connect"]
    assert outcome(drive(driver, milters.bridge, conn)) == expected


def test_go_milter_client_dead_spamd_fails_open_as_milter_spamc_or_tempfails_when_asked(
    driver: Path, start_pair: Callable[[str], Milters]
) -> None:
    conn = connection([SPAM])
    milters = start_pair(DEAD)
    assert outcome(drive(driver, milters.oracle, conn)) == ["unscanned"]
    assert outcome(drive(driver, milters.bridge, conn)) == ["unscanned"]
    # spamd-error-action (spambridge's own; milter-spamc ignores an unknown option) fails closed
    closed = start_pair(DEAD + "spamd-error-action=tempfail\n")
    assert outcome(drive(driver, closed.bridge, conn)) == ["tempfail"]


def test_go_milter_client_sessions_end_the_same_with_every_step_answered(
    driver: Path, start_pair: Callable[[str], Milters]
) -> None:
    # -milter-no-reply: spambridge answers every step, as milter-spamc; the client reads each
    milters = start_pair(OPTIONS + "-milter-no-reply\n")
    (conn,) = drive(driver, milters.bridge, SESSIONS["ham"][0])["connections"]
    assert conn["protocol"] & NO_REPLY_FLAGS == 0
    seen = {
        name: outcome(drive(driver, milters.bridge, conn)) for name, (conn, _) in SESSIONS.items()
    }
    assert seen == {name: expected for name, (_, expected) in SESSIONS.items()}
