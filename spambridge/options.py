"""THE option table, and the parser for milter-spamc and GNU option syntax.

One row per option. The command line, the option file, `--help`, `+help`, the README table and
the man page are all generated from OPTIONS, so they cannot drift apart.

Syntax accepted (the first two are milter-spamc's own):
  name=value   name+=value (append to a list)   +name (on)   -name (off)
  --name value   --name=value   --name (on)   --no-name (off)
Option names are case-insensitive. `file=PATH` reads an option file first; the command line
is applied on top of it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from spambridge.access import AccessMap
from spambridge.durations import DURATION_FORMS, parse_duration
from spambridge.errors import ConfigError
from spambridge.metrics import ListenAddress, parse_metrics_listen
from spambridge.milter_socket import SocketSpec, parse_milter_socket
from spambridge.replies import ReplySpec, parse_reply_option
from spambridge.spamd.endpoints import (
    SpamdEndpoint,
    SpamdTimeouts,
    legacy_spamd_timeouts,
    parse_spamd_sockets,
    parse_spamd_timeouts,
    spamd_sockets_text,
)
from spambridge.spamd.hosts import SELECT_MODES, Select
from spambridge.spamd.protocol import COMMANDS, SpamdCommand

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
        "answers PONG, then on probation (one message at a time until 3 are answered within "
        "spamd-slow-factor times the pool's time); meanwhile it gets mail only if every other "
        "host fails. 0 disables set-asides.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-cooldown-max",
        "seconds",
        "600",
        "A set-aside on probation, or within its cool-down of the host's return, doubles the "
        "host's spamd-cooldown, up to this; once it has stayed in the pool that long it "
        "starts again from spamd-cooldown. At or below spamd-cooldown: no doubling.",
        group="spamd",
        legacy=False,
    ),
    _o(
        "spamd-slow-factor",
        "float",
        "5",
        "Set a spamd host aside as slow when, over its last spamd-slow-samples scans, its "
        "time is in the median this many times the pool's (the other hosts' median at the "
        "same scans in flight per unit of weight) and 50 ms above it; also the bound on "
        "probation. 0 disables.",
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

# milter-spamc registers "discard-low-precedence-" (a missing comma in its option table), so
# option files written from its +help carry that spelling.
ALIASES: Mapping[str, str] = {"discard-low-precedence-": "discard-low-precedence"}
BY_NAME: Mapping[str, Option] = {o.name: o for o in OPTIONS} | {
    alias: next(o for o in OPTIONS if o.name == name) for alias, name in ALIASES.items()
}

# milter-spamc options kept for compatibility that change nothing here; accepted with a warning.
IGNORED: Mapping[str, str] = {
    name: "address syntax checks are the MTA's job"
    for name in (
        "rfc2821-syntax",
        "rfc2821-local-length",
        "rfc2821-domain-length",
        "rfc2821-literal-plus",
        "reject-percent-relay",
        "reject-rfc2606",
        "reject-unknown-tld",
    )
} | {
    "sendmail-cf": "not needed",
    "interface-ip": "taken from {if_addr}",
    "interface-name": "taken from {if_name}",
    "tld-level-one-file": "address syntax checks are the MTA's job",
    "tld-level-two-file": "address syntax checks are the MTA's job",
    "smdb-debug": "use verbose=database",
    "smdb-key-has-nul": "text!/path maps are read as text, .db maps through makemap -u",
    "smdb-use-stat": "maps are reloaded by SIGHUP",
}

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


# ------------------------------------------------------------------ raw settings


@dataclass(slots=True)
class Settings:
    """Option values as written (strings), before validation; lists keep their entries."""

    values: dict[str, str | list[str]] = dataclasses.field(default_factory=dict)
    explicit: set[str] = dataclasses.field(default_factory=set)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def set(self, name: str, value: str, *, append: bool = False) -> None:
        key = name.lower()
        if key in IGNORED:
            self.warnings.append(
                f"option {key} is accepted for compatibility and ignored: {IGNORED[key]}"
            )
            return
        opt = BY_NAME.get(key)
        if opt is None:
            raise ConfigError(name, f"unknown option (see --help for the {len(OPTIONS)} options)")
        key = opt.name
        if opt.kind == "list":
            current = self.values.get(key)
            entries = value.split()
            if append and isinstance(current, list):
                self.values[key] = [*current, *entries]
            elif append and key not in self.explicit:
                self.values[key] = [*_defaults_list(opt), *entries]
            else:
                self.values[key] = entries
        elif append:
            # libsnert's += on a one-value option appends ";value" to the current string
            current = self.values.get(key, opt.default)
            assert isinstance(current, str)
            self.values[key] = f"{current};{value}" if current else value
        elif name.lower() in ALIASES and opt.kind == "bool" and _boolean(value) is None:
            # milter-spamc's +help writes its usage text as this misspelled option's value;
            # libsnert reads any such text as 0 (off).
            self.values[key] = "-"
        else:
            self.values[key] = value
        self.explicit.add(key)


def _defaults_list(opt: Option) -> list[str]:
    return opt.default.split()


Subcommand = Literal["run", "check", "scan", "help", "help-file", "version"]


@dataclass(slots=True)
class ParsedArgs:
    settings: Settings
    command: Subcommand = "run"
    args: list[str] = dataclasses.field(default_factory=list)


_MILTER_SPAMC = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9-]*)(?P<op>\+?=)(?P<value>.*)$", re.S)


def parse_argv(argv: Sequence[str], settings: Settings | None = None) -> ParsedArgs:
    """Parse the command line in both syntaxes. Does not read the option file."""
    parsed = ParsedArgs(settings or Settings())
    s = parsed.settings
    repeated: set[str] = set()  # GNU list options given again on this command line append

    def gnu(name: str, value: str) -> None:
        key = name.lower()
        opt = BY_NAME.get(key)
        s.set(name, value, append=opt is not None and opt.kind == "list" and key in repeated)
        repeated.add(key)

    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            parsed.args.extend(argv[i:])
            break
        if arg in ("-h", "--help", "+help", "-help"):
            parsed.command = "help-file" if arg in ("+help", "-help") else "help"
            continue
        if arg in ("-V", "--version", "-version", "+version"):
            parsed.command = "version"
            continue
        if arg.startswith("--"):
            body = arg[2:]
            if "=" in body:
                name, value = body.split("=", 1)
                gnu(name, value)
                continue
            name = body.lower()
            if name.startswith("no-") and name[3:] in BY_NAME and BY_NAME[name[3:]].kind == "bool":
                s.set(name[3:], "-")
                continue
            opt = BY_NAME.get(name)
            if opt is None and name not in IGNORED:
                raise ConfigError(arg, "unknown option (see --help)")
            if opt is not None and opt.kind == "bool":
                s.set(name, "+")
                continue
            if i >= len(argv):
                raise ConfigError(arg, "needs a value")
            gnu(name, argv[i])
            i += 1
            continue
        m = _MILTER_SPAMC.match(arg)
        if m:
            s.set(m["name"], m["value"], append=m["op"] == "+=")
            continue
        if len(arg) > 1 and arg[0] in "+-":
            name = arg[1:].lower()
            opt = BY_NAME.get(name)
            if opt is None and name not in IGNORED:
                raise ConfigError(arg, "unknown option (see --help)")
            if opt is not None and opt.kind != "bool":
                raise ConfigError(name, f"takes a value: write {name}=VALUE")
            s.set(name, arg[0])
            continue
        if parsed.command == "run" and arg in ("run", "check", "scan"):
            parsed.command = arg  # type: ignore[assignment]
            continue
        if parsed.command == "scan":
            parsed.args.append(arg)
            continue
        raise ConfigError(arg, "unexpected argument (subcommands: run, check, scan FILE|-)")
    return parsed


def read_option_file(path: str, settings: Settings) -> None:
    """Read an option file the way libsnert's optionFile() does, so milter-spamc's files (and
    its whole `+help` output) read unchanged.

    A line starting with `#` is a comment. Other lines are split into words as libsnert's
    TokenSplitA() splits them (blanks separate words; quotes group, and are removed, anywhere
    in a word: `subject-tag="[SPAM] #1"`; a backslash escapes), and every word that is an
    option (`name=value`, `name+=value`, `+name`, `-name`) is applied in order, so one line may
    hold several options. A word starting with `#` ends the line. Where libsnert stops reading
    the line at any other word, spambridge adds it to the value before it as written, so
    `reject-reply=550 5.7.1 go away` keeps its spaces without quotes.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError("file", f"cannot read {path}: {exc.strerror}") from exc
    for lineno, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("#"):
            continue
        try:
            _apply_file_line(raw, settings)
        except ConfigError as exc:
            detail = str(exc).removeprefix(f"{exc.option}: ")
            raise ConfigError(exc.option, f"{path}:{lineno}: {detail}") from exc


