"""What spambridge relies on in aiospamc (spambridge/spamd/library.py), checked against the
installed version: an upgrade that changes any of it fails here, by name, rather than as
odd verdicts. Expected values are spamd's own replies (spamd 4.0.1, reference/spamc notes)."""

from __future__ import annotations

import importlib.metadata
import inspect

import aiospamc.incremental_parser
import aiospamc.responses
import pytest

from spambridge.spamd import library

SPAM = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 5\r\nSpam: True ; 7.5 / 5.0\r\n\r\nhello"
PONG = b"SPAMD/1.5 0 PONG\r\n"
UNAVAILABLE = b"SPAMD/1.0 69 Service Unavailable: TELL commands are not enabled\r\n"


def test_aiospamc_contract_version_is_the_pinned_range() -> None:
    major, minor = (int(part) for part in importlib.metadata.version("aiospamc").split(".")[:2])
    assert (major, minor) == (1, 2), "re-check spambridge/spamd/library.py, then the pin"


def test_aiospamc_contract_public_names_exist() -> None:
    parser = aiospamc.incremental_parser.ResponseParser
    assert inspect.signature(parser).parameters == {}
    assert list(inspect.signature(parser.parse).parameters) == ["self", "stream"]
    assert callable(aiospamc.responses.Response.raise_for_status)
    assert issubclass(aiospamc.responses.ResponseException, Exception)
    assert library.ResponseException is aiospamc.responses.ResponseException


def test_aiospamc_contract_spam_reply() -> None:
    response = library.parse_response(SPAM)
    response.raise_for_status()  # EX_OK: no exception
    spam = response.headers.spam
    assert (spam.value, spam.score, spam.threshold) == (True, 7.5, 5.0)
    assert isinstance(spam.value, bool)
    assert response.body == b"hello"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"Spam: False ; 1.2 / 5.0", (False, 1.2, 5.0)),
        (b"Spam: yes;3/5", (True, 3.0, 5.0)),
        (b"Spam: NO ; -0.5 / 5.0", (False, -0.5, 5.0)),
    ],
)
def test_aiospamc_contract_spam_header_forms(
    line: bytes, expected: tuple[bool, float, float]
) -> None:
    spam = library.parse_response(b"SPAMD/1.1 0 EX_OK\r\n" + line + b"\r\n\r\n").headers.spam
    assert (spam.value, spam.score, spam.threshold) == expected


def test_aiospamc_contract_pong_has_no_spam_header() -> None:
    response = library.parse_response(PONG)
    response.raise_for_status()
    assert str(response.message) == "PONG" and response.headers.spam is None


def test_aiospamc_contract_ex_status_raises_with_its_code() -> None:
    response = library.parse_response(UNAVAILABLE)
    with pytest.raises(aiospamc.responses.ResponseException) as info:
        response.raise_for_status()
    assert int(info.value.code) == 69


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"SPAMD/1.1 0 EX_OK\r\nContent-length: 99\r\nSpam: True ; 5.0 / 5.0\r\n\r\nshort",
    ],
)
def test_aiospamc_contract_garbage_raises(raw: bytes) -> None:
    with pytest.raises(Exception):  # noqa: B017 - any exception: protocol.py maps all
        library.parse_response(raw)


def test_aiospamc_contract_imported_in_one_place_by_public_names() -> None:
    import ast
    from pathlib import Path

    package = Path(library.__file__).resolve().parents[1]
    importers, private = [], []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module + "." + alias.name for alias in node.names]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id == "aiospamc":
                    private.append(node.attr)
            for name in names:
                if name.split(".")[0] in ("aiospamc", "loguru"):
                    importers.append(path.relative_to(package).as_posix())
                    private += [part for part in name.split(".") if part.startswith("_")]
    assert set(importers) == {"spamd/library.py"}
    assert private == []


@pytest.mark.parametrize(
    ("reply", "did_set", "did_remove"),
    [  # spamd 4.0.1's replies to TELL, as captured (note the extra CRLF after the headers)
        (b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n\r\n", (True, False), None),
        (b"SPAMD/1.1 0 EX_OK\r\nDidRemove: local\r\n\r\n\r\n", None, (True, False)),
        (b"SPAMD/1.1 0 EX_OK\r\nDidSet: local, remote\r\n\r\n", (True, True), None),
        (b"SPAMD/1.1 0 EX_OK\r\n\r\n\r\n", None, None),
    ],
)
def test_aiospamc_contract_tell_reply_headers(
    reply: bytes, did_set: tuple[bool, bool] | None, did_remove: tuple[bool, bool] | None
) -> None:
    headers = library.parse_response(reply).headers
    for got, expected in ((headers.did_set, did_set), (headers.did_remove, did_remove)):
        assert (None if got is None else (got.local, got.remote)) == expected
