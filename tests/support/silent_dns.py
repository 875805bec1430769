"""A DNS server on a loopback UDP port that reads every query and answers none of them,
until told to answer: then NXDOMAIN at once (RFC 1035 4.1.1: the query's id and question,
QR set, RCODE 3). What a spamd's network tests meet when its resolver hangs, then recovers.
"""

from __future__ import annotations

import socket
import threading

__all__ = ["SilentDns"]


class SilentDns:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.answering = False
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent-dns", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """The `dns_server` value for SpamAssassin."""
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries += 1
            if self.answering and (reply := nxdomain(query)) is not None:
                self._sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


def nxdomain(query: bytes) -> bytes | None:
    """The NXDOMAIN answer to a one-question query (None: not one)."""
    if len(query) < 12 or query[4:6] != b"\x00\x01":
        return None
    end = 12
    while end < len(query) and query[end]:
        end += query[end] + 1
    end += 5  # the root label, QTYPE, QCLASS
    if end > len(query):
        return None
    flags = 0x8183 | (query[2] & 0x01) << 8  # QR, RA, RCODE 3; RD copied from the query
    return (
        query[:2] + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00\x00\x00" + query[12:end]
    )
