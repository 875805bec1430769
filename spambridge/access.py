"""Sendmail access-map lookups with milter-spamc's tags and right-hand-side pattern lists.

Keys are `<tag><key>`, compared case-insensitively (makemap lowercases them too). The
right-hand side is either one action (``OK``, ``RELAY``, ``REJECT``, ``ERROR:550 text``,
``DISCARD``, ``SKIP``/``DUNNO``, ``NEXT``, ``FRIEND``, ``HATER``, or an SMTP reply such as
``550 5.7.1 text``) or a space-separated pattern list, first match wins:

    [192.0.2.0/24]OK  [IPv6:2001:db8::/32]REJECT  !*.example.net!DISCARD  /^mx[0-9]+\\./SKIP  NEXT

``[cidr]`` matches the client IP; ``!glob!`` and ``/regex/`` (both case-insensitive) match the
looked-up name or address. Patterns cannot contain spaces (use ``\\s`` in a regex); a plain
action ends the list and may contain spaces (``ERROR:550 go away``). A list where nothing
matches, a ``NEXT``, and an unknown action word all continue with the next key.

Text is decoded as UTF-8 with surrogateescape, so `AccessResult.text` round-trips to the
original bytes through `AccessResult.text_bytes`.
"""

from __future__ import annotations

import enum
import fnmatch
import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from spambridge.errors import ConfigError

_OPTION = "access-db"
_CODEC = ("utf-8", "surrogateescape")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AccessAction(enum.Enum):
    OK = "OK"
    RELAY = "RELAY"  # treated as OK
    REJECT = "REJECT"
    ERROR = "ERROR"  # treated as REJECT, with its own reply text
    DISCARD = "DISCARD"
    SKIP = "SKIP"
    DUNNO = "SKIP"  # alias: Postfix's word for SKIP
    NEXT = "NEXT"  # never returned: it means "keep looking"
    FRIEND = "FRIEND"  # Spam: tag, recipient wants spam
    HATER = "HATER"  # Spam: tag, recipient wants filtering

    @property
    def accepts(self) -> bool:
        return self in (AccessAction.OK, AccessAction.RELAY)

    @property
    def rejects(self) -> bool:
        return self in (AccessAction.REJECT, AccessAction.ERROR)


@dataclass(frozen=True, slots=True)
class AccessResult:
    action: AccessAction
    text: str  # reply text of ERROR:/numeric entries ("550 5.7.1 go away"), else ""
    key: str  # the entry that matched, e.g. "connect:192.0.2", for the log

    @property
    def text_bytes(self) -> bytes:
        return self.text.encode(*_CODEC)


class AccessMap:
    """An immutable access map held in memory; build it with `load` or `empty`. `source` is
    the access-db value it was loaded from, as the admin wrote it (what `check` prints)."""

    def __init__(self, entries: Mapping[str, str], source: str = "") -> None:
        self._entries = {key.lower(): value for key, value in entries.items()}
        self.source = source

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccessMap):
            return NotImplemented
        return self.source == other.source and self._entries == other._entries

    def __hash__(self) -> int:
        return hash(self.source)

    @classmethod
    def empty(cls) -> AccessMap:
        return cls({})

    @classmethod
    def load(cls, spec: str) -> AccessMap:
        """Load `text!/path`, `/path.db`, `db!/path`, `db!hash!/path` or `db!btree!/path`.

        A bare path ending in ".db" is a Berkeley DB map, any other bare path a text map.
        Berkeley DB maps are read with the `berkeleydb` module when it is installed,
        otherwise by asking `makemap -u` (the tool that wrote them) to dump them.
        """
        kind, db_type, path = _parse_spec(spec)
        if kind == "db" and not os.path.exists(path) and os.path.exists(path + ".db"):
            path += ".db"  # sendmail names maps without the suffix makemap adds
        if not os.path.exists(path):
            raise ConfigError(_OPTION, f"map file {path!r} does not exist")
        if kind == "text":
            try:
                with open(path, "rb") as stream:
                    data = stream.read()
            except OSError as error:
                raise ConfigError(_OPTION, f"cannot read {path!r}: {error}") from error
            return cls(dict(_parse_text(data)), spec)
        return cls(dict(_read_db(path, db_type)), spec)

    # ------------------------------------------------------------ lookups by stage

    def connect(self, client_name: bytes, client_addr: bytes) -> AccessResult | None:
        """Tags milter-spamc-Connect: then Connect:; keys: IP, IP prefixes, host, parents."""
        ip = _parse_ip(client_addr)
        keys = [*_ip_keys(ip), *_domain_keys(_text(client_name).strip("[]."))]
        subjects = [_text(client_name), _text(client_addr)]
        return self._lookup(("milter-spamc-connect:", "connect:"), keys, subjects, ip)

    def sender(self, address: bytes, client_addr: bytes = b"") -> AccessResult | None:
        """Tags milter-spamc-From: then From:; keys: user@domain, domain, parents, user@."""
        return self._address(("milter-spamc-from:", "from:"), address, client_addr)

    def recipient(self, address: bytes, client_addr: bytes = b"") -> AccessResult | None:
        """Tags milter-spamc-To:, Spam: (FRIEND/HATER), To:; keys as for `sender`."""
        return self._address(("milter-spamc-to:", "spam:", "to:"), address, client_addr)

    def auth(self, authen: bytes, client_addr: bytes = b"") -> AccessResult | None:
        """Tag milter-spamc-Auth:; key: the {auth_authen} login name. None when not authed."""
        login = _text(authen).strip()
        if not login:
            return None
        return self._lookup(("milter-spamc-auth:",), [login], [login], _parse_ip(client_addr))

    # ------------------------------------------------------------ search

    def _address(
        self, tags: tuple[str, ...], address: bytes, client_addr: bytes
    ) -> AccessResult | None:
        bare = _text(address).strip().strip("<>").strip()
        return self._lookup(tags, _address_keys(bare), [bare], _parse_ip(client_addr))

    def _lookup(
        self,
        tags: tuple[str, ...],
        keys: Iterable[str],
        subjects: list[str],
        ip: IPAddress | None,
    ) -> AccessResult | None:
        """Every key under every tag in order, then the milter's bare default tag."""
        keys = list(keys)
        candidates = [tag + key.lower() for tag in tags for key in keys]
        candidates.append(tags[0])  # e.g. "milter-spamc-connect:" with an empty key
        for candidate in candidates:
            value = self._entries.get(candidate)
            if value is None:
                continue
            result = _evaluate(value, subjects, ip)
            if result is not None:
                action, text = result
                return AccessResult(action, text, candidate)
        return None


