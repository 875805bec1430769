"""Command line: `spambridge [options] [run | check | scan FILE|-]`."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from spambridge import __version__, daemon, learn, pipeline, policy, preview
from spambridge.decision import Decision
from spambridge.errors import ConfigError, SpamdError
from spambridge.milter.flags import MAX_PAYLOAD, Family
from spambridge.milter.messages import FinalReply, ReplaceBody, ReplyCode
from spambridge.options import (
    OPTIONS,
    Config,
    ParsedArgs,
    Settings,
    build_config,
    help_text,
    option_file_text,
    parse_argv,
    read_option_file,
)
from spambridge.policy import ScanPlan
from spambridge.services import local_now, wanted
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Client, Macros, Recipient, Transaction

# The MTA timeouts written in the shipped sendmail/ and Postfix snippets (a test keeps the
# snippets and these numbers in step).
SNIPPET_SENDMAIL_READ = 30.0  # T=...R:30s
SNIPPET_SENDMAIL_END = 300.0  # T=...E:5m
SNIPPET_POSTFIX_CONTENT = 300.0  # milter_content_timeout = 300s

# Invoked as milter-spamc, spambridge takes milter-spamc's default paths so an existing init
# script and sendmail.mc keep working unchanged.
MILTER_SPAMC_DEFAULTS: Mapping[str, str] = {
    "file": "/etc/mail/milter-spamc.cf",
    "milter-socket": "unix:/var/run/milter/milter-spamc.socket",
    "pid-file": "/var/run/milter/milter-spamc.pid",
    "daemon": "+",
    "run-user": "milter",
    "run-group": "milter",
    "work-dir": "/var/tmp",
    "spamd-max-size": "64",  # with milter-spamc's truncation (see options.build_config)
    # milter-spamc reads Sendmail's map by default; where there is none it would not start,
    # so spambridge then reads none
    **({"access-db": "/etc/mail/access.db"} if os.path.exists("/etc/mail/access.db") else {}),
}


@dataclass(frozen=True, slots=True)
class Resolved:
    """What resolve() found: the finished Config, what to tell the admin at start-up, and
    where the options came from."""

    config: Config
    warnings: tuple[str, ...]  # ignored legacy options and start-up notes
    option_file: str | None = None  # the option file read, None when none was


def resolve(
    argv: Sequence[str], defaults: Mapping[str, str] | None = None
) -> tuple[ParsedArgs, Resolved]:
    """argv (+ option file) -> the finished configuration. Raises ConfigError."""
    first = parse_argv(argv)
    settings = Settings()
    file_option = first.settings.values.get("file")
    if isinstance(file_option, list):
        file_option = " ".join(file_option)
    path = (
        file_option
        if file_option is not None
        else ((defaults or {}).get("file") or next(o.default for o in OPTIONS if o.name == "file"))
    )
    read = bool(path) and (file_option is not None or os.path.exists(path))
    if read:
        read_option_file(path, settings)
    parsed = parse_argv(argv, settings)
    config = build_config(parsed.settings, defaults)
    warnings = (*parsed.settings.warnings, *startup_notes(config))
    return parsed, Resolved(config, warnings, path if read else None)


def startup_notes(config: Config) -> list[str]:
    """What a valid configuration may still get wrong in practice: said at start-up."""
    timeouts = config.spamd_timeouts
    notes = []
    if not config.spamd_socket:
        notes.append("spamd-socket is empty: scanning is disabled, every message passes unscanned")
    if timeouts.end + 10 > min(SNIPPET_SENDMAIL_END, SNIPPET_POSTFIX_CONTENT):
        notes.append(
            f"spamd end timeout {timeouts.end:.0f}s does not fit the MTA timeouts of the shipped "
            f"snippets (Sendmail E={SNIPPET_SENDMAIL_END:.0f}s, Postfix milter_content_timeout="
            f"{SNIPPET_POSTFIX_CONTENT:.0f}s): the MTA would give up first"
        )
    if config.spamd_cert_file and not any(e.tls for e in config.spamd_socket):
        notes.append(
            "spamd-cert-file is set, but no spamd-socket entry is ssl:host:port: "
            "the client certificate is never presented"
        )
    if config.progress_interval * 2 > SNIPPET_SENDMAIL_READ:
        notes.append(
            f"progress-interval {config.progress_interval:.0f}s is too long for Sendmail's "
            f"R={SNIPPET_SENDMAIL_READ:.0f}s in the shipped snippet"
        )
    return notes


def main(argv: Sequence[str] | None = None, *, defaults: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    args = [a for a in args if a != "--json"]
    try:
        args, envelope = take_scan_flags(args)
        args, learn_as = learn.take_learn_flags(args)
    except ConfigError as exc:
        print(f"spambridge: error: {exc}", file=sys.stderr)
        return 2
    if defaults is None and argv is None and os.path.basename(sys.argv[0]) == "milter-spamc":
        defaults = MILTER_SPAMC_DEFAULTS  # run through a symlink named milter-spamc
    try:
        parsed, resolved = resolve(args, defaults)
    except ConfigError as exc:
        if any(a in ("-h", "--help", "+help", "-help") for a in args):
            sys.stdout.write(help_text())
            return 0
        print(f"spambridge: error: {exc}", file=sys.stderr)
        return 2
    if parsed.command == "help":
        sys.stdout.write(help_text())
        return 0
    if parsed.command == "help-file":
        sys.stdout.write(option_file_text())
        return 0
    if parsed.command == "version":
        print(f"spambridge {__version__}")
        return 0
    for note in resolved.warnings:
        print(f"spambridge: warning: {note}", file=sys.stderr)
    if parsed.command == "learn":  # spambridge/learn.py; the envelope gives the spamd user
        if envelope.sender or envelope.client_address != Envelope().client_address:
            print(
                "spambridge: error: learn: --sender, --client-address: only for scan",
                file=sys.stderr,
            )
            return 2
        return learn.command(resolved.config, parsed.args, learn_as, envelope.recipients)
    if learn_as is not None:
        print("spambridge: error: --spam, --ham, --forget: only for learn", file=sys.stderr)
        return 2
    if as_json and parsed.command != "scan":
        print("spambridge: error: --json: only scan prints JSON", file=sys.stderr)
        return 2
    if envelope != Envelope() and parsed.command != "scan":
        print(
            "spambridge: error: --client-address, --sender, --recipient: only for scan",
            file=sys.stderr,
        )
        return 2
    if parsed.command == "check":
        text = option_file_text(resolved.config)
        path = resolved.config.file
        if resolved.option_file is None and path and "file" not in resolved.config.explicit:
            note = f"no option file at {path}; defaults only"
            print(f"spambridge: {note}", file=sys.stderr)
            # the file= line would read as if that file had been read
            text = f"# {note}\n" + text.replace(f"\nfile={path}\n", f"\n# file={path}\n")
        sys.stdout.write(text)
        return 0
    if parsed.command == "scan":
        if len(parsed.args) != 1:
            print(
                "spambridge: error: scan: give one FILE, or - for standard input", file=sys.stderr
            )
            return 2
        path = parsed.args[0]
        try:
            raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            print(f"spambridge: error: scan: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
        return asyncio.run(scan_message(resolved.config, raw, as_json=as_json, envelope=envelope))
    return run(args, resolved, defaults)


def main_milter_spamc() -> int:
    """Entry point under the name milter-spamc: milter-spamc's default paths."""
    return main(defaults=MILTER_SPAMC_DEFAULTS)


