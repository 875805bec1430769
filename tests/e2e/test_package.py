"""The packages as users meet them.

Debian: built from a clean export of the committed tree with Debian's own tools
(scripts/build-deb.sh), lintian-clean, installed with `apt-get install ./spambridge_*.deb`,
`spambridge check`, started through its SysV init script (these machines have no systemd as
PID 1) against a real spamd, one ham and one GTUBE message through a real Sendmail whose
milter line is the shipped snippet's, untouched, stopped, purged; then nothing it created is
left. The package is purged again at teardown whatever happened, so /usr/sbin/spambridge
never outlives the test (the other tests run `python -m spambridge` from the checkout).

pip: the wheel and sdist from `python -m build` pass `twine check` and put the man page and
the example files under the environment's share/.
"""

from __future__ import annotations

import fcntl
import grp
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import spambridge
from tests.support.e2e import (
    RCPT,
    SENDER,
    STATUS_NO,
    STATUS_YES,
    SendmailFactory,
    stack_unavailable,
)
from tools import stack
from tools.stack import Spamd, gtube_message, ham_message, header_values, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PACKAGE = "spambridge"
USER = "spambridge"
MTA_GROUPS = ("smmsp", "postfix")
INIT_SCRIPT = "/etc/init.d/spambridge"
RUN_DIR = Path("/run/spambridge")
SOCKET = RUN_DIR / "spambridge.sock"
PID_FILE = RUN_DIR / "spambridge.pid"
# Where a package can leave something behind (/usr covers the merged /lib and /bin).
WATCHED = ("/etc", "/usr", "/opt", "/var/lib", "/var/log", "/var/spool", "/run", "/srv")
EXAMPLES = ("spambridge.mc", "spambridge-failclosed.mc", "postfix-main.cf")
APT = ["apt-get", "-y", "-o", "DPkg::Lock::Timeout=300"]


def run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def require_packaging_tools() -> None:
    if os.geteuid() != 0:
        stack_unavailable("installing a Debian package needs root")
    missing = stack.require_binaries(
        ["git", "dpkg-buildpackage", "dh_virtualenv", "lintian", "apt-get"]
    )
    if missing:
        stack_unavailable(
            f"missing packaging tools: {', '.join(missing)} (scripts/install-deps.sh)"
        )
    if run(["git", "-C", str(stack.REPO_ROOT), "rev-parse", "HEAD"]).returncode != 0:
        stack_unavailable("not a git checkout: the package is built from a clean export of HEAD")


