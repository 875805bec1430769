"""Sendmail 8 in the foreground on a loopback port, in a private mount namespace, with the
shipped .mc snippet's milter line.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
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
from tools.stack.processes import StackError, await_ready, free_port, spawn

SENDMAIL_SNIPPET = SNIPPET_DIR / "spambridge.mc"
SENDMAIL_SNIPPET_FAILCLOSED = SNIPPET_DIR / "spambridge-failclosed.mc"
# The socket written in the shipped snippets; tests replace it with their own.
SENDMAIL_SNIPPET_SOCKET = "local:/run/spambridge/spambridge.sock"
SENDMAIL_CF_M4 = Path("/usr/share/sendmail/cf/m4/cf.m4")


def sendmail_milter_lines(
    snippet: Path,
    milter_socket: str,
    *,
    flags: str | None = None,
    timeouts: str | None = None,
) -> str:
    """The shipped .mc snippet with the socket (and optionally F=/T=) replaced.

    ``flags=""`` removes F= (fail-open); F= and T= are edited on the INPUT_MAIL_FILTER line only.
    """
    text = replace_socket(snippet.read_text(), SENDMAIL_SNIPPET_SOCKET, milter_socket, snippet)
    lines = text.splitlines(keepends=True)
    filters = [i for i, line in enumerate(lines) if line.startswith("INPUT_MAIL_FILTER(")]
    if len(filters) != 1:
        raise StackError(f"{snippet} must hold exactly one INPUT_MAIL_FILTER line")
    line = lines[filters[0]]
    if flags is not None:
        line = re.sub(r", F=[^,']*", "", line)
        if flags:
            line = line.replace(f"S={milter_socket}", f"S={milter_socket}, F={flags}")
    if timeouts is not None:
        line, count = re.subn(r"\bT=[^,']*", f"T={timeouts}", line)
        if count != 1:
            raise StackError(f"{snippet} has no T= field to override")
    lines[filters[0]] = line
    return "".join(lines)


def _sendmail_mc(
    workdir: Path, port: int, deliver: Path, delivered: Path, milter: str, extra: str = ""
) -> str:
    w = str(workdir)
    return f"""divert(-1)
include(`{SENDMAIL_CF_M4}')
divert(0)dnl
VERSIONID(`spambridge e2e')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{MTA_HOSTNAME}')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`confSERVICE_SWITCH_FILE', `{w}/service.switch')dnl
define(`QUEUE_DIR', `{w}/queue')dnl
define(`MSP_QUEUE_DIR', `{w}/queue')dnl
define(`STATUS_FILE', `{w}/statistics')dnl
define(`HELP_FILE', `{w}/helpfile')dnl
define(`ALIAS_FILE', `{w}/aliases')dnl
define(`confPID_FILE', `{w}/sendmail.pid')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl
define(`confTO_IDENT', `0')dnl
define(`confQUEUE_LA', `1000')dnl
define(`confREFUSE_LA', `1000')dnl
define(`confDELAY_LA', `0')dnl
define(`confMAX_DAEMON_CHILDREN', `0')dnl
define(`confCONNECTION_RATE_THROTTLE', `0')dnl
define(`confDELIVERY_MODE', `interactive')dnl
define(`confPRIVACY_FLAGS', `authwarnings')dnl
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA, Port={port}, Addr=127.0.0.1')dnl
{milter}
{extra}MAILER(`local')dnl
LOCAL_CONFIG
Cw{MAIL_DOMAIN} {MTA_HOSTNAME} localhost
MAILER_DEFINITIONS
Mspambridgetest, P={deliver}, F=lsn8DFMS, E=\\r\\n, L=0, A=deliver.sh {delivered} $u
LOCAL_RULE_0
R$*\t$#spambridgetest $: $1
"""


def _write_name_service_files(workdir: Path) -> dict[str, Path]:
    hosts = workdir / "hosts"
    hosts.write_text(
        f"127.0.0.1 {MTA_HOSTNAME} mx localhost\n"
        f"127.0.0.1 {socket.gethostname()}.{MAIL_DOMAIN} {socket.gethostname()}\n"
        "::1 localhost ip6-localhost\n"
    )
    resolv = workdir / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    nsswitch = workdir / "nsswitch.conf"
    nsswitch.write_text("passwd: files\ngroup: files\nshadow: files\nhosts: files\n")
    return {"/etc/hosts": hosts, "/etc/resolv.conf": resolv, "/etc/nsswitch.conf": nsswitch}


def start_sendmail(
    workdir: Path,
    milter_socket: str | None,
    snippet: Path = SENDMAIL_SNIPPET,
    *,
    flags: str | None = None,
    timeouts: str | None = None,
    timeout: float = 30.0,
    extra_mc: str = "",
) -> Mta:
    """Sendmail 8 in the foreground on a free loopback port, in a private mount namespace.

    ``milter_socket`` is in Sendmail syntax (``inet:PORT@127.0.0.1``); ``None`` runs without
    a milter. ``flags``/``timeouts`` override the snippet's F= and T= fields; ``extra_mc``
    (whole .mc lines) goes after the milter lines (STARTTLS certificates, for example).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    deliver, delivered = write_deliver_script(workdir)
    queue = workdir / "queue"
    queue.mkdir(mode=0o700, exist_ok=True)
    (workdir / "statistics").touch()
    (workdir / "helpfile").touch()
    (workdir / "aliases").write_text("")
    (workdir / "service.switch").write_text("hosts files\naliases files\n")
    port = free_port()
    milter = ""
    if milter_socket is not None:
        milter = sendmail_milter_lines(snippet, milter_socket, flags=flags, timeouts=timeouts)
    mc = workdir / "sendmail.mc"
    mc.write_text(_sendmail_mc(workdir, port, deliver, delivered, milter, extra_mc))
    cf = workdir / "sendmail.cf"
    with cf.open("wb") as out:
        subprocess.run(["m4", str(mc)], stdout=out, check=True, timeout=30)
    mounts = _write_name_service_files(workdir)
    binds = " && ".join(f"mount --bind {src} {dst}" for dst, src in mounts.items())
    sendmail_bin = shutil.which("sendmail-mta", path="/usr/sbin:/usr/lib/sbin") or "sendmail-mta"
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        f'{binds} && exec "$0" -C "$1" -bD -O LogLevel=9',
        sendmail_bin,
        str(cf),
    ]
    mta = Mta(spawn(argv, workdir / "sendmail.log").proc, workdir / "sendmail.log")
    mta.port = port
    mta.delivered_dir = delivered
    await_ready(mta, "sendmail", lambda: smtp_greets(port), timeout, "sendmail to greet")
    return mta
