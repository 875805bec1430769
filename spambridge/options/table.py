"""THE option table: one row per option, in the order `--help`, the option file, the README
table and the man page show them.

A row is the option's name, its type, its default as written in an option file, its help,
its group and whether milter-spamc has it under that name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from spambridge.spamd.hosts import SELECT_MODES
from spambridge.spamd.protocol import COMMANDS

Kind = Literal["bool", "int", "float", "str", "list", "choice", "seconds", "optfloat"]


@dataclass(frozen=True, slots=True)
class Option:
    name: str
    kind: Kind
    default: str  # as it would be written in an option file
    help: str
    choices: tuple[str, ...] = ()
    group: str = "general"
    legacy: bool = True  # the option exists in milter-spamc with this name

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")


def _o(
    name: str,
    kind: Kind,
    default: str,
    help: str,
    choices: tuple[str, ...] = (),
    *,
    group: str,
    legacy: bool = True,
) -> Option:
    return Option(name, kind, default, help, choices, group, legacy)


# The choices of the choice options: one place, used by the table and by Config's types.
OversizeAction = Literal["skip", "truncate"]
SpamdUserFrom = Literal["passwd", "local-part", "address", "domain", "fixed"]
SpamdErrorAction = Literal["accept", "tempfail", "reject"]
HeaderStyle = Literal["milter-spamc", "spamassassin"]
MailPolicy = Literal["none", "copy", "redirect"]
ScanAuthenticated = Literal["skip", "tag", "full"]
EventLoop = Literal["auto", "asyncio", "uvloop"]
LogTarget = Literal["stderr", "syslog"]


OPTIONS: tuple[Option, ...] = (
    # --- milter side
    _o(
        "milter-socket",
        "str",
        "unix:/run/spambridge/spambridge.sock",
        "Socket the MTA connects to: unix:/path, local:/path, inet:PORT@HOST, "
        "inet6:PORT@HOST, or Postfix's inet:HOST:PORT.",
        group="milter",
    ),
    _o(
        "milter-timeout",
        "seconds",
        "7210",
        "Idle time allowed between two packets from the MTA before the connection is "
        "closed (libmilter's default).",
        group="milter",
    ),
    _o(
        "milter-queue",
        "int",
        "1024",
        "Listen backlog of the milter socket: connects the kernel holds until accepted "
        "(milter-spamc: 20; capped by net.core.somaxconn).",
        group="milter",
    ),
    _o(
        "max-connections",
        "int",
        "1000",
        "Most MTA connections served at once; more are refused and logged.",
        group="milter",
        legacy=False,
    ),
    _o(
        "max-frame-size",
        "int",
        "1048576",
        "Largest milter packet accepted, in bytes (Postfix sends headers over 64 KiB "
        "as one packet).",
        group="milter",
        legacy=False,
    ),
    _o(
        "progress-interval",
        "seconds",
        "5",
        "While waiting on spamd after end of message, send a progress packet this often "
        "so the MTA's read timeout (Sendmail R=, default 10s) never fires.",
        group="milter",
        legacy=False,
    ),
    _o(
        "socket-mode",
        "str",
        "0660",
        "Permission bits of a unix milter socket (octal).",
        group="milter",
        legacy=False,
    ),
    _o(
        "socket-group",
        "str",
        "",
        "Group owning a unix milter socket (e.g. postfix); empty keeps the default.",
        group="milter",
        legacy=False,
    ),
    # --- spamd side
    _o(
        "spamd-socket",
        "list",
        "127.0.0.1:783",
        "spamd hosts: host:port, host,port, [v6addr]:port, /unix/path or ssl:host:port. "
        "Repeat the option or separate entries with spaces or commas for a pool. Empty disables "
        "scanning.",
        group="spamd",
    ),
    _o(
        "spamd-timeout",
        "seconds",
        "120",
        "milter-spamc's single spamd timeout: when set, it sets all four spamd-timeouts "
        "fields. 0 means the longest limit (1 hour).",
        group="spamd",
    ),
    _o(
        "spamd-timeouts",
        "str",
        "C:5s;S:30s;R:110s;E:120s",
        "spamd timeouts in Sendmail's T= syntax: C connect (per host try), S send, "
        "R each read, E end (whole scan, failover and slot wait included).",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-max-size",
        "int",
        "500",
        "KB of the message given to spamd; 0 means no limit. Set without oversize-action "
        "(as in a milter-spamc file) it keeps milter-spamc's meaning: scan the first N KB.",
        group="spamd",
    ),
    _o(
        "oversize-action",
        "choice",
        "skip",
        "Message over spamd-max-size: skip (deliver unscanned) or truncate (milter-spamc's "
        "rule: whole body chunks until spamd-max-size KB of body, headers not counted). "
        "Defaults to truncate when spamd-max-size is set and this is not.",
        get_args(OversizeAction),
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-max-reply-size",
        "int",
        "1024",
        "KB of spamd reply accepted (HEADERS and PROCESS replies may add the message's "
        "size); a longer reply is a bad response, handled by spamd-error-action.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "skip-body",
        "bool",
        "-",
        "With oversize-action=skip, tell the MTA to stop sending a body once it is over "
        "spamd-max-size (milter SKIP). That needs a reply to every body chunk of every "
        "message, a round trip per 64 KB; worth it only when very large messages cross a "
        "slow link to the milter.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-command",
        "choice",
        "REPORT",
        "spamd request: CHECK, SYMBOLS, REPORT, REPORT_IFSPAM (milter-spamc style), "
        "HEADERS or PROCESS (header-style=spamassassin; PROCESS with +spamd-rewrite-body).",
        COMMANDS,
        group="spamd",
    ),
    _o(
        "spamd-user",
        "str",
        "",
        "spamd User when no single local recipient is found.",
        group="spamd",
    ),
    _o(
        "spamd-user-from",
        "choice",
        "passwd",
        "Which spamd User a recipient gives (the last local recipient, as milter-spamc): "
        "passwd (its local part when it has a passwd entry, else spamd-user), local-part, "
        "address (user@domain, for SQL or virtual-config-dir preferences), domain, or fixed "
        "(always spamd-user).",
        get_args(SpamdUserFrom),
        group="spamd",
        legacy=False,
    ),
    _o(
        "no-user-config",
        "bool",
        "-",
        "Always send spamd-user; never a per-recipient user.",
        group="spamd",
    ),
    _o(
        "is-gateway",
        "bool",
        "-",
        "Treat a recipient at a local-use address literal as local (its local part becomes "
        "the spamd user).",
        group="spamd",
    ),
    _o(
        "spamd-select",
        "choice",
        "least-loaded",
        "How the spamd pool picks a host: least-loaded (fewest scans in flight per unit of "
        "weight, ties to the lowest recent latency), failover (in order), round-robin, "
        "random. A spamd-socket entry may end in ;weight=N (default 1) for a bigger host.",
        SELECT_MODES,
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-connect-retries",
        "int",
        "1",
        "Connect attempts per spamd host and scan.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-cooldown",
        "seconds",
        "30",
        "A spamd host that failed or is slow is set aside this long, then PINGed until it "
        "answers PONG; meanwhile it gets mail only if every other host fails. 0 disables "
        "set-asides.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-slow-factor",
        "float",
        "5",
        "Set a spamd host aside as slow when the median of its last spamd-slow-samples "
        "scans is this many times the pool's (the other hosts' median) and 50 ms above it; "
        "0 disables.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-slow-samples",
        "int",
        "5",
        "Scans a spamd host must have answered (since it last joined the pool) before it "
        "can be judged slow; also the window of its recent latency.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-max-connections",
        "int",
        "16",
        "Most concurrent scans (spamd queues silently when overloaded); waiting for a slot "
        "counts against the E timeout.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-ca-file",
        "str",
        "",
        "CA file to verify ssl: spamd hosts (spamd --ssl).",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-error-action",
        "choice",
        "accept",
        "When spamd is down, slow or answers badly: accept (fail open, deliver unchanged), "
        "tempfail (4xx, like Sendmail F=T) or reject (5xx, like F=R).",
        get_args(SpamdErrorAction),
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-tempfail-reply",
        "str",
        "451 4.7.1 spam scanner unavailable, try again later",
        "SMTP reply for spamd-error-action=tempfail.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-reject-reply",
        "str",
        "550 5.7.1 spam scanner unavailable",
        "SMTP reply for spamd-error-action=reject.",
        group="spamd",
        legacy=False,
    ),
    # --- headers
    _o(
        "header-style",
        "choice",
        "milter-spamc",
        "milter-spamc: X-Spam-* headers in milter-spamc's formats; spamassassin: copy "
        "SpamAssassin's own X-Spam-* headers (spamd-command=HEADERS).",
        get_args(HeaderStyle),
        group="headers",
        legacy=False,
    ),
    _o(
        "spamd-rewrite-body",
        "bool",
        "-",
        "With header-style=spamassassin and spamd-command=PROCESS: deliver the message as "
        "SpamAssassin rewrote it, body included (report_safe), like spamass-milter; the "
        "milter then asks the MTA for the body-change action.",
        group="headers",
        legacy=False,
    ),
    _o("always-add-flag", "bool", "-", "Add X-Spam-Flag: NO to ham too.", group="headers"),
    _o("always-add-level", "bool", "-", "Add X-Spam-Level to ham too.", group="headers"),
    _o(
        "level-character",
        "str",
        "x",
        "Character repeated in X-Spam-Level; empty disables the header.",
        group="headers",
    ),
    _o(
        "subject-tag",
        "str",
        "[SPAM]",
        "Subject prefix for spam; empty disables tagging. A template when it holds %s "
        "(the original subject), %d (score, whole number), %f or %.1f-style (score with "
        "decimals), %% (a percent sign): '***SPAM*** %s', '[SPAM %.1f] %s'.",
        group="headers",
    ),
    _o(
        "subject-tag-score",
        "bool",
        "-",
        "Add (score/threshold) to the subject tag.",
        group="headers",
    ),
    _o(
        "add-scanned-by", "bool", "+", "Add the X-Scanned-By header.", group="headers", legacy=False
    ),
    # --- actions
    _o(
        "extra-reject",
        "float",
        "-1",
        "Reject spam when score >= threshold + N; -1 disables, 0 rejects all spam.",
        group="actions",
    ),
    _o(
        "extra-discard",
        "float",
        "-1",
        "Discard spam when score >= threshold + N; -1 disables.",
        group="actions",
    ),
    _o(
        "discard-low-precedence",
        "bool",
        "-",
        "Discard spam whose Precedence is list, junk or bulk (instead of rejecting or "
        "tagging it, as milter-spamc does).",
        group="actions",
    ),
    _o(
        "reject-score",
        "optfloat",
        "",
        "Reject when score >= this absolute value; empty disables.",
        group="actions",
        legacy=False,
    ),
    _o(
        "discard-score",
        "optfloat",
        "",
        "Discard when score >= this absolute value; empty disables.",
        group="actions",
        legacy=False,
    ),
    _o(
        "tempfail-score",
        "optfloat",
        "",
        "Soft reject: answer tempfail-reply (4xx, the client retries) when score >= this "
        "absolute value and no reject or discard applies; empty disables.",
        group="actions",
        legacy=False,
    ),
    _o(
        "extra-tempfail",
        "float",
        "-1",
        "Soft reject spam when score >= threshold + N (below the reject and discard "
        "thresholds); -1 disables.",
        group="actions",
        legacy=False,
    ),
    _o(
        "tempfail-reply",
        "str",
        "451 4.7.1 message looks like spam, try again later",
        "SMTP reply for the soft reject band (tempfail-score, extra-tempfail); must be 4xx.",
        group="actions",
        legacy=False,
    ),
    _o(
        "quarantine-score",
        "optfloat",
        "",
        "Quarantine (Sendmail queue quarantine / Postfix hold queue) when score >= this; "
        "empty disables.",
        group="actions",
        legacy=False,
    ),
    _o(
        "quarantine-reason",
        "str",
        "spam score %score%/%threshold%",
        "Quarantine reason text.",
        group="actions",
        legacy=False,
    ),
    _o(
        "reject-reply",
        "str",
        "550 5.7.1 message was identified as junk mail",
        "SMTP reply code, enhanced code and text for a spam reject (the score is appended). "
        "A 4xx code defers instead of bouncing: '451 4.7.1 text'.",
        group="actions",
        legacy=False,
    ),
    _o(
        "smtp-detailed-reply",
        "bool",
        "+",
        "Multi-line reject listing the rules that hit; off gives 'This looks like spam.'",
        group="actions",
    ),
    _o(
        "extra-low-spam",
        "float",
        "-1",
        "Spam with score <= threshold + N goes to mail-low-spam instead of mail-spam; -1 disables.",
        group="actions",
    ),
    _o(
        "mail-policy",
        "choice",
        "none",
        "Spam neither rejected nor discarded: none, copy (bcc mail-spam) or redirect.",
        get_args(MailPolicy),
        group="actions",
    ),
    _o("mail-spam", "str", "", "Spam collection address for copy and redirect.", group="actions"),
    _o("mail-low-spam", "str", "", "Collection address for low-scoring spam.", group="actions"),
    _o(
        "mail-format",
        "str",
        "",
        "With redirect and all recipients local: rewrite each recipient with %A %D %L %P "
        "%R %S %T %%.",
        group="actions",
    ),
    _o("mail-ham", "str", "", "Copy clean mail to this address.", group="actions"),
    _o("mail-archive", "str", "", "Copy every message to this address.", group="actions"),
    _o(
        "max-untrusted",
        "int",
        "-1",
        "Most recipients that are not white-listed; more get 452 4.5.3. 0 or -1 disables "
        "(as milter-spamc).",
        group="actions",
    ),
    _o(
        "dry-run",
        "bool",
        "-",
        "Decide and log everything, change nothing: the MTA gets only Continue (access-map "
        "rejects and max-untrusted included) and no edit; the verdict line says what would "
        "have happened (action=dry-run:ACTION).",
        group="actions",
        legacy=False,
    ),
    # --- what not to scan
    _o(
        "smtp-auth-ok",
        "bool",
        "+",
        "Do not scan mail from SMTP-authenticated senders.",
        group="policy",
    ),
    _o(
        "scan-authenticated",
        "choice",
        "skip",
        "Outbound mail (SMTP-authenticated with +smtp-auth-ok, or from trusted-networks): "
        "skip (not scanned), tag (scanned, headers only: never rejected, deferred, "
        "discarded, quarantined or redirected) or full (the whole policy, with "
        "outbound-reject-score when set). The verdict line says direction=outbound.",
        get_args(ScanAuthenticated),
        group="policy",
        legacy=False,
    ),
    _o(
        "outbound-reject-score",
        "optfloat",
        "",
        "With scan-authenticated=full: reject outbound mail when score >= this, in place of "
        "reject-score and extra-reject; empty keeps those.",
        group="policy",
        legacy=False,
    ),
    _o(
        "trusted-networks",
        "list",
        "",
        "Client networks not scanned (CIDR, IPv4 and IPv6; separated by spaces or commas, "
        "or repeated). An IPv4-mapped IPv6 client matches its IPv4 network.",
        group="policy",
        legacy=False,
    ),
    _o(
        "access-db",
        "str",
        "",
        "Sendmail access map: text!/path (makemap's input) or /path.db. Empty disables.",
        group="policy",
    ),
    _o(
        "smdb-relay-ok",
        "bool",
        "-",
        "Let access-db RELAY entries white-list like OK (libsnert's option). Off, as in "
        "milter-spamc: To:example.com RELAY, which lets Sendmail relay for a domain, must "
        "not stop the scanning of that domain's mail.",
        group="policy",
    ),
    _o(
        "access-db-blacklist",
        "bool",
        "-",
        "Let access-db REJECT, ERROR: and DISCARD entries reject or discard the message. Off by "
        "default, as in milter-spamc (built without its blacklist): those entries are the "
        "MTA's, which has applied them already, and only white-list entries skip the scan.",
        group="policy",
        legacy=False,
    ),
    # --- process
    _o(
        "file",
        "str",
        "/etc/spambridge/spambridge.cf",
        "Option file read before the command line; file='' reads none.",
        group="process",
    ),
    _o("daemon", "bool", "-", "Detach and run in the background (SysV init).", group="process"),
    _o("pid-file", "str", "", "Write the process id here.", group="process"),
    _o("run-user", "str", "", "Drop to this user after binding the sockets.", group="process"),
    _o("run-group", "str", "", "Drop to this group after binding the sockets.", group="process"),
    _o("work-dir", "str", "/", "Working directory.", group="process"),
    _o(
        "shutdown-grace",
        "seconds",
        "30",
        "On SIGTERM, how long in-flight messages may take to finish.",
        group="process",
        legacy=False,
    ),
    _o(
        "event-loop",
        "choice",
        "auto",
        "asyncio event loop: uvloop (faster; pip install uvloop or the uvloop extra), asyncio, "
        "or auto = uvloop when installed, else asyncio.",
        get_args(EventLoop),
        group="process",
        legacy=False,
    ),
    _o(
        "log",
        "choice",
        "stderr",
        "Where log lines go: stderr or syslog (facility mail).",
        get_args(LogTarget),
        group="process",
        legacy=False,
    ),
    _o(
        "verbose",
        "str",
        "info",
        "Comma list of log categories: info, debug, trace, dialog, state, socket-all, all, 0.",
        group="process",
    ),
    _o(
        "metrics-listen",
        "str",
        "",
        "Serve Prometheus metrics on HOST:PORT with prometheus-client (the metrics extra: "
        "pip install 'spambridge[metrics]'); empty disables.",
        group="process",
        legacy=False,
    ),
)

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


# How a boolean is written: +name, -name, or name=WORD with one of these words.
TRUE_WORDS = frozenset({"+", "1", "yes", "true", "on"})
FALSE_WORDS = frozenset({"-", "0", "no", "false", "off", ""})


def boolean(value: str) -> bool | None:
    """The boolean `value` stands for, None when it is not one."""
    word = value.strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None
