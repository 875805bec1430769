"""A fake spamd speaking SPAMC 1.5 like spamd 4.0.1, with selectable faults.

In-process: `async with FakeSpamd() as spamd: ... spamd.address ...`.
As a process: `python -m tools.fake_spamd --port 0` (or `--unix PATH`) prints its
address on the first line of stdout and serves until SIGTERM/SIGINT.

Verdict: the GTUBE string in the body gives spam 1000.0/5.0, otherwise ham 0.0/5.0; a line
`X-Fake-Score: N` anywhere in the message forces score N.

Faults (the `fault` attribute, or per request with the header `User: fault-<mode>`):
  refuse            (attribute/start only) the listener is closed: connections are refused
  reset             send half the reply, then reset the connection (RST on TCP)
  garbage           reply with bytes that are not SPAMD
  ex-NN / exNN      reply with error status NN (64..79), as spamd does: status line only
  hang              read the request, never answer
  trickle           answer one byte at a time, `trickle_delay` seconds apart
  close             read the request, close without a reply
  hang-before-read  never read the body (per request: stops after the headers)
  reply-early       answer EX 74 after the headers, half-close, then read the body to EOF
  delay / delay-N   wait `delay` (or N) seconds, then answer normally
  slow-scan / slow-scan-N
                    a gray failure: scans wait `delay` (or N) seconds, PING answers at once
                    (as a spamd whose DNS lookups hang does)

`children` and `service_time` (--children, --service-time) make every scan take that long
on one of that many children, queueing like spamd's --max-children; PING never waits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import re
import signal
import socket
import ssl
import struct
import sys
from dataclasses import dataclass, field
from types import TracebackType

from spambridge.spamd import protocol

GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
THRESHOLD = 5.0
SA_VERSION = "4.0.1"

EX_NAMES = {
    64: "EX_USAGE",
    65: "EX_DATAERR",
    66: "EX_NOINPUT",
    67: "EX_NOUSER",
    68: "EX_NOHOST",
    69: "EX_UNAVAILABLE",
    70: "EX_SOFTWARE",
    71: "EX_OSERR",
    72: "EX_OSFILE",
    73: "EX_CANTCREAT",
    74: "EX_IOERR",
    75: "EX_TEMPFAIL",
    76: "EX_PROTOCOL",
    77: "EX_NOPERM",
    78: "EX_CONFIG",
    79: "EX_TIMEOUT",
}
FAULT_MODES = (
    "refuse",
    "reset",
    "garbage",
    "hang",
    "trickle",
    "close",
    "hang-before-read",
    "delay",
    "slow-scan",
)

_SCORE_RE = re.compile(rb"^X-Fake-Score:[ \t]*(-?\d+(?:\.\d+)?)[ \t]*\r?$", re.MULTILINE)
_EX_RE = re.compile(r"ex-?(\d+)")
_DELAY_RE = re.compile(r"delay-(\d+(?:\.\d+)?)")
_SLOW_SCAN_RE = re.compile(r"slow-scan(?:-(\d+(?:\.\d+)?))?")
_RULES = {
    "GTUBE": (1000.0, "BODY: Generic Test for Unsolicited Bulk Email"),
    "FAKE_SCORE": (0.0, "Score forced by the X-Fake-Score test line"),
    "NO_RELAYS": (-0.001, "Informational: message was not relayed via SMTP"),
    "NO_RECEIVED": (-0.001, "Informational: message has no Received headers"),
}


@dataclass
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    version: str
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        """The first value of header `name` (case-sensitive, as spamd compares)."""
        return next((v for n, v in self.headers if n == name), None)


@dataclass(frozen=True)
class _Scan:
    is_spam: bool
    score: float
    tests: tuple[str, ...]


@dataclass
class FakeSpamd:
    """An asyncio fake spamd on 127.0.0.1 or a unix socket."""

    host: str = "127.0.0.1"
    port: int = 0
    unix_path: str | None = None
    fault: str | None = None
    delay: float = 0.0
    trickle_delay: float = 0.01
    # Hostile-output tests: when set, the body of every REPORT / REPORT_IFSPAM / HEADERS
    # reply (for HEADERS: the header block, blank line and body included) is these bytes.
    report_override: bytes | None = None
    tls: ssl.SSLContext | None = None  # server-side context: serve SPAMC over TLS
    requests: list[RecordedRequest] = field(default_factory=list)
    # Off for the long-running benchmark backend: kept requests would pile up (hundreds of
    # MB over a run) and every full garbage collection would walk them, stalling all scans.
    record: bool = True
    # Like spamd's --max-children: at most `children` scans are worked on at once (0: no
    # limit), each taking `service_time` seconds (a sleep); the rest wait, as spamd queues.
    children: int = 0
    service_time: float = 0.0
    connections: int = 0
    active: int = 0
    max_active: int = 0
    _server: asyncio.Server | None = field(default=None, repr=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    _stopping: asyncio.Event | None = field(default=None, repr=False)
    _free_at: list[float] = field(default_factory=list, repr=False)  # per child, loop time

    @property
    def address(self) -> str:
        """The spamd-socket text: `127.0.0.1:PORT`, `ssl:127.0.0.1:PORT` or `unix:/path`."""
        if self.unix_path:
            return f"unix:{self.unix_path}"
        return f"{'ssl:' if self.tls else ''}{self.host}:{self.port}"

    async def start(self) -> FakeSpamd:
        self._stopping = asyncio.Event()
        if self.unix_path:
            self._server = await asyncio.start_unix_server(self._accept, path=self.unix_path)
        else:
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, ssl=self.tls
            )
            self.port = self._server.sockets[0].getsockname()[1]
        if self.fault == "refuse":
            self.refuse()
        return self

    def refuse(self) -> None:
        """Stop listening: new connections are refused (the address stays reserved here)."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)

    async def __aenter__(self) -> FakeSpamd:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ connection

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        aborted = False
        try:
            aborted = await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            pass  # stop() cancels handlers; the stream callback must not see a cancelled task
        finally:
            self.active -= 1
            self._tasks.discard(task)
            if not aborted:
                writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _wait_forever(self) -> bool:
        assert self._stopping is not None
        await self._stopping.wait()
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request. Returns True when the transport was aborted."""
        if self.fault == "hang-before-read":
            return await self._wait_forever()
        line = await reader.readline()
        if not line:
            return False
        method, version = protocol.parse_request_line(line)
        headers: list[tuple[bytes, bytes]] = []
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            header = protocol.parse_header_line(raw)
            if header is None:
                await _send(writer, _error(76, f"Bad header line: {raw!r}"))
                return False
            headers.append(header)
        user = next((v for n, v in headers if n == b"User"), b"").decode("latin-1")
        fault = user[len("fault-") :] if user.startswith("fault-") else (self.fault or "")
        if fault == "hang-before-read":
            return await self._wait_forever()
        if fault == "reply-early":  # answer before reading the body, then drain it
            await _send(writer, _error(74, "fault injected: answered before the body"))
            writer.write_eof()
            while await reader.read(65536):
                pass
            return False
        length = next((v for n, v in headers if n == b"Content-length"), None)
        if length is not None:
            if not length.isdigit():
                await _send(writer, _error(76, "Bad header line: Content-length"))
                return False
            body = await reader.readexactly(int(length))
        elif method in ("PING", "SKIP"):
            body = b""
        else:
            body = await reader.read()
        if self.record:
            self.requests.append(
                RecordedRequest(method, version.removeprefix("SPAMC/"), headers, body)
            )
        return await self._answer(writer, method, body, fault)

    async def _answer(
        self, writer: asyncio.StreamWriter, method: str, body: bytes, fault: str
    ) -> bool:
        if fault in ("close", "refuse") or method == "SKIP":
            return False
        if fault == "hang":
            return await self._wait_forever()
        if fault == "garbage":
            await _send(writer, b"\x00\xff\xfeHTTP/9.9 this is not spamd\r\n\r\n<html>\r\n")
            return False
        if match := _EX_RE.fullmatch(fault):
            code = int(match.group(1))
            await _send(writer, _error(code, f"fault injected ({EX_NAMES.get(code, code)})"))
            return False
        if fault == "delay" or (match := _DELAY_RE.fullmatch(fault)):
            await asyncio.sleep(float(match.group(1)) if match else self.delay)
        elif method != "PING" and (match := _SLOW_SCAN_RE.fullmatch(fault)):
            await asyncio.sleep(float(match.group(1)) if match.group(1) else self.delay)
        if method != "PING" and (self.children or self.service_time):
            await self._work()
        reply = build_reply(method, body, report_override=self.report_override)
        if fault == "reset":
            writer.write(reply[: max(1, len(reply) // 2)])
            await writer.drain()
            _reset(writer)
            return True
        if fault == "trickle":
            for i in range(len(reply)):
                writer.write(reply[i : i + 1])
                await writer.drain()
                await asyncio.sleep(self.trickle_delay)
            return False
        await _send(writer, reply)
        return False

    async def _work(self) -> None:
        """One scan's service time on one of `children` children, first come first served.
        Each child keeps its own timeline: a scan starts when that child's previous one was
        due to end, so the event loop's lateness in waking a sleeper (a millisecond or so on
        a busy machine) delays that answer but does not pile up into lost capacity."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if not self.children:
            await asyncio.sleep(self.service_time)
            return
        if len(self._free_at) != self.children:
            self._free_at = [now] * self.children
        child = min(range(self.children), key=self._free_at.__getitem__)
        end = max(now, self._free_at[child]) + self.service_time
        self._free_at[child] = end
        await asyncio.sleep(end - now)


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        # Linger 0 makes close() send RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _error(code: int, text: str) -> bytes:
    return protocol.status_reply(code, text)


