"""A private real spamd on a loopback port (no user configs, local tests only; no Bayes
unless asked for, TLS when given certificates)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.stack.processes import Daemon, await_ready, free_port, spawn


@dataclass(frozen=True)
class SpamdTlsFiles:
    """spamd --ssl with its certificate and key. With `client_ca`, --ssl-verify: spamd asks
    for a client certificate signed by that CA. `ca` (spamd's own CA), `client_cert` and
    `client_key` are what spamc presents to check that spamd is up."""

    cert: Path
    key: Path
    ca: Path
    client_ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def spamd_args(self) -> list[str]:
        args = ["--ssl", "--server-cert", str(self.cert), "--server-key", str(self.key)]
        if self.client_ca is not None:
            args += ["--ssl-verify", "--ssl-ca-file", str(self.client_ca)]
        return args

    def spamc_args(self) -> list[str]:
        args = ["--ssl", "--ssl-ca-file", str(self.ca)]
        if self.client_cert is not None and self.client_key is not None:
            args += ["--ssl-cert", str(self.client_cert), "--ssl-key", str(self.client_key)]
        return args


@dataclass
class Spamd(Daemon):
    port: int = 0
    tls: SpamdTlsFiles | None = None
    bayes_path: Path | None = None  # sa-learn --dbpath: the Bayes database spamd learns into

    @property
    def address(self) -> str:
        """The spamd-socket value for spambridge."""
        return f"{'ssl:' if self.tls else ''}127.0.0.1:{self.port}"

    def spamc_args(self) -> list[str]:
        """spamc's options that reach this spamd."""
        tls = self.tls.spamc_args() if self.tls else []
        return ["-d", "127.0.0.1", "-p", str(self.port), *tls]

    def ping(self) -> bool:
        if self.tls is not None:
            # spamc -K does not use TLS (4.0.1 sends its PING in the clear, refused): a
            # check of an empty message answers 0 or 1 once spamd is up, 74 before.
            checked = subprocess.run(
                ["spamc", *self.spamc_args(), "-x", "-c"],
                input=b"\r\n",
                capture_output=True,
                timeout=10,
                check=False,
            )
            return checked.returncode in (0, 1)
        result = subprocess.run(
            ["spamc", *self.spamc_args(), "-K"],
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
    tls: SpamdTlsFiles | None = None,
    bayes: bool = False,
    local_only: bool = True,
) -> Spamd:
    """A private spamd: loopback only, local tests only (-L) unless `local_only` is False
    (network tests on: give it a `--cf=dns_server ...` in `extra_args`), no user configs
    (`extra_args`, e.g. --virtual-config-dir, are added to its command line). No Bayes, unless
    `bayes`: then --allow-tell and a fresh Bayes database in `workdir`/bayes, learned into at
    once (no journal) and never automatically. `tls`: spamd --ssl (and --ssl-verify)."""
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
        f"--cf=use_bayes {int(bayes)}",
        "--cf=bayes_auto_learn 0",
        "-r",
        str(workdir / "spamd.pid"),
        "-s",
        str(workdir / "spamd.log"),
        *extra_args,
    ]
    bayes_dir = workdir / "bayes"
    if bayes:
        bayes_dir.mkdir(exist_ok=True)
        argv += ["--allow-tell", f"--cf=bayes_path {bayes_dir / 'bayes'}"]
        argv += ["--cf=bayes_learn_to_journal 0"]
    if tls is not None:
        argv += tls.spamd_args()
    if os.geteuid() == 0:
        user = "debian-spamd" if _user_exists("debian-spamd") else "nobody"
        entry = pwd.getpwnam(user)
        for owned in (home, bayes_dir) if bayes else (home,):
            os.chown(owned, entry.pw_uid, entry.pw_gid)
        argv[1:1] = ["-u", user]
    spamd = spawn(argv, workdir / "spamd.out")
    result = Spamd(
        spamd.proc,
        workdir / "spamd.log",
        port=port,
        tls=tls,
        bayes_path=bayes_dir / "bayes" if bayes else None,
    )
    await_ready(result, "spamd", result.ping, timeout, "spamd to answer spamc -K")
    return result


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
