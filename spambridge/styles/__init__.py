"""Header styles: which verdict headers a style writes, how, and how it tags the Subject.

One module per style in this package, each with a `STYLE` object (a `HeaderStyle`); the
registry below finds them, and `header-style` takes its choices from it. Adding a style is
one new module here.
"""

from __future__ import annotations

import importlib
import pkgutil

from spambridge.styles.base import HeaderStyle

DEFAULT = "milter-spamc"


def _discover() -> dict[str, HeaderStyle]:
    found: dict[str, HeaderStyle] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        style = getattr(importlib.import_module(f"{__name__}.{info.name}"), "STYLE", None)
        if not isinstance(style, HeaderStyle):
            raise TypeError(f"{__name__}.{info.name} has no STYLE (a HeaderStyle)")
        found[style.name] = style
    # the default first, the rest by name: the order --help and the man page list them in
    return dict(sorted(found.items(), key=lambda item: (item[0] != DEFAULT, item[0])))


STYLES: dict[str, HeaderStyle] = _discover()
NAMES: tuple[str, ...] = tuple(STYLES)


def style(name: str) -> HeaderStyle:
    """The style called `name` (a Config's header_style, already checked against NAMES)."""
    return STYLES[name]


__all__ = ["DEFAULT", "NAMES", "STYLES", "HeaderStyle", "style"]
