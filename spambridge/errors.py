"""The exception tree. Every error we raise on purpose derives from SpambridgeError."""

from __future__ import annotations


class SpambridgeError(Exception):
    """Root of every error spambridge raises on purpose."""


class ProtocolError(SpambridgeError):
    """The milter conversation cannot continue."""


class LocalProtocolError(ProtocolError):
    """We were about to break the protocol (a bug or a bad configuration)."""


class RemoteProtocolError(ProtocolError):
    """The MTA sent something the protocol does not allow."""


class SpamdError(SpambridgeError):
    """spamd could not give a verdict. `kind` is a short stable label for logs and metrics."""

    kind = "error"

    def __init__(self, message: str, host: str | None = None) -> None:
        super().__init__(message)
        self.host = host


class SpamdUnavailable(SpamdError):
    """No spamd host accepted the connection (refused, reset, all hosts cooling down)."""

    kind = "unavailable"


class SpamdTimeout(SpamdError):
    """A connect, send, read or end timeout expired."""

    kind = "timeout"


class SpamdBadResponse(SpamdError):
    """spamd answered, but not with a usable verdict (garbage, EX_* error status)."""

    kind = "bad-response"


class SpamdErrorStatus(SpamdBadResponse):
    """spamd answered with an EX_* error status; `code` is its number (64..79, or other)."""

    def __init__(self, message: str, host: str | None, code: int) -> None:
        super().__init__(message, host)
        self.code = code


class ConfigError(SpambridgeError):
    """A configuration value is wrong. The message names the option and what it accepts."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
