"""A TCP proxy in front of spamd that keeps what each client sent and what spamd answered.

Tests compare the bytes a milter gave spamd (the oracle suite, the corpus fidelity test) or
take spamd's PROCESS reply as the judge of a rewrite. Threads, not asyncio: the milters under
test are separate processes and the proxy must keep serving while a test's loop waits on them.
Both directions are relayed as bytes arrive, so a client need not half-close its request.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Exchange:
    request: bytes
    reply: bytes

    @property
    def message(self) -> bytes:
        """The message in a SPAMC request: everything after the request headers."""
        return self.request.partition(b"\r\n\r\n")[2]


@dataclass
class _Record:
    request: bytearray = field(default_factory=bytearray)
    reply: bytearray = field(default_factory=bytearray)
    done: bool = False


class SpamdRecorder:
    """Listens on 127.0.0.1:<port>, forwards each connection to spamd on ``spamd_port``."""

    def __init__(self, spamd_port: int, timeout: float = 120.0) -> None:
        self.spamd_port = spamd_port
        self.timeout = timeout
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._records: list[_Record] = []
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def finished(self) -> int:
        """How many of the exchanges recorded since the last take() are complete."""
        with self._lock:
            return sum(record.done for record in self._records)

    def take(self) -> list[Exchange]:
        """The exchanges since the last call, in the order their connections came.

        A connection is recorded from its first moment, so a request is there as soon as
        it was sent; its reply is whole once finished() counts it.
        """
        with self._lock:
            out = [Exchange(bytes(r.request), bytes(r.reply)) for r in self._records]
            self._records.clear()
        return out

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        record = _Record()
        with self._lock:
            self._records.append(record)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.spamd_port), self.timeout)
        except OSError:
            client.close()
            return
        client.settimeout(self.timeout)

        def client_to_spamd() -> None:
            try:
                while data := client.recv(65536):
                    with self._lock:
                        record.request.extend(data)
                    upstream.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

        forward = threading.Thread(target=client_to_spamd, daemon=True)
        forward.start()
        try:
            while data := upstream.recv(65536):
                with self._lock:
                    record.reply.extend(data)
                client.sendall(data)
        except OSError:
            pass
        forward.join(self.timeout)
        with self._lock:
            record.done = True
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.close()
