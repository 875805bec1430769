"""Logging: stdlib logging with `conn=<id> qid=<queue id>` on every line.

The connection and queue ids live in ContextVars set by the session, so every line logged
while handling a connection carries them, whichever module logs it.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import sys
from typing import TYPE_CHECKING

from spambridge.decision import OUTBOUND, Decision

if TYPE_CHECKING:
    from spambridge.transaction import Client, Transaction

conn_id: contextvars.ContextVar[int] = contextvars.ContextVar("conn_id", default=0)
queue_id: contextvars.ContextVar[str] = contextvars.ContextVar("queue_id", default="-")

logger = logging.getLogger("spambridge")


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.conn = conn_id.get()
        record.qid = queue_id.get()
        return True


STDERR_FORMAT = (
    "%(asctime)s spambridge[%(process)d] %(levelname)s conn=%(conn)s qid=%(qid)s %(message)s"
)
SYSLOG_FORMAT = "spambridge[%(process)d]: %(levelname)s conn=%(conn)s qid=%(qid)s %(message)s"


def setup(destination: str, verbose: frozenset[str], *, syslog_address: str | None = None) -> None:
    """Configure the 'spambridge' logger. `verbose` holds milter-spamc's categories."""
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    handler: logging.Handler
    if destination == "syslog":
        address: str | tuple[str, int] = syslog_address or (
            "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        )
        handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_MAIL
        )
        handler.setFormatter(logging.Formatter(SYSLOG_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    handler.addFilter(_ContextFilter())
    logger.addHandler(handler)
    logger.propagate = False
    if verbose & {"debug", "trace", "dialog", "state", "socket-all", "parse"}:
        logger.setLevel(logging.DEBUG)
    elif "info" in verbose:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.WARNING)


def log_verdict(decision: Decision, client: Client, txn: Transaction, host: str, ms: float) -> None:
    """The one INFO line per message: verdict, score, action, envelope, spamd host and time."""
    score = ""
    if decision.score is not None:
        score = f" score={decision.score:.2f}/{decision.threshold:.2f}"
    logger.info(
        "verdict=%s%s action=%s client=%s [%s] from=%s rcpts=%s size=%d spamd=%s ms=%.0f%s%s",
        decision.verdict,
        score,
        decision.action,
        client.hostname.decode("ascii", "replace"),
        client.address.decode("ascii", "replace"),
        txn.sender.decode("ascii", "replace"),
        ",".join(r.address.decode("ascii", "replace") for r in txn.recipients),
        txn.size,
        host,
        ms,
        f" reason={decision.reason!r}" if decision.reason else "",
        " direction=outbound" if decision.direction is OUTBOUND else "",
    )
