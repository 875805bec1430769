"""The transports a spamd-socket entry can name, for the tests that must pass on each: a
literal address over TCP (driven on the bare socket), a unix socket, TLS, and a host name
(resolved on every connect); the last three go through asyncio transports.

`Transport(name, certificate).serve()` starts a fake spamd on one of them; its `address` is
the entry that reaches it, and `make_pool` builds a pool that trusts it. `dead()` is that
transport's form of a spamd that is down.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from spambridge.spamd.endpoints import SpamdEndpoint, parse_spamd_socket
from spambridge.spamd.pool import SpamdPool
from tools.fake_spamd import FakeSpamd

TRANSPORTS = ("tcp", "unix", "tls", "hostname")
HOST_NAME = "localhost"  # how the hostname transport names the fake spamd


def host_addresses(name: str = HOST_NAME) -> list[str]:
    """The addresses `name` resolves to, in the order a client tries them."""
    found = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def host_address(name: str = HOST_NAME) -> str:
    """The first address `name` resolves to that this machine can listen on."""
    for address in host_addresses(name):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family) as probe, contextlib.suppress(OSError):
            probe.bind((address, 0))
            return address
    raise OSError(f"{name} resolves to no address this machine can listen on")


def make_certificate(directory: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 and localhost (cert and key in one file)."""
    if shutil.which("openssl") is None:
        raise FileNotFoundError("needs the openssl tool")
    pem = directory / "spamd.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(pem), "-out", str(pem), "-subj", f"/CN={HOST_NAME}",
         "-addext", f"subjectAltName=IP:127.0.0.1,DNS:{HOST_NAME}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return pem


@dataclass
class ServedSpamd(FakeSpamd):
    """A fake spamd as one transport serves it. `address` is the spamd-socket entry that
    reaches it (by `name` when set, which resolves to `host`); `ca_file` is what a pool
    needs to trust its certificate."""

    name: str | None = None
    ca_file: str | None = None

    @property
    def address(self) -> str:
        if self.name is not None:
            return f"{'ssl:' if self.tls else ''}{self.name}:{self.port}"
        return super().address


@dataclass(frozen=True)
class Transport:
    """One transport; `certificate` is needed for "tls" only."""

    name: str
    certificate: Path | None = None

    @contextlib.asynccontextmanager
    async def serve(self, **kwargs: object) -> AsyncIterator[ServedSpamd]:
        """A fake spamd on this transport; `kwargs` are FakeSpamd's (fault, delay, ...)."""
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # short: sun_path is 108 bytes
            served = ServedSpamd(**kwargs)  # type: ignore[arg-type]
            if self.name == "unix":
                served.unix_path = str(Path(tmp) / "spamd.sock")
            elif self.name == "tls":
                assert self.certificate is not None
                served.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                served.tls.load_cert_chain(self.certificate)
                served.ca_file = str(self.certificate)
            elif self.name == "hostname":
                # Listen where a client tries first (::1 where localhost is that too).
                served.host, served.name = host_address(), HOST_NAME
            async with served:
                yield served

    @contextlib.contextmanager
    def dead(self) -> Iterator[SpamdEndpoint]:
        """An endpoint on this transport where connects are refused: a reserved port with
        nothing listening (by address, by name, or under ssl:), or for a unix socket the
        file a dead spamd leaves behind, bound but not listening."""
        with self._socket() as sock:
            yield self._endpoint(sock)

    @contextlib.contextmanager
    def blackhole(self) -> Iterator[SpamdEndpoint]:
        """An endpoint on this transport where connects do not complete: a listener whose
        accept queue is full (TCP drops the SYN; a unix socket connect answers EAGAIN)."""
        with self._socket() as listener, contextlib.ExitStack() as fillers:
            listener.listen(0)
            for _ in range(4):
                filler = fillers.enter_context(socket.socket(listener.family))
                filler.setblocking(False)
                filler.connect_ex(listener.getsockname())
            yield self._endpoint(listener)

    @contextlib.contextmanager
    def _socket(self) -> Iterator[socket.socket]:
        """A socket bound where this transport's spamd would listen, not listening."""
        if self.name == "unix":
            with (
                tempfile.TemporaryDirectory(dir="/tmp") as tmp,
                socket.socket(socket.AF_UNIX) as sock,
            ):
                sock.bind(str(Path(tmp) / "spamd.sock"))
                yield sock
            return
        host = host_address() if self.name == "hostname" else "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as sock:
            sock.bind((host, 0))
            yield sock

    def _endpoint(self, sock: socket.socket) -> SpamdEndpoint:
        """The spamd-socket entry that names `sock` on this transport."""
        if self.name == "unix":
            return parse_spamd_socket(f"unix:{sock.getsockname()}")
        host, port = sock.getsockname()[:2]
        if self.name == "hostname":
            host = HOST_NAME
        return parse_spamd_socket(f"{'ssl:' if self.name == 'tls' else ''}{host}:{port}")


def make_pool(*targets: FakeSpamd | SpamdEndpoint, **kwargs: object) -> SpamdPool:
    """A pool on `targets` (fake spamds or endpoints) that trusts a served TLS certificate
    unless `ca_file` is given."""
    endpoints = [
        t if isinstance(t, SpamdEndpoint) else parse_spamd_socket(t.address) for t in targets
    ]
    ca_files = {t.ca_file for t in targets if isinstance(t, ServedSpamd) and t.ca_file}
    kwargs.setdefault("ca_file", next(iter(ca_files), None))
    return SpamdPool(endpoints, **kwargs)  # type: ignore[arg-type]