def split_words(line: str) -> list[str]:
    """libsnert TokenSplitA() with its default delimiters: quotes and backslashes removed."""
    return [word for word, _ in _words(line)]


def _words(line: str) -> list[tuple[str, int]]:
    """The words of `line`, each with the index just past its end."""
    words: list[tuple[str, int]] = []
    word: list[str] = []
    in_word = False
    quote = ""
    escape = False
    for i, ch in enumerate(line):
        if escape:
            word.append(_BACKSLASH.get(ch, ch))
            escape = False
        elif ch in "\"'" and (not quote or ch == quote):
            quote = "" if quote else ch
            in_word = True
        elif ch == "\\":
            escape = in_word = True
        elif not quote and ch in " \t\r\n":
            if in_word:
                words.append(("".join(word), i))
                word, in_word = [], False
        else:
            word.append(ch)
            in_word = True
    if in_word:
        words.append(("".join(word), len(line)))
    return words


# libsnert TextBackslash(): the character a backslash escape stands for.
_BACKSLASH = {"a": "\a", "b": "\b", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "s": " "}
_BACKSLASH |= {"t": "\t", "v": "\v"}
# An option name is letters, digits, dashes and underscores: a word like
# `spamd2.example:783;weight=2` holds an `=` but continues the value before it.
_OPTION_WORD = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_-]*)(?P<op>\+?=)(?P<value>.*)$", re.S)


