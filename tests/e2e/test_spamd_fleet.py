"""A fleet of real spamd hosts on loopback, both ways the README's "Scaling out" offers:

- HAProxy with the shipped recipe (deploy/haproxy-spamd.cfg: TCP mode, leastconn, a SPAMC
  PING health check) between spambridge and two spamd, behind a real Sendmail;
- spambridge's built-in pool, where a spamd that stops answering is set aside, gets no live
  mail while it is out, and returns only after it answers a PING and then a probation.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e import BRIDGE_ARGS, RCPT, SENDER, STATUS_NO, SendmailFactory
from tools import stack
from tools.stack import (
    Daemon,
    Spamd,
    describe_logs,
    free_port,
    gtube_message,
    ham_message,
    header_values,
    send_smtp,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RECIPE = stack.REPO_ROOT / "deploy" / "haproxy-spamd.cfg"
UP_CHECKED = ("UP", "L7OK")  # L7OK: the PING check got the PONG its expect rule wants


# ------------------------------------------------------------------ HAProxy


def recipe_for(port: int, spamds: list[Spamd]) -> str:
    """The shipped recipe with its example addresses replaced by ours; every other line
    (mode, balance, timeouts, the PING check) is used as shipped."""
    text = RECIPE.read_text()
    text, binds = re.subn(r"(?m)^(\s*bind )\S+", rf"\g<1>127.0.0.1:{port}", text)
    servers = "".join(
        f"    server spamd{i} {s.address} check weight 1\n" for i, s in enumerate(spamds, 1)
    )
    text, found = re.subn(r"(?m)^\s*server .*\n", "", text)
    assert binds == 1 and found >= 2, "the recipe's bind/server lines moved: update this test"
    return text.rstrip("\n") + "\n" + servers


@contextlib.contextmanager
def haproxy(workdir: Path, spamds: list[Spamd]) -> Iterator[tuple[int, Path]]:
    binary = shutil.which("haproxy")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("haproxy missing under CI (scripts/install-deps.sh installs it)")
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    port = free_port()
    stats = workdir / "haproxy.sock"
    (workdir / "global.cfg").write_text(f"global\n    stats socket {stats} mode 600 level admin\n")
    (workdir / "spamd.cfg").write_text(recipe_for(port, spamds))
    checked = subprocess.run(
        [binary, "-c", "-f", str(workdir / "global.cfg"), "-f", str(workdir / "spamd.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log = workdir / "haproxy.log"
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(workdir / "global.cfg"), "-f", str(workdir / "spamd.cfg")],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    daemon = Daemon(proc, log)
    try:
        wait_until(lambda: stack.port_accepts(port), 10, "haproxy to listen")
        yield port, stats
    finally:
        daemon.stop()


def server_states(stats: Path) -> dict[str, tuple[str, str]]:
    """server name -> (status, check status) from HAProxy's `show stat`."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    columns = lines[0].lstrip("# ").split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(columns, line.split(","), strict=False))
        if row.get("pxname") == "spamd_pool" and row.get("svname") not in ("BACKEND", None):
            out[row["svname"]] = (row["status"], row["check_status"])
    return out


def scans_logged(spamd: Spamd) -> int:
    """Messages this spamd has scanned, from its own log."""
    return len(re.findall(r"spamd: (clean message|identified spam)", spamd.log_text()))


