"""Generate the README option table and the man page docs/spambridge.8 from the option table.

    python scripts/gen_docs.py          rewrite both files
    python scripts/gen_docs.py --check  exit 1 (and say which) when a committed file differs

The README table goes between `<!-- options:start -->` and `<!-- options:end -->`; the rest of
README.md is left alone. The output depends only on spambridge.options, so it is stable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from spambridge import __version__  # noqa: E402
from spambridge.options import OPTIONS, Option  # noqa: E402

README = ROOT / "README.md"
MAN_PAGE = ROOT / "docs" / "spambridge.8"
START = "<!-- options:start -->"
END = "<!-- options:end -->"

GROUP_TITLES = {
    "milter": "Milter side",
    "spamd": "spamd side",
    "headers": "Headers",
    "actions": "Actions",
    "policy": "What is not scanned",
    "process": "Process",
}


def shown_default(opt: Option) -> str:
    return opt.default if opt.default else "''"


def _groups() -> list[tuple[str, list[Option]]]:
    out: list[tuple[str, list[Option]]] = []
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


def render_readme(text: str) -> str:
    """README.md with the option table replaced; markers are appended when missing."""
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{readme_table()}{END}{tail}"


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
        "[\\fBrun\\fR | \\fBcheck\\fR | \\fBscan\\fR \\fIFILE\\fR|\\fB\\-\\fR]",
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
        ".SH SEE ALSO",
        ".BR spamd (1),",
        ".BR sendmail (8),",
        ".BR postconf (5)",
        "",
    ]
    return "\n".join(out)


# ------------------------------------------------------------------ main


def expected() -> dict[Path, str]:
    readme = README.read_text(encoding="utf-8") if README.exists() else ""
    return {README: render_readme(readme), MAN_PAGE: man_page()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report drift")
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "differs from the option table" if args.check else "rewritten"
        print(f"{path.relative_to(ROOT)}: {verb}", file=sys.stderr)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
