"""spambridge/milter/ stays sans-IO: no event loop, sockets, selectors or threads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import spambridge.milter

FORBIDDEN = {"asyncio", "socket", "selectors", "threading"}
MILTER_DIR = Path(spambridge.milter.__file__).parent


def imported_modules(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_milter_is_sans_io_no_forbidden_imports() -> None:
    files = sorted(MILTER_DIR.glob("*.py"))
    assert len(files) >= 4  # codec, flags, messages, negotiate at least
    offenders = {
        f.name: sorted(imported_modules(f.read_text()) & FORBIDDEN)
        for f in files
        if imported_modules(f.read_text()) & FORBIDDEN
    }
    assert offenders == {}


def test_milter_is_sans_io_no_dynamic_asyncio_use() -> None:
    for f in MILTER_DIR.glob("*.py"):
        # Attribute use or a module name in a string (importlib, __import__); prose may mention it.
        assert not re.search(r"\basyncio\.|[\"']asyncio[\"']", f.read_text()), f.name


def test_milter_is_sans_io_detector_catches_imports() -> None:
    assert imported_modules("import asyncio\nfrom socket import socket\n") == {"asyncio", "socket"}
