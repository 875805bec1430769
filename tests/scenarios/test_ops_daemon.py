"""The daemon as a process: socket file handling, signals, socket activation, sd_notify,
privilege drop, pid file and the metrics endpoint."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from spambridge import cli
from spambridge.milter.messages import Continue, ReplyCode
from tests.support.controller import running_milter
from tests.support.daemon_process import running, send, short_tmpdir, start_daemon
from tests.support.policy_messages import deliver, headers_with, open_client, score_body
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def workdir() -> Iterator[Path]:
    with short_tmpdir() as path:
        yield path


@pytest.fixture
async def spamd() -> AsyncIterator[FakeSpamd]:
    async with FakeSpamd() as fake:
        yield fake


async def test_daemon_socket_mode_applies_before_any_connection(
    workdir: Path, spamd: FakeSpamd
) -> None:
    daemon = await running(workdir, spamd, "socket-mode=0600")
    try:
        assert daemon.socket_path is not None
        mode = os.stat(daemon.socket_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    finally:
        assert await daemon.stop() == 0


async def test_daemon_default_socket_mode_is_0660(workdir: Path, spamd: FakeSpamd) -> None:
    daemon = await running(workdir, spamd)
    try:
        assert daemon.socket_path is not None
        assert stat.S_IMODE(os.stat(daemon.socket_path).st_mode) == 0o660
    finally:
        await daemon.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
async def test_daemon_socket_group(workdir: Path, spamd: FakeSpamd) -> None:
    group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    daemon = await running(workdir, spamd, f"socket-group={group}")
    try:
        assert daemon.socket_path is not None
        assert os.stat(daemon.socket_path).st_gid == grp.getgrnam(group).gr_gid
    finally:
        await daemon.stop()


async def test_daemon_removes_stale_socket_and_serves(workdir: Path, spamd: FakeSpamd) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(workdir / "milter.sock"))
    stale.close()  # the file stays, nothing listens
    daemon = await running(workdir, spamd)
    try:
        assert "removing stale socket" in daemon.log
        result = await send(str(daemon.socket_path), score_body(7))
        assert result.final == Continue()
    finally:
        await daemon.stop()


async def test_daemon_second_instance_on_live_socket_exits_2(
    workdir: Path, spamd: FakeSpamd
) -> None:
    first = await running(workdir, spamd)
    try:
        second = start_daemon(workdir, [f"spamd-socket={spamd.address}"], log_name="second.log")
        assert await second.wait_exit() == 2
        assert "milter-socket" in second.log and "in use by a running milter" in second.log
        assert first.proc.poll() is None
        assert (await send(str(first.socket_path), score_body(1))).final == Continue()
    finally:
        await first.stop()


async def test_daemon_sigterm_exits_0_and_removes_socket(workdir: Path, spamd: FakeSpamd) -> None:
    daemon = await running(workdir, spamd)
    assert await daemon.stop() == 0
    assert daemon.socket_path is not None and not daemon.socket_path.exists()
    assert "stopped" in daemon.log


async def test_daemon_sigterm_lets_a_slow_scan_finish(workdir: Path) -> None:
    async with FakeSpamd(fault="delay", delay=1.5) as slow:
        daemon = await running(workdir, slow, "extra-reject=0")
        try:
            task = asyncio.ensure_future(send(str(daemon.socket_path), score_body(8)))
            async with asyncio.timeout(10):
                # spamd has the message and the answer is pending
                while not slow.requests:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            daemon.signal(signal.SIGTERM)
            result = await asyncio.wait_for(task, 10)
            assert isinstance(result.final, ReplyCode)
            assert result.final.text.startswith(b"550-5.7.1 message was identified as junk mail")
            assert await daemon.wait_exit() == 0
        finally:
            await daemon.stop()


async def test_daemon_sighup_reloads_option_file(workdir: Path, spamd: FakeSpamd) -> None:
    cf = workdir / "spambridge.cf"
    cf.write_text(f"spamd-socket={spamd.address}\nextra-reject=-1\n")
    daemon = start_daemon(workdir, [f"file={cf}"])
    try:
        await daemon.wait_socket()
        address = str(daemon.socket_path)
        assert (await send(address, score_body(8))).final == Continue()
        cf.write_text(f"spamd-socket={spamd.address}\nextra-reject=0\n")
        daemon.signal(signal.SIGHUP)
        await daemon.wait_log("configuration reloaded")
        assert isinstance((await send(address, score_body(8))).final, ReplyCode)
        cf.write_text(f"spamd-socket={spamd.address}\nextra-reject=0\nbogus-option=1\n")
        daemon.signal(signal.SIGHUP)
        await daemon.wait_log("reload failed, keeping the running configuration")
        assert "bogus-option" in daemon.log
        assert isinstance((await send(address, score_body(8))).final, ReplyCode)
        assert daemon.proc.poll() is None
    finally:
        assert await daemon.stop() == 0


async def test_daemon_reload_in_the_test_controller_is_the_daemons_reload(
    spamd: FakeSpamd, logs: pytest.LogCaptureFixture
) -> None:
    """The tests' controller reloads through the daemon's own Daemon.reload, all of it: new
    messages use the new options, the old pool's set-aside probes end, and a broken option
    file keeps the running configuration and says why."""
    with socket.socket() as dead:  # a port nothing listens on: connects are refused
        dead.bind(("127.0.0.1", 0))
        pool = f"127.0.0.1:{dead.getsockname()[1]} {spamd.address}"
        options = [f"spamd-socket={pool}", "spamd-select=failover", "spamd-cooldown=60"]
        async with running_milter(options) as milter:
            client = await open_client(milter.address)

            async def score_8() -> object:
                return (await deliver(client, headers_with(), score_body(8))).final

            first = milter.services.pool
            assert await score_8() == Continue()
            aside = [h for h in first.hosts.hosts if h.aside is not None]
            assert len(aside) == 1 and aside[0].timer is not None  # its PING is scheduled
            milter.reconfigure(["extra-reject=0"])
            assert milter.services.pool is not first
            assert aside[0].timer is None and aside[0].probe_task is None
            assert isinstance(
                (await deliver(client, headers_with(), score_body(8))).final, ReplyCode
            )
            with pytest.raises(AssertionError, match="refused"):
                milter.reconfigure(["bogus-option=1"])
            assert "reload failed, keeping the running configuration" in logs.text
            assert isinstance(
                (await deliver(client, headers_with(), score_body(8))).final, ReplyCode
            )
            await client.close()


async def test_daemon_sighup_keeps_the_milter_socket_as_written(
    workdir: Path, spamd: FakeSpamd
) -> None:
    """milter-socket is bound once: a reload that spells it differently (local: for unix:)
    is told it needs a restart, and names the socket in force as the admin wrote it."""
    path = workdir / "m.sock"
    cf = workdir / "spambridge.cf"
    cf.write_text(f"milter-socket=unix:{path}\nspamd-socket={spamd.address}\n")
    daemon = start_daemon(workdir, [f"file={cf}"], socket_name=None)
    try:
        await daemon.wait_log("ready")
        cf.write_text(f"milter-socket=local:{path}\nspamd-socket={spamd.address}\n")
        daemon.signal(signal.SIGHUP)
        await daemon.wait_log("configuration reloaded")
        assert f"milter-socket changes need a restart; keeping unix:{path}" in daemon.log
        assert (await send(str(path), score_body(8))).final == Continue()
    finally:
        assert await daemon.stop() == 0


async def test_daemon_socket_activation_serves_on_fd_3(workdir: Path, spamd: FakeSpamd) -> None:
    path = workdir / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(5)
    wrapper = [
        "-c",
        "import os, sys\n"
        "fd = int(sys.argv[1])\n"
        "os.dup2(fd, 3)\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "os.environ['LISTEN_FDS'] = '1'\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n",
        str(listener.fileno()),
    ]
    daemon = start_daemon(
        workdir,
        [f"spamd-socket={spamd.address}", f"milter-socket=unix:{workdir / 'unused.sock'}"],
        socket_name=None,
        wrapper=wrapper,
        pass_fds=[listener.fileno()],
    )
    listener.close()  # only the daemon holds it now
    try:
        await daemon.wait_log("ready")
        assert "passed by systemd" in daemon.log
        assert not (workdir / "unused.sock").exists()
        result = await send(str(path), score_body(7))
        assert result.final == Continue()
        assert len(spamd.requests) == 1
    finally:
        assert await daemon.stop() == 0


async def test_daemon_sd_notify_ready_then_stopping(workdir: Path, spamd: FakeSpamd) -> None:
    notify_path = workdir / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify_path))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        daemon = start_daemon(
            workdir, [f"spamd-socket={spamd.address}"], env={"NOTIFY_SOCKET": str(notify_path)}
        )
        try:
            first = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
            assert b"READY=1" in first.split(b"\n")
            assert daemon.socket_path is not None and daemon.socket_path.exists()
            daemon.signal(signal.SIGTERM)
            second = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
            assert b"STOPPING=1" in second.split(b"\n")
            assert await daemon.wait_exit() == 0
        finally:
            await daemon.stop()
    finally:
        sock.close()


def proc_status(pid: int) -> dict[str, list[str]]:
    """/proc/PID/status as {field: values} (real, effective, saved, fs ids)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.split() for k, _, v in (line.partition(":") for line in text.splitlines())}


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
async def test_daemon_drops_privileges_to_run_user(workdir: Path, spamd: FakeSpamd) -> None:
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrnam("nogroup")
    daemon = await running(workdir, spamd, "run-user=nobody", "run-group=nogroup")
    try:
        status = proc_status(daemon.proc.pid)
        assert status["Uid"] == [str(nobody.pw_uid)] * 4
        assert status["Gid"] == [str(group.gr_gid)] * 4
        assert status["Groups"] in ([], [str(group.gr_gid)])
        result = await send(str(daemon.socket_path), score_body(7))
        assert result.final == Continue()
    finally:
        await daemon.stop()


