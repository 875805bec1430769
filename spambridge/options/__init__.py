"""THE option table and what is built from it, split by job:

- `values.py`: what a row is (`Option[T]`) and the types of value it can take, each with
  its parser, its formatter and the type of its `Config` field;
- `table.py`: the `Config` class, whose fields are the table: one row per option (name,
  value type, default, help, milter-spamc spelling), `OPTIONS` read from it; its first
  rows, the milter side and the spamd side, are in `table_connections.py`, which `Config`
  inherits; `choices.py`: the Literal types of the choice options;
- `syntax.py`: the command line in both syntaxes, the option file as libsnert reads it,
  aliases and the milter-spamc options accepted and ignored;
- `config.py`: `build_config`, the finished, frozen `Config` built by one loop over the table
  plus the checks across options;
- `render.py`: `--help`, the option file (`+help`, `check`), the README table, the man page.

The command line, the option file, `--help`, the README table and the man page all come from
the one table, so they cannot drift apart. The names below are the package's public API.
"""

from __future__ import annotations

from spambridge.options.choices import (
    EventLoop,
    HeaderStyle,
    LogTarget,
    MailPolicy,
    OversizeAction,
    ScanAuthenticated,
    SpamdErrorAction,
    SpamdUserFrom,
)
from spambridge.options.config import build_config
from spambridge.options.render import format_value, help_text, option_file_text
from spambridge.options.syntax import (
    ALIASES,
    BY_NAME,
    IGNORED,
    ParsedArgs,
    Settings,
    parse_argv,
    read_option_file,
    split_words,
)
from spambridge.options.table import OPTIONS, Config
from spambridge.options.values import VERBOSE_WORDS, Option

__all__ = [
    "ALIASES",
    "BY_NAME",
    "IGNORED",
    "OPTIONS",
    "VERBOSE_WORDS",
    "Config",
    "EventLoop",
    "HeaderStyle",
    "LogTarget",
    "MailPolicy",
    "Option",
    "OversizeAction",
    "ParsedArgs",
    "ScanAuthenticated",
    "Settings",
    "SpamdErrorAction",
    "SpamdUserFrom",
    "build_config",
    "format_value",
    "help_text",
    "option_file_text",
    "parse_argv",
    "read_option_file",
    "split_words",
]
