"""The Config factory for tests: the finished Config spambridge builds from options written as
on the command line (and an option file), through the same path the daemon takes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from spambridge.cli import resolve
from spambridge.options import Config


def make_config(
    *options: str, option_file: str | Path = "", defaults: Mapping[str, str] | None = None
) -> Config:
    """`make_config("extra-reject=3")`: no option file unless one is named (the daemon's
    default path is never read), then the options in order, as `spambridge` would take them."""
    return resolve([f"file={option_file}", *options], defaults)[1].config
