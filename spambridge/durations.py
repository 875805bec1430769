"""The one duration syntax of every option that takes a time: N, Ns, Nm, Nh or Nd."""

from __future__ import annotations

import re

__all__ = ["DURATION_FORMS", "NO_LIMIT_SECONDS", "parse_duration"]

# milter-spamc treats a spamd timeout of 0 as "no limit"; nothing here may wait forever, so 0
# maps to this finite cap instead.
NO_LIMIT_SECONDS = 3600.0

DURATION_FORMS = "N, Ns, Nm, Nh or Nd"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float | None:
    """Seconds for `text` (a number, optionally followed by s, m, h or d); None if it is not
    a duration."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return float(match[1]) * _UNITS[match[2].lower()]
