"""The milter-socket option: Sendmail (`unix:/path`, `local:/path`, `inet:PORT@HOST`,
`inet6:PORT@HOST`) and Postfix (`inet:HOST:PORT`) socket specs."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field, replace

from spambridge.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SocketSpec:
    """Where to listen. `source` is the spec as the admin wrote it (what `check` prints, what a
    reload compares); str() is the normalised form log lines show."""

    family: socket.AddressFamily
    host: str = ""
    port: int = 0
    path: str = ""
    source: str = field(default="", compare=False)

    def __str__(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.path}"
        kind = "inet6" if self.family == socket.AF_INET6 else "inet"
        return f"{kind}:{self.port}@{self.host or '*'}"


def parse_milter_socket(spec: str) -> SocketSpec:
    """Parse a Sendmail or Postfix milter socket spec."""
    return replace(_parse(spec), source=spec)


def _parse(spec: str) -> SocketSpec:
    accepted = "accepted: unix:/path, local:/path, inet:PORT@HOST, inet6:PORT@HOST, inet:HOST:PORT"
    text = spec.strip()
    if text.startswith("/"):
        return SocketSpec(socket.AF_UNIX, path=text)
    kind, sep, rest = text.partition(":")
    kind = kind.lower()
    if not sep or not rest:
        raise ConfigError("milter-socket", f"{spec!r} is not a socket spec; {accepted}")
    if kind in ("unix", "local"):
        if not rest.startswith("/"):
            raise ConfigError("milter-socket", f"{spec!r}: the unix socket path must be absolute")
        return SocketSpec(socket.AF_UNIX, path=rest)
    if kind not in ("inet", "inet6"):
        raise ConfigError("milter-socket", f"{spec!r}: unknown socket type {kind!r}; {accepted}")
    family = socket.AF_INET6 if kind == "inet6" else socket.AF_INET
    if "@" in rest:
        port_s, _, host = rest.partition("@")
    elif rest.count(":") == 1 or (rest.startswith("[") and "]:" in rest):
        host, _, port_s = rest.rpartition(":")  # Postfix's inet:HOST:PORT
    else:
        port_s, host = rest, ""
    host = host.strip("[]")
    if ":" in host:
        family = socket.AF_INET6
    try:
        port = int(port_s)
    except ValueError:
        raise ConfigError("milter-socket", f"{spec!r}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError("milter-socket", f"{spec!r}: port {port} is out of range")
    return SocketSpec(family, host=host, port=port)
