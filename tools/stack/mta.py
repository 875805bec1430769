"""What both MTAs share: the shipped milter snippets, the test mail domain, delivery into
one file per message, and the SMTP greeting that says an MTA is up.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from pathlib import Path

from tools.stack.processes import REPO_ROOT, Daemon, StackError, wait_until

SNIPPET_DIR = REPO_ROOT / "sendmail"

MAIL_DOMAIN = "example.test"
MTA_HOSTNAME = "mx.example.test"


# Delivery agent for both MTAs: write stdin atomically to a new file in the directory $1.
DELIVER_SCRIPT = """#!/bin/sh
set -e
name="$(date +%s%N).$$"
cat > "$1/.$name.tmp"
printf '%s\n' "$2" > "$1/$name.rcpt"
mv "$1/.$name.tmp" "$1/$name.eml"
"""


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


def write_deliver_script(workdir: Path) -> tuple[Path, Path]:
    script = workdir / "deliver.sh"
    script.write_text(DELIVER_SCRIPT)
    script.chmod(0o755)
    delivered = workdir / "delivered"
    delivered.mkdir(exist_ok=True)
    delivered.chmod(0o1777)
    return script, delivered


def replace_socket(text: str, placeholder: str, socket_spec: str, source: Path) -> str:
    if placeholder not in text:
        raise StackError(f"{source} no longer contains the socket {placeholder!r}")
    return text.replace(placeholder, socket_spec)


def smtp_greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.settimeout(5.0)
            greeting = sock.recv(512)
            with contextlib.suppress(OSError):
                sock.sendall(b"QUIT\r\n")
            return greeting.startswith(b"220")
    except OSError:
        return False
