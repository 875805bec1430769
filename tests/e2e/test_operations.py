"""Operations through the real stack: `scan` against real spamd, the scaling-out example of
the README (several MTAs, several interchangeable instances, a pool of spamd hosts), and the
SysV-style `+daemon` mode."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.e2e import BRIDGE_ARGS, RCPT, SENDER, STATUS_NO, SendmailFactory
from tools import stack
from tools.stack import (
    Spamd,
    describe_logs,
    free_port,
    gtube_message,
    ham_message,
    header_values,
    port_accepts,
    send_smtp,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "spambridge", "file=", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env=dict(os.environ, PYTHONPATH=str(stack.REPO_ROOT)),
    )


def test_operations_scan_against_real_spamd(spamd: Spamd, workdir: Path) -> None:
    message = workdir / "gtube.eml"
    message.write_bytes(gtube_message())
    done = run_cli("scan", str(message), f"spamd-socket={spamd.address}", "extra-reject=0")
    out = done.stdout.decode()
    assert done.returncode == 1, done.stderr  # spam, as spamc -E
    assert out.startswith("verdict: spam score=") and f"spamd={spamd.address}" in out, out
    assert "action: reject" in out and "550" in out, out

    done = run_cli("scan", "-", f"spamd-socket={spamd.address}", stdin=ham_message())
    out = done.stdout.decode()
    assert done.returncode == 0 and out.startswith("verdict: ham"), out
    assert "X-Spam-Status" in out and "action: accept" in out, out


def test_operations_scaling_out_two_mtas_two_instances_spamd_pool(
    spamd: Spamd, workdir: Path, start_sendmail: SendmailFactory
) -> None:
    second = stack.start_spamd(workdir / "spamd2", children=2)
    pool = f"{second.address} {spamd.address}"
    args = [
        "--spamd-socket",
        pool,
        "--spamd-select",
        "round-robin",
        "--spamd-timeouts",
        "C:2s;S:10s;R:30s;E:60s",
        "--spamd-error-action",
        "tempfail",
        *BRIDGE_ARGS,
    ]
    bridges = [stack.start_spambridge(args, workdir / f"b{i}") for i in (1, 2)]
    try:
        mtas = [
            start_sendmail(b.sendmail_socket, stack.SENDMAIL_SNIPPET_FAILCLOSED) for b in bridges
        ]
        for mta in mtas:
            for _ in range(2):
                assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
        second.stop()  # one spamd host dies: the pool fails over, nobody notices
        for mta in mtas:
            assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
        for mta in mtas:
            delivered = mta.wait_delivered(3)
            for raw in delivered:
                (status,) = header_values(raw, b"X-Spam-Status")
                assert STATUS_NO.fullmatch(status), status
        for bridge in bridges:  # verdict lines follow the replies: wait for all three
            wait_until(functools.partial(_verdicts_logged, bridge, 3), 10, "three verdict lines")
        logs = "".join(b.log_text() for b in bridges)
        assert f"spamd={second.address}" in logs and f"spamd={spamd.address}" in logs, logs
        assert f"spamd {second.address} failed" in logs, describe_logs(*bridges)
        assert f"trying {spamd.address}" in logs, describe_logs(*bridges)
    finally:
        for bridge in bridges:
            bridge.stop()
        second.stop()


def test_operations_sysv_daemon_mode_with_pid_file(spamd: Spamd, workdir: Path) -> None:
    port = free_port()
    pid_file = workdir / "run" / "spambridge.pid"
    log = workdir / "daemon.log"
    with log.open("wb") as sink:  # a daemon keeps stderr: give it a file, not our pipe
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "spambridge",
                "file=",
                f"milter-socket=inet:{port}@127.0.0.1",
                f"spamd-socket={spamd.address}",
                "+daemon",
                f"pid-file={pid_file}",
                "log=stderr",
            ],
            stdout=sink,
            stderr=sink,
            timeout=60,
            check=False,
            env=dict(os.environ, PYTHONPATH=str(stack.REPO_ROOT)),
        )
    assert done.returncode == 0, log.read_text()  # the parent returns once the child detached
    wait_until(lambda: pid_file.exists() and port_accepts(port), 20, "daemon to listen")
    pid = int(pid_file.read_text())
    try:
        assert os.getsid(pid) != os.getsid(0), "the daemon left our session"
        # The pid file is written at the bind, before privileges drop; "ready" follows once
        # the server runs (a loaded machine showed the gap).
        wait_until(lambda: "ready" in log.read_text(), 20, "the ready line")
    finally:
        os.kill(pid, 15)
    wait_until(lambda: not pid_file.exists(), 20, "pid file removed on exit")
    time.sleep(0.2)
    assert not port_accepts(port)


def _verdicts_logged(bridge: stack.Spambridge, count: int) -> bool:
    return bridge.log_text().count("verdict=") >= count