# ------------------------------------------------------------------ scan FILE


def split_message(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Split a message file into (name, value-with-leading-space) headers and the body."""
    data = raw.replace(b"\r\n", b"\n")
    head, sep, body = data.partition(b"\n\n")
    if not sep:
        head, body = data, b""
    headers: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\n" + line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            headers.append((name.rstrip(), value))
    return headers, body.replace(b"\n", b"\r\n")


# spamc -E / -c exit statuses: ham, spam, and EX_UNAVAILABLE when spamd fails
EXIT_HAM, EXIT_SPAM, EXIT_UNAVAILABLE = 0, 1, 69


@dataclass(frozen=True, slots=True)
class Envelope:
    """What `scan` pretends the MTA told it: the client and the SMTP envelope."""

    client_address: str = "127.0.0.1"
    sender: str = ""
    recipients: tuple[str, ...] = ()

    def client(self) -> Client:
        # the daemon's default scan client was localhost; another address is shown as
        # Sendmail shows an unresolved client
        address = self.client_address.encode("ascii")
        name = b"localhost" if address == b"127.0.0.1" else b"[" + address + b"]"
        family = Family.INET6 if b":" in address else Family.INET
        return Client(name, family, 0, address, b"localhost")


SCAN_FLAGS = ("--client-address", "--sender", "--recipient")


def take_scan_flags(args: list[str]) -> tuple[list[str], Envelope]:
    """Split scan's envelope flags (--client-address, --sender, --recipient, each as
    --flag VALUE or --flag=VALUE; --recipient repeats) from the options. Raises ConfigError."""
    rest: list[str] = []
    found: dict[str, list[str]] = {flag: [] for flag in SCAN_FLAGS}
    items = iter(args)
    for arg in items:
        flag, eq, value = arg.partition("=")
        if flag not in found:
            rest.append(arg)
            continue
        if not eq:
            following = next(items, None)
            if following is None:
                raise ConfigError(flag[2:], "needs a value")
            value = following
        found[flag].append(value)
    address = (found["--client-address"] or ["127.0.0.1"])[-1]
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        raise ConfigError(
            "client-address", f"{address!r} is not an IP address: write 192.0.2.1 or 2001:db8::1"
        ) from None
    sender = (found["--sender"] or [""])[-1]
    return rest, Envelope(address, sender, tuple(found["--recipient"]))


def _angle(address: str) -> bytes:
    raw = address.strip().encode("utf-8", "surrogateescape")
    return raw if raw.startswith(b"<") else b"<" + raw + b">"


def scan_transaction(raw: bytes, envelope: Envelope, config: Config) -> Transaction:
    """The message file as the daemon would have collected it from the MTA."""
    headers, body = split_message(raw)
    txn = Transaction(sender=_angle(envelope.sender))
    for address in envelope.recipients:
        txn.recipients.append(Recipient(_angle(address), (), b"", b"", b""))
    for name, value in headers:
        txn.add_header(name, value)
    for start in range(0, len(body), MAX_PAYLOAD):  # in the chunks an MTA sends
        policy.take_body(config, txn, body[start : start + MAX_PAYLOAD])
    return txn


async def scan_decision(
    config: Config,
    txn: Transaction,
    envelope: Envelope = Envelope(),
    *,
    clock: Callable[[], datetime] = local_now,
) -> tuple[Decision, Verdict | SpamdError | None]:
    """The daemon's end-of-message seam (`pipeline.end_of_message`) for one collected
    message, with a spamd pool of its own. Returns the decision and spamd's outcome (None
    when the message was not scanned)."""

    async def scan(plan: ScanPlan) -> Verdict | SpamdError:
        pool = daemon.build_pool(config)
        try:
            return await pool.scan(plan.message, command=plan.command, user=plan.user or None)
        except SpamdError as exc:
            return exc
        finally:
            await pool.close()

    outcome = await pipeline.end_of_message(
        config,
        envelope.client(),
        Macros(),
        txn,
        now=clock(),  # split_message keeps each value's leading space, as the pipeline wants
        actions=wanted(config).actions,  # an MTA that grants what we ask, as Sendmail does
        scan=scan,
    )
    return outcome.decision, outcome.spamd


async def scan_message(
    config: Config, raw: bytes, *, as_json: bool = False, envelope: Envelope = Envelope()
) -> int:
    """Print what the daemon would do with one message; the exit status as spamc -E."""
    txn = scan_transaction(raw, envelope, config)
    decision, outcome = await scan_decision(config, txn, envelope)
    if outcome is None:
        status = EXIT_HAM
        summary = f"unscanned ({decision.reason})"
    elif isinstance(outcome, Verdict):
        status = EXIT_SPAM if outcome.is_spam else EXIT_HAM
        summary = (
            f"{decision.verdict} score={outcome.score:.2f}/{outcome.threshold:.2f} "
            f"spamd={outcome.host} ms={outcome.elapsed * 1000:.0f}"
        )
    else:
        status = EXIT_UNAVAILABLE
        summary = f"error ({outcome.kind}: {outcome})"
    seen = preview.apply_header_edits(txn.headers, decision.edits)
    reply = reply_text(decision.final)
    new_body = next((e.data for e in decision.edits if isinstance(e, ReplaceBody)), None)
    if as_json:
        document = {
            "verdict": decision.verdict,
            "score": decision.score,
            "threshold": decision.threshold,
            "action": decision.action,
            "reply": reply,
            "reason": decision.reason,
            "spamd": outcome.host if isinstance(outcome, Verdict) else None,
            "headers": [
                [n.decode("ascii", "replace"), v.decode("utf-8", "replace").lstrip(" ")]
                for n, v in seen
            ],
            "body_replaced": new_body is not None,
        }
        print(json.dumps(document))  # one line, for jq and scripts
        return status
    print(f"verdict: {summary}")
    print(f"action: {decision.action}")
    print(f"reply: {reply}")
    print()
    print(preview.render_headers(seen))
    if new_body is not None:  # +spamd-rewrite-body: SpamAssassin's report_safe body
        print()
        sys.stdout.write(new_body.replace(b"\r\n", b"\n").decode("utf-8", "replace"))
    return status


def reply_text(final: FinalReply) -> str:
    """The final reply as the SMTP client would read it (continue: the MTA's own 250)."""
    if isinstance(final, ReplyCode):
        return final.text.decode("ascii", "replace").replace("\r\n", "\n       ")
    return {"Continue": "continue (delivered)", "Accept": "accept (delivered)"}.get(
        type(final).__name__, type(final).__name__.lower()
    )


# ------------------------------------------------------------------ run


def run(argv: Sequence[str], resolved: Resolved, defaults: Mapping[str, str] | None) -> int:
    """Serve the MTA until SIGTERM; SIGHUP reads argv (and the option file) again."""

    def load() -> Config:
        return resolve(argv, defaults)[1].config

    return daemon.run(resolved.config, load, resolved.warnings)
