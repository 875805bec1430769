"""The reference filter of the libmilter differential suite: built from
tests/wire/reference_filter.c against Debian's libmilter (libmilter-dev, build-essential, both
in scripts/install-deps.sh) and run as a process on a unix socket.

The binary is cached under the temp directory, named by the source's SHA-256, and used again
only if it answers `--source-hash` with that same hash (it was compiled with it), so a stale or
foreign file is rebuilt, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent / "wire" / "reference_filter.c"
HEADER = Path("/usr/include/libmilter/mfapi.h")


class Unavailable(Exception):
    """The filter cannot be built here (no compiler or no libmilter-dev); says which."""


def source_hash() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def _answers_hash(binary: Path, expected: str) -> bool:
    try:
        out = subprocess.run(
            [str(binary), "--source-hash"], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.strip() == expected


def build(cache: Path | None = None) -> Path:
    """The built filter for the current source (compiled now unless a checked copy exists)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise Unavailable("no C compiler (install build-essential)")
    if not HEADER.exists():
        raise Unavailable(f"no {HEADER} (install libmilter-dev)")
    digest = source_hash()
    directory = cache or Path(tempfile.gettempdir()) / f"spambridge-wire-{os.getuid()}"
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / f"reference_filter-{digest[:16]}"
    if binary.exists() and _answers_hash(binary, digest):
        return binary
    partial = directory / f".{binary.name}.{os.getpid()}"
    command = [compiler, "-O2", "-Wall", f'-DSOURCE_HASH="{digest}"', "-o", str(partial)]
    result = subprocess.run(
        [*command, str(SOURCE), "-lmilter", "-lpthread"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise Unavailable(f"building {SOURCE.name} failed: {result.stderr[-2000:]}")
    os.replace(partial, binary)  # atomic: a concurrent run sees the old file or the new one
    if not _answers_hash(binary, digest):
        raise Unavailable(f"{binary} does not answer --source-hash with {digest}")
    return binary


@dataclass
class Reference:
    """A running reference filter."""

    proc: subprocess.Popen[bytes]
    address: str  # the unix socket path

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextlib.contextmanager
def running(binary: Path, mode: str, macro_lists: Sequence[str]) -> Iterator[Reference]:
    """Serve the filter in `mode` ("reply" or "nr") on a fresh unix socket."""
    with tempfile.TemporaryDirectory(prefix="spambridge-ref-") as tmp:
        path = str(Path(tmp) / "ref.sock")
        proc = subprocess.Popen(
            [str(binary), f"unix:{path}", mode, *macro_lists],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _wait_ready(proc, path)
            yield Reference(proc, path)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # libmilter takes ~5 s to honour SIGTERM
            proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()


def _wait_ready(proc: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"reference filter exited with {proc.returncode}: {err}")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(path)
                return
            except OSError:
                time.sleep(0.02)
    raise RuntimeError("reference filter did not listen within 10 s")
