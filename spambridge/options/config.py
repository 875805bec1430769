"""The finished configuration: `build_config` turns the settings as written into a frozen
`Config`, every value parsed once into its type, then checks the options that only make
sense together and that the packages some options need are installed."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from spambridge.access import AccessMap
from spambridge.durations import DURATION_FORMS, parse_duration
from spambridge.errors import ConfigError
from spambridge.metrics import ListenAddress, parse_metrics_listen
from spambridge.milter_socket import SocketSpec, parse_milter_socket
from spambridge.options.syntax import Settings
from spambridge.options.table import (
    FALSE_WORDS,
    OPTIONS,
    TRUE_WORDS,
    VERBOSE_WORDS,
    EventLoop,
    HeaderStyle,
    LogTarget,
    MailPolicy,
    Option,
    OversizeAction,
    ScanAuthenticated,
    SpamdErrorAction,
    SpamdUserFrom,
)
from spambridge.replies import ReplySpec, parse_reply_option
from spambridge.spamd.endpoints import (
    SpamdEndpoint,
    SpamdTimeouts,
    legacy_spamd_timeouts,
    parse_spamd_sockets,
    parse_spamd_timeouts,
)
from spambridge.spamd.hosts import Select
from spambridge.spamd.protocol import SpamdCommand

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


def _convert(opt: Option, raw: str | list[str]) -> object:
    if opt.kind == "list":
        return tuple(raw) if isinstance(raw, list) else tuple(raw.split())
    assert isinstance(raw, str)
    value = raw.strip()
    if opt.kind == "bool":
        if value.lower() in TRUE_WORDS:
            return True
        if value.lower() in FALSE_WORDS:
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
