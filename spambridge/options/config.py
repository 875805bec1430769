"""The finished configuration: `build_config` turns the settings as written into a frozen
`Config`, every value parsed once into its type, then checks the options that only make
sense together and that the packages some options need are installed."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Set
from dataclasses import dataclass

from spambridge.access import AccessMap
from spambridge.errors import ConfigError
from spambridge.metrics import ListenAddress
from spambridge.milter_socket import SocketSpec
from spambridge.options.syntax import Settings
from spambridge.options.table import (
    OPTIONS,
    EventLoop,
    HeaderStyle,
    LogTarget,
    MailPolicy,
    OversizeAction,
    ScanAuthenticated,
    SpamdErrorAction,
    SpamdUserFrom,
)
from spambridge.replies import ReplySpec
from spambridge.spamd.endpoints import (
    SpamdEndpoint,
    SpamdTimeouts,
    legacy_spamd_timeouts,
    parse_spamd_timeouts,
)
from spambridge.spamd.hosts import Select
from spambridge.spamd.protocol import SpamdCommand


@dataclass(frozen=True, slots=True)
class Config:
    """A finished configuration, valid as a whole: every option parsed once into its type
    (a typed value the admin writes as text keeps that text in its `source`, for `check`).
    One field per row of the table, named as the option with '-' -> '_', of the type the
    row's value type names (tests/unit/test_options.py compares them field by field)."""

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
    oversize_action: OversizeAction
    spamd_max_reply_size: int
    skip_body: bool
    spamd_command: SpamdCommand
    spamd_user: str
    spamd_user_from: SpamdUserFrom
    no_user_config: bool
    is_gateway: bool
    spamd_select: Select
    spamd_connect_retries: int
    spamd_cooldown: float
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


def build_config(settings: Settings, defaults: Mapping[str, str] | None = None) -> Config:
    """Validate settings over the table's defaults (or `defaults` overrides) into a Config:
    each row reads its own value; then milter-spamc's meanings and the checks across
    options."""
    values: dict[str, object] = {}
    for opt in OPTIONS:
        raw: str | list[str]
        if opt.name in settings.values:
            raw = settings.values[opt.name]
        elif defaults and opt.name in defaults:
            raw = defaults[opt.name]
        else:
            raw = opt.default
        values[opt.attr] = opt.read(raw)
    _milter_spamc_meanings(values, settings.explicit, settings.explicit | set(defaults or ()))
    config = Config(**values, explicit=frozenset(settings.explicit))  # type: ignore[arg-type]
    _check_together(config)
    _check_installed(config)
    return config


def _milter_spamc_meanings(
    values: dict[str, object], given: Set[str], given_or_defaulted: Set[str]
) -> None:
    """What an option file written for milter-spamc means, where a new option took over."""
    if "spamd-max-size" in given_or_defaulted and "oversize-action" not in given_or_defaulted:
        # milter-spamc's spamd-max-size means "scan the first N KB": a file written for it
        # keeps scanning what it scanned.
        values["oversize_action"] = "truncate"
    if "spamd-timeout" in given and "spamd-timeouts" not in given:
        # its one spamd-timeout sets all of spamd-timeouts (see legacy_spamd_timeouts)
        single = values["spamd_timeout"]
        assert isinstance(single, float)
        values["spamd_timeouts"] = parse_spamd_timeouts(legacy_spamd_timeouts(single))


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
