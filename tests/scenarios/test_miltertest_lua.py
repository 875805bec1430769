"""OpenDKIM's Lua miltertest (/usr/bin/miltertest) runs the scripts in mt/ against the server."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.support.controller import running_milter
from tests.support.scenario import milter_options
from tools.fake_spamd import FakeSpamd

pytestmark = pytest.mark.timeout(60)

SCRIPTS = Path(__file__).parent / "mt"
MILTERTEST = shutil.which("miltertest")


def _require_miltertest() -> str:
    if MILTERTEST is None:
        if os.environ.get("CI") == "true":
            pytest.fail("miltertest (Debian package `miltertest`) is required in CI")
        pytest.skip("miltertest not installed (Debian package `miltertest`)")
    return MILTERTEST


@pytest.mark.parametrize("script", ["basic", "quirks"])
async def test_miltertest_lua_script_passes(spamd: FakeSpamd, script: str) -> None:
    binary = _require_miltertest()
    path = SCRIPTS / f"{script}.lua"
    assert path.is_file(), f"{path} is missing"
    async with running_milter(milter_options(spamd)) as milter:
        assert isinstance(milter.address, tuple)
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-D",
            f"socket=inet:{milter.address[1]}@127.0.0.1",
            "-s",
            str(path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(45):
                output, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = output.decode("utf-8", "replace")
    assert proc.returncode == 0, text
    assert f"PASS {script}" in text
    assert f"FAIL {script}" not in text
    assert spamd.requests, "spamd saw no message"


async def test_miltertest_lua_basic_reports_status(spamd: FakeSpamd) -> None:
    """basic.lua echoes the X-Spam-Status it got: ham at 0.00/5.00 from the fake spamd."""
    binary = _require_miltertest()
    async with running_milter(milter_options(spamd)) as milter:
        assert isinstance(milter.address, tuple)
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-D",
            f"socket=inet:{milter.address[1]}@127.0.0.1",
            "-s",
            str(SCRIPTS / "basic.lua"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(45):
            output, _ = await proc.communicate()
    assert proc.returncode == 0, output
    assert b"X-Spam-Status: NO, hits=0.00 required=5.00" in output
    assert b"Received: from client.example.net" in spamd.requests[0].body
    assert b" id 4AbCdE1234;" in spamd.requests[0].body
