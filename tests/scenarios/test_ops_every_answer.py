"""Operator-visible fixes: an empty spamd-socket disables scanning as documented, and a second
instance refused for a live socket leaves the running instance's pid file alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from spambridge.milter.messages import AddHeader, Continue
from tests.support.daemon_process import running, send, short_tmpdir, start_daemon
from tests.support.scan_process import MESSAGE, run_scan
from tools.fake_spamd import GTUBE, FakeSpamd

pytestmark = pytest.mark.timeout(60)


async def test_daemon_second_instance_keeps_the_running_pid_file() -> None:
    with short_tmpdir() as workdir:
        async with FakeSpamd() as spamd:
            pid_file = workdir / "spambridge.pid"
            first = await running(workdir, spamd, f"pid-file={pid_file}")
            try:
                second = start_daemon(
                    workdir,
                    [f"spamd-socket={spamd.address}", f"pid-file={pid_file}"],
                    log_name="second.log",
                )
                assert await second.wait_exit() == 2
                assert "in use by a running milter" in second.log
                assert pid_file.read_text().strip() == str(first.proc.pid)
            finally:
                await first.stop()
            assert not pid_file.exists()  # the running instance removes its own at exit


async def test_daemon_empty_spamd_socket_serves_unscanned_with_a_notice() -> None:
    with short_tmpdir() as workdir:
        daemon = start_daemon(workdir, ["spamd-socket="])
        try:
            await daemon.wait_socket()
            assert "scanning is disabled" in daemon.log
            result = await send(str(daemon.socket_path), GTUBE + b"\r\n")
            assert result.final == Continue()
            assert not any(isinstance(e, AddHeader) for e in result.edits)
            await daemon.wait_log("scanning disabled (spamd-socket is empty)")
        finally:
            assert await daemon.stop() == 0
        assert "Traceback" not in daemon.log


async def test_scan_with_empty_spamd_socket_reports_unscanned(tmp_path: Path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(MESSAGE)
    code, out, err = await run_scan(["spamd-socket=", "scan", str(path)])
    assert code == 0, err
    assert "Traceback" not in err
    assert "verdict: unscanned" in out and "scanning disabled" in out
    assert "action: accept" in out
