"""The first part of THE option table: how spambridge is reached by the MTA (the milter
side) and how it reaches spamd (the spamd side). `Config` (table.py) inherits these rows and
adds the rest; a row is written as there, `attr: FieldType = _o(name, TYPE, default, help,
group=..., legacy=...)`."""

# Each field's "default" is `_o(...)`: a dataclasses.field carrying the option's row.
# ruff: noqa: RUF009

from __future__ import annotations

from dataclasses import dataclass

from spambridge.milter_socket import SocketSpec
from spambridge.options.choices import (
    OversizeAction,
    SpamdErrorAction,
    SpamdUserFrom,
)
from spambridge.options.values import (
    BOOL,
    FACTOR,
    MILTER_SOCKET,
    OCTAL_MODE,
    SECONDS,
    SPAMD_SOCKETS,
    SPAMD_TIMEOUTS,
    TEXT,
    WHOLE,
    choice,
    reply,
)
from spambridge.options.values import row as _o  # short: the table is eighty of them
from spambridge.replies import ReplySpec
from spambridge.spamd.endpoints import SpamdEndpoint, SpamdTimeouts
from spambridge.spamd.hosts import Select
from spambridge.spamd.protocol import SpamdCommand


@dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """The milter-side and spamd-side options: the first fields of every `Config`."""

    # --- milter side
    milter_socket: SocketSpec = _o(
        "milter-socket",
        MILTER_SOCKET,
        "unix:/run/spambridge/spambridge.sock",
        "Socket the MTA connects to: unix:/path, local:/path, inet:PORT@HOST, "
        "inet6:PORT@HOST, or Postfix's inet:HOST:PORT.",
        group="milter",
    )
    milter_timeout: float = _o(
        "milter-timeout",
        SECONDS.at_least(1),
        "7210",
        "Idle time allowed between two packets from the MTA before the connection is "
        "closed (libmilter's default).",
        group="milter",
    )
    milter_queue: int = _o(
        "milter-queue",
        WHOLE.at_least(1),
        "1024",
        "Listen backlog of the milter socket: connects the kernel holds until accepted "
        "(milter-spamc: 20; capped by net.core.somaxconn).",
        group="milter",
    )
    max_connections: int = _o(
        "max-connections",
        WHOLE.at_least(1),
        "1000",
        "Most MTA connections served at once; more are refused and logged.",
        group="milter",
        legacy=False,
    )
    max_frame_size: int = _o(
        "max-frame-size",
        WHOLE.at_least(65536 + 1),
        "1048576",
        "Largest milter packet accepted, in bytes (Postfix sends headers over 64 KiB "
        "as one packet).",
        group="milter",
        legacy=False,
    )
    progress_interval: float = _o(
        "progress-interval",
        SECONDS.at_least(0.1),
        "5",
        "While waiting on spamd after end of message, send a progress packet this often "
        "so the MTA's read timeout (Sendmail R=, default 10s) never fires.",
        group="milter",
        legacy=False,
    )
    milter_no_reply: bool = _o(
        "milter-no-reply",
        BOOL,
        "+",
        "Ask the MTA (milter protocol 6) not to wait for a reply to the steps spambridge "
        "always continues (connect, HELO, MAIL, RCPT, DATA, headers, body): fewer round "
        "trips per message. Turn it off (-milter-no-reply) for an MTA-side milter client that "
        "grants no-reply steps and waits for a reply anyway; spambridge then answers every "
        "step, as libmilter filters such as milter-spamc do.",
        group="milter",
        legacy=False,
    )
    socket_mode: int = _o(
        "socket-mode",
        OCTAL_MODE,
        "0660",
        "Permission bits of a unix milter socket (octal).",
        group="milter",
        legacy=False,
    )
    socket_group: str = _o(
        "socket-group",
        TEXT,
        "",
        "Group owning a unix milter socket (e.g. postfix); empty keeps the default.",
        group="milter",
        legacy=False,
    )
    # --- spamd side
    spamd_socket: tuple[SpamdEndpoint, ...] = _o(
        "spamd-socket",
        SPAMD_SOCKETS,
        "127.0.0.1:783",
        "spamd hosts: host:port, host,port, [v6addr]:port, /unix/path or ssl:host:port. "
        "Repeat the option or separate entries with spaces or commas for a pool. Empty disables "
        "scanning.",
        group="spamd",
    )
    spamd_timeout: float = _o(
        "spamd-timeout",
        SECONDS,
        "120",
        "milter-spamc's single spamd timeout: when set, it sets all four spamd-timeouts "
        "fields. 0 means the longest limit (1 hour).",
        group="spamd",
    )
    # spamd-timeout folded in when only it is given (config.py)
    spamd_timeouts: SpamdTimeouts = _o(
        "spamd-timeouts",
        SPAMD_TIMEOUTS,
        "C:5s;S:30s;R:110s;E:120s",
        "spamd timeouts in Sendmail's T= syntax: C connect (per host try), S send, "
        "R each read, E end (whole scan, failover and slot wait included).",
        group="spamd",
        legacy=False,
    )
    spamd_max_size: int = _o(
        "spamd-max-size",
        WHOLE.at_least(0),
        "500",
        "KB of the message given to spamd; 0 means no limit. Set without oversize-action "
        "(as in a milter-spamc file) it keeps milter-spamc's meaning: scan the first N KB.",
        group="spamd",
    )
    oversize_action: OversizeAction = _o(
        "oversize-action",
        choice(OversizeAction),
        "skip",
        "Message over spamd-max-size: skip (deliver unscanned) or truncate (milter-spamc's "
        "rule: whole body chunks until spamd-max-size KB of body, headers not counted). "
        "Defaults to truncate when spamd-max-size is set and this is not.",
        group="spamd",
        legacy=False,
    )
    spamd_max_reply_size: int = _o(
        "spamd-max-reply-size",
        WHOLE.at_least(1),
        "1024",
        "KB of spamd reply accepted (HEADERS and PROCESS replies may add the message's "
        "size); a longer reply is a bad response, handled by spamd-error-action.",
        group="spamd",
        legacy=False,
    )
    skip_body: bool = _o(
        "skip-body",
        BOOL,
        "-",
        "With oversize-action=skip, tell the MTA to stop sending a body once it is over "
        "spamd-max-size (milter SKIP). That needs a reply to every body chunk of every "
        "message, a round trip per 64 KB; worth it only when very large messages cross a "
        "slow link to the milter.",
        group="spamd",
        legacy=False,
    )
    spamd_command: SpamdCommand = _o(
        "spamd-command",
        choice(SpamdCommand),
        "REPORT",
        "spamd request: CHECK, SYMBOLS, REPORT, REPORT_IFSPAM (milter-spamc style), "
        "HEADERS or PROCESS (header-style=spamassassin; PROCESS with +spamd-rewrite-body).",
        group="spamd",
    )
    spamd_user: str = _o(
        "spamd-user",
        TEXT,
        "",
        "spamd User when no single local recipient is found.",
        group="spamd",
    )
    spamd_user_from: SpamdUserFrom = _o(
        "spamd-user-from",
        choice(SpamdUserFrom),
        "passwd",
        "Which spamd User a recipient gives (the last local recipient, as milter-spamc): "
        "passwd (its local part when it has a passwd entry, else spamd-user), local-part, "
        "address (user@domain, for SQL or virtual-config-dir preferences), domain, or fixed "
        "(always spamd-user).",
        group="spamd",
        legacy=False,
    )
    no_user_config: bool = _o(
        "no-user-config",
        BOOL,
        "-",
        "Always send spamd-user; never a per-recipient user.",
        group="spamd",
    )
    is_gateway: bool = _o(
        "is-gateway",
        BOOL,
        "-",
        "Treat a recipient at a local-use address literal as local (its local part becomes "
        "the spamd user).",
        group="spamd",
    )
    spamd_select: Select = _o(
        "spamd-select",
        choice(Select),
        "least-loaded",
        "How the spamd pool picks a host: least-loaded (fewest scans in flight per unit of "
        "weight, ties to the lowest recent latency), failover (in order), round-robin, "
        "random. A spamd-socket entry may end in ;weight=N (default 1) for a bigger host.",
        group="spamd",
        legacy=False,
    )
    spamd_connect_retries: int = _o(
        "spamd-connect-retries",
        WHOLE.at_least(1),
        "1",
        "Connect attempts per spamd host and scan.",
        group="spamd",
        legacy=False,
    )
    spamd_cooldown: float = _o(
        "spamd-cooldown",
        SECONDS.at_least(0),
        "30",
        "A spamd host that failed or is slow is set aside this long, then PINGed until it "
        "answers PONG, then on probation (one message at a time until 3 are answered within "
        "spamd-slow-factor times the pool's time); meanwhile it gets mail only if every other "
        "host fails. 0 disables set-asides.",
        group="spamd",
        legacy=False,
    )
    spamd_cooldown_max: float = _o(
        "spamd-cooldown-max",
        SECONDS.at_least(0),
        "600",
        "A set-aside on probation, or within its cool-down of the host's return, doubles the "
        "host's spamd-cooldown, up to this; once it has stayed in the pool that long it "
        "starts again from spamd-cooldown. At or below spamd-cooldown: no doubling.",
        group="spamd",
        legacy=False,
    )
    spamd_slow_factor: float = _o(
        "spamd-slow-factor",
        FACTOR,
        "5",
        "Set a spamd host aside as slow when, over its last spamd-slow-samples scans, its "
        "time is in the median this many times the pool's (the other hosts' median at the "
        "same scans in flight per unit of weight) and 50 ms above it; also the bound on "
        "probation. 0 disables.",
        group="spamd",
        legacy=False,
    )
    spamd_slow_samples: int = _o(
        "spamd-slow-samples",
        WHOLE.at_least(1),
        "5",
        "Scans a spamd host must have answered (since it last joined the pool) before it "
        "can be judged slow; also the window of its recent latency.",
        group="spamd",
        legacy=False,
    )
    spamd_max_connections: int = _o(
        "spamd-max-connections",
        WHOLE.at_least(1),
        "16",
        "Most concurrent scans (spamd queues silently when overloaded); waiting for a slot "
        "counts against the E timeout.",
        group="spamd",
        legacy=False,
    )
    spamd_ca_file: str = _o(
        "spamd-ca-file",
        TEXT,
        "",
        "CA file to verify ssl: spamd hosts (spamd --ssl).",
        group="spamd",
        legacy=False,
    )
    spamd_cert_file: str = _o(
        "spamd-cert-file",
        TEXT,
        "",
        "Client certificate (PEM) presented to ssl: spamd hosts, for spamd --ssl-verify "
        "(spamc --ssl-cert); the key may follow it in the same file.",
        group="spamd",
        legacy=False,
    )
    spamd_key_file: str = _o(
        "spamd-key-file",
        TEXT,
        "",
        "Private key (PEM, unencrypted) of spamd-cert-file (spamc --ssl-key).",
        group="spamd",
        legacy=False,
    )
    spamd_verify_name: bool = _o(
        "spamd-verify-name",
        BOOL,
        "+",
        "The ssl: entry's host name or IP address must be in spamd's certificate; "
        "-spamd-verify-name checks the CA chain only, as spamc does.",
        group="spamd",
        legacy=False,
    )
    spamd_error_action: SpamdErrorAction = _o(
        "spamd-error-action",
        choice(SpamdErrorAction),
        "accept",
        "When spamd is down, slow or answers badly: accept (fail open, deliver unchanged), "
        "tempfail (4xx, like Sendmail F=T) or reject (5xx, like F=R).",
        group="spamd",
        legacy=False,
    )
    spamd_tempfail_reply: ReplySpec = _o(
        "spamd-tempfail-reply",
        reply("4"),
        "451 4.7.1 spam scanner unavailable, try again later",
        "SMTP reply for spamd-error-action=tempfail.",
        group="spamd",
        legacy=False,
    )
    spamd_reject_reply: ReplySpec = _o(
        "spamd-reject-reply",
        reply("5"),
        "550 5.7.1 spam scanner unavailable",
        "SMTP reply for spamd-error-action=reject.",
        group="spamd",
        legacy=False,
    )
