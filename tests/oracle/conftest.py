"""Fixtures for the differential suite: the real milter-spamc 1.17.1 beside spambridge.

The oracle is built from ../shared/oracle (next to the repository root) by its build.sh, which
installs its build packages when missing. Without that directory the suite is skipped with the
reason; under CI=true it fails instead, so a broken pipeline cannot pass silently.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import milter_spamc
from tests.support.spamd_recorder import SpamdRecorder
from tools import stack
from tools.stack import Daemon, Spambridge, Spamd

# One map for every access case: each kind of entry, keyed by the case's client or address.
# Keys in lower case, as makemap writes them (libsnert looks keys up in lower case).
ACCESS_MAP = """\
connect:192.0.2.1\tOK
connect:192.0.2.2\tRELAY
from:friend@example.org\tOK
from:enemy@example.org\tREJECT
from:error@example.org\tERROR:"550 5.7.1 go away"
from:discard@example.org\tDISCARD
spam:pal@example.com\tFRIEND
to:relayed.example\tRELAY
spam:foe@example.com\tHATER
from:skip@example.org\tSKIP
"""


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the oracle is unavailable: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def oracle_binary() -> Path:
    try:
        return milter_spamc.build()
    except milter_spamc.Unavailable as reason:
        _unavailable(str(reason))
    except RuntimeError as error:
        pytest.fail(str(error))
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def oracle_help(oracle_binary: Path) -> str:
    """milter-spamc's +help output: every option and default, in option-file syntax."""
    result = subprocess.run(
        [str(oracle_binary), "+help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 64, result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def oracle_workdir() -> Iterator[Path]:
    path = stack.make_workdir("spambridge-oracle-")
    yield path


@pytest.fixture(scope="session")
def spamd(oracle_workdir: Path) -> Iterator[Spamd]:
    if missing := stack.require_binaries(["spamd", "spamc"]):
        _unavailable(f"missing {missing}")
    daemon = stack.start_spamd(oracle_workdir / "spamd", children=2)
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def proxy(spamd: Spamd) -> Iterator[SpamdRecorder]:
    recorder = SpamdRecorder(spamd.port)
    yield recorder
    recorder.close()


@dataclass
class Pair:
    """milter-spamc and spambridge started on the same option file."""

    oracle_port: int
    bridge_port: int
    oracle: Daemon
    bridge: Spambridge


PairFactory = Callable[[str], Pair]


@pytest.fixture(scope="session")
def milter_pair(
    oracle_binary: Path, oracle_workdir: Path, proxy: SpamdRecorder, oracle_help: str
) -> Iterator[PairFactory]:
    """start(option text) -> both milters on that option file; one pair per distinct text."""
    pairs: dict[str, Pair] = {}
    started = itertools.count()  # a failed start must not reuse its directory

    def start(options: str) -> Pair:
        if options in pairs:
            return pairs[options]
        workdir = oracle_workdir / f"pair-{next(started)}"
        workdir.mkdir()
        workdir.chmod(0o777)
        option_file = workdir / "milter-spamc.cf"
        access = oracle_workdir / "access"
        access.write_text(ACCESS_MAP)
        access.chmod(0o644)
        text = options.replace("@SPAMD@", proxy.address.replace(":", ","))
        text = text.replace("@HELP@", oracle_help).replace("@ACCESS@", f"access-db=text!{access}")
        option_file.write_text(text)
        option_file.chmod(0o644)
        oracle, oracle_port = milter_spamc.start(oracle_binary, option_file, workdir)
        try:
            bridge = stack.start_spambridge(
                [
                    f"file={option_file}",
                    "-daemon",
                    "run-user=",
                    "run-group=",
                    f"work-dir={workdir}",
                    f"pid-file={workdir}/spambridge.pid",
                    "log=stderr",
                ],
                workdir,
                legacy_syntax=True,
            )
        except Exception:
            oracle.stop()
            raise
        pairs[options] = Pair(oracle_port, bridge.port, oracle, bridge)
        return pairs[options]

    yield start
    for pair in pairs.values():
        pair.oracle.stop()
        pair.bridge.stop()