def _apply_file_line(line: str, settings: Settings) -> None:
    last: tuple[str, str, bool] | None = None  # the option being read: name, value, append
    end = 0  # where the previous word ended

    def flush() -> None:
        if last is not None:
            settings.set(last[0], last[1], append=last[2])

    for word, word_end in _words(line):
        start, end = end, word_end
        if word.startswith("#"):
            break
        m = _OPTION_WORD.match(word)
        if m:
            flush()
            last = (m["name"], m["value"], m["op"] == "+=")
        elif len(word) > 1 and word[0] in "+-" and (word[1].isalpha() or word[1] == "_"):
            flush()
            last = None
            opt = BY_NAME.get(word[1:].lower())
            if opt is not None and opt.kind != "bool":
                # as on the command line: +name is only for on/off options
                raise ConfigError(opt.name, f"takes a value: write {opt.name}=VALUE")
            settings.set(word[1:], word[0])
        elif last is not None:
            last = (last[0], last[1] + line[start:end], last[2])  # spacing kept as written
        else:
            raise ConfigError(word, "expected name=value, +name or -name")
    flush()


# ------------------------------------------------------------------ typed config


# The SMTP replies the admin configures, and the codes each accepts (parsed by build_config).
REPLY_OPTIONS: Mapping[str, str] = {
    "reject-reply": "45",
    "tempfail-reply": "4",
    "spamd-tempfail-reply": "4",
    "spamd-reject-reply": "5",
}


