"""Parsing `spamd-socket` entries and `spamd-timeouts` (Sendmail T= style) into typed values.

Pure: no sockets, no aiospamc. spambridge.options parses both here once, at start-up.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from spambridge.durations import NO_LIMIT_SECONDS, parse_duration
from spambridge.errors import ConfigError

__all__ = [
    "DEFAULT_PORT",
    "MAX_WEIGHT",
    "NO_LIMIT_SECONDS",
    "SpamdEndpoint",
    "SpamdTimeouts",
    "legacy_spamd_timeouts",
    "parse_spamd_socket",
    "parse_spamd_sockets",
    "parse_spamd_timeouts",
    "spamd_sockets_text",
]

DEFAULT_PORT = 783

_SOCKET_FORMS = (
    "accepted forms: host, host:port, host,port, [v6addr], [v6addr]:port, v6addr, "
    "/path/to/socket, unix:/path/to/socket, ssl:host:port, ssl:[v6addr]:port, "
    "each optionally followed by ;weight=N (1-1000)"
)
MAX_WEIGHT = 1000
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")


@dataclass(frozen=True, slots=True)
class SpamdEndpoint:
    """One spamd address. `label` is how it is written in logs and metrics; `source` is the
    entry as the admin wrote it (see spamd_sockets_text), not part of its identity."""

    label: str
    host: str = ""
    port: int = DEFAULT_PORT
    path: str = ""
    tls: bool = False
    weight: int = 1  # `;weight=N` after the entry: its share of the load
    source: str = dataclasses.field(default="", compare=False)


def _socket_error(text: str, why: str) -> ConfigError:
    return ConfigError("spamd-socket", f"bad entry {text!r}: {why}; {_SOCKET_FORMS}")


def _parse_port(text: str, port: str) -> int:
    if not port.isascii() or not port.isdigit():
        raise _socket_error(text, f"port {port!r} is not a number")
    value = int(port)
    if not 1 <= value <= 65535:
        raise _socket_error(text, f"port {value} is outside 1-65535")
    return value


def _check_host(text: str, host: str) -> str:
    if not host:
        raise _socket_error(text, "the host is empty")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME_RE.fullmatch(host) or host.replace(".", "").isdigit():
            raise _socket_error(text, f"{host!r} is not a host name or IP address") from None
    return host


def _check_v6(text: str, host: str) -> str:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise _socket_error(text, f"{host!r} is not an IPv6 address") from None
    return host


def _tcp_endpoint(text: str, rest: str, tls: bool) -> SpamdEndpoint:
    port = DEFAULT_PORT
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise _socket_error(text, "missing ']' after the IPv6 address")
        host = _check_v6(text, rest[1:close])
        tail = rest[close + 1 :]
        if tail:
            if tail[0] not in ":,":
                raise _socket_error(text, f"unexpected {tail!r} after ']'")
            port = _parse_port(text, tail[1:])
    elif "," in rest:
        host_part, _, port_part = rest.partition(",")
        host = _check_host(text, host_part)
        port = _parse_port(text, port_part)
    elif rest.count(":") > 1:
        host = _check_v6(text, rest)  # bare IPv6 address, default port
    elif ":" in rest:
        host_part, _, port_part = rest.partition(":")
        host = _check_host(text, host_part)
        port = _parse_port(text, port_part)
    else:
        host = _check_host(text, rest)
    shown = f"[{host}]" if ":" in host else host
    label = f"{'ssl:' if tls else ''}{shown}:{port}"
    return SpamdEndpoint(label=label, host=host, port=port, tls=tls)


def _parse_weight(text: str, params: str) -> int:
    name, sep, value = params.partition("=")
    if name.strip().lower() != "weight" or not sep:
        raise _socket_error(text, f"unknown parameter {params!r} (only weight=N)")
    value = value.strip()
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_WEIGHT:
        raise _socket_error(text, f"weight {value!r} is not a whole number 1-{MAX_WEIGHT}")
    return int(value)


def parse_spamd_socket(text: str) -> SpamdEndpoint:
    """Parse one spamd-socket entry (see `_SOCKET_FORMS`)."""
    entry, sep, params = text.strip().partition(";")
    endpoint = _parse_address(text, entry)
    weight = _parse_weight(text, params) if sep else endpoint.weight
    return dataclasses.replace(endpoint, weight=weight, source=text)


def _parse_address(text: str, entry: str) -> SpamdEndpoint:
    if not entry:
        raise _socket_error(text, "the entry is empty")
    if any(c.isspace() for c in entry):
        raise _socket_error(text, "contains whitespace")
    lowered = entry.lower()
    if entry.startswith("/") or lowered.startswith("unix:"):
        path = entry[5:] if lowered.startswith("unix:") else entry
        if not path.startswith("/"):
            raise _socket_error(text, "a unix socket path must be absolute")
        if "\x00" in path:
            raise _socket_error(text, "the path contains a NUL byte")
        return SpamdEndpoint(label=f"unix:{path}", path=path)
    if lowered.startswith("ssl:"):
        return _tcp_endpoint(text, entry[4:], tls=True)
    return _tcp_endpoint(text, entry, tls=False)


def parse_spamd_sockets(values: Sequence[str]) -> tuple[SpamdEndpoint, ...]:
    """Parse every entry; a value may hold several entries separated by whitespace or by
    commas (spamc's -d host1,host2). A comma followed by a bare port number is
    milter-spamc's host,port form, not a separator.

    Each endpoint's `source` is its piece of the word as written (after the first, led by
    the comma that joined it), so spamd_sockets_text() gives the words back."""
    endpoints: list[SpamdEndpoint] = []
    for word in (word for value in values for word in value.split()):
        first, *rest = word.split(",")
        entries, sources = [first], [first]
        for part in rest:
            if part.partition(";")[0].isdigit() and "," not in entries[-1]:  # port;weight=N
                entries[-1] += "," + part
                sources[-1] += "," + part
            elif part:
                entries.append(part)
                sources.append("," + part)
            else:  # an empty part: its comma stays where it was written
                sources[-1] += ","
        for entry, source in zip(entries, sources, strict=True):
            endpoints.append(dataclasses.replace(parse_spamd_socket(entry), source=source))
    return tuple(endpoints)


def spamd_sockets_text(endpoints: Iterable[SpamdEndpoint]) -> str:
    """The spamd-socket value as the admin wrote it (what `check` prints): entries that were
    joined by commas in one word are joined again, words by one space."""
    words: list[str] = []
    for endpoint in endpoints:
        if endpoint.source.startswith(",") and words:
            words[-1] += endpoint.source
        else:
            words.append(endpoint.source)
    return " ".join(words)


# --------------------------------------------------------------------------- timeouts

_TIMEOUT_FORMS = (
    "expected 'C:5s;S:10s;R:60s;E:120s' (any subset; units s, m, h, d or none for seconds; "
    f"0 means no limit, capped at {NO_LIMIT_SECONDS:.0f}s) or one number for all four"
)
_TIMEOUT_FIELDS = {"C": "connect", "S": "send", "R": "read", "E": "end"}


@dataclass(frozen=True, slots=True)
class SpamdTimeouts:
    """Seconds: per connect attempt, writing the request, each read, and the whole scan."""

    connect: float = 5.0
    send: float = 10.0
    read: float = 60.0
    end: float = 120.0

    def text(self) -> str:
        """The spamd-timeouts syntax that parses back to these values."""
        return f"C:{self.connect:g}s;S:{self.send:g}s;R:{self.read:g}s;E:{self.end:g}s"


def _timeout_error(text: str, why: str) -> ConfigError:
    return ConfigError("spamd-timeouts", f"bad value {text!r}: {why}; {_TIMEOUT_FORMS}")


def _parse_duration(text: str, value: str) -> float:
    seconds = parse_duration(value)
    if seconds is None:
        raise _timeout_error(text, f"{value.strip()!r} is not a duration")
    # milter-spamc's 0 means "no limit"; nothing here may wait forever.
    return NO_LIMIT_SECONDS if seconds == 0 else min(seconds, NO_LIMIT_SECONDS)


def parse_spamd_timeouts(text: str) -> SpamdTimeouts:
    """Parse Sendmail T= style `C:5s;S:10s;R:60s;E:120s` or a bare number for all four.

    Missing fields keep their defaults; an empty value gives all defaults. 0 (milter-spamc's
    "no limit") and anything longer become NO_LIMIT_SECONDS, since nothing may wait forever.
    """
    stripped = text.strip()
    if not stripped:
        return SpamdTimeouts()
    if ":" not in stripped:
        every = _parse_duration(text, stripped)
        return SpamdTimeouts(connect=every, send=every, read=every, end=every)
    values: dict[str, float] = {}
    for field in stripped.split(";"):
        if not field.strip():
            continue
        key, sep, value = field.partition(":")
        name = _TIMEOUT_FIELDS.get(key.strip().upper())
        if not sep or name is None:
            raise _timeout_error(text, f"unknown field {field.strip()!r} (use C, S, R or E)")
        if name in values:
            raise _timeout_error(text, f"field {key.strip().upper()} given twice")
        values[name] = _parse_duration(text, value)
    return SpamdTimeouts(**values)


def legacy_spamd_timeouts(seconds: float) -> str:
    """milter-spamc's one spamd-timeout=N as spamd-timeouts fields: N for send, each read and
    the whole scan, but at most 5 s (the spamd-timeouts default) per connect, so a spamd
    host that hangs on connect leaves time to fail over to the next one. 0 (no limit) gives
    the longest limit."""
    n = int(seconds)
    connect = min(n, 5) if n > 0 else 5
    return f"C:{connect}s;S:{n}s;R:{n}s;E:{n}s"
