"""Everything written from the option table: `--help`, the option file (`+help`, `check`),
the README table and the man page (scripts/gen_docs.py writes those two files)."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from spambridge import __version__
from spambridge.options.config import Config
from spambridge.options.table import OPTIONS
from spambridge.options.values import TRUE_WORDS, Option

T = TypeVar("T")

# ------------------------------------------------------------------ the option file


def option_file_text(config: Config | None = None) -> str:
    """All options in option-file form (milter-spamc's +help), with current or default values."""
    lines = []
    for opt in OPTIONS:
        lines.append("")
        for chunk in wrap(opt.help, 76):
            lines.append(f"# {chunk}")
        value = opt.default if config is None else format_value(opt, getattr(config, opt.attr))
        if opt.kind == "bool":
            lines.append(("+" if value in TRUE_WORDS else "-") + opt.name)
        else:
            lines.append(f"{opt.name}={_quoted(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _quoted(value: str) -> str:
    """A value as split_words() reads it back: quoted when it holds a quote, a backslash or a
    word starting with # (blanks alone need no quotes: the following words continue it)."""
    if not any(c in value for c in "\"'\\") and not re.search(r"(^|\s)#", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_value(opt: Option[T], value: T) -> str:
    """The text of `opt` that reads back to `value` (what `check` prints)."""
    return opt.write(value)


def wrap(text: str, width: int) -> list[str]:
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


# ------------------------------------------------------------------ --help

USAGE = """\
usage: spambridge [OPTIONS] [run | check | scan FILE|- | learn --spam|--ham|--forget FILE|-...]

A milter between Sendmail/Postfix and SpamAssassin's spamd; a drop-in replacement for
milter-spamc. Options take milter-spamc's form (name=value, name+=value, +name, -name) or
the GNU form (--name VALUE, --name=VALUE, --name, --no-name). Option names are
case-insensitive. file=PATH is read first; the command line applies on top.

subcommands:
  run (default)   serve the MTA on milter-socket
  check           validate the configuration and print it in option-file form
  scan FILE|-     scan one message with the configured spamd, without an MTA, through
                  the daemon's own decisions (access map, skip rules, size, policy):
                  print the verdict, the action and reply, then the headers as the
                  recipient would see them (--json: one JSON object instead). The
                  envelope: --client-address IP (default 127.0.0.1), --sender ADDRESS
                  (default <>), --recipient ADDRESS (repeat for several). Exit status
                  as spamc -E: 0 ham, 1 spam, 69 spamd unavailable or failing
  learn --spam|--ham|--forget FILE|-...
                  train spamd's Bayes database with each message, as spamc -L
                  spam|ham|forget does (spamd needs --allow-tell): through the
                  configured spamd-socket, TLS and timeouts, as the spamd user a scan
                  would use (spamd-user, or the rules of spamd-user-from for
                  --recipient ADDRESS). Prints spamc's "Message successfully
                  un/learned" or "Message was already un/learned" (both exit 0);
                  on failure spamc's codes: 66 a FILE unreadable, 69 spamd
                  unavailable, 76 a bad reply, or the EX code spamd answered
  +help           print every option in option-file form
"""


def help_text() -> str:
    lines = [USAGE]
    group = ""
    for opt in OPTIONS:
        if opt.group != group:
            group = opt.group
            lines.append(f"\n{group} options:")
        value = {"bool": "", "list": " LIST", "choice": " {" + ",".join(opt.choices) + "}"}.get(
            opt.kind, " VALUE"
        )
        lines.append(f"  --{opt.name}{value}")
        default = opt.default if opt.default else "''"
        lines.extend("      " + chunk for chunk in wrap(f"{opt.help} (default: {default})", 74))
    return "\n".join(lines) + "\n"


GROUP_TITLES = {
    "milter": "Milter side",
    "spamd": "spamd side",
    "headers": "Headers",
    "actions": "Actions",
    "policy": "What is not scanned",
    "process": "Process",
}


def shown_default(opt: Option[Any]) -> str:
    return opt.default if opt.default else "''"


def _groups() -> list[tuple[str, list[Option[Any]]]]:
    out: list[tuple[str, list[Option[Any]]]] = []
    for opt in OPTIONS:
        if not out or out[-1][0] != opt.group:
            out.append((opt.group, []))
        out[-1][1].append(opt)
    return out


# ------------------------------------------------------------------ README


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def readme_table() -> str:
    lines = []
    for group, options in _groups():
        lines += [f"**{GROUP_TITLES.get(group, group)}**", ""]
        lines += ["| option | default | milter-spamc | meaning |", "| --- | --- | --- | --- |"]
        for opt in options:
            values = f" ({', '.join(opt.choices)})" if opt.choices else ""
            lines.append(
                f"| `{opt.name}` | `{_md(shown_default(opt))}` | {'yes' if opt.legacy else 'new'} "
                f"| {_md(opt.help)}{_md(values)} |"
            )
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ man page


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        ("\\&" + line) if line[:1] in (".", "'") else line for line in text.split("\n")
    )


def man_page() -> str:
    out = [
        f'.TH SPAMBRIDGE 8 "" "spambridge {__version__}" "System Manager\'s Manual"',
        ".SH NAME",
        "spambridge, milter\\-spamc \\- milter between Sendmail/Postfix and SpamAssassin's spamd",
        ".SH SYNOPSIS",
        ".B spambridge",
        "[\\fIoption\\fR=\\fIvalue\\fR | \\fB+\\fIoption\\fR | \\fB\\-\\fIoption\\fR ...]",
        "[\\fBrun\\fR | \\fBcheck\\fR | \\fBscan\\fR \\fIFILE\\fR|\\fB\\-\\fR |",
        "\\fBlearn\\fR \\fB\\-\\-spam\\fR|\\fB\\-\\-ham\\fR|\\fB\\-\\-forget\\fR"
        " \\fIFILE\\fR|\\fB\\-\\fR...]",
        ".SH DESCRIPTION",
        "spambridge passes each message to spamd, adds X\\-Spam\\-* headers, tags the Subject",
        "and rejects, discards, quarantines, redirects or copies spam as configured.",
        "It is a drop\\-in replacement for milter\\-spamc: invoked as",
        ".B milter\\-spamc",
        "it takes milter\\-spamc's default paths and reads its option file.",
        ".PP",
        "Options take milter\\-spamc's form",
        "(\\fIname\\fB=\\fIvalue\\fR, \\fIname\\fB+=\\fIvalue\\fR, \\fB+\\fIname\\fR,",
        "\\fB\\-\\fIname\\fR) or the GNU form (\\fB\\-\\-\\fIname value\\fR,",
        "\\fB\\-\\-\\fIname\\fB=\\fIvalue\\fR, \\fB\\-\\-\\fIname\\fR,",
        "\\fB\\-\\-no\\-\\fIname\\fR). Names are case\\-insensitive. The option file named by",
        "\\fBfile\\fR is read first; the command line applies on top of it.",
        ".SH COMMANDS",
        ".TP",
        ".B run",
        "Serve the MTA on milter\\-socket (the default).",
        ".TP",
        ".B check",
        "Validate the configuration and print it in option\\-file form.",
        ".TP",
        '.BI scan " FILE"',
        "Scan one message (\\fB\\-\\fR for standard input) with the configured spamd, through",
        "the daemon's own decisions, and print the verdict, the header edits and the action.",
        "The envelope: \\fB\\-\\-client\\-address\\fR \\fIIP\\fR (default 127.0.0.1),",
        "\\fB\\-\\-sender\\fR \\fIADDRESS\\fR (default <>), \\fB\\-\\-recipient\\fR",
        "\\fIADDRESS\\fR (repeat for several).",
        ".TP",
        "\\fBlearn \\-\\-spam\\fR|\\fB\\-\\-ham\\fR|\\fB\\-\\-forget\\fR \\fIFILE\\fR...",
        "Train spamd's Bayes database with each message (\\fB\\-\\fR for standard input) over",
        "SPAMC TELL, as \\fBspamc \\-L spam\\fR|\\fBham\\fR|\\fBforget\\fR does (spamd needs",
        "\\fB\\-\\-allow\\-tell\\fR), through spamd\\-socket, its TLS files and",
        "spamd\\-timeouts, as the spamd user a scan would use (spamd\\-user, or",
        "spamd\\-user\\-from's rules for",
        "\\fB\\-\\-recipient\\fR \\fIADDRESS\\fR). Prints spamc's \\(lqMessage successfully",
        "un/learned\\(rq or \\(lqMessage was already un/learned\\(rq (both exit 0).",
        ".TP",
        ".B +help",
        "Print every option in option\\-file form.",
        ".SH OPTIONS",
    ]
    for group, options in _groups():
        out.append(f".SS {_roff(GROUP_TITLES.get(group, group))}")
        for opt in options:
            out.append(".TP")
            if opt.kind == "bool":
                out.append(f'.BR +{_roff(opt.name)} " | " \\-{_roff(opt.name)}')
            else:
                out.append(f".BI {_roff(opt.name)}= value")
            extra = "" if opt.legacy else " Not in milter\\-spamc."
            choices = f" One of: {', '.join(opt.choices)}." if opt.choices else ""
            out.append(
                f"{_roff(opt.help)}{_roff(choices)}{extra} Default: {_roff(shown_default(opt))}"
            )
    out += [
        ".SH SIGNALS",
        ".TP",
        ".B SIGHUP",
        "Read the option file again; new messages use it. A broken file keeps the running",
        "options and logs why.",
        ".TP",
        '.BR SIGTERM ", " SIGINT',
        "Stop accepting connections, let messages in flight finish (shutdown\\-grace), exit 0.",
        ".SH FILES",
        ".TP",
        ".I /etc/spambridge/spambridge.cf",
        "The option file (milter\\-spamc: \\fI/etc/mail/milter\\-spamc.cf\\fR).",
        ".TP",
        ".I /etc/default/spambridge",
        "Extra command\\-line options (SPAMBRIDGE_OPTIONS) for the systemd unit and the init",
        "script.",
        ".TP",
        ".I /run/spambridge/spambridge.sock",
        "The default milter socket; the init script writes its pid file beside it.",
        ".TP",
        ".I /usr/share/doc/spambridge/examples/",
        "Sendmail and Postfix snippets (fail\\-open and fail\\-closed); Prometheus alerting",
        "rules (spambridge\\-alerts.yml, with their promtool unit tests) and a Grafana dashboard",
        "(spambridge\\-grafana.json) for the metrics\\-listen figures.",
        ".SH EXIT STATUS",
        "0 on success, 2 for a configuration error (the message names the option).",
        "\\fBscan\\fR: 0 ham, 1 spam, 69 spamd unavailable or failing, as \\fBspamc \\-E\\fR.",
        "\\fBlearn\\fR: 0 learned or already learned; 66 a file unreadable, 69 spamd",
        "unavailable, 76 a reply that is not SPAMC, or the EX code spamd answered.",
        ".SH SEE ALSO",
        ".BR spamd (1),",
        ".BR sendmail (8),",
        ".BR postconf (5)",
        "",
    ]
    return "\n".join(out)
