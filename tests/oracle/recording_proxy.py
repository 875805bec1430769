"""A TCP proxy in front of spamd that records what each client sent it.

Both milters talk to the same real spamd through this proxy, so a test can compare the bytes
each one gave spamd. Threads, not asyncio: the milters under test are separate processes and
the proxy must keep serving while a test's event loop waits on them.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class RecordingProxy:
    """Listens on 127.0.0.1:<port>, forwards to ``upstream``, records each request."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._requests: list[bytearray] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def take(self) -> list[bytes]:
        """The requests recorded since the last call (each connection's client bytes)."""
        with self._lock:
            out = [bytes(r) for r in self._requests]
            self._requests.clear()
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
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        record = bytearray()
        with self._lock:
            self._requests.append(record)
        try:
            upstream = socket.create_connection(self.upstream, timeout=60)
        except OSError:
            client.close()
            return
        client.settimeout(60)

        def client_to_spamd() -> None:
            try:
                while data := client.recv(65536):
                    with self._lock:
                        record.extend(data)
                    upstream.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

        forward = threading.Thread(target=client_to_spamd, daemon=True)
        forward.start()
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        forward.join(60)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.close()
