"""The Go MTA-side driver (tests/e2e/gomilter/main.go) on emersion/go-milter's client.

Built offline from Debian's golang-go and golang-github-emersion-go-milter-dev (GOPATH mode:
the library's sources under /usr/share/gocode, nothing fetched), once per source: the binary
is cached in the temp directory under a hash of the driver and the library's client.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tools import stack

SOURCE = stack.REPO_ROOT / "tests" / "e2e" / "gomilter" / "main.go"
GOPATH = Path("/usr/share/gocode")
LIBRARY = GOPATH / "src" / "github.com" / "emersion" / "go-milter"


class Unavailable(Exception):
    """Go or the library is not installed; the message says which package."""


def build() -> Path:
    """The driver binary, built when its source or the library changed."""
    go = shutil.which("go")
    if go is None:
        raise Unavailable("no go compiler (Debian package golang-go)")
    if not (LIBRARY / "client.go").exists():
        raise Unavailable(f"no {LIBRARY} (Debian package golang-github-emersion-go-milter-dev)")
    digest = hashlib.sha256(SOURCE.read_bytes() + (LIBRARY / "client.go").read_bytes())
    home = Path(tempfile.gettempdir()) / f"spambridge-gomilter-{digest.hexdigest()[:16]}"
    binary = home / "gomilter"
    if binary.exists():
        return binary
    home.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "GO111MODULE": "off",  # GOPATH mode: imports resolve under /usr/share/gocode
        "GOPATH": str(GOPATH),
        "GOCACHE": str(home / "cache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    partial = home / f"gomilter.{os.getpid()}"
    result = subprocess.run(
        [go, "build", "-o", str(partial), str(SOURCE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"go build failed:\n{result.stdout}{result.stderr}")
    partial.replace(binary)  # atomic: a concurrent build never sees half a binary
    return binary


def run(binary: Path, script: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Run one script (see main.go) and return what the milter did."""
    result = subprocess.run(
        [str(binary)],
        input=json.dumps(script),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"gomilter failed ({result.returncode}): {result.stderr}")
    out: dict[str, Any] = json.loads(result.stdout)
    return out
