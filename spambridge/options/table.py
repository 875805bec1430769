"""THE option table, which is also the `Config` class: one field per option, in the order
`--help`, the option file, the README table and the man page show them. Its first rows (the
milter side and the spamd side) are in table_connections.py, which `Config` inherits.

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
from typing import Any

from spambridge import styles
from spambridge.access import AccessMap
from spambridge.metrics import ListenAddress
from spambridge.options.choices import (
    EventLoop,
    HeaderStyle,
    LogTarget,
    MailPolicy,
    ScanAuthenticated,
)
from spambridge.options.table_connections import ConnectionOptions
from spambridge.options.values import (
    ACCESS_MAP,
    BOOL,
    CHARACTER,
    METRICS_LISTEN,
    NETWORKS,
    NUMBER,
    OPTIONAL_NUMBER,
    ROW,
    SECONDS,
    TEXT,
    VERBOSE,
    WHOLE,
    Option,
    choice,
    reply,
)
from spambridge.options.values import row as _o  # short: the table is eighty of them
from spambridge.replies import ReplySpec
from spambridge.spamd.tls import SpamdTls


@dataclass(frozen=True, slots=True)
class Config(ConnectionOptions):
    """A finished configuration (build_config makes it), valid as a whole: each field one
    option, named as the option with '-' -> '_', its value read once into its type. A typed
    value the admin writes as text keeps that text in its `source`, for `check`.

    The milter-side and spamd-side rows come first, from `ConnectionOptions`
    (table_connections.py); the rows below follow them in every listing."""

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
