"""The one place aiospamc (and through it loguru) is imported, and what of it is used.

aiospamc is used for one job: parsing spamd's reply, through its public entry points only
(`ResponseParser().parse`, `Response(**parsed)`, `Response.raise_for_status`,
`ResponseException.code`, `Response.headers.spam`, `.did_set`, `.did_remove` (TELL),
`.body`, `.message`); the pinned range is
in pyproject.toml and tests/unit/test_aiospamc_contract.py fails loudly when an upgrade
changes any of it. Requests are built by protocol.py and the socket exchanges are ours
(transport.py): aiospamc's connection managers have no send or per-read timeout and leak
sockets on error paths.

Importing this module has two process-wide effects, wanted by the daemon and `scan` alike:
- aiospamc calls getpass.getuser() at import time and crashes (KeyError/OSError) when the uid
  has no passwd entry and USER/LOGNAME are unset (containers, random uids): USER is set first;
- aiospamc logs whole replies (message bodies) through loguru: its records are disabled.
"""

from __future__ import annotations

import getpass
import os
from typing import Any


def ensure_user_env() -> None:
    """Give the process a USER when getpass cannot name it (aiospamc needs one at import)."""
    try:
        getpass.getuser()
    except (KeyError, OSError):
        os.environ.setdefault("USER", "spambridge")


ensure_user_env()

import aiospamc.incremental_parser  # noqa: E402
import aiospamc.responses  # noqa: E402
from loguru import logger as _loguru_logger  # noqa: E402

_loguru_logger.disable("aiospamc")

ResponseException = aiospamc.responses.ResponseException


def parse_response(raw: bytes) -> Any:
    """aiospamc's Response for one whole reply; raises whatever aiospamc raises."""
    return aiospamc.responses.Response(**aiospamc.incremental_parser.ResponseParser().parse(raw))


def drop_loguru_handlers() -> None:
    """For the daemon, which owns its process: spambridge logs through `logging`, and
    aiospamc's loguru records are disabled above. With no handler left, loguru drops a record
    before it inspects the caller's frame, which its parser otherwise does several times
    per spamd reply."""
    _loguru_logger.remove()
