"""The syntax of options: the command line in both syntaxes (milter-spamc's and GNU's), the
option file as libsnert reads it, and the names an option is known by (aliases, and
milter-spamc's options that are accepted and ignored).

Syntax accepted (the first two are milter-spamc's own):
  name=value   name+=value (append to a list)   +name (on)   -name (off)
  --name value   --name=value   --name (on)   --no-name (off)
Option names are case-insensitive. `file=PATH` reads an option file first; the command line
is applied on top of it (cli.resolve).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from spambridge.errors import ConfigError
from spambridge.options.table import OPTIONS
from spambridge.options.values import Option, boolean

# milter-spamc registers "discard-low-precedence-" (a missing comma in its option table), so
# option files written from its +help carry that spelling.
ALIASES: Mapping[str, str] = {"discard-low-precedence-": "discard-low-precedence"}
BY_NAME: Mapping[str, Option[Any]] = {o.name: o for o in OPTIONS} | {
    alias: next(o for o in OPTIONS if o.name == name) for alias, name in ALIASES.items()
}

# milter-spamc options kept for compatibility that change nothing here; accepted with a warning.
IGNORED: Mapping[str, str] = {
    name: "address syntax checks are the MTA's job"
    for name in (
        "rfc2821-syntax",
        "rfc2821-local-length",
        "rfc2821-domain-length",
        "rfc2821-literal-plus",
        "reject-percent-relay",
        "reject-rfc2606",
        "reject-unknown-tld",
    )
} | {
    "sendmail-cf": "not needed",
    "interface-ip": "taken from {if_addr}",
    "interface-name": "taken from {if_name}",
    "tld-level-one-file": "address syntax checks are the MTA's job",
    "tld-level-two-file": "address syntax checks are the MTA's job",
    "smdb-debug": "use verbose=database",
    "smdb-key-has-nul": "text!/path maps are read as text, .db maps through makemap -u",
    "smdb-use-stat": "maps are reloaded by SIGHUP",
}


# ------------------------------------------------------------------ raw settings


@dataclass(slots=True)
class Settings:
    """Option values as written (strings), before validation; lists keep their entries."""

    values: dict[str, str | list[str]] = dataclasses.field(default_factory=dict)
    explicit: set[str] = dataclasses.field(default_factory=set)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def set(self, name: str, value: str, *, append: bool = False) -> None:
        key = name.lower()
        if key in IGNORED:
            self.warnings.append(
                f"option {key} is accepted for compatibility and ignored: {IGNORED[key]}"
            )
            return
        opt = BY_NAME.get(key)
        if opt is None:
            raise ConfigError(name, f"unknown option (see --help for the {len(OPTIONS)} options)")
        key = opt.name
        if opt.kind == "list":
            current = self.values.get(key)
            entries = value.split()
            if append and isinstance(current, list):
                self.values[key] = [*current, *entries]
            elif append and key not in self.explicit:
                self.values[key] = [*_defaults_list(opt), *entries]
            else:
                self.values[key] = entries
        elif append:
            # libsnert's += on a one-value option appends ";value" to the current string
            current = self.values.get(key, opt.default)
            assert isinstance(current, str)
            self.values[key] = f"{current};{value}" if current else value
        elif name.lower() in ALIASES and opt.kind == "bool" and boolean(value) is None:
            # milter-spamc's +help writes its usage text as this misspelled option's value;
            # libsnert reads any such text as 0 (off).
            self.values[key] = "-"
        else:
            self.values[key] = value
        self.explicit.add(key)


def _defaults_list(opt: Option[Any]) -> list[str]:
    return opt.default.split()


Subcommand = Literal["run", "check", "scan", "learn", "help", "help-file", "version"]


@dataclass(slots=True)
class ParsedArgs:
    settings: Settings
    command: Subcommand = "run"
    args: list[str] = dataclasses.field(default_factory=list)


_MILTER_SPAMC = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9-]*)(?P<op>\+?=)(?P<value>.*)$", re.S)


def parse_argv(argv: Sequence[str], settings: Settings | None = None) -> ParsedArgs:
    """Parse the command line in both syntaxes. Does not read the option file."""
    parsed = ParsedArgs(settings or Settings())
    s = parsed.settings
    repeated: set[str] = set()  # GNU list options given again on this command line append

    def gnu(name: str, value: str) -> None:
        key = name.lower()
        opt = BY_NAME.get(key)
        s.set(name, value, append=opt is not None and opt.kind == "list" and key in repeated)
        repeated.add(key)

    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            parsed.args.extend(argv[i:])
            break
        if arg in ("-h", "--help", "+help", "-help"):
            parsed.command = "help-file" if arg in ("+help", "-help") else "help"
            continue
        if arg in ("-V", "--version", "-version", "+version"):
            parsed.command = "version"
            continue
        if arg.startswith("--"):
            body = arg[2:]
            if "=" in body:
                name, value = body.split("=", 1)
                gnu(name, value)
                continue
            name = body.lower()
            if name.startswith("no-") and name[3:] in BY_NAME and BY_NAME[name[3:]].kind == "bool":
                s.set(name[3:], "-")
                continue
            opt = BY_NAME.get(name)
            if opt is None and name not in IGNORED:
                raise ConfigError(arg, "unknown option (see --help)")
            if opt is not None and opt.kind == "bool":
                s.set(name, "+")
                continue
            if i >= len(argv):
                raise ConfigError(arg, "needs a value")
            gnu(name, argv[i])
            i += 1
            continue
        m = _MILTER_SPAMC.match(arg)
        if m:
            s.set(m["name"], m["value"], append=m["op"] == "+=")
            continue
        if len(arg) > 1 and arg[0] in "+-":
            name = arg[1:].lower()
            opt = BY_NAME.get(name)
            if opt is None and name not in IGNORED:
                raise ConfigError(arg, "unknown option (see --help)")
            if opt is not None and opt.kind != "bool":
                raise ConfigError(name, f"takes a value: write {name}=VALUE")
            s.set(name, arg[0])
            continue
        if parsed.command == "run" and arg in ("run", "check", "scan", "learn"):
            parsed.command = arg  # type: ignore[assignment]
            continue
        if parsed.command in ("scan", "learn"):
            parsed.args.append(arg)
            continue
        raise ConfigError(
            arg, "unexpected argument (subcommands: run, check, scan FILE|-, learn FILE|-...)"
        )
    return parsed


def read_option_file(path: str, settings: Settings) -> None:
    """Read an option file the way libsnert's optionFile() does, so milter-spamc's files (and
    its whole `+help` output) read unchanged.

    A line starting with `#` is a comment. Other lines are split into words as libsnert's
    TokenSplitA() splits them (blanks separate words; quotes group, and are removed, anywhere
    in a word: `subject-tag="[SPAM] #1"`; a backslash escapes), and every word that is an
    option (`name=value`, `name+=value`, `+name`, `-name`) is applied in order, so one line may
    hold several options. A word starting with `#` ends the line. Where libsnert stops reading
    the line at any other word, spambridge adds it to the value before it as written, so
    `reject-reply=550 5.7.1 go away` keeps its spaces without quotes.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError("file", f"cannot read {path}: {exc.strerror}") from exc
    for lineno, raw in enumerate(text.splitlines(), 1):
        if raw.startswith("#"):
            continue
        try:
            _apply_file_line(raw, settings)
        except ConfigError as exc:
            detail = str(exc).removeprefix(f"{exc.option}: ")
            raise ConfigError(exc.option, f"{path}:{lineno}: {detail}") from exc


