"""Throwaway certificate authorities for the mutual-TLS tests, made with the openssl tool.

`Authority.create(dir, name)` makes a CA; `issue(name, san)` a leaf it signs (server or
client), each key in its own file as spamd's --server-key and spamc's --ssl-key take them.
EC P-256 keys: an RSA key costs openssl about a second, these a few milliseconds.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Authority", "Leaf", "require_openssl"]


def require_openssl() -> None:
    if shutil.which("openssl") is None:
        raise FileNotFoundError("needs the openssl tool (Debian: openssl)")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    directory: Path
    name: str

    @property
    def cert(self) -> Path:
        return self.directory / f"{self.name}.crt"

    @property
    def key(self) -> Path:
        return self.directory / f"{self.name}.key"

    @classmethod
    def create(cls, directory: Path, name: str) -> Authority:
        require_openssl()
        ca = cls(directory, name)
        _openssl(
            "req", "-x509", *_EC, "-days", "2", "-subj", f"/CN={name} test CA",
            "-keyout", str(ca.key), "-out", str(ca.cert),
        )  # fmt: skip
        return ca

    def issue(self, name: str, san: str) -> Leaf:
        """A leaf certificate for `name` with subjectAltName `san` (e.g. "DNS:localhost,
        IP:127.0.0.1"), signed by this CA."""
        leaf = Leaf(self.directory / f"{name}.crt", self.directory / f"{name}.key")
        request = self.directory / f"{name}.csr"
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
        _openssl(
            "req", "-new", *_EC, "-subj", f"/CN={name}",
            "-keyout", str(leaf.key), "-out", str(request),
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(self.cert), "-CAkey", str(self.key),
            "-CAcreateserial", "-CAserial", str(self.directory / f"{self.name}.srl"), "-days", "2",
            "-out", str(leaf.cert), "-extfile", str(extensions),
        )  # fmt: skip
        return leaf
