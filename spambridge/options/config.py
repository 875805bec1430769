"""The finished configuration: `build_config` turns the settings as written into a frozen
`Config` (table.py), every value read once by its row into its type, then checks the options
that only make sense together and that the packages some options need are installed."""

from __future__ import annotations

from collections.abc import Mapping, Set

from spambridge import styles
from spambridge.errors import ConfigError
from spambridge.options.syntax import Settings
from spambridge.options.table import OPTIONS, Config
from spambridge.spamd.endpoints import legacy_spamd_timeouts, parse_spamd_timeouts
from spambridge.spamd.tls import client_context

__all__ = ["Config", "build_config"]


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
    if config.spamd_tls.configured or any(e.tls for e in config.spamd_socket):
        client_context(config.spamd_tls)  # a bad file is a start-up (and check) error
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
    style = styles.style(config.header_style)
    command = config.spamd_command
    if command not in style.commands:
        # the style that reads the usual REPORT is kept and the command blamed, else the
        # style: the admin changed the one the other does not go with
        if "REPORT" in style.commands:
            readers = " or ".join(n for n, s in styles.STYLES.items() if command in s.commands)
            raise ConfigError(
                "header-style", f"spamd-command={command} needs header-style={readers}"
            )
        raise ConfigError(
            "spamd-command",
            f"header-style={style.name} needs spamd-command={' or '.join(style.commands)}",
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
