"""Pigeonhole's own `sieve-test`: where a Sieve script files a message (Dovecot's judge).

`sieve-test` needs a Dovecot configuration: a minimal one is written next to each run, with
the spamtest settings under test appended. Run as root, Dovecot refuses mail access for
uid 0, so the run drops to `nobody`; the directory is made writable for the compiled script.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SIEVE_TEST = "sieve-test"
_STORE = re.compile(r"store message in folder: (\S+)")


def require_sieve_test() -> str:
    """The sieve-test binary; skip without it (fail under CI=true, where it must run)."""
    path = shutil.which(SIEVE_TEST)
    if path is None:
        reason = "sieve-test (Debian dovecot-sieve) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def folders(script: Path, message: bytes, workdir: Path, settings: str = "") -> set[str]:
    """The folders `sieve-test` stores `message` into under `script` (INBOX when only the
    implicit keep applies), with `settings` (Dovecot configuration text) in force.
    `workdir` must be reachable by `nobody` (as tools.stack.make_workdir's are)."""
    binary = require_sieve_test()
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o777)
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    group = "nogroup" if os.geteuid() == 0 else str(os.getegid())
    (workdir / "mail").mkdir(exist_ok=True)
    (workdir / "mail").chmod(0o777)
    config = workdir / "dovecot.conf"
    config.write_text(
        f"mail_location = maildir:{workdir / 'mail'}\n"
        f"mail_uid = {user}\nmail_gid = {group}\n" + settings
    )
    mail = workdir / "message.eml"
    mail.write_bytes(message)
    copy = workdir / script.name
    shutil.copyfile(script, copy)
    for path in (config, mail, copy):
        path.chmod(0o644)
    done = subprocess.run(
        [binary, "-c", str(config), str(copy), str(mail)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "HOME": str(workdir)},
        check=False,
    )
    assert done.returncode == 0, f"sieve-test failed:\n{done.stdout}\n{done.stderr}"
    return set(_STORE.findall(done.stdout))
