"""`spambridge learn` against a real spamd with Bayes on (--allow-tell, a private database),
judged by spamc -L on the same messages and by sa-learn --dump on the database itself."""

from __future__ import annotations

import contextlib
import io
import random
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from spambridge.cli import main
from tests.support.e2e import require_stack
from tools import stack
from tools.stack import Spamd, describe_logs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

LEARNED = "Message successfully un/learned"
ALREADY = "Message was already un/learned"


@pytest.fixture(scope="module")
def bayes_spamd(stack_dir: Path) -> Iterator[Spamd]:
    require_stack("spamd", "spamc", "sa-learn")
    daemon = stack.start_spamd(stack_dir / "spamd-bayes", children=2, bayes=True)
    yield daemon
    daemon.stop()


def message(tmp_path: Path, name: str) -> Path:
    """A message of words no other test (or run) uses, so its tokens are its own."""
    rng = random.Random()
    words = [
        "".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(4))
        for _ in range(60)
    ]
    lines = [" ".join(words[i : i + 10]) for i in range(0, len(words), 10)]
    path = tmp_path / f"{name}.eml"
    path.write_text(
        f"From: someone@example.org\nTo: bob@example.test\nSubject: {words[0]} {words[1]}\n"
        f"Message-ID: <{name}.{rng.getrandbits(64):x}@example.org>\n\n" + "\n".join(lines) + "\n"
    )
    return path


def learn(spamd: Spamd | str, how: str, path: Path, *options: str) -> tuple[int, str]:
    """`spambridge learn --how FILE` (spamd: the running one, or a spamd-socket value): its
    exit status and what it printed."""
    address = spamd if isinstance(spamd, str) else spamd.address
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        status = main(
            ["file=", f"spamd-socket={address}", *options, "learn", f"--{how}", str(path)]
        )
    return status, printed.getvalue().strip()


