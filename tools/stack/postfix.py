"""Postfix from its Debian package, unpacked (not installed: it conflicts with Sendmail) and
run in the foreground on a loopback port with the shipped main.cf milter snippet.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tools.stack.mta import (
    MAIL_DOMAIN,
    MTA_HOSTNAME,
    SNIPPET_DIR,
    Mta,
    replace_socket,
    smtp_greets,
    write_deliver_script,
)
from tools.stack.processes import REPO_ROOT, StackError, await_ready, free_port, spawn, wait_until

POSTFIX_SNIPPET = SNIPPET_DIR / "postfix-main.cf"
POSTFIX_SNIPPET_FAILCLOSED = SNIPPET_DIR / "postfix-main-failclosed.cf"
# The socket written in the shipped snippet; tests replace it with their own.
POSTFIX_SNIPPET_SOCKET = "unix:/run/spambridge/spambridge.sock"


POSTFIX_CACHE_DIR = Path(os.environ.get("SPAMBRIDGE_POSTFIX_CACHE", REPO_ROOT / "var" / "cache"))


@dataclass
class Postfix(Mta):
    """Postfix's master calls setsid(), so it is stopped through its own pid file."""

    master_pid_file: Path = field(default_factory=Path)

    def stop(self, timeout: float = 15.0) -> None:
        pid = self._master_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(StackError):
                wait_until(lambda: not _pid_alive(pid), timeout, "postfix master to exit")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        super().stop(timeout)

    def _master_pid(self) -> int | None:
        try:
            return int(self.master_pid_file.read_text().strip())
        except (OSError, ValueError):
            return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def postfix_deb(cache_dir: Path = POSTFIX_CACHE_DIR) -> Path:
    """The Postfix .deb, downloaded once into ``cache_dir`` with ``apt-get download``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(cache_dir.glob("postfix_*.deb"))
    if found:
        return found[-1]
    subprocess.run(
        ["apt-get", "download", "postfix"],
        cwd=cache_dir,
        check=True,
        capture_output=True,
        timeout=300,
    )
    found = sorted(cache_dir.glob("postfix_*.deb"))
    if not found:
        raise StackError(f"apt-get download postfix left no .deb in {cache_dir}")
    return found[-1]


def postfix_root(cache_dir: Path = POSTFIX_CACHE_DIR) -> Path:
    """Postfix unpacked (not installed: it conflicts with sendmail) under ``cache_dir``."""
    deb = postfix_deb(cache_dir)
    root = cache_dir / deb.name.removesuffix(".deb")
    if not (root / "usr/sbin/postfix").exists():
        tmp = Path(tempfile.mkdtemp(dir=cache_dir))
        subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True, timeout=120)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(root)
        tmp.rename(root)
    return root


POSTFIX_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def start_postfix(
    workdir: Path,
    milter_socket: str | None,
    main_cf_snippet: Path = POSTFIX_SNIPPET,
    *,
    extra_main_cf: str = "",
    timeout: float = 30.0,
) -> Postfix:
    """Postfix (unpacked .deb) in the foreground on a free loopback port.

    ``milter_socket`` is in Postfix syntax (``inet:127.0.0.1:PORT``); ``None`` runs without a
    milter. The milter settings come from ``main_cf_snippet``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    root = postfix_root()
    deliver, delivered = write_deliver_script(workdir)
    conf = workdir / "postfix"
    conf.mkdir(exist_ok=True)
    queue = workdir / "q"
    data = workdir / "postfix-data"
    for directory in (queue, data):
        directory.mkdir(exist_ok=True)
    owner = "mail"
    entry = pwd.getpwnam(owner)
    os.chown(data, entry.pw_uid, entry.pw_gid)
    maillog = workdir / "postfix.log"
    port = free_port()
    milter = ""
    if milter_socket is not None:
        snippet_text = main_cf_snippet.read_text()
        milter = replace_socket(
            snippet_text, POSTFIX_SNIPPET_SOCKET, milter_socket, main_cf_snippet
        )
    libdir = root / "usr/lib/postfix"
    main_cf = f"""\
compatibility_level = 3.6
myhostname = {MTA_HOSTNAME}
mydomain = {MAIL_DOMAIN}
myorigin = $mydomain
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
queue_directory = {queue}
data_directory = {data}
daemon_directory = {root}/usr/lib/postfix/sbin
command_directory = {root}/usr/sbin
meta_directory = {root}/etc/postfix
shlib_directory = {libdir}
mail_owner = {owner}
setgid_group = smmsp
default_privs = nobody
maillog_file = {maillog}
maillog_file_prefixes = /var, /dev/stdout, {workdir}
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH={libdir}
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtpd_client_restrictions =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject
local_recipient_maps =
local_header_rewrite_clients =
alias_maps =
alias_database =
biff = no
smtputf8_enable = no
default_transport = spambridgetest
local_transport = spambridgetest
relay_transport = spambridgetest
virtual_transport = spambridgetest
spambridgetest_destination_recipient_limit = 1
default_process_limit = 20
{milter}
"""
    (conf / "main.cf").write_text(main_cf + extra_main_cf)
    master_cf = (
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        + POSTFIX_SERVICES
        + "spambridgetest unix - n n - - pipe\n"
        + f"  user=nobody argv={deliver} {delivered}\n"
    )
    (conf / "master.cf").write_text(master_cf)
    env = dict(os.environ, LD_LIBRARY_PATH=str(libdir), MAIL_CONFIG=str(conf))
    postfix = str(root / "usr/sbin/postfix")
    # Postfix prints nothing when stderr is not a terminal; "script" gives it one.
    check = subprocess.run(
        ["script", "-qec", f"{postfix} -c {conf} check", "/dev/null"],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    if check.returncode != 0:
        raise StackError(f"postfix check failed: {check.stdout.decode(errors='replace')}")
    mta = Postfix(
        spawn([postfix, "-c", str(conf), "start-fg"], workdir / "postfix.out", env).proc,
        maillog,
        master_pid_file=queue / "pid" / "master.pid",
    )
    mta.port = port
    mta.delivered_dir = delivered
    await_ready(mta, "postfix", lambda: smtp_greets(port), timeout, "postfix to greet")
    return mta


# -------------------------------------------------------------------------------- spambridge
