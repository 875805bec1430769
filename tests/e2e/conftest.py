"""Fixtures for the end-to-end tests: real spamd, Sendmail, Postfix and spambridge.

Missing binaries skip these tests on a developer machine, but FAIL them under CI=true: the CI
image is supposed to have the whole stack, and a silent skip would hide a broken pipeline.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e import (
    BridgeFactory,
    PostfixFactory,
    SendmailFactory,
    require_stack,
    stack_unavailable,
)
from tools import stack
from tools.stack import Mta, Spambridge, Spamd


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
    require_stack("spamd", "spamc")
    daemon = stack.start_spamd(stack_dir / "spamd")
    yield daemon
    daemon.stop()


@pytest.fixture
def start_bridge(workdir: Path) -> Iterator[BridgeFactory]:
    """Start spambridge with extra arguments; every one started is stopped at teardown."""
    require_stack()
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
    require_stack("sendmail-mta", "m4", "unshare")
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
        stack_unavailable(f"cannot get the Postfix package: {error}")
        raise


@pytest.fixture
def start_postfix(workdir: Path, postfix_root: Path) -> Iterator[PostfixFactory]:
    """Start Postfix with a milter socket (Postfix syntax) or None; stopped at teardown."""
    require_stack("script")
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