def spamc_learn(spamd: Spamd | list[str], how: str, path: Path) -> tuple[int, str]:
    """`spamc -L how < FILE` (spamd: the running one, or spamc's options that reach it)."""
    where = spamd if isinstance(spamd, list) else spamd.spamc_args()
    result = subprocess.run(
        ["spamc", *where, "-L", how],
        input=path.read_bytes(), capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout.decode().strip()


def bayes_state(spamd: Spamd) -> tuple[dict[str, int], set[tuple[str, str, str]]]:
    """sa-learn --dump all: the counts (nspam, nham, ntokens) and every token with its spam
    and ham counts (access times left out: they say when, not what, was learned)."""
    assert spamd.bayes_path is not None
    if not list(spamd.bayes_path.parent.glob("bayes_toks*")):
        return {}, set()  # nothing learned yet: sa-learn would fail to open the database
    dump = subprocess.run(
        ["sa-learn", "--dbpath", str(spamd.bayes_path), "--dump", "all"],
        capture_output=True, timeout=120, check=True,
    ).stdout.decode()  # fmt: skip
    counts: dict[str, int] = {}
    tokens: set[tuple[str, str, str]] = set()
    for line in dump.splitlines():
        fields = line.split()
        found = re.search(r"non-token data: (\w+)$", line)
        if found and found[1] in ("nspam", "nham", "ntokens"):
            counts[found[1]] = int(fields[2])
        elif len(fields) == 5 and "non-token" not in line:
            tokens.add((fields[4], fields[1], fields[2]))
    return counts, tokens


def test_learn_changes_bayes_as_spamc_does(bayes_spamd: Spamd, tmp_path: Path) -> None:
    """--spam and --ham add what spamc -L adds, token for token; --forget takes it out again
    (spamc then learns the messages anew, which it would not if they were still there)."""
    spam, ham = message(tmp_path, "spam"), message(tmp_path, "ham")
    before, _ = bayes_state(bayes_spamd)

    assert learn(bayes_spamd, "spam", spam) == (0, LEARNED)
    assert learn(bayes_spamd, "ham", ham) == (0, LEARNED)
    ours, our_tokens = bayes_state(bayes_spamd)
    assert ours["nspam"] == before.get("nspam", 0) + 1, describe_logs(bayes_spamd)
    assert ours["nham"] == before.get("nham", 0) + 1
    assert ours["ntokens"] > before.get("ntokens", 0)

    assert learn(bayes_spamd, "forget", spam) == (0, LEARNED)
    assert learn(bayes_spamd, "forget", ham) == (0, LEARNED)
    assert spamc_learn(bayes_spamd, "spam", spam) == (0, LEARNED)
    assert spamc_learn(bayes_spamd, "ham", ham) == (0, LEARNED)
    spamcs, spamc_tokens = bayes_state(bayes_spamd)
    assert spamcs == ours
    assert spamc_tokens == our_tokens

    assert learn(bayes_spamd, "forget", spam) == (0, LEARNED)  # and spamc's learning, too
    assert learn(bayes_spamd, "forget", ham) == (0, LEARNED)


def test_learn_twice_says_already_learned_as_spamc(bayes_spamd: Spamd, tmp_path: Path) -> None:
    path = message(tmp_path, "twice")
    assert learn(bayes_spamd, "spam", path) == (0, LEARNED)
    assert learn(bayes_spamd, "spam", path) == (0, ALREADY)
    assert spamc_learn(bayes_spamd, "spam", path) == (0, ALREADY)
    assert learn(bayes_spamd, "ham", path) == (0, LEARNED)  # spam turned ham: a change
    assert learn(bayes_spamd, "forget", path) == (0, LEARNED)
    assert learn(bayes_spamd, "forget", path) == (0, ALREADY)
    assert spamc_learn(bayes_spamd, "forget", path) == (0, ALREADY)


def test_learn_uses_the_scan_spamd_user(bayes_spamd: Spamd, tmp_path: Path) -> None:
    """spamd logs whom it learned for: the recipient's local part under
    spamd-user-from=local-part, spamd-user without a recipient."""
    path = message(tmp_path, "user")
    by_recipient = ["spamd-user-from=local-part", "--recipient", "carol@example.test"]
    assert learn(bayes_spamd, "spam", path, *by_recipient) == (0, LEARNED)
    assert learn(bayes_spamd, "forget", path, "spamd-user=trainer") == (0, LEARNED)
    log = bayes_spamd.log_path.read_text()
    assert re.search(r"Tell: Setting local for carol:", log), describe_logs(bayes_spamd)
    assert re.search(r"Tell: Removing local for trainer:", log), describe_logs(bayes_spamd)


def test_learn_spamd_down_exits_69_as_spamc(tmp_path: Path) -> None:
    require_stack("spamc")
    path = message(tmp_path, "down")
    with socket.socket() as reserved:  # a port with nothing listening: refused
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        spamc = ["-d", "127.0.0.1", "-p", str(port), "--connect-retries", "1"]
        assert spamc_learn(spamc, "spam", path)[0] == 69
        status, out = learn(f"127.0.0.1:{port}", "spam", path)
    assert status == 69, out
    assert "unavailable" in out


def test_learn_without_allow_tell_exits_with_spamds_code(spamd: Spamd, tmp_path: Path) -> None:
    """The session spamd has no --allow-tell: it answers `SPAMD/1.0 69 Service Unavailable:
    TELL commands are not enabled` and closes. spambridge exits with that 69 and says why;
    spamc 4.0.1 exits 74 (EX_IOERR): it fails reading the headers after that status line."""
    path = message(tmp_path, "notell")
    assert spamc_learn(spamd, "spam", path)[0] == 74
    status, out = learn(spamd, "spam", path)
    assert status == 69, out
    assert "TELL commands are not enabled" in out


def test_learn_request_is_spamcs_on_the_wire(tmp_path: Path) -> None:
    """What spamc -L and spambridge learn send to the same listener is the same, byte for
    byte, for each kind (spamc told the user spambridge gets from spamd-user)."""
    require_stack("spamc")
    path = message(tmp_path, "wire")
    for how in ("spam", "ham", "forget"):
        spamc = ["spamc", "-p", "{port}", "-u", "trainer", "-L", how]
        spamc_request = captured(spamc, path.read_bytes())
        ours = captured(
            [sys.executable, "-m", "spambridge", "file=", "spamd-user=trainer",
             "spamd-socket=127.0.0.1:{port}", "learn", f"--{how}", str(path)]
        )  # fmt: skip
        assert ours == spamc_request
        assert ours.startswith(b"TELL SPAMC/1.5\r\n")


def captured(command: list[str], stdin: bytes = b"") -> bytes:
    """The request `command` sends to a listener that answers `DidSet: local` ({port} in
    `command` is its port)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(30)
        port = listener.getsockname()[1]
        got: list[bytes] = []

        def serve() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(30)
                data = b""
                while chunk := connection.recv(65536):
                    data += chunk
                got.append(data)
                connection.sendall(b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n")

        thread = threading.Thread(target=serve)
        thread.start()
        argv = [arg.replace("{port}", str(port)) for arg in command]
        subprocess.run(argv, input=stdin, capture_output=True, timeout=60, check=False)
        thread.join(30)
    return got[0]