async def test_daemon_pid_file_written_and_removed(workdir: Path, spamd: FakeSpamd) -> None:
    pid_file = workdir / "run" / "spambridge.pid"
    daemon = await running(workdir, spamd, f"pid-file={pid_file}")
    try:
        assert pid_file.read_text().strip() == str(daemon.proc.pid)
    finally:
        assert await daemon.stop() == 0
    assert not pid_file.exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def http_get(port: int, path: str) -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return head, body


async def test_daemon_metrics_endpoint_counts_messages(workdir: Path, spamd: FakeSpamd) -> None:
    port = free_port()
    daemon = await running(workdir, spamd, f"metrics-listen=127.0.0.1:{port}", "extra-reject=10")
    try:
        await daemon.wait_log("metrics on")
        address = str(daemon.socket_path)
        for body in (score_body(1), score_body(1), score_body(7), score_body(20)):
            await send(address, body)
        head, text = await http_get(port, "/metrics")
        assert head.split()[1] == "200"
        # parsed by prometheus-client's own parser, as a Prometheus server would read it
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["spambridge_messages"].type == "counter"
        counts = {
            (s.labels["verdict"], s.labels["action"]): s.value
            for s in families["spambridge_messages"].samples
            if s.name == "spambridge_messages_total"
        }
        assert counts == {("ham", "accept"): 2, ("spam", "tag"): 1, ("spam", "reject"): 1}
        (scans,) = [s for s in families["spambridge_scans"].samples if s.name.endswith("_total")]
        assert scans.value == 4
        latency = families["spambridge_spamd_seconds"]
        assert latency.type == "histogram"
        (count,) = [s for s in latency.samples if s.name == "spambridge_spamd_seconds_count"]
        assert count.value == 4
        # the library's standard collectors come with it
        assert families["process_resident_memory_bytes"].samples[0].value > 0
        assert "python_info" in families
        assert "python_gc_collections" in families
    finally:
        await daemon.stop()


async def test_daemon_exits_2_on_config_error_without_touching_the_socket(
    workdir: Path,
) -> None:
    daemon = start_daemon(workdir, ["extra-reject=lots"])
    assert await daemon.wait_exit() == 2
    assert "extra-reject" in daemon.log
    assert not (workdir / "milter.sock").exists()


def test_daemon_metrics_listen_without_prometheus_client_names_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    assert cli.main(["file=", "metrics-listen=127.0.0.1:9873", "check"]) == 2
    err = capsys.readouterr().err
    assert "metrics-listen: needs prometheus-client" in err
