"""THE option table, which is also the `Config` class: one field per option, in the order
`--help`, the option file, the README table and the man page show them.

A row is a field, `attr: FieldType = _o(name, TYPE, default, help, group=..., legacy=...)`:
the option's value type (values.py: `BOOL`, `WHOLE`, `NUMBER`, `OPTIONAL_NUMBER`, `SECONDS`,
`TEXT`, `choice(SomeLiteral)`, `reply("45")`, or a typed one such as `SPAMD_SOCKETS`;
`.at_least(N)` refuses smaller numbers), its default as written in an option file, its help,
its group, and whether milter-spamc has it under that name (legacy=True, the default). mypy
checks that TYPE reads a FieldType; tests/unit/test_options.py checks the names and the
Literal of each choice. Adding an option is one row here and the code that uses it.
"""

# Each Config field's "default" is `_o(...)`: a dataclasses.field carrying the option's row,
# not a value shared between instances; the field itself has no default.
# ruff: noqa: RUF009

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

from spambridge import styles
from spambridge.access import AccessMap
from spambridge.metrics import ListenAddress
from spambridge.milter_socket import SocketSpec
from spambridge.options.values import (
    ACCESS_MAP,
    BOOL,
    CHARACTER,
    FACTOR,
    METRICS_LISTEN,
    MILTER_SOCKET,
    NETWORKS,
    NUMBER,
    OCTAL_MODE,
    OPTIONAL_NUMBER,
    SECONDS,
    SPAMD_SOCKETS,
    SPAMD_TIMEOUTS,
    TEXT,
    VERBOSE,
    WHOLE,
    Option,
    ValueType,
    choice,
    reply,
)
from spambridge.replies import ReplySpec
from spambridge.spamd.endpoints import SpamdEndpoint, SpamdTimeouts
from spambridge.spamd.hosts import Select
from spambridge.spamd.protocol import SpamdCommand
from spambridge.spamd.tls import SpamdTls

T = TypeVar("T")
ROW = "option"  # the key of a Config field's metadata that holds its row


def _o(
    name: str, type: ValueType[T], default: str, help: str, *, group: str, legacy: bool = True
) -> T:
    """A row of the table, as the Config field that holds the option's value."""
    row = Option(name, type, default, help, group, legacy)
    return cast(T, dataclasses.field(metadata={ROW: row}))


# The choices of the choice options: one place, used by the table and by Config's types.
OversizeAction = Literal["skip", "truncate"]
SpamdUserFrom = Literal["passwd", "local-part", "address", "domain", "fixed"]
SpamdErrorAction = Literal["accept", "tempfail", "reject"]
# The styles package is the registry (its choices: styles.NAMES); the names are repeated here
# so Config's field is typed, and a test holds the two to one list.
HeaderStyle = Literal["milter-spamc", "rspamd", "spamassassin"]
MailPolicy = Literal["none", "copy", "redirect"]
ScanAuthenticated = Literal["skip", "tag", "full"]
EventLoop = Literal["auto", "asyncio", "uvloop"]
LogTarget = Literal["stderr", "syslog"]


