"""The SMTP client side: send one message and return the transaction's final reply."""

from __future__ import annotations

import smtplib
from collections.abc import Sequence


def send_smtp(
    port: int,
    sender: str,
    rcpts: Sequence[str],
    message: bytes,
    *,
    timeout: float = 120.0,
) -> tuple[int, str]:
    """Send one message over SMTP; return the final reply (code, text) of the transaction."""
    with smtplib.SMTP(
        "127.0.0.1", port, local_hostname="client.example.org", timeout=timeout
    ) as smtp:
        smtp.ehlo()
        code, text = smtp.mail(sender)
        if code != 250:
            return code, text.decode("utf-8", "replace")
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt)
            if code not in (250, 251):
                return code, text.decode("utf-8", "replace")
        try:
            code, text = smtp.data(message)
        except smtplib.SMTPResponseException as error:  # includes SMTPDataError
            return error.smtp_code, _reply_text(error.smtp_error)
        return code, text.decode("utf-8", "replace")


def _reply_text(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


# --------------------------------------------------------------------------------- messages