# ---------------------------------------------------------------- key search orders


def _text(value: bytes) -> str:
    return value.decode(*_CODEC)


def _parse_ip(value: bytes) -> IPAddress | None:
    text = _text(value).strip().strip("[]")
    if text[:5].lower() == "ipv6:":
        text = text[5:]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def unmapped(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 client (::ffff:192.0.2.7, a dual-stack listener's view of an IPv4
    peer) as the IPv4 address it stands for; any other address as it is."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _ip_keys(ip: IPAddress | None) -> list[str]:
    """192.0.2.1, 192.0.2, 192.0, 192; IPv6 as IPv6:<compressed> then 16-bit group prefixes."""
    if ip is None:
        return []
    ip = unmapped(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        octets = str(ip).split(".")
        return [".".join(octets[:n]) for n in range(4, 0, -1)]
    groups = [f"{int(group, 16):x}" for group in ip.exploded.split(":")]
    keys = [f"IPv6:{ip.compressed}"]
    keys += ["IPv6:" + ":".join(groups[:n]) for n in range(8, 0, -1)]
    return list(dict.fromkeys(keys))


def _domain_keys(name: str) -> list[str]:
    """host.example.com, example.com, com."""
    labels = [label for label in name.lower().split(".") if label]
    if not labels or _is_ip_text(name):
        return []
    return [".".join(labels[n:]) for n in range(len(labels))]


def _is_ip_text(text: str) -> bool:
    return _parse_ip(text.encode(*_CODEC)) is not None


def _address_keys(address: str) -> list[str]:
    """user@example.com, example.com, com, user@; "<>" for the null sender."""
    if not address:
        return ["<>"]
    local, at, domain = address.rpartition("@")
    if not at:
        return [address]
    domain = domain.strip("[]")
    keys = [address]
    keys += _domain_keys(domain) or ([domain] if domain else [])
    if local:
        keys.append(local + "@")
    return list(dict.fromkeys(keys))


# ---------------------------------------------------------------- right-hand sides

_ACTION_WORDS: dict[str, AccessAction] = {
    "OK": AccessAction.OK,
    "RELAY": AccessAction.RELAY,
    "REJECT": AccessAction.REJECT,
    "DISCARD": AccessAction.DISCARD,
    "SKIP": AccessAction.SKIP,
    "DUNNO": AccessAction.SKIP,
    "NEXT": AccessAction.NEXT,
    "FRIEND": AccessAction.FRIEND,
    "HATER": AccessAction.HATER,
}
_REPLY_CODE = re.compile(r"^[45][0-9][0-9](?:[ -]|$)")


def _evaluate(
    value: str, subjects: list[str], ip: IPAddress | None
) -> tuple[AccessAction, str] | None:
    """The action a right-hand side gives for these subjects, or None to keep looking."""
    for token, rest in _tokens(value):
        if token[:1] in "[!/":
            matched, action_word = _match_pattern(token, subjects, ip)
            if not matched:
                continue
            parsed = _parse_action(action_word)
        else:
            parsed = _parse_action(rest)
        if parsed is None or parsed[0] is AccessAction.NEXT:
            return None
        return parsed
    return None


def _tokens(value: str) -> Iterator[tuple[str, str]]:
    """Each whitespace-separated token with the text from it to the end of the value."""
    for match in re.finditer(r"\S+", value):
        yield match.group(), value[match.start() :].strip()


def _match_pattern(token: str, subjects: list[str], ip: IPAddress | None) -> tuple[bool, str]:
    """(whether the pattern matches, its action word). A malformed pattern never matches."""
    opener = token[0]
    closer = "]" if opener == "[" else opener
    end = token.rfind(closer)
    if end <= 0:
        return False, ""
    pattern, action_word = token[1:end], token[end + 1 :]
    if opener == "[":
        return _match_cidr(pattern, ip), action_word
    if opener == "!":
        glob = pattern.lower()
        return any(fnmatch.fnmatchcase(s.lower(), glob) for s in subjects if s), action_word
    try:
        regex = re.compile(pattern, re.IGNORECASE)
    except re.error:
        return False, action_word
    return any(regex.search(s) for s in subjects if s), action_word


def _match_cidr(pattern: str, ip: IPAddress | None) -> bool:
    if ip is None:
        return False
    if pattern[:5].lower() == "ipv6:":
        pattern = pattern[5:]
    try:
        network = ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return False
    ip = unmapped(ip)
    return ip.version == network.version and ip in network


def _parse_action(text: str) -> tuple[AccessAction, str] | None:
    """("ERROR:550 go away") -> (ERROR, "550 go away"); unknown words give None."""
    text = text.strip()
    if _REPLY_CODE.match(text):
        return AccessAction.ERROR, text
    word, colon, detail = text.partition(":")
    if word.upper() == "ERROR" and colon:
        return AccessAction.ERROR, detail.strip()
    word = text.split(None, 1)[0] if text else ""
    action = _ACTION_WORDS.get(word.upper())
    return None if action is None else (action, "")


# ---------------------------------------------------------------- files


def _parse_spec(spec: str) -> tuple[str, str, str]:
    """(kind "text" or "db", db type "hash"/"btree"/"" for either, path)."""
    parts = spec.split("!")
    head = parts[0].lower()
    if len(parts) == 1:
        return ("db" if spec.endswith(".db") else "text"), "", spec
    if head == "text" and len(parts) == 2:
        return "text", "", parts[1]
    if head == "db" and len(parts) == 2:
        return "db", "", parts[1]
    if head == "db" and len(parts) == 3 and parts[1].lower() in ("hash", "btree"):
        return "db", parts[1].lower(), parts[2]
    if head in ("hash", "btree") and len(parts) == 2:
        return "db", head, parts[1]
    raise ConfigError(
        _OPTION,
        f"unsupported map {spec!r}: use text!PATH, PATH.db, db!PATH, db!hash!PATH or db!btree!PATH",
    )


def _parse_text(data: bytes) -> Iterator[tuple[str, str]]:
    """makemap's input: `key<whitespace>value`, `#` comment lines, blank lines.

    The first entry for a key wins, as makemap (without -r) keeps it. A key with no value
    is ignored.
    """
    seen: set[str] = set()
    for raw in data.splitlines():
        line = raw.decode(*_CODEC).strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            continue
        key = parts[0].lower()
        if key not in seen:
            seen.add(key)
            yield key, parts[1].strip()


def _read_db(path: str, db_type: str) -> list[tuple[str, str]]:
    types = [db_type] if db_type else ["hash", "btree"]
    try:
        return _read_db_module(path, types)
    except ImportError:
        pass
    makemap = shutil.which("makemap") or next(
        (p for p in ("/usr/sbin/makemap", "/usr/bin/makemap") if os.path.exists(p)), None
    )
    if makemap is None:
        raise ConfigError(
            _OPTION,
            "hashed .db maps need the berkeleydb module or sendmail's makemap; use text!PATH",
        )
    errors: list[str] = []
    for kind in types:
        try:
            done = subprocess.run(
                [makemap, "-u", kind, path], capture_output=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            errors.append(f"{kind}: {error}")
            continue
        if done.returncode == 0:
            return _parse_dump(done.stdout)
        errors.append(f"{kind}: {done.stderr.decode(*_CODEC).strip()}")
    raise ConfigError(_OPTION, f"cannot read {path!r} as a Berkeley DB map ({'; '.join(errors)})")


def _parse_dump(data: bytes) -> list[tuple[str, str]]:
    """`makemap -u` output: key TAB value per line (keys may be empty: a bare tag)."""
    entries: list[tuple[str, str]] = []
    for raw in data.splitlines():
        key, _tab, value = raw.decode(*_CODEC).partition("\t")
        if value.strip():
            entries.append((key.strip().lower(), value.strip()))
    return entries


def _read_db_module(path: str, types: list[str]) -> list[tuple[str, str]]:
    from berkeleydb import db as bdb  # type: ignore[import-not-found]  # optional module

    errors: list[str] = []
    for kind in types:
        db_kind = bdb.DB_HASH if kind == "hash" else bdb.DB_BTREE
        database = bdb.DB()
        try:
            database.open(path, None, db_kind, bdb.DB_RDONLY)
        except bdb.DBError as error:
            errors.append(f"{kind}: {error}")
            continue
        try:
            return [
                (key.rstrip(b"\0").decode(*_CODEC).lower(), value.rstrip(b"\0").decode(*_CODEC))
                for key, value in database.items()
            ]
        finally:
            database.close()
    raise ConfigError(_OPTION, f"cannot read {path!r} as a Berkeley DB map ({'; '.join(errors)})")
