"""A private real spamd on a loopback port (no Bayes, no user configs, local tests only)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.stack.processes import Daemon, await_ready, free_port, spawn


@dataclass
class Spamd(Daemon):
    port: int = 0

    @property
    def address(self) -> str:
        """The spamd-socket value for spambridge."""
        return f"127.0.0.1:{self.port}"

    def ping(self) -> bool:
        result = subprocess.run(
            ["spamc", "-d", "127.0.0.1", "-p", str(self.port), "-K"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        # spamc 4 prints "SPAMD/1.5 0" for PONG; older ones print the PONG line.
        return result.returncode == 0 and b"SPAMD/" in result.stdout + result.stderr

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        home = self.log_path.parent / "spamd-home"
        # sa-update style key handling can leave an agent behind in our private home.
        if (home / ".gnupg").exists() and shutil.which("gpgconf"):
            subprocess.run(
                ["gpgconf", "--homedir", str(home / ".gnupg"), "--kill", "gpg-agent"],
                capture_output=True,
                timeout=10,
                check=False,
            )


def start_spamd(
    workdir: Path,
    *,
    children: int = 3,
    timeout: float = 30.0,
    extra_args: Sequence[str] = (),
    local_only: bool = True,
) -> Spamd:
    """A private spamd: loopback only, local tests only (-L) unless `local_only` is False
    (network tests on: give it a `--cf=dns_server ...` in `extra_args`), no Bayes, no user
    configs (`extra_args`, e.g. --virtual-config-dir, are added to its command line)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    home = workdir / "spamd-home"
    home.mkdir(exist_ok=True)
    port = free_port()
    argv = [
        "spamd",
        "-i",
        f"127.0.0.1:{port}",
        "-A",
        "127.0.0.1",
        *(["-L"] if local_only else []),
        "-x",
        "-H",
        str(home),
        "-m",
        str(children),
        f"--min-children={children}",
        "--cf=use_bayes 0",
        "--cf=bayes_auto_learn 0",
        "-r",
        str(workdir / "spamd.pid"),
        "-s",
        str(workdir / "spamd.log"),
        *extra_args,
    ]
    if os.geteuid() == 0:
        user = "debian-spamd" if _user_exists("debian-spamd") else "nobody"
        entry = pwd.getpwnam(user)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        argv[1:1] = ["-u", user]
    spamd = spawn(argv, workdir / "spamd.out")
    result = Spamd(spamd.proc, workdir / "spamd.log", port=port)
    await_ready(result, "spamd", result.ping, timeout, "spamd to answer spamc -K")
    return result


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