# ------------------------------------------------------------------ replies


def scan_message(message: bytes) -> _Scan:
    """The fake's verdict for a message."""
    forced = _SCORE_RE.search(message)
    if forced is not None:
        score = float(forced.group(1))
        tests: tuple[str, ...] = ("FAKE_SCORE",)
    elif GTUBE in message:
        score, tests = 1000.0, ("GTUBE", "NO_RECEIVED", "NO_RELAYS")
    else:
        score, tests = 0.0, ("NO_RECEIVED", "NO_RELAYS")
    return _Scan(is_spam=score >= THRESHOLD, score=score, tests=tests)


def build_reply(method: str, message: bytes, *, report_override: bytes | None = None) -> bytes:
    """The full spamd reply for `method` (status line, headers, body)."""
    if method == "PING":
        return b"SPAMD/1.5 0 PONG\r\n"
    if method == "TELL":
        return _error(69, "Service Unavailable: TELL commands are not enabled")
    scan = scan_message(message)
    spam = protocol.spam_header(
        scan.is_spam, scan.score, THRESHOLD, yes_no=method == "REPORT_IFSPAM"
    )
    if method == "CHECK":
        return protocol.encode_reply(spam, None)
    if method == "SYMBOLS":
        body = ",".join(scan.tests).encode("ascii")
    elif method == "REPORT":
        body = report_text(scan)
    elif method == "REPORT_IFSPAM":
        body = report_text(scan) if scan.is_spam else b""
    elif method in ("HEADERS", "PROCESS"):
        body = rewrite_message(message, scan, headers_only=method == "HEADERS")
    else:
        return _error(76, f"Bad header line: {method} SPAMC/1.5")
    if report_override is not None and method in ("REPORT", "REPORT_IFSPAM", "HEADERS", "PROCESS"):
        body = report_override
    return protocol.encode_reply(spam, body)