@dataclass(frozen=True, slots=True)
class Config:
    """A finished configuration, valid as a whole: every option parsed once into its type
    (a typed value the admin writes as text keeps that text in its `source`, for `check`).
    Field names are the option names with '-' -> '_'."""

    milter_socket: SocketSpec
    milter_timeout: float
    milter_queue: int
    max_connections: int
    max_frame_size: int
    progress_interval: float
    socket_mode: int
    socket_group: str
    spamd_socket: tuple[SpamdEndpoint, ...]
    spamd_timeout: float
    spamd_timeouts: SpamdTimeouts  # spamd-timeout folded in when only it is given
    spamd_max_size: int
    spamd_max_reply_size: int
    oversize_action: OversizeAction
    skip_body: bool
    spamd_command: SpamdCommand
    spamd_user: str
    spamd_user_from: SpamdUserFrom
    no_user_config: bool
    is_gateway: bool
    spamd_select: Select
    spamd_connect_retries: int
    spamd_cooldown: float
    spamd_cooldown_max: float
    spamd_slow_factor: float
    spamd_slow_samples: int
    spamd_max_connections: int
    spamd_ca_file: str
    spamd_error_action: SpamdErrorAction
    spamd_tempfail_reply: ReplySpec
    spamd_reject_reply: ReplySpec
    header_style: HeaderStyle
    spamd_rewrite_body: bool
    always_add_flag: bool
    always_add_level: bool
    level_character: str
    subject_tag: str
    subject_tag_score: bool
    add_scanned_by: bool
    extra_reject: float
    extra_discard: float
    discard_low_precedence: bool
    reject_score: float | None
    discard_score: float | None
    tempfail_score: float | None
    extra_tempfail: float
    tempfail_reply: ReplySpec
    quarantine_score: float | None
    quarantine_reason: str
    reject_reply: ReplySpec
    smtp_detailed_reply: bool
    extra_low_spam: float
    mail_policy: MailPolicy
    mail_spam: str
    mail_low_spam: str
    mail_format: str
    mail_ham: str
    mail_archive: str
    max_untrusted: int
    dry_run: bool
    smtp_auth_ok: bool
    scan_authenticated: ScanAuthenticated
    outbound_reject_score: float | None
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    access_db: AccessMap
    smdb_relay_ok: bool
    access_db_blacklist: bool
    file: str
    daemon: bool
    pid_file: str
    run_user: str
    run_group: str
    work_dir: str
    shutdown_grace: float
    event_loop: EventLoop
    log: LogTarget
    verbose: frozenset[str]
    metrics_listen: ListenAddress | None
    explicit: frozenset[str] = frozenset()  # the options given, not defaulted

    @property
    def max_scan_bytes(self) -> int:
        """spamd-max-size in bytes; 0 means no limit."""
        return self.spamd_max_size * 1024

    @property
    def truncate_bytes(self) -> int:
        """Body bytes milter-spamc takes before it stops (KB*1024 - KB/64: 65535 for 64 KB,
        one libmilter body chunk); 0 means no limit."""
        return self.spamd_max_size * 1024 - self.spamd_max_size // 64


_TRUE = {"+", "1", "yes", "true", "on"}
_FALSE = {"-", "0", "no", "false", "off", ""}


def _boolean(value: str) -> bool | None:
    word = value.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else None


def _convert(opt: Option, raw: str | list[str]) -> object:
    if opt.kind == "list":
        return tuple(raw) if isinstance(raw, list) else tuple(raw.split())
    assert isinstance(raw, str)
    value = raw.strip()
    if opt.kind == "bool":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(opt.name, f"{raw!r} is not a boolean: write +{opt.name} or -{opt.name}")
    if opt.kind == "int":
        try:
            return int(value, 0)
        except ValueError:
            raise ConfigError(opt.name, f"{raw!r} is not a whole number") from None
    if opt.kind in ("float", "optfloat"):
        if opt.kind == "optfloat" and value == "":
            return None
        try:
            return float(value)
        except ValueError:
            raise ConfigError(opt.name, f"{raw!r} is not a number") from None
    if opt.kind == "seconds":
        seconds = parse_duration(value)
        if seconds is None:
            raise ConfigError(opt.name, f"{raw!r} is not a duration: write {DURATION_FORMS}")
        return seconds
    if opt.kind == "choice":
        for choice in opt.choices:
            if value.lower() == choice.lower():
                return choice
        raise ConfigError(opt.name, f"{raw!r} is not one of: {', '.join(opt.choices)}")
    return value


