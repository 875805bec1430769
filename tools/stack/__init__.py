"""Start real spamd, Sendmail, Postfix and spambridge on loopback, for e2e tests, benches and
scripts.

Every daemon listens on 127.0.0.1 only, lives in its own process group and is stopped by its
PID. Sendmail and Postfix deliver every accepted message to one file per recipient in
``workdir/delivered`` (raw bytes), so a test can inspect exactly what was delivered.

The milter lines of both MTAs come from the project's shipped snippets in ``sendmail/``, with
only the socket substituted, so the shipped files are exercised by every e2e run.

``workdir`` and its parents must be traversable by unprivileged users (spamd, Postfix and the
delivery pipe drop privileges); :func:`make_workdir` makes such a directory.

One module per job (``processes``, ``spamd``, ``mta``, ``sendmail``, ``postfix``, ``milters``,
``smtp``, ``messages``); this package re-exports their public names, so callers write
``from tools import stack`` and ``stack.start_spamd(...)``.
"""

from __future__ import annotations

from tools.stack.messages import (
    GTUBE,
    HAM_BODY,
    awkward_message,
    field_name,
    gtube_message,
    ham_message,
    header_values,
    split_message,
)
from tools.stack.milters import (
    SpamassMilter,
    Spambridge,
    start_spamass_milter,
    start_spambridge,
)
from tools.stack.mta import MAIL_DOMAIN, MTA_HOSTNAME, SNIPPET_DIR, Mta
from tools.stack.postfix import (
    POSTFIX_CACHE_DIR,
    POSTFIX_SNIPPET,
    POSTFIX_SNIPPET_FAILCLOSED,
    POSTFIX_SNIPPET_SOCKET,
    Postfix,
    postfix_deb,
    postfix_root,
    start_postfix,
)
from tools.stack.processes import (
    REPO_ROOT,
    Daemon,
    StackError,
    describe_logs,
    free_port,
    make_workdir,
    port_accepts,
    require_binaries,
    wait_until,
)
from tools.stack.sendmail import (
    SENDMAIL_SNIPPET,
    SENDMAIL_SNIPPET_FAILCLOSED,
    SENDMAIL_SNIPPET_SOCKET,
    sendmail_milter_lines,
    start_sendmail,
)
from tools.stack.smtp import send_smtp
from tools.stack.spamd import Spamd, SpamdTlsFiles, start_spamd

__all__ = [
    "GTUBE",
    "HAM_BODY",
    "MAIL_DOMAIN",
    "MTA_HOSTNAME",
    "POSTFIX_CACHE_DIR",
    "POSTFIX_SNIPPET",
    "POSTFIX_SNIPPET_FAILCLOSED",
    "POSTFIX_SNIPPET_SOCKET",
    "REPO_ROOT",
    "SENDMAIL_SNIPPET",
    "SENDMAIL_SNIPPET_FAILCLOSED",
    "SENDMAIL_SNIPPET_SOCKET",
    "SNIPPET_DIR",
    "Daemon",
    "Mta",
    "Postfix",
    "SpamassMilter",
    "Spambridge",
    "Spamd",
    "SpamdTlsFiles",
    "StackError",
    "awkward_message",
    "describe_logs",
    "field_name",
    "free_port",
    "gtube_message",
    "ham_message",
    "header_values",
    "make_workdir",
    "port_accepts",
    "postfix_deb",
    "postfix_root",
    "require_binaries",
    "send_smtp",
    "sendmail_milter_lines",
    "split_message",
    "start_postfix",
    "start_sendmail",
    "start_spamass_milter",
    "start_spambridge",
    "start_spamd",
    "wait_until",
]
