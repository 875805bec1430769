"""Fixtures for the end-to-end tests: real spamd, Sendmail, Postfix and spambridge.

Missing binaries skip these tests on a developer machine, but FAIL them under CI=true: the CI
image is supposed to have the whole stack, and a silent skip would hide a broken pipeline.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tools import stack
from tools.stack import Daemon, Mta, Spambridge, Spamd, field_name, split_message

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


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"e2e stack incomplete under CI: {reason}")
    pytest.skip(reason)


def _require(*binaries: str) -> None:
    missing = stack.require_binaries(binaries)
    if missing:
        _unavailable(f"missing binaries: {', '.join(missing)}")
    if importlib.util.find_spec("spambridge.cli") is None:
        _unavailable("spambridge.cli is not importable yet")
    if os.geteuid() != 0:
        _unavailable("the real mail stack needs root (mount namespace, privilege drops)")


@pytest.fixture(scope="session")
def stack_dir() -> Iterator[Path]:
    path = stack.make_workdir("spambridge-e2e-")
    yield path
    if os.environ.get("SPAMBRIDGE_KEEP_E2E") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def workdir(stack_dir: Path, request: pytest.FixtureRequest) -> Path:
    # Short: Postfix's unix sockets live below it and sun_path holds only 108 bytes.
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name).removeprefix("test_")[:24]
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=stack_dir))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def spamd(stack_dir: Path) -> Iterator[Spamd]:
    """One private spamd for the whole session: it takes seconds to start."""
    _require("spamd", "spamc")
    daemon = stack.start_spamd(stack_dir / "spamd")
    yield daemon
    daemon.stop()


@pytest.fixture
def start_bridge(workdir: Path) -> Iterator[BridgeFactory]:
    """Start spambridge with extra arguments; every one started is stopped at teardown."""
    _require()
    started: list[Spambridge] = []

    def start(args: list[str], *, legacy_syntax: bool = False) -> Spambridge:
        bridge = stack.start_spambridge(args, workdir, legacy_syntax=legacy_syntax)
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop()


@pytest.fixture
def start_sendmail(workdir: Path) -> Iterator[SendmailFactory]:
    """Start Sendmail with a milter socket (Sendmail syntax) or None; stopped at teardown."""
    _require("sendmail-mta", "m4", "unshare")
    started: list[Mta] = []

    def start(
        milter_socket: str | None,
        snippet: Path = stack.SENDMAIL_SNIPPET,
        *,
        flags: str | None = None,
        timeouts: str | None = None,
        extra_mc: str = "",
    ) -> Mta:
        mta = stack.start_sendmail(
            workdir / "sendmail",
            milter_socket,
            snippet,
            flags=flags,
            timeouts=timeouts,
            extra_mc=extra_mc,
        )
        started.append(mta)
        return mta

    yield start
    for mta in started:
        mta.stop()


@pytest.fixture(scope="session")
def postfix_root() -> Path:
    try:
        return stack.postfix_root()
    except Exception as error:  # download or unpack failed: no Postfix to test with
        _unavailable(f"cannot get the Postfix package: {error}")
        raise


@pytest.fixture
def start_postfix(workdir: Path, postfix_root: Path) -> Iterator[PostfixFactory]:
    """Start Postfix with a milter socket (Postfix syntax) or None; stopped at teardown."""
    _require("script")
    started: list[Mta] = []

    def start(
        milter_socket: str | None, snippet: Path = stack.POSTFIX_SNIPPET, *, extra_main_cf: str = ""
    ) -> Mta:
        mta = stack.start_postfix(
            workdir / "postfix", milter_socket, snippet, extra_main_cf=extra_main_cf
        )
        started.append(mta)
        return mta

    yield start
    for mta in started:
        mta.stop()