@dataclass(frozen=True, slots=True)
class Config:
    """A finished configuration (build_config makes it), valid as a whole: each field one
    option, named as the option with '-' -> '_', its value read once into its type. A typed
    value the admin writes as text keeps that text in its `source`, for `check`."""

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
    # --- headers
    header_style: HeaderStyle = _o(
        "header-style",
        choice(HeaderStyle),
        styles.DEFAULT,
        "; ".join(f"{s.name}: {s.summary}" for s in styles.STYLES.values()) + ".",
        group="headers",
        legacy=False,
    )
    score_header: bool = _o(
        "score-header",
        BOOL,
        "-",
        "Add X-Spam-Score with the bare score (e.g. 7.31), with every header style, for "
        "Sieve's spamtest and simple filters; incoming X-Spam-Score headers are deleted.",
        group="headers",
        legacy=False,
    )
    spamd_rewrite_body: bool = _o(
        "spamd-rewrite-body",
        BOOL,
        "-",
        "With header-style=spamassassin and spamd-command=PROCESS: deliver the message as "
        "SpamAssassin rewrote it, body included (report_safe), like spamass-milter; the "
        "milter then asks the MTA for the body-change action.",
        group="headers",
        legacy=False,
    )
    always_add_flag: bool = _o(
        "always-add-flag", BOOL, "-", "Add X-Spam-Flag: NO to ham too.", group="headers"
    )
    always_add_level: bool = _o(
        "always-add-level", BOOL, "-", "Add X-Spam-Level to ham too.", group="headers"
    )
    level_character: str = _o(
        "level-character",
        CHARACTER,
        "x",
        "Character repeated in X-Spam-Level; empty disables the header.",
        group="headers",
    )
    subject_tag: str = _o(
        "subject-tag",
        TEXT,
        "[SPAM]",
        "Subject prefix for spam; empty disables tagging. A template when it holds %s "
        "(the original subject), %d (score, whole number), %f or %.1f-style (score with "
        "decimals), %% (a percent sign): '***SPAM*** %s', '[SPAM %.1f] %s'.",
        group="headers",
    )
    subject_tag_score: bool = _o(
        "subject-tag-score",
        BOOL,
        "-",
        "Add (score/threshold) to the subject tag.",
        group="headers",
    )
    add_scanned_by: bool = _o(
        "add-scanned-by", BOOL, "+", "Add the X-Scanned-By header.", group="headers", legacy=False
    )
    # --- actions
    extra_reject: float = _o(
        "extra-reject",
        NUMBER,
        "-1",
        "Reject spam when score >= threshold + N; -1 disables, 0 rejects all spam.",
        group="actions",
    )
    extra_discard: float = _o(
        "extra-discard",
        NUMBER,
        "-1",
        "Discard spam when score >= threshold + N; -1 disables.",
        group="actions",
    )
    discard_low_precedence: bool = _o(
        "discard-low-precedence",
        BOOL,
        "-",
        "Discard spam whose Precedence is list, junk or bulk (instead of rejecting or "
        "tagging it, as milter-spamc does).",
        group="actions",
    )
    reject_score: float | None = _o(
        "reject-score",
        OPTIONAL_NUMBER,
        "",
        "Reject when score >= this absolute value; empty disables.",
        group="actions",
        legacy=False,
    )
    discard_score: float | None = _o(
        "discard-score",
        OPTIONAL_NUMBER,
        "",
        "Discard when score >= this absolute value; empty disables.",
        group="actions",
        legacy=False,
    )
    tempfail_score: float | None = _o(
        "tempfail-score",
        OPTIONAL_NUMBER,
        "",
        "Soft reject: answer tempfail-reply (4xx, the client retries) when score >= this "
        "absolute value and no reject or discard applies; empty disables.",
        group="actions",
        legacy=False,
    )
    extra_tempfail: float = _o(
        "extra-tempfail",
        NUMBER,
        "-1",
        "Soft reject spam when score >= threshold + N (below the reject and discard "
        "thresholds); -1 disables.",
        group="actions",
        legacy=False,
    )
    tempfail_reply: ReplySpec = _o(
        "tempfail-reply",
        reply("4"),
        "451 4.7.1 message looks like spam, try again later",
        "SMTP reply for the soft reject band (tempfail-score, extra-tempfail); must be 4xx.",
        group="actions",
        legacy=False,
    )
    quarantine_score: float | None = _o(
        "quarantine-score",
        OPTIONAL_NUMBER,
        "",
        "Quarantine (Sendmail queue quarantine / Postfix hold queue) when score >= this; "
        "empty disables.",
        group="actions",
        legacy=False,
    )
    quarantine_reason: str = _o(
        "quarantine-reason",
        TEXT,
        "spam score %score%/%threshold%",
        "Quarantine reason text.",
        group="actions",
        legacy=False,
    )
    reject_reply: ReplySpec = _o(
        "reject-reply",
        reply("45"),
        "550 5.7.1 message was identified as junk mail",
        "SMTP reply code, enhanced code and text for a spam reject (the score is appended). "
        "A 4xx code defers instead of bouncing: '451 4.7.1 text'.",
        group="actions",
        legacy=False,
    )
    smtp_detailed_reply: bool = _o(
        "smtp-detailed-reply",
        BOOL,
        "+",
        "Multi-line reject listing the rules that hit; off gives 'This looks like spam.'",
        group="actions",
    )
    extra_low_spam: float = _o(
        "extra-low-spam",
        NUMBER,
        "-1",
        "Spam with score <= threshold + N goes to mail-low-spam instead of mail-spam; -1 disables.",
        group="actions",
    )
    mail_policy: MailPolicy = _o(
        "mail-policy",
        choice(MailPolicy),
        "none",
        "Spam neither rejected nor discarded: none, copy (bcc mail-spam) or redirect.",
        group="actions",
    )
    mail_spam: str = _o(
        "mail-spam", TEXT, "", "Spam collection address for copy and redirect.", group="actions"
    )
    mail_low_spam: str = _o(
        "mail-low-spam", TEXT, "", "Collection address for low-scoring spam.", group="actions"
    )
    mail_format: str = _o(
        "mail-format",
        TEXT,
        "",
        "With redirect and all recipients local: rewrite each recipient with %A %D %L %P "
        "%R %S %T %%.",
        group="actions",
    )
    mail_ham: str = _o("mail-ham", TEXT, "", "Copy clean mail to this address.", group="actions")
    mail_archive: str = _o(
        "mail-archive", TEXT, "", "Copy every message to this address.", group="actions"
    )
    max_untrusted: int = _o(
        "max-untrusted",
        WHOLE,
        "-1",
        "Most recipients that are not white-listed; more get 452 4.5.3. 0 or -1 disables "
        "(as milter-spamc).",
        group="actions",
    )
    dry_run: bool = _o(
        "dry-run",
        BOOL,
        "-",
        "Decide and log everything, change nothing: the MTA gets only Continue (access-map "
        "rejects and max-untrusted included) and no edit; the verdict line says what would "
        "have happened (action=dry-run:ACTION).",
        group="actions",
        legacy=False,
    )
    # --- what not to scan
    smtp_auth_ok: bool = _o(
        "smtp-auth-ok",
        BOOL,
        "+",
        "Do not scan mail from SMTP-authenticated senders.",
        group="policy",
    )
    scan_authenticated: ScanAuthenticated = _o(
        "scan-authenticated",
        choice(ScanAuthenticated),
        "skip",
        "Outbound mail (SMTP-authenticated with +smtp-auth-ok, or from trusted-networks): "
        "skip (not scanned), tag (scanned, headers only: never rejected, deferred, "
        "discarded, quarantined or redirected) or full (the whole policy, with "
        "outbound-reject-score when set). The verdict line says direction=outbound.",
        group="policy",
        legacy=False,
    )
    outbound_reject_score: float | None = _o(
        "outbound-reject-score",
        OPTIONAL_NUMBER,
        "",
        "With scan-authenticated=full: reject outbound mail when score >= this, in place of "
        "reject-score and extra-reject; empty keeps those.",
        group="policy",
        legacy=False,
    )
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _o(
        "trusted-networks",
        NETWORKS,
        "",
        "Client networks not scanned (CIDR, IPv4 and IPv6; separated by spaces or commas, "
        "or repeated). An IPv4-mapped IPv6 client matches its IPv4 network.",
        group="policy",
        legacy=False,
    )
    access_db: AccessMap = _o(
        "access-db",
        ACCESS_MAP,
        "",
        "Sendmail access map: text!/path (makemap's input) or /path.db. Empty disables.",
        group="policy",
    )
    smdb_relay_ok: bool = _o(
        "smdb-relay-ok",
        BOOL,
        "-",
        "Let access-db RELAY entries white-list like OK (libsnert's option). Off, as in "
        "milter-spamc: To:example.com RELAY, which lets Sendmail relay for a domain, must "
        "not stop the scanning of that domain's mail.",
        group="policy",
    )
    access_db_blacklist: bool = _o(
        "access-db-blacklist",
        BOOL,
        "-",
        "Let access-db REJECT, ERROR: and DISCARD entries reject or discard the message. Off by "
        "default, as in milter-spamc (built without its blacklist): those entries are the "
        "MTA's, which has applied them already, and only white-list entries skip the scan.",
        group="policy",
        legacy=False,
    )
    # --- process
    file: str = _o(
        "file",
        TEXT,
        "/etc/spambridge/spambridge.cf",
        "Option file read before the command line; file='' reads none.",
        group="process",
    )
    daemon: bool = _o(
        "daemon", BOOL, "-", "Detach and run in the background (SysV init).", group="process"
    )
    pid_file: str = _o("pid-file", TEXT, "", "Write the process id here.", group="process")
    run_user: str = _o(
        "run-user", TEXT, "", "Drop to this user after binding the sockets.", group="process"
    )
    run_group: str = _o(
        "run-group", TEXT, "", "Drop to this group after binding the sockets.", group="process"
    )
    work_dir: str = _o("work-dir", TEXT, "/", "Working directory.", group="process")
    shutdown_grace: float = _o(
        "shutdown-grace",
        SECONDS.at_least(0),
        "30",
        "On SIGTERM, how long in-flight messages may take to finish.",
        group="process",
        legacy=False,
    )
    event_loop: EventLoop = _o(
        "event-loop",
        choice(EventLoop),
        "auto",
        "asyncio event loop: uvloop (faster; pip install uvloop or the uvloop extra), asyncio, "
        "or auto = uvloop when installed, else asyncio.",
        group="process",
        legacy=False,
    )
    log: LogTarget = _o(
        "log",
        choice(LogTarget),
        "stderr",
        "Where log lines go: stderr or syslog (facility mail).",
        group="process",
        legacy=False,
    )
    verbose: frozenset[str] = _o(
        "verbose",
        VERBOSE,
        "info",
        "Comma list of log categories: info, debug, trace, dialog, state, socket-all, all, 0.",
        group="process",
    )
    metrics_listen: ListenAddress | None = _o(
        "metrics-listen",
        METRICS_LISTEN,
        "",
        "Serve Prometheus metrics on HOST:PORT with prometheus-client (the metrics extra: "
        "pip install 'spambridge[metrics]'); empty disables.",
        group="process",
        legacy=False,
    )
    explicit: frozenset[str] = frozenset()  # the options given, not defaulted

    @property
    def spamd_tls(self) -> SpamdTls:
        """The TLS settings of ssl: spamd entries."""
        return SpamdTls(
            self.spamd_ca_file, self.spamd_cert_file, self.spamd_key_file, self.spamd_verify_name
        )

    @property
    def max_scan_bytes(self) -> int:
        """spamd-max-size in bytes; 0 means no limit."""
        return self.spamd_max_size * 1024

    @property
    def truncate_bytes(self) -> int:
        """Body bytes milter-spamc takes before it stops (KB*1024 - KB/64: 65535 for 64 KB,
        one libmilter body chunk); 0 means no limit."""
        return self.spamd_max_size * 1024 - self.spamd_max_size // 64


OPTIONS: tuple[Option[Any], ...] = tuple(
    field.metadata[ROW] for field in dataclasses.fields(Config) if ROW in field.metadata
)