def report_text(scan: _Scan) -> bytes:
    """A SpamAssassin-like report (the `report` template, then one line per rule)."""
    lines = [
        'Spam detection software, running on the system "fake-spamd",',
        "has identified this incoming email as possible spam.  The original",
        "message has been attached to this so you can view it or label",
        "similar future email.  If you have any questions, see",
        "the administrator of that system for details.",
        "",
        f"Content analysis details:   ({scan.score:.1f} points, {THRESHOLD:.1f} required)",
        "",
        " pts rule name              description",
        "---- ---------------------- --------------------------------------------------",
    ]
    for test in scan.tests:
        points, description = _RULES[test]
        if test == "FAKE_SCORE":
            points = scan.score
        shown = f"{points:4.0f}" if abs(points) >= 10 else f"{points:4.1f}"
        lines.append(f"{shown} {test:<22} {description}")
    return ("\n".join(lines) + "\n").encode("ascii")


def _split_message(message: bytes) -> tuple[bytes, bytes, bytes]:
    eol = b"\r\n" if b"\r\n" in message[:4096] else b"\n"
    sep = eol + eol
    if message.startswith(eol):
        return b"", message[len(eol) :], eol
    head, found, body = message.partition(sep)
    return (head + eol if found else head), (body if found else b""), eol


def rewrite_message(message: bytes, scan: _Scan, *, headers_only: bool) -> bytes:
    """Add X-Spam-* headers at the top and drop forged ones (except X-Spam-Prev-*)."""
    head, body, eol = _split_message(message)
    kept: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        lowered = line.lower()
        dropping = lowered.startswith(b"x-spam-") and not lowered.startswith(b"x-spam-prev-")
        if not dropping:
            kept.append(line)
    yes = "Yes" if scan.is_spam else "No"
    stars = "*" * min(50, int(scan.score)) if scan.score >= 1 else ""
    added = [
        f"X-Spam-Checker-Version: SpamAssassin {SA_VERSION} (2024-03-25) on fake-spamd",
        *(["X-Spam-Flag: YES"] if scan.is_spam else []),
        f"X-Spam-Level: {stars}",
        f"X-Spam-Status: {yes}, score={scan.score:.1f} required={THRESHOLD:.1f}"
        f" tests={','.join(scan.tests) or 'none'} autolearn=no"
        f"{eol.decode()}\tautolearn_force=no version={SA_VERSION}",
    ]
    new_head = b"".join(a.encode("ascii") + eol for a in added) + b"".join(kept)
    return new_head + eol + (b"" if headers_only else body)


# ------------------------------------------------------------------ subprocess entry


async def _main(args: argparse.Namespace) -> None:
    spamd = FakeSpamd(
        host=args.host,
        port=args.port,
        unix_path=args.unix,
        fault=args.fault,
        record=False,
        children=args.children,
        service_time=args.service_time,
    )
    spamd.delay = args.delay
    await spamd.start()
    # A long-lived backend: keep start-up objects out of every full collection's walk.
    gc.collect()
    gc.freeze()
    print(spamd.address, flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await spamd.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fake spamd for tests and benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--unix", default=None, help="listen on this unix socket path instead")
    parser.add_argument("--fault", default=None, help="fault mode for every request")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds for --fault delay and slow-scan"
    )
    parser.add_argument(
        "--children", type=int, default=0, help="scans worked on at once (0: no limit)"
    )
    parser.add_argument(
        "--service-time", type=float, default=0.0, help="seconds per scan (PING: none)"
    )
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
