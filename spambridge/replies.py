"""SMTP replies configured by the admin ("550 5.7.1 text"), checked and built once at start-up."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spambridge.errors import ConfigError
from spambridge.milter.messages import ReplyCode
from spambridge.milter.reply import smtp_reply

_REPLY = re.compile(r"^\s*([45]\d\d)(?:\s+([245]\.\d{1,3}\.\d{1,3}))?\s*(.*?)\s*$", re.S)


@dataclass(frozen=True, slots=True)
class ReplySpec:
    """A configured reply. `source` is the option's text as the admin wrote it (what `check`
    prints), not part of the reply's identity."""

    code: str
    enhanced: str | None
    text: str
    reply: ReplyCode = field(init=False, repr=False, compare=False)  # the one-line reply
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reply", smtp_reply(self.code, self.enhanced, [self.text]))

    def with_lines(self, lines: list[str]) -> ReplyCode:
        """The same code and enhanced code with other text lines."""
        return smtp_reply(self.code, self.enhanced, lines)


def parse_reply_option(option: str, value: str, klass: str) -> ReplySpec:
    """Check a configured SMTP reply ("550 5.7.1 text"); raises ConfigError naming `option`.

    `klass` lists the accepted first digits: "5", "4", or "45" for either.
    """
    m = _REPLY.match(value)
    if not m or m[1][0] not in klass:
        codes = " or ".join(f"{k}xx" for k in klass)
        raise ConfigError(
            option,
            f"{value!r} must start with a {codes} code, e.g. '{klass[-1]}50 {klass[-1]}.7.1 text'",
        )
    try:
        return ReplySpec(m[1], m[2], m[3] or "rejected", source=value)
    except ValueError as exc:
        raise ConfigError(option, str(exc)) from None
