"""What the end-to-end tests share besides fixtures: the envelope, the spambridge arguments,
the verdict patterns, and the checks on a delivered message."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable

import pytest

from tools import stack
from tools.stack import Daemon, Mta, Spambridge, field_name, split_message

SENDER = "alice@example.org"
RCPT = "bob@example.test"
BRIDGE_ARGS = ["--log", "stderr", "--verbose", "info"]
# Headers Sendmail (with the test mailer: no Return-Path, no From_ line) and spambridge add.
ADDED_BY_STACK = {
    b"received",
    b"x-spam-flag",
    b"x-spam-status",
    b"x-spam-level",
    b"x-spam-report",
    b"x-scanned-by",
}
STATUS_NO = re.compile(rb"NO, hits=-?\d+\.\d\d required=5\.00")
REJECT_TEXT = re.compile(r"5\.7\.1 message was identified as junk mail, score \d{3,4}\.\d\d/5\.00")
STATUS_YES = re.compile(rb"YES, hits=\d+\.\d\d required=5\.00")


def added_fields(sent: bytes, delivered: bytes) -> list[bytes]:
    """Assert ``delivered`` is ``sent`` plus headers added by the stack; return those."""
    sent_fields, sent_body = split_message(sent)
    got_fields, got_body = split_message(delivered)
    assert not [f for f in sent_fields if field_name(f) in ADDED_BY_STACK]
    kept = [f for f in got_fields if field_name(f) not in ADDED_BY_STACK]
    assert kept == sent_fields, "original header fields changed, reordered or dropped"
    assert got_body == sent_body, "body changed"
    return [f for f in got_fields if field_name(f) in ADDED_BY_STACK]


def deliver_one(mta: Mta, message: bytes, *daemons: Daemon) -> bytes:
    """Send ``message`` from SENDER to RCPT through ``mta``; assert it is accepted (250,
    else the logs of ``daemons`` and the MTA) and return it as delivered."""
    code, text = stack.send_smtp(mta.port, SENDER, [RCPT], message)
    assert code == 250, f"{text}\n{stack.describe_logs(*daemons, mta)}"
    (delivered,) = mta.wait_delivered(1)
    return delivered


SendmailFactory = Callable[..., Mta]
PostfixFactory = Callable[..., Mta]
BridgeFactory = Callable[..., Spambridge]


def stack_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"e2e stack incomplete under CI: {reason}")
    pytest.skip(reason)


def require_stack(*binaries: str) -> None:
    missing = stack.require_binaries(binaries)
    if missing:
        stack_unavailable(f"missing binaries: {', '.join(missing)}")
    if importlib.util.find_spec("spambridge.cli") is None:
        stack_unavailable("spambridge.cli is not importable yet")
    if os.geteuid() != 0:
        stack_unavailable("the real mail stack needs root (mount namespace, privilege drops)")
