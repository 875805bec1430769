"""spambridge: a milter between Sendmail/Postfix and SpamAssassin's spamd."""

from __future__ import annotations

__version__ = "0.1.0"