def build_config(settings: Settings, defaults: Mapping[str, str] | None = None) -> Config:
    """Validate settings over the table's defaults (or `defaults` overrides) into a Config."""
    kwargs: dict[str, object] = {}
    for opt in OPTIONS:
        raw: str | list[str]
        if opt.name in settings.values:
            raw = settings.values[opt.name]
        elif defaults and opt.name in defaults:
            raw = defaults[opt.name]
        else:
            raw = opt.default
        kwargs[opt.attr] = _convert(opt, raw)
    explicit = settings.explicit | set(defaults or ())
    if "spamd-max-size" in explicit and "oversize-action" not in explicit:
        # milter-spamc's spamd-max-size means "scan the first N KB": a file written for it
        # keeps scanning what it scanned.
        kwargs["oversize_action"] = "truncate"
    kwargs["socket_mode"] = _octal("socket-mode", str(kwargs["socket_mode"]))
    kwargs["milter_socket"] = parse_milter_socket(str(kwargs["milter_socket"]))
    text = str(kwargs["access_db"])  # a bad map is a start-up error, not a surprise later
    kwargs["access_db"] = AccessMap.load(text) if text else AccessMap.empty()
    for name, klass in REPLY_OPTIONS.items():
        text = str(kwargs[name.replace("-", "_")])
        kwargs[name.replace("-", "_")] = parse_reply_option(name, text, klass)
    kwargs["metrics_listen"] = parse_metrics_listen(str(kwargs["metrics_listen"]))
    kwargs["trusted_networks"] = _networks(kwargs["trusted_networks"])  # type: ignore[arg-type]
    kwargs["verbose"] = _verbose(str(kwargs["verbose"]))
    kwargs["explicit"] = frozenset(settings.explicit)
    kwargs["spamd_socket"] = parse_spamd_sockets(kwargs["spamd_socket"])  # type: ignore[arg-type]
    kwargs["spamd_timeouts"] = _spamd_timeouts(kwargs, settings.explicit)
    _check_ranges(kwargs)
    config = Config(**kwargs)  # type: ignore[arg-type]
    _check_together(config)
    _check_installed(config)
    return config


def _spamd_timeouts(kw: Mapping[str, object], explicit: Iterable[str]) -> SpamdTimeouts:
    """spamd-timeouts, or milter-spamc's single spamd-timeout (see legacy_spamd_timeouts)
    when only that one is given."""
    if "spamd-timeout" in explicit and "spamd-timeouts" not in explicit:
        single = kw["spamd_timeout"]
        assert isinstance(single, float)
        return parse_spamd_timeouts(legacy_spamd_timeouts(single))
    return parse_spamd_timeouts(str(kw["spamd_timeouts"]))


