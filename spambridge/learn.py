"""`spambridge learn --spam|--ham|--forget FILE|-...`: train spamd's Bayes database over SPAMC
TELL, as `spamc -L spam|ham|forget` does (spamd needs --allow-tell).

Each message goes as it is in the file, byte for byte as spamc sends it, to the spamd user
the scan would use (spamd-user, or the --recipient rules of spamd-user-from), on the first
spamd-socket entry that takes the connection, over the same transports, TLS and timeouts
as scanning. What it prints and its exit status follow spamc -L: "Message successfully
un/learned" or "Message was already un/learned" (both exit 0), an EX_* code on failure.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from spambridge import recipients as recipient_rules
from spambridge.errors import (
    ConfigError,
    SpamdBadResponse,
    SpamdError,
    SpamdErrorStatus,
    SpamdTimeout,
    SpamdUnavailable,
)
from spambridge.options import Config
from spambridge.spamd.protocol import LearnAs, parse_tell_reply, sanitize_user, tell_request
from spambridge.spamd.tls import client_context
from spambridge.spamd.transport import Attempt, connection_for
from spambridge.transaction import Recipient, Transaction

__all__ = [
    "EX_NOINPUT",
    "EX_PROTOCOL",
    "EX_UNAVAILABLE",
    "LEARN_FLAGS",
    "command",
    "learn_message",
    "take_learn_flags",
]

# spamc's exit statuses (sysexits.h) for what can go wrong while learning
EX_NOINPUT = 66  # a FILE cannot be read
EX_UNAVAILABLE = 69  # no spamd answered (down, refused, timed out)
EX_PROTOCOL = 76  # spamd's reply was not SPAMC

LEARN_FLAGS: dict[str, LearnAs] = {"--spam": "spam", "--ham": "ham", "--forget": "forget"}
LEARNED = "Message successfully un/learned"  # spamc's words, which scripts match
ALREADY = "Message was already un/learned"


def take_learn_flags(args: Sequence[str]) -> tuple[list[str], LearnAs | None]:
    """Split --spam, --ham, --forget from the rest of the command line. Raises ConfigError
    when two different ones are given."""
    rest: list[str] = []
    found: LearnAs | None = None
    for arg in args:
        learn_as = LEARN_FLAGS.get(arg)
        if learn_as is None:
            rest.append(arg)
            continue
        if found is not None and found != learn_as:
            raise ConfigError(arg[2:], f"give one of --spam, --ham, --forget, not --{found} too")
        found = learn_as
    return rest, found


def spamd_user(config: Config, recipients: Sequence[str]) -> str:
    """The spamd user a scan of a message to `recipients` would use."""
    txn = Transaction()
    for address in recipients:
        raw = address.strip().encode("utf-8", "surrogateescape")
        angled = raw if raw.startswith(b"<") else b"<" + raw + b">"
        txn.recipients.append(Recipient(angled, (), b"", b"", b""))  # a local recipient
    return sanitize_user(recipient_rules.spamd_user(config, txn))


async def learn_message(
    config: Config,
    message: bytes,
    learn_as: LearnAs,
    user: str,
    tls: ssl.SSLContext | None = None,
) -> bool:
    """Tell spamd: True when it changed the database, False when the message was already
    learned (or, to forget, never was). The spamd-socket entries are tried in order while
    connecting fails, all within the end timeout; `tls` is the context for ssl: entries.
    Raises SpamdError."""
    endpoints = config.spamd_socket
    if not endpoints:
        raise SpamdUnavailable("no spamd host configured (spamd-socket is empty)")
    timeouts = config.spamd_timeouts
    request = tell_request(learn_as, message, user)
    failure: SpamdError | None = None
    try:
        async with asyncio.timeout(timeouts.end):
            for endpoint in endpoints:
                connection = connection_for(endpoint, timeouts, tls)
                try:
                    reply = await connection.request(request)
                except Attempt as attempt:
                    failure = attempt.error
                    if attempt.connecting:
                        continue  # nothing was sent: the next host
                    raise failure from None
                return parse_tell_reply(reply, learn_as, endpoint.label)
    except TimeoutError:
        raise SpamdTimeout(
            f"no spamd answered within {timeouts.end:g}s (spamd-timeouts E)"
        ) from None
    assert failure is not None
    raise failure


def exit_status(error: SpamdError) -> int:
    """spamc's exit status for a failed TELL: spamd's own EX code when it sent one."""
    if isinstance(error, SpamdErrorStatus):
        return error.code if 0 < error.code < 256 else EX_PROTOCOL
    if isinstance(error, SpamdBadResponse):
        return EX_PROTOCOL
    return EX_UNAVAILABLE


def command(
    config: Config, paths: Sequence[str], learn_as: LearnAs | None, recipients: Sequence[str]
) -> int:
    """`spambridge learn`: the command line checked (status 2 when wrong, as for every
    option), then each FILE (- for standard input) learned in turn, spamc's line printed for
    each (led by the file name when there are several). Stops at the first spamd failure.
    The status: 0, or the first failure's EX_* code."""
    if learn_as is None:
        print("spambridge: error: learn: give --spam, --ham or --forget", file=sys.stderr)
        return 2
    if not paths:
        print("spambridge: error: learn: give FILE..., or - for standard input", file=sys.stderr)
        return 2
    user = spamd_user(config, recipients)
    tls = client_context(config.spamd_tls) if any(e.tls for e in config.spamd_socket) else None
    status = 0
    for path in paths:
        lead = f"{path}: " if len(paths) > 1 else ""
        try:
            message = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            print(f"spambridge: learn: cannot read {path}: {exc.strerror}", file=sys.stderr)
            status = status or EX_NOINPUT
            continue
        try:
            changed = asyncio.run(learn_message(config, message, learn_as, user, tls))
        except SpamdError as exc:
            print(f"spambridge: learn: {lead}{exc.kind}: {exc}", file=sys.stderr)
            return status or exit_status(exc)
        print(f"{lead}{LEARNED if changed else ALREADY}")
    return status
