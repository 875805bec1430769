"""Start real spamd, Sendmail, Postfix and spambridge on loopback, for e2e tests and benches.

Every daemon listens on 127.0.0.1 only, lives in its own process group and is stopped by its
PID. Sendmail and Postfix deliver every accepted message to one file per recipient in
``workdir/delivered`` (raw bytes), so a test can inspect exactly what was delivered.

The milter lines of both MTAs come from the project's shipped snippets in ``sendmail/``, with
only the socket substituted, so the shipped files are exercised by every e2e run.

``workdir`` and its parents must be traversable by unprivileged users (spamd, Postfix and the
delivery pipe drop privileges); :func:`make_workdir` makes such a directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SNIPPET_DIR = REPO_ROOT / "sendmail"
SENDMAIL_SNIPPET = SNIPPET_DIR / "spambridge.mc"
SENDMAIL_SNIPPET_FAILCLOSED = SNIPPET_DIR / "spambridge-failclosed.mc"
POSTFIX_SNIPPET = SNIPPET_DIR / "postfix-main.cf"
POSTFIX_SNIPPET_FAILCLOSED = SNIPPET_DIR / "postfix-main-failclosed.cf"
# The socket written in the shipped snippets; tests replace it with their own.
SENDMAIL_SNIPPET_SOCKET = "local:/run/spambridge/spambridge.sock"
POSTFIX_SNIPPET_SOCKET = "unix:/run/spambridge/spambridge.sock"

POSTFIX_CACHE_DIR = Path(os.environ.get("SPAMBRIDGE_POSTFIX_CACHE", REPO_ROOT / "var" / "cache"))
SENDMAIL_CF_M4 = Path("/usr/share/sendmail/cf/m4/cf.m4")

MAIL_DOMAIN = "example.test"
MTA_HOSTNAME = "mx.example.test"

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# Delivery agent for both MTAs: write stdin atomically to a new file in the directory $1.
DELIVER_SCRIPT = """#!/bin/sh
set -e
name="$(date +%s%N).$$"
cat > "$1/.$name.tmp"
printf '%s\n' "$2" > "$1/$name.rcpt"
mv "$1/.$name.tmp" "$1/$name.eml"
"""


class StackError(RuntimeError):
    """A daemon of the test stack could not be started or misbehaved."""


def require_binaries(names: Sequence[str]) -> list[str]:
    """Return the names in ``names`` that are not on PATH (or /usr/sbin)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return [name for name in names if shutil.which(name, path=path) is None]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_workdir(prefix: str = "spambridge-stack-") -> Path:
    """A fresh directory that unprivileged daemons can traverse (0755 under the temp dir)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def describe_logs(*daemons: Daemon, limit: int = 3000) -> str:
    """The tails of the daemons' logs, for assertion messages."""
    return "\n".join(f"--- {d.log_path}\n{_tail(d.log_path, limit)}" for d in daemons)


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_bytes()[-limit:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


@dataclass
class Daemon:
    """A daemon in its own process group, stopped by its PID."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, needle: str, timeout: float = 10.0) -> str:
        """The log once it holds ``needle``. spambridge logs a message's verdict line just
        after it has sent the MTA its reply, so the SMTP client can see the reply first."""
        wait_until(lambda: needle in self.log_text(), timeout, f"{needle!r} in {self.log_path}")
        return self.log_text()

    def stop(self, timeout: float = 15.0) -> None:
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout)
        # Children that outlive their parent (forked SMTP sessions, spamd children).
        self._signal_group(signal.SIGKILL)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        self.proc.wait(15.0)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)


def _spawn(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> Daemon:
    log = log_path.open("ab")
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    finally:
        log.close()
    return Daemon(proc, log_path)


# --------------------------------------------------------------------------------------- spamd


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
    workdir: Path, *, children: int = 3, timeout: float = 30.0, extra_args: Sequence[str] = ()
) -> Spamd:
    """A private spamd: loopback only, local tests only (-L), no Bayes, no user configs
    (`extra_args`, e.g. --virtual-config-dir, are added to its command line)."""
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
        "-L",
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
    spamd = _spawn(argv, workdir / "spamd.out")
    result = Spamd(spamd.proc, workdir / "spamd.log", port=port)
    _await_ready(result, "spamd", result.ping, timeout, "spamd to answer spamc -K")
    return result


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _alive_or_raise(process: Daemon, name: str) -> bool:
    if not process.running():
        raise StackError(
            f"{name} exited with status {process.proc.returncode}:\n{_tail(process.log_path)}"
        )
    return True


def _await_ready(
    process: Daemon, name: str, ready: Callable[[], bool], timeout: float, what: str
) -> None:
    """Wait until `ready()` while the process lives; stop it if it never gets there."""
    try:
        wait_until(lambda: _alive_or_raise(process, name) and ready(), timeout, what)
    except Exception:
        process.stop()
        raise


@dataclass
class FakeSpamdProcess(Daemon):
    """tests.support.fake_spamd run as a process (for faults real spamd cannot produce)."""

    address: str = ""


def start_fake_spamd(
    workdir: Path, *, fault: str | None = None, delay: float = 0.0, timeout: float = 15.0
) -> FakeSpamdProcess:
    """The fake spamd on a free loopback port; ``address`` is its spamd-socket value."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "tests.support.fake_spamd", "--port", "0"]
    if fault is not None:
        argv += ["--fault", fault, "--delay", str(delay)]
    log_path = workdir / f"fake-spamd-{uuid.uuid4().hex[:8]}.log"
    process = _spawn(argv, log_path, _python_env())
    fake = FakeSpamdProcess(process.proc, log_path)

    def announced() -> bool:
        first = fake.log_text().split("\n", 1)
        if len(first) < 2 or not first[0]:
            return False
        fake.address = first[0].strip()
        return True

    _await_ready(fake, "fake spamd", announced, timeout, "the fake spamd to print its address")
    return fake


def _python_env() -> dict[str, str]:
    """The environment for a Python child that must import this repository's packages."""
    path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


# ------------------------------------------------------------------------------------ MTAs


@dataclass
class Mta(Daemon):
    """A running MTA that delivers into ``delivered_dir``."""

    port: int = 0
    delivered_dir: Path = field(default_factory=Path)

    def delivered(self) -> list[bytes]:
        """Every message delivered so far, oldest first, as raw bytes."""
        files = sorted(self.delivered_dir.glob("*.eml"))
        return [path.read_bytes() for path in files]

    def deliveries(self) -> list[tuple[str, bytes]]:
        """(recipient, message) for every delivery so far, oldest first (Sendmail only)."""
        out = []
        for path in sorted(self.delivered_dir.glob("*.eml")):
            rcpt = path.with_suffix(".rcpt")
            name = rcpt.read_text().strip() if rcpt.exists() else ""
            out.append((name, path.read_bytes()))
        return out

    def wait_delivered(self, count: int, timeout: float = 30.0) -> list[bytes]:
        wait_until(
            lambda: len(list(self.delivered_dir.glob("*.eml"))) >= count,
            timeout,
            f"{count} delivered message(s) in {self.delivered_dir}",
        )
        return self.delivered()

    def clear_delivered(self) -> None:
        for path in [*self.delivered_dir.glob("*.eml"), *self.delivered_dir.glob("*.rcpt")]:
            path.unlink()


def _write_deliver_script(workdir: Path) -> tuple[Path, Path]:
    script = workdir / "deliver.sh"
    script.write_text(DELIVER_SCRIPT)
    script.chmod(0o755)
    delivered = workdir / "delivered"
    delivered.mkdir(exist_ok=True)
    delivered.chmod(0o1777)
    return script, delivered


def _replace_socket(text: str, placeholder: str, socket_spec: str, source: Path) -> str:
    if placeholder not in text:
        raise StackError(f"{source} no longer contains the socket {placeholder!r}")
    return text.replace(placeholder, socket_spec)


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
    text = _replace_socket(snippet.read_text(), SENDMAIL_SNIPPET_SOCKET, milter_socket, snippet)
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


def _sendmail_mc(workdir: Path, port: int, deliver: Path, delivered: Path, milter: str) -> str:
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
MAILER(`local')dnl
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
) -> Mta:
    """Sendmail 8 in the foreground on a free loopback port, in a private mount namespace.

    ``milter_socket`` is in Sendmail syntax (``inet:PORT@127.0.0.1``); ``None`` runs without
    a milter. ``flags``/``timeouts`` override the snippet's F= and T= fields.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    deliver, delivered = _write_deliver_script(workdir)
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
    mc.write_text(_sendmail_mc(workdir, port, deliver, delivered, milter))
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
    mta = Mta(_spawn(argv, workdir / "sendmail.log").proc, workdir / "sendmail.log")
    mta.port = port
    mta.delivered_dir = delivered
    _await_ready(mta, "sendmail", lambda: _smtp_greets(port), timeout, "sendmail to greet")
    return mta


def _smtp_greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.settimeout(5.0)
            greeting = sock.recv(512)
            with contextlib.suppress(OSError):
                sock.sendall(b"QUIT\r\n")
            return greeting.startswith(b"220")
    except OSError:
        return False


# ---------------------------------------------------------------------------------- Postfix


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
    deliver, delivered = _write_deliver_script(workdir)
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
        milter = _replace_socket(
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
        _spawn([postfix, "-c", str(conf), "start-fg"], workdir / "postfix.out", env).proc,
        maillog,
        master_pid_file=queue / "pid" / "master.pid",
    )
    mta.port = port
    mta.delivered_dir = delivered
    _await_ready(mta, "postfix", lambda: _smtp_greets(port), timeout, "postfix to greet")
    return mta


# -------------------------------------------------------------------------------- spambridge


@dataclass
class Spambridge(Daemon):
    port: int = 0

    @property
    def sendmail_socket(self) -> str:
        """The socket in Sendmail's (and spambridge's) syntax."""
        return f"inet:{self.port}@127.0.0.1"

    @property
    def postfix_socket(self) -> str:
        return f"inet:127.0.0.1:{self.port}"


def start_spambridge(
    args: Sequence[str],
    workdir: Path,
    *,
    legacy_syntax: bool = False,
    timeout: float = 20.0,
    port: int | None = None,
) -> Spambridge:
    """``python -m spambridge ARGS`` listening on a free loopback port.

    The milter socket is added to ``args`` as ``--milter-socket X`` (or ``milter-socket=X``
    with ``legacy_syntax``). stderr goes to a log file read by :meth:`Spambridge.log_text`.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    spec = f"inet:{port}@127.0.0.1"
    socket_args = [f"milter-socket={spec}"] if legacy_syntax else ["--milter-socket", spec]
    log_path = workdir / f"spambridge-{port}.log"
    argv = [sys.executable, "-m", "spambridge", *socket_args, *args]
    process = _spawn(argv, log_path, _python_env())
    bridge = Spambridge(process.proc, log_path, port=port)
    _await_ready(bridge, "spambridge", lambda: port_accepts(port), timeout, "spambridge to listen")
    return bridge


@dataclass
class SpamassMilter(Daemon):
    """spamass-milter (the C++ peer), for side-by-side runs; one spamc child per message."""

    port: int = 0

    @property
    def sendmail_socket(self) -> str:
        return f"inet:{self.port}@127.0.0.1"

    @property
    def postfix_socket(self) -> str:
        return f"inet:127.0.0.1:{self.port}"


def start_spamass_milter(
    workdir: Path,
    spamd_port: int,
    *,
    args: Sequence[str] = ("-m",),
    spamc_args: Sequence[str] = (),
    timeout: float = 20.0,
) -> SpamassMilter:
    """spamass-milter in the foreground on a free loopback port, scanning with spamd at
    ``spamd_port``. No ``-i``: Debian's default ``-i 127.0.0.1`` would skip every local test
    client. ``-m`` (the default here) leaves the body and Subject alone."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = ["spamass-milter", "-p", f"inet:{port}@127.0.0.1", *args]
    argv += ["--", "-d", "127.0.0.1", "-p", str(spamd_port), *spamc_args]
    process = _spawn(argv, workdir / f"spamass-milter-{port}.log")
    milter = SpamassMilter(process.proc, process.log_path, port=port)
    _await_ready(milter, "spamass-milter", lambda: port_accepts(port), timeout, "it to listen")
    return milter


# ------------------------------------------------------------------------------------- SMTP


def send_smtp(
    port: int,
    sender: str,
    rcpts: Sequence[str],
    message: bytes,
    *,
    timeout: float = 120.0,
) -> tuple[int, str]:
    """Send one message over SMTP; return the final reply (code, text) of the transaction."""
    with smtplib.SMTP(
        "127.0.0.1", port, local_hostname="client.example.org", timeout=timeout
    ) as smtp:
        smtp.ehlo()
        code, text = smtp.mail(sender)
        if code != 250:
            return code, text.decode("utf-8", "replace")
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt)
            if code not in (250, 251):
                return code, text.decode("utf-8", "replace")
        try:
            code, text = smtp.data(message)
        except smtplib.SMTPResponseException as error:  # includes SMTPDataError
            return error.smtp_code, _reply_text(error.smtp_error)
        return code, text.decode("utf-8", "replace")


def _reply_text(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


# --------------------------------------------------------------------------------- messages


def _message_id() -> str:
    return f"<{uuid.uuid4().hex}@client.example.org>"


HAM_BODY = (
    "Hi Bob,\r\n"
    "\r\n"
    "Thanks for the notes from Tuesday. I went through the budget sheet again and the\r\n"
    "numbers for the second quarter look right to me now that the travel costs are in the\r\n"
    "right column. Could you send the final version to Carol before Friday so she can\r\n"
    "prepare the summary for the board meeting?\r\n"
    "\r\n"
    "A few smaller points:\r\n"
    "\r\n"
    " - the meeting room on the third floor is booked from 10 to 12;\r\n"
    " - Dave will join by phone, his number is in the calendar entry;\r\n"
    " - lunch is at the usual place around the corner.\r\n"
    "\r\n"
    "I also looked at the proposal from the printing company. Their price is a little\r\n"
    "higher than last year, but they can deliver a week earlier, which matters more to us\r\n"
    "this time. If you agree, I will sign the order on Monday.\r\n"
    "\r\n"
    "The garden project at the office is moving along as well. The new benches arrived\r\n"
    "yesterday and the team from facilities will put them up next week, weather\r\n"
    "permitting. Emma asked whether we could add a few more plants near the entrance; I\r\n"
    "told her to collect some ideas and we can talk about it at the next meeting.\r\n"
    "\r\n"
    "Let me know if anything is missing.\r\n"
    "\r\n"
    "Best regards,\r\n"
    "Alice\r\n"
    "\r\n"
    "--\r\n"
    "Alice Example, Finance\r\n"
    "Example Organisation, 1 Main Street, Springfield\r\n"
)


def ham_message(*, extra_headers: bytes = b"", subject: str = "Budget notes") -> bytes:
    """A plain, realistic ham message (~2 KB, CRLF line ends, unique Message-ID)."""
    headers = (
        "From: Alice Example <alice@example.org>\r\n"
        "To: Bob Example <bob@example.test>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        f"Message-ID: {_message_id()}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
    ).encode()
    return headers + extra_headers + b"\r\n" + HAM_BODY.encode()


def gtube_message() -> bytes:
    """SpamAssassin's GTUBE test message: always scores 1000."""
    headers = (
        "From: Spammer <spammer@example.org>\r\n"
        "To: Bob Example <bob@example.test>\r\n"
        "Subject: Test spam mail (GTUBE)\r\n"
        f"Date: {formatdate(usegmt=True)}\r\n"
        f"Message-ID: {_message_id()}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
    ).encode()
    body = (
        b"This is the GTUBE, the\r\n"
        b"\tGeneric\r\n"
        b"\tTest for\r\n"
        b"\tUnsolicited\r\n"
        b"\tBulk\r\n"
        b"\tEmail\r\n"
        b"\r\n" + GTUBE + b"\r\n"
    )
    return headers + b"\r\n" + body


def awkward_message() -> bytes:
    """Ham with a folded header, an 8-bit header value, trailing blanks and long lines."""
    long_header = b"X-Long-Header: " + b" ".join(b"word%03d" % i for i in range(60))
    headers = (
        b"From: Alice Example <alice@example.org>\r\n"
        b"To: Bob Example <bob@example.test>\r\n"
        b"Subject: A folded subject line that goes on for a while\r\n"
        b"\tand continues on a second line  \r\n"
        b"  and a third one\r\n"
        b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"
        b"Message-ID: " + _message_id().encode() + b"\r\n"
        b"X-Eight-Bit: caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9e\r\n"
        b"X-Trailing: value with trailing blanks \t \r\n"
        b"X-Tight:no-space-after-colon\r\n" + long_header + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
    )
    body = (
        b"First line with trailing blanks   \r\n"
        b"\r\n"
        b"Caf\xc3\xa9 au lait, na\xc3\xafve r\xc3\xa9sum\xc3\xa9.\r\n"
        + b"long " * 180
        + b"end\r\n"
        + b".a line that starts with a dot\r\n"
        + b"\ttab-indented line\t\r\n"
        + b"\r\n"
        + b"last line\r\n"
    )
    return headers + b"\r\n" + body


# ------------------------------------------------------------------------- message parsing


def split_message(raw: bytes) -> tuple[list[bytes], bytes]:
    """Split raw bytes into header fields (each with its continuation lines and line end)
    and the body (everything after the blank line)."""
    normalised = raw
    separator = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    head, _, body = normalised.partition(separator)
    eol = separator[: len(separator) // 2]
    fields: list[bytes] = []
    for line in (head + eol).splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields, body


def field_name(header_field: bytes) -> bytes:
    return header_field.split(b":", 1)[0].strip().lower()


def header_values(raw: bytes, name: bytes) -> list[bytes]:
    """The values (unfolded, stripped) of every header called ``name``."""
    fields, _ = split_message(raw)
    values = []
    for item in fields:
        if field_name(item) == name.lower():
            value = item.split(b":", 1)[1]
            values.append(re.sub(rb"\r?\n([ \t])", rb"\1", value).strip())
    return values
