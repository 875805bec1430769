"""What an option is: a row of the table (`Option[T]`) and the types of value a row can take.

A value type says how an option's text is read (into a `T`, once, at start-up), how a `T` is
written back (the text `check` prints, which reads back to an equal value) and which type the
`Config` field that holds it has (a test compares it with `Config`, field by field). The
parsers of the typed values live with what uses them (spamd/endpoints.py, replies.py,
milter_socket.py, metrics.py, durations.py, access.py); this module only names them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast, get_args

from spambridge.access import AccessMap
from spambridge.durations import DURATION_FORMS, parse_duration
from spambridge.errors import ConfigError
from spambridge.metrics import ListenAddress, parse_metrics_listen
from spambridge.milter_socket import SocketSpec, parse_milter_socket
from spambridge.replies import ReplySpec, parse_reply_option
from spambridge.spamd.endpoints import (
    SpamdEndpoint,
    SpamdTimeouts,
    parse_spamd_sockets,
    parse_spamd_timeouts,
    spamd_sockets_text,
)

T = TypeVar("T")
N = TypeVar("N", int, float)

# How a value is written on the command line and in an option file: bool (+name, -name),
# list (entries separated by blanks; name+=more appends), choice (one of `choices`) or value.
Syntax = Literal["bool", "list", "choice", "value"]


@dataclass(frozen=True, slots=True)
class ValueType(Generic[T]):
    """One type of option value."""

    kind: Syntax
    hint: object  # the Config field's type, as typing.get_type_hints(Config) gives it
    read: Callable[[str, str], T]  # (option name, text as written) -> value, or ConfigError
    write: Callable[[T], str]  # value -> the text `check` prints; it reads back equal
    choices: tuple[str, ...] = ()

    def at_least(self: ValueType[N], minimum: float) -> ValueType[N]:
        """The same type, refusing values below `minimum`."""
        read = self.read

        def checked(name: str, text: str) -> N:
            value = read(name, text)
            if value < minimum:
                raise ConfigError(name, f"must be at least {minimum}, got {value}")
            return value

        return dataclasses.replace(self, read=checked)


@dataclass(frozen=True, slots=True)
class Option(Generic[T]):
    """One row of the table: an option and everything said about it."""

    name: str
    type: ValueType[T]
    default: str  # as it would be written in an option file
    help: str
    group: str
    legacy: bool = True  # the option exists in milter-spamc with this name

    @property
    def attr(self) -> str:
        """Its Config field: the name with '-' -> '_'."""
        return self.name.replace("-", "_")

    @property
    def kind(self) -> Syntax:
        return self.type.kind

    @property
    def choices(self) -> tuple[str, ...]:
        return self.type.choices

    def read(self, raw: str | list[str]) -> T:
        """The value of this option written as `raw` (a list option's entries as a list)."""
        return self.type.read(self.name, " ".join(raw) if isinstance(raw, list) else raw)

    def write(self, value: T) -> str:
        return self.type.write(value)


# ------------------------------------------------------------------ plain values

TRUE_WORDS = frozenset({"+", "1", "yes", "true", "on"})
FALSE_WORDS = frozenset({"-", "0", "no", "false", "off", ""})


def boolean(value: str) -> bool | None:
    """The boolean `value` stands for, None when it is not one."""
    word = value.strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


def _bool(name: str, raw: str) -> bool:
    value = boolean(raw)
    if value is None:
        raise ConfigError(name, f"{raw!r} is not a boolean: write +{name} or -{name}")
    return value


def _int(name: str, raw: str) -> int:
    try:
        return int(raw.strip(), 0)
    except ValueError:
        raise ConfigError(name, f"{raw!r} is not a whole number") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigError(name, f"{raw!r} is not a number") from None


def _optional_float(name: str, raw: str) -> float | None:
    return None if raw.strip() == "" else _float(name, raw)


def _seconds(name: str, raw: str) -> float:
    seconds = parse_duration(raw.strip())
    if seconds is None:
        raise ConfigError(name, f"{raw!r} is not a duration: write {DURATION_FORMS}")
    return seconds


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if value.is_integer() else str(value)


BOOL: ValueType[bool] = ValueType("bool", bool, _bool, lambda on: "+" if on else "-")
WHOLE: ValueType[int] = ValueType("value", int, _int, str)
NUMBER: ValueType[float] = ValueType("value", float, _float, _number_text)
OPTIONAL_NUMBER: ValueType[float | None] = ValueType(
    "value", float | None, _optional_float, _number_text
)
SECONDS: ValueType[float] = ValueType("value", float, _seconds, _number_text)  # N, Ns, Nm, Nh or Nd
TEXT: ValueType[str] = ValueType("value", str, lambda name, raw: raw.strip(), str)


def choice(literal: Any) -> ValueType[Any]:
    """One of the strings of `literal` (a Literal type, the Config field's type); the case
    the admin writes does not matter."""
    choices: tuple[str, ...] = get_args(literal)

    def read(name: str, raw: str) -> str:
        for word in choices:
            if raw.strip().lower() == word.lower():
                return word
        raise ConfigError(name, f"{raw!r} is not one of: {', '.join(choices)}")

    return ValueType("choice", literal, read, str, choices)


def _character(name: str, raw: str) -> str:
    value = raw.strip()
    if len(value.encode("utf-8", "surrogateescape")) > 1:
        raise ConfigError(name, f"{value!r}: one ASCII character, or empty")
    return value


def _factor(name: str, raw: str) -> float:
    value = _float(name, raw)
    if value != 0 and not 1 < value < 1e6:
        raise ConfigError(name, f"must be 0 (off) or above 1, got {value:g}")
    return value


def _octal(name: str, raw: str) -> int:
    value = raw.strip()
    try:
        mode = int(value, 8)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not an octal mode such as 0660") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(name, f"{value!r} is outside 0000..0777")
    return mode


CHARACTER: ValueType[str] = ValueType("value", str, _character, str)  # one byte, or empty
FACTOR: ValueType[float] = ValueType("value", float, _factor, _number_text)  # 0 (off) or above 1
OCTAL_MODE: ValueType[int] = ValueType("value", int, _octal, lambda mode: f"0{mode:o}")


# ------------------------------------------------------------------ typed values
# A typed value the admin writes as text keeps that text in its `source`: `check` prints it.


def reply(codes: str) -> ValueType[ReplySpec]:
    """An SMTP reply ("550 5.7.1 text") whose code starts with one of `codes` ("5", "45")."""

    def read(name: str, raw: str) -> ReplySpec:
        return parse_reply_option(name, raw.strip(), codes)

    return ValueType("value", ReplySpec, read, lambda spec: spec.source)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(name: str, raw: str) -> tuple[Network, ...]:
    out = []
    # Commas separate entries too: spamass-milter -i and glts --trusted-networks write them so.
    for entry in (part for word in raw.split() for part in word.split(",") if part.strip()):
        try:
            text = entry.strip().replace("[", "").replace("]", "")
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(
                name, f"{entry!r} is not a network: write 192.0.2.0/24 or 2001:db8::/32"
            ) from None
    return tuple(out)


VERBOSE_WORDS = (
    "all",
    "0",
    "info",
    "trace",
    "parse",
    "debug",
    "dialog",
    "state",
    "dns",
    "cache",
    "database",
    "socket-fd",
    "socket-all",
    "libmilter",
)


def _verbose(name: str, raw: str) -> frozenset[str]:
    words = {w.strip().lower() for w in raw.strip().split(",") if w.strip()}
    bad = words - set(VERBOSE_WORDS)
    if bad:
        raise ConfigError(
            name, f"unknown categories {sorted(bad)}; accepted: {', '.join(VERBOSE_WORDS)}"
        )
    if "all" in words:
        words |= set(VERBOSE_WORDS) - {"0"}
    return frozenset(words - {"0"})


def _access_map(name: str, raw: str) -> AccessMap:
    text = raw.strip()  # a bad map is a start-up error, not a surprise later
    return AccessMap.load(text) if text else AccessMap.empty()


MILTER_SOCKET: ValueType[SocketSpec] = ValueType(
    "value", SocketSpec, lambda name, raw: parse_milter_socket(raw.strip()), lambda s: s.source
)
SPAMD_SOCKETS: ValueType[tuple[SpamdEndpoint, ...]] = ValueType(
    "list",
    tuple[SpamdEndpoint, ...],
    lambda name, raw: parse_spamd_sockets(raw.split()),
    spamd_sockets_text,
)
SPAMD_TIMEOUTS: ValueType[SpamdTimeouts] = ValueType(
    "value",
    SpamdTimeouts,
    lambda name, raw: parse_spamd_timeouts(raw.strip()),
    lambda timeouts: timeouts.text(),
)
NETWORKS: ValueType[tuple[Network, ...]] = ValueType(
    "list", tuple[Network, ...], _networks, lambda nets: " ".join(str(n) for n in nets)
)
ACCESS_MAP: ValueType[AccessMap] = ValueType("value", AccessMap, _access_map, lambda m: m.source)
VERBOSE: ValueType[frozenset[str]] = ValueType(
    "value", frozenset[str], _verbose, lambda words: ",".join(sorted(words))
)
METRICS_LISTEN: ValueType[ListenAddress | None] = ValueType(
    "value",
    ListenAddress | None,
    lambda name, raw: parse_metrics_listen(raw.strip()),
    lambda listen: listen.source if listen else "",
)


ROW = "option"  # the key of a Config field's metadata that holds its row


def row(
    name: str, type: ValueType[T], default: str, help: str, *, group: str, legacy: bool = True
) -> T:
    """A row of the table, as the Config field that holds the option's value (a
    dataclasses.field carrying the row; the field itself has no default)."""
    option = Option(name, type, default, help, group, legacy)
    return cast(T, dataclasses.field(metadata={ROW: option}))
