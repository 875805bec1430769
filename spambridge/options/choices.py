"""The choices of the choice options: one place, used by the table and by Config's types."""

from __future__ import annotations

from typing import Literal

OversizeAction = Literal["skip", "truncate"]
SpamdUserFrom = Literal["passwd", "local-part", "address", "domain", "fixed"]
SpamdErrorAction = Literal["accept", "tempfail", "reject"]
# The styles package is the registry (its choices: styles.NAMES); the names are repeated here
# so Config's field is typed, and a test holds the two to one list.
HeaderStyle = Literal["milter-spamc", "rspamd", "spamassassin"]
MailPolicy = Literal["none", "copy", "redirect"]
ScanAuthenticated = Literal["skip", "tag", "full"]
EventLoop = Literal["auto", "asyncio", "uvloop"]
LogTarget = Literal["stderr", "syslog"]