def _octal(name: str, value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not an octal mode such as 0660") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(name, f"{value!r} is outside 0000..0777")
    return mode


def _networks(
    entries: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    # Commas separate entries too: spamass-milter -i and glts --trusted-networks write them so.
    for entry in (part for value in entries for part in value.split(",") if part.strip()):
        try:
            text = entry.strip().replace("[", "").replace("]", "")
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(
                "trusted-networks",
                f"{entry!r} is not a network: write 192.0.2.0/24 or 2001:db8::/32",
            ) from None
    return tuple(out)


def _verbose(value: str) -> frozenset[str]:
    words = {w.strip().lower() for w in value.split(",") if w.strip()}
    bad = words - set(VERBOSE_WORDS)
    if bad:
        raise ConfigError(
            "verbose", f"unknown categories {sorted(bad)}; accepted: {', '.join(VERBOSE_WORDS)}"
        )
    if "all" in words:
        words |= set(VERBOSE_WORDS) - {"0"}
    return frozenset(words - {"0"})


def _check_ranges(kw: Mapping[str, object]) -> None:
    def positive(name: str, minimum: float = 1) -> None:
        value = kw[name.replace("-", "_")]
        assert isinstance(value, int | float)
        if value < minimum:
            raise ConfigError(name, f"must be at least {minimum}, got {value}")

    positive("max-connections")
    positive("milter-queue")
    positive("spamd-max-connections")
    positive("spamd-connect-retries")
    positive("progress-interval", 0.1)
    positive("milter-timeout", 1)
    positive("max-frame-size", 65536 + 1)
    positive("spamd-max-size", 0)
    positive("spamd-max-reply-size", 1)
    positive("shutdown-grace", 0)
    positive("spamd-cooldown", 0)
    positive("spamd-cooldown-max", 0)
    positive("spamd-slow-samples")
    slow = kw["spamd_slow_factor"]
    assert isinstance(slow, float)
    if slow != 0 and not 1 < slow < 1e6:
        raise ConfigError("spamd-slow-factor", f"must be 0 (off) or above 1, got {slow:g}")
    level = kw["level_character"]
    assert isinstance(level, str)
    if len(level.encode("utf-8", "surrogateescape")) > 1:
        raise ConfigError("level-character", f"{level!r}: one ASCII character, or empty")


def _check_together(config: Config) -> None:
    """Options that only make sense together; raises ConfigError naming the one to change."""
    if config.header_style == "spamassassin" and config.spamd_command not in (
        "HEADERS",
        "PROCESS",
    ):
        raise ConfigError(
            "spamd-command", "header-style=spamassassin needs spamd-command=HEADERS or PROCESS"
        )
    if config.spamd_command in ("HEADERS", "PROCESS") and config.header_style != "spamassassin":
        raise ConfigError(
            "header-style",
            f"spamd-command={config.spamd_command} needs header-style=spamassassin",
        )
    if config.spamd_rewrite_body != (config.spamd_command == "PROCESS"):
        raise ConfigError(
            "spamd-rewrite-body",
            "+spamd-rewrite-body and spamd-command=PROCESS go together (PROCESS returns the "
            "whole rewritten message, which only +spamd-rewrite-body may deliver)",
        )
    if config.spamd_user_from == "fixed" and not config.spamd_user:
        raise ConfigError("spamd-user", "spamd-user-from=fixed needs a spamd-user")
    if config.mail_policy != "none" and not config.mail_spam:
        raise ConfigError(
            "mail-spam", f"mail-policy={config.mail_policy} needs a mail-spam address"
        )


def _check_installed(config: Config) -> None:
    """Options that need an optional package: a missing one is a start-up error naming the
    option, not a failure once the daemon runs. Imported here, where the option asks for it."""
    if config.event_loop == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise ConfigError(
                "event-loop",
                "uvloop is not installed: pip install uvloop (or the spambridge[uvloop] extra)",
            ) from None
    if config.metrics_listen:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise ConfigError(
                "metrics-listen",
                "needs prometheus-client: pip install prometheus-client "
                "(or the spambridge[metrics] extra; Debian: python3-prometheus-client)",
            ) from None


def option_file_text(config: Config | None = None) -> str:
    """All options in option-file form (milter-spamc's +help), with current or default values."""
    lines = []
    for opt in OPTIONS:
        lines.append("")
        for chunk in _wrap(opt.help, 76):
            lines.append(f"# {chunk}")
        value = opt.default if config is None else format_value(opt, getattr(config, opt.attr))
        if opt.kind == "bool":
            lines.append(("+" if value in _TRUE else "-") + opt.name)
        else:
            lines.append(f"{opt.name}={_quoted(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _quoted(value: str) -> str:
    """A value as split_words() reads it back: quoted when it holds a quote, a backslash or a
    word starting with # (blanks alone need no quotes: the following words continue it)."""
    if not any(c in value for c in "\"'\\") and not re.search(r"(^|\s)#", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_value(opt: Option, value: object) -> str:
    if opt.kind == "bool":
        return "+" if value else "-"
    if opt.name == "socket-mode":
        assert isinstance(value, int)
        return f"0{value:o}"
    if opt.name == "verbose":
        assert isinstance(value, frozenset)
        return ",".join(sorted(value))
    if isinstance(value, SpamdTimeouts):
        return value.text()
    if isinstance(value, SocketSpec | ReplySpec | AccessMap | ListenAddress):
        return value.source
    if opt.name == "spamd-socket":
        assert isinstance(value, tuple)
        return spamd_sockets_text(value)
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    if line:
        lines.append(line)
    return lines