def installed() -> bool:
    done = run(["dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE])
    return done.returncode == 0 and done.stdout not in ("", "not-installed")


def snapshot() -> set[str]:
    paths: set[str] = set()
    for root in WATCHED:
        for directory, dirs, files in os.walk(root):
            paths.update(os.path.join(directory, name) for name in dirs + files)
    return paths


def run_the_tests_own_tools_once(workdir: Path) -> None:
    """Run each outside tool this test runs beside the package once, before the "before"
    snapshot, so that only the package is judged: on a machine that never ran them they leave
    files of their own (`systemd-analyze verify` makes /run/systemd/systemd-units-load; mount
    in Sendmail's private namespace makes /run/mount), which the purge cannot and must not
    remove."""
    if shutil.which("systemd-analyze"):
        unit = workdir / "warm-up.service"
        unit.write_text("[Unit]\nDescription=warm-up\n[Service]\nExecStart=/bin/true\n")
        run(["systemd-analyze", "verify", str(unit)], timeout=120)
    stack.start_sendmail(workdir / "warm-up-sendmail", None).stop()


def owned_by_a_package(paths: list[str]) -> set[str]:
    """Those of ``paths`` that some installed package lists (another apt run meanwhile)."""
    if not paths:
        return set()
    done = run(["dpkg-query", "-S", *paths])
    return {line.rpartition(": ")[2] for line in done.stdout.splitlines()}


def unix_socket_accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def policy_denies_start() -> bool:
    """True where /usr/sbin/policy-rc.d forbids starting services (101), as on these machines."""
    policy = Path("/usr/sbin/policy-rc.d")
    if not os.access(policy, os.X_OK):
        return False
    return run([str(policy), PACKAGE, "start"]).returncode == 101


def postinst_start_calls(stubs: Path, *, in_chroot: bool) -> list[str]:
    """Run the installed postinst (`configure`, a first install) with stub `ischroot`,
    `invoke-rc.d` and `deb-systemd-invoke`; return the stub service calls it made."""
    stubs.mkdir(exist_ok=True)
    calls = stubs / "calls"
    calls.write_text("")
    scripts = {"ischroot": f"exit {0 if in_chroot else 1}"}
    for name in ("invoke-rc.d", "deb-systemd-invoke"):
        scripts[name] = f'echo "{name} $*" >> {calls}'
    for name, body in scripts.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", DEBIAN_FRONTEND="noninteractive")
    postinst = f"/var/lib/dpkg/info/{PACKAGE}.postinst"
    done = subprocess.run(
        ["sh", postinst, "configure"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return calls.read_text().splitlines()


def group_members(name: str) -> list[str]:
    try:
        return list(grp.getgrnam(name).gr_mem)
    except KeyError:
        return []


@pytest.fixture(scope="module")
def package_lock() -> Iterator[None]:
    """One package test at a time on a machine: they share /run/spambridge and dpkg."""
    with open("/tmp/spambridge-package-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="module")
def deb(package_lock: None) -> Path:
    """spambridge_<version>_all.deb built from a clean export of HEAD (cached per tree)."""
    require_packaging_tools()
    done = run([str(stack.REPO_ROOT / "scripts" / "build-deb.sh")], timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.name == f"spambridge_{spambridge.__version__}_all.deb", path
    return path


@pytest.fixture
def purged_at_exit(deb: Path) -> Iterator[None]:
    if installed():
        pytest.fail(f"{PACKAGE} is already installed on this machine: purge it first")
    try:
        yield
    finally:
        if PID_FILE.exists() and os.access(INIT_SCRIPT, os.X_OK):
            run([INIT_SCRIPT, "stop"], timeout=120)
        if installed():
            run([*APT, "purge", PACKAGE])


def test_package_is_lintian_clean(deb: Path) -> None:
    (changes,) = deb.parent.glob("*.changes")
    done = run(
        [
            "lintian",
            "--pedantic",
            "--display-info",
            "--fail-on",
            "error,warning,info,pedantic",
            str(changes),
        ]
    )
    tags = [line for line in done.stdout.splitlines() if line[:3] in ("E: ", "W: ", "I: ", "P: ")]
    assert done.returncode == 0 and not tags, done.stdout + done.stderr


def test_package_install_check_run_through_sendmail_stop_purge(
    deb: Path,
    purged_at_exit: None,
    spamd: Spamd,
    workdir: Path,
    start_sendmail: SendmailFactory,
) -> None:
    run_the_tests_own_tools_once(workdir)
    before = snapshot()

    done = run([*APT, "install", str(deb)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert installed()

    # What the package put in place.
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", PACKAGE]).stdout
    for conffile in ("/etc/spambridge/spambridge.cf", "/etc/default/spambridge", INIT_SCRIPT):
        assert f" {conffile} " in conffiles, conffiles
    assert os.path.realpath("/usr/sbin/spambridge") == "/opt/venvs/spambridge/bin/spambridge"
    for path in (
        "/lib/systemd/system/spambridge.service",
        "/lib/systemd/system/spambridge.socket",
        "/usr/lib/tmpfiles.d/spambridge.conf",
        "/usr/share/man/man8/spambridge.8.gz",
        *(f"/usr/share/doc/spambridge/examples/{name}" for name in EXAMPLES),
    ):
        assert os.path.isfile(path), path
    if shutil.which("systemd-analyze"):  # works without systemd as PID 1
        units = [f"/lib/systemd/system/spambridge.{kind}" for kind in ("socket", "service")]
        done = run(["systemd-analyze", "verify", *units], timeout=120)
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    user = pwd.getpwnam(USER)
    assert user.pw_shell == "/usr/sbin/nologin" and user.pw_uid < 1000, user
    for group in MTA_GROUPS:
        if _group_exists(group):
            assert USER in group_members(group), f"{USER} not in group {group}"
    if policy_denies_start():
        assert not PID_FILE.exists() and not SOCKET.exists(), "started despite policy-rc.d"
    else:  # started on install, as Debian does without a policy: restarted below with our spamd
        assert run([INIT_SCRIPT, "stop"], timeout=120).returncode == 0
    # The installed postinst again, with ischroot and the service starters replaced by stubs:
    # in a chroot it starts nothing; outside one it asks invoke-rc.d (which applies policy-rc.d).
    assert postinst_start_calls(workdir / "stubs", in_chroot=True) == []
    assert postinst_start_calls(workdir / "stubs", in_chroot=False) == [
        "invoke-rc.d spambridge start"
    ]

    done = run(["/usr/sbin/spambridge", "check"], timeout=60)
    assert done.returncode == 0, done.stderr
    assert "milter-socket=unix:/run/spambridge/spambridge.sock" in done.stdout, done.stdout

    # A typo in the options: the init script fails at once, naming it, and starts nothing.
    Path("/etc/default/spambridge").write_text('SPAMBRIDGE_OPTIONS="spamd-sokcet=127.0.0.1"\n')
    typo_log = workdir / "typo.log"
    with typo_log.open("ab") as sink:
        started = subprocess.run([INIT_SCRIPT, "start"], stdout=sink, stderr=sink, timeout=120)
    assert started.returncode == 1 and "spamd-sokcet" in typo_log.read_text(), typo_log.read_text()
    assert not PID_FILE.exists()

    # The admin's one-line override, then the init script, as on a SysV system.
    Path("/etc/default/spambridge").write_text(
        f'SPAMBRIDGE_OPTIONS="spamd-socket={spamd.address} log=stderr"\n'
    )
    daemon_log = workdir / "spambridge.log"
    with daemon_log.open("ab") as sink:  # the daemon keeps stderr: a file, not our pipe
        started = subprocess.run([INIT_SCRIPT, "start"], stdout=sink, stderr=sink, timeout=120)
    assert started.returncode == 0, daemon_log.read_text()
    wait_until(lambda: unix_socket_accepts(SOCKET), 30, f"spambridge to listen on {SOCKET}")
    pid = int(PID_FILE.read_text())
    assert process_uid(pid) == user.pw_uid, "the daemon did not drop to the spambridge user"
    mode = os.stat(SOCKET)
    assert stat.S_IMODE(mode.st_mode) == 0o660 and mode.st_gid == user.pw_gid
    assert run([INIT_SCRIPT, "status"]).returncode == 0

    mta = start_sendmail(stack.SENDMAIL_SNIPPET_SOCKET, stack.SENDMAIL_SNIPPET_FAILCLOSED)
    scanned_by = f"spambridge/{spambridge.__version__} ".encode()
    code, text = stack.send_smtp(mta.port, SENDER, [RCPT], ham_message())
    assert code == 250, f"{text}\n{daemon_log.read_text()}"
    (ham,) = mta.wait_delivered(1)
    (status,) = header_values(ham, b"X-Spam-Status")
    assert STATUS_NO.fullmatch(status), status
    assert header_values(ham, b"X-Scanned-By")[0].startswith(scanned_by)
    assert not header_values(ham, b"X-Spam-Flag")
    mta.clear_delivered()

    code, text = stack.send_smtp(mta.port, SENDER, [RCPT], gtube_message())
    assert code == 250, f"{text}\n{daemon_log.read_text()}"  # extra-reject=-1: tag, no reject
    (spam,) = mta.wait_delivered(1)
    (status,) = header_values(spam, b"X-Spam-Status")
    assert STATUS_YES.fullmatch(status), status
    assert header_values(spam, b"X-Spam-Flag") == [b"YES"]
    assert header_values(spam, b"Subject")[0].startswith(b"[SPAM] ")
    wait_until(lambda: "verdict=spam" in daemon_log.read_text(), 10, "the spam verdict line")
    log = daemon_log.read_text()
    assert log.count("verdict=ham") == 1 and log.count("verdict=spam") == 1, log
    assert f"spamd={spamd.address}" in log, log

    done = run([INIT_SCRIPT, "reload"], timeout=120)  # SIGHUP: the option file read again
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: "configuration reloaded" in daemon_log.read_text(), 10, "the reload")
    assert int(PID_FILE.read_text()) == pid

    done = run([INIT_SCRIPT, "stop"], timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: not pid_alive(pid), 30, "the daemon to exit")
    assert not PID_FILE.exists() and not SOCKET.exists()

    done = run([*APT, "purge", PACKAGE])
    assert done.returncode == 0, done.stdout + done.stderr
    assert not installed()

    # Nothing left: no new path that no package owns, nothing owned by the spambridge user.
    new = sorted(snapshot() - before)
    others = owned_by_a_package(new)
    left = [path for path in new if path not in others]
    assert not left, f"left behind by the purge: {left}"
    owned = [path for path in _walk_watched() if _lstat_uid(path) == user.pw_uid]
    assert not owned, f"still owned by {USER}: {owned}"
    # Kept on purpose (Debian practice): the system user and group, so a uid that may still
    # own files is never handed to someone else; the MTA group memberships are gone.
    assert pwd.getpwnam(USER).pw_uid == user.pw_uid
    assert not [g for g in MTA_GROUPS if USER in group_members(g)]


def _group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _walk_watched() -> Iterator[str]:
    for root in WATCHED:
        for directory, dirs, files in os.walk(root):
            for name in dirs + files:
                yield os.path.join(directory, name)


def _lstat_uid(path: str) -> int:
    try:
        return os.lstat(path).st_uid
    except OSError:
        return -1


def test_package_wheel_and_sdist_carry_man_page_and_examples(workdir: Path) -> None:
    if run(["git", "-C", str(stack.REPO_ROOT), "rev-parse", "HEAD"]).returncode != 0:
        stack_unavailable("not a git checkout: the wheel is built from a clean export of HEAD")
    for module in ("build", "twine"):
        if importlib.util.find_spec(module) is None:
            stack_unavailable(f"python -m {module} is not installed (the test extra)")
    source = workdir / "src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(stack.REPO_ROOT), "archive", "--format=tar", "HEAD"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True, timeout=60)
    dist = workdir / "dist"
    done = run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    version = spambridge.__version__
    wheel = dist / f"spambridge-{version}-py3-none-any.whl"
    sdist = dist / f"spambridge-{version}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(dist.iterdir())
    done = run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])
    assert done.returncode == 0, done.stdout + done.stderr

    data = f"spambridge-{version}.data/data/share/"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert f"{data}man/man8/spambridge.8" in names, sorted(names)
    for name in EXAMPLES:
        assert f"{data}doc/spambridge/examples/{name}" in names, sorted(names)

    venv = workdir / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert (venv / "share" / "man" / "man8" / "spambridge.8").is_file()
    assert (venv / "share" / "doc" / "spambridge" / "examples" / "spambridge.mc").is_file()
    done = run([str(venv / "bin" / "spambridge"), "file=", "check"], timeout=60)
    assert done.returncode == 0 and "milter-socket=" in done.stdout, done.stderr