def split_words(line: str) -> list[str]:
    """libsnert TokenSplitA() with its default delimiters: quotes and backslashes removed."""
    return [word for word, _ in _words(line)]


def _words(line: str) -> list[tuple[str, int]]:
    """The words of `line`, each with the index just past its end."""
    words: list[tuple[str, int]] = []
    word: list[str] = []
    in_word = False
    quote = ""
    escape = False
    for i, ch in enumerate(line):
        if escape:
            word.append(_BACKSLASH.get(ch, ch))
            escape = False
        elif ch in "\"'" and (not quote or ch == quote):
            quote = "" if quote else ch
            in_word = True
        elif ch == "\\":
            escape = in_word = True
        elif not quote and ch in " \t\r\n":
            if in_word:
                words.append(("".join(word), i))
                word, in_word = [], False
        else:
            word.append(ch)
            in_word = True
    if in_word:
        words.append(("".join(word), len(line)))
    return words


# libsnert TextBackslash(): the character a backslash escape stands for.
_BACKSLASH = {"a": "\a", "b": "\b", "e": "\x1b", "f": "\f", "n": "\n", "r": "\r", "s": " "}
_BACKSLASH |= {"t": "\t", "v": "\v"}
# An option name is letters, digits, dashes and underscores: a word like
# `spamd2.example:783;weight=2` holds an `=` but continues the value before it.
_OPTION_WORD = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_-]*)(?P<op>\+?=)(?P<value>.*)$", re.S)


def _apply_file_line(line: str, settings: Settings) -> None:
    last: tuple[str, str, bool] | None = None  # the option being read: name, value, append
    end = 0  # where the previous word ended

    def flush() -> None:
        if last is not None:
            settings.set(last[0], last[1], append=last[2])

    for word, word_end in _words(line):
        start, end = end, word_end
        if word.startswith("#"):
            break
        m = _OPTION_WORD.match(word)
        if m:
            flush()
            last = (m["name"], m["value"], m["op"] == "+=")
        elif len(word) > 1 and word[0] in "+-" and (word[1].isalpha() or word[1] == "_"):
            flush()
            last = None
            opt = BY_NAME.get(word[1:].lower())
            if opt is not None and opt.kind != "bool":
                # as on the command line: +name is only for on/off options
                raise ConfigError(opt.name, f"takes a value: write {opt.name}=VALUE")
            settings.set(word[1:], word[0])
        elif last is not None:
            last = (last[0], last[1] + line[start:end], last[2])  # spacing kept as written
        else:
            raise ConfigError(word, "expected name=value, +name or -name")
    flush()