def test_spamd_fleet_haproxy_recipe_balances_checks_and_routes_around(
    spamd: Spamd, workdir: Path, start_sendmail: SendmailFactory
) -> None:
    second = stack.start_spamd(workdir / "spamd2", children=1)
    try:
        with haproxy(workdir, [spamd, second]) as (port, stats):
            # Both servers pass the PING check: L7OK means PONG matched the expect rule.
            wait_until(
                lambda: (
                    server_states(stats) == {"spamd1": ("UP", "L7OK"), "spamd2": ("UP", "L7OK")}
                ),
                15,
                "both spamd UP with a passed layer-7 (PING) check",
            )
            bridge = stack.start_spambridge(
                [
                    "--spamd-socket",
                    f"127.0.0.1:{port}",
                    "--spamd-timeouts",
                    "C:2s;S:10s;R:30s;E:60s",
                    "--extra-reject",
                    "0",
                    *BRIDGE_ARGS,
                ],
                workdir / "bridge",
            )
            try:
                mta = start_sendmail(bridge.sendmail_socket)
                before = scans_logged(spamd), scans_logged(second)
                for _ in range(4):
                    assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
                code, text = send_smtp(mta.port, SENDER, [RCPT], gtube_message())
                assert code == 550 and "junk mail" in text, text
                # leastconn spreads even one-at-a-time mail over both (ties go round-robin)
                wait_until(
                    lambda: scans_logged(spamd) + scans_logged(second) >= sum(before) + 5,
                    20,
                    "five scans in the spamd logs",
                )
                assert scans_logged(spamd) > before[0] and scans_logged(second) > before[1]

                second.stop()  # one spamd dies: HAProxy retries the connect elsewhere
                for _ in range(3):
                    assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
                wait_until(
                    lambda: server_states(stats)["spamd2"][0] == "DOWN",
                    15,
                    "the dead spamd marked DOWN by the health check",
                )
                assert server_states(stats)["spamd1"] == UP_CHECKED
                delivered = mta.wait_delivered(7)
                for raw in delivered:
                    (status,) = header_values(raw, b"X-Spam-Status")
                    assert STATUS_NO.fullmatch(status), status
                logs = bridge.log_text()
                assert "verdict=error" not in logs, describe_logs(bridge)
            finally:
                bridge.stop()
    finally:
        second.stop()


# ------------------------------------------------------------------ the built-in pool


def _signal_spamd(spamd: Spamd, signum: signal.Signals) -> None:
    """Stop or continue spamd and its children (one process group)."""
    os.killpg(spamd.pid, signum)


def test_spamd_fleet_builtin_pool_sets_aside_a_stuck_spamd_and_pings_it_back(
    spamd: Spamd, workdir: Path, start_sendmail: SendmailFactory
) -> None:
    stuck = stack.start_spamd(workdir / "spamd2", children=1)
    bridge = stack.start_spambridge(
        [
            "--spamd-socket",
            f"{stuck.address} {spamd.address}",  # least-loaded (default): the first in ties
            "--spamd-timeouts",
            "C:2s;S:5s;R:2s;E:60s",
            "--spamd-cooldown",
            "2",
            *BRIDGE_ARGS,
        ],
        workdir / "bridge",
    )
    try:
        mta = start_sendmail(bridge.sendmail_socket)
        _signal_spamd(stuck, signal.SIGSTOP)  # accepts (the kernel does), never answers
        try:
            assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
            logs = bridge.wait_log(f"spamd {stuck.address} set aside (failed", 10)
            assert f"trying {spamd.address}" in logs, describe_logs(bridge)
            # In cool-down: probed, not fed live mail. These go straight to the good host.
            for _ in range(3):
                assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
            wait_until(functools.partial(_verdicts, bridge, spamd.address, 4), 10, "4 verdicts")
            assert bridge.log_text().count(f"spamd {stuck.address} failed") == 1
            # Past the cool-down (2 s) its PING hangs as well: it stays out.
            time.sleep(3)
            assert "on probation" not in bridge.log_text(), describe_logs(bridge)
        finally:
            _signal_spamd(stuck, signal.SIGCONT)
        logs = bridge.wait_log(f"spamd {stuck.address} on probation", 15)
        assert re.search(rf"spamd {re.escape(stuck.address)} on probation .*PONG", logs)
        # Alive again, on probation: the next message goes to it (one at a time), and three
        # answered in good time bring it back.
        for _ in range(3):
            assert send_smtp(mta.port, SENDER, [RCPT], ham_message())[0] == 250
        bridge.wait_log(f"spamd {stuck.address} back in the pool", 15)
        wait_until(functools.partial(_verdicts, bridge, stuck.address, 1), 10, "a verdict from it")
        delivered = mta.wait_delivered(7)
        for raw in delivered:
            (status,) = header_values(raw, b"X-Spam-Status")
            assert STATUS_NO.fullmatch(status), status
    finally:
        bridge.stop()
        stuck.stop()


def _verdicts(bridge: stack.Spambridge, host: str, count: int) -> bool:
    return bridge.log_text().count(f"spamd={host}") >= count
