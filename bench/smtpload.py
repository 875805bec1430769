"""SMTP load generator for the real chain (MTA in front), plus a direct spamd driver.

Every message is one SMTP session (connect, EHLO, MAIL, RCPT, DATA, QUIT), `concurrency`
sessions at a time. The latency of a message is the time from opening the connection to the
reply after the final dot, which includes the MTA's milter round trips.

    python -m bench.smtpload 127.0.0.1:2525 --total 200 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from bench.loadgen import LoadResult, make_message

Sender = Callable[[int], Awaitable[str]]


def message_bytes(size: int, serial: int, *, spam: bool = False) -> bytes:
    """The load generator's message as wire bytes (CRLF line ends)."""
    message = make_message(size, spam=spam, serial=serial)
    head = b"".join(name + b":" + value + b"\r\n" for name, value in message.headers)
    return head + b"\r\n" + message.body


def _dot_stuff(data: bytes) -> bytes:
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines: list[bytes] = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("SMTP server closed the connection")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def smtp_send(host: str, port: int, data: bytes) -> str:
    """One SMTP session with one message; returns the reply code to the final dot."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await _reply(reader)
        for command in (
            b"EHLO client.example.org\r\n",
            b"MAIL FROM:<sender@example.net>\r\n",
            b"RCPT TO:<rcpt@example.test>\r\n",
            b"DATA\r\n",
        ):
            writer.write(command)
            code, _ = await _reply(reader)
            if code >= 400:
                return str(code)
        writer.write(_dot_stuff(data))
        code, _ = await _reply(reader)
        writer.write(b"QUIT\r\n")
        await writer.drain()
        return str(code)
    finally:
        writer.close()
        await writer.wait_closed()


async def spamd_send(host: str, port: int, data: bytes) -> str:
    """One HEADERS request straight to spamd (what a milter must at least pay for)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            b"HEADERS SPAMC/1.5\r\nContent-length: %d\r\nUser: bench\r\n\r\n" % len(data) + data
        )
        await writer.drain()
        writer.write_eof()
        reply = await reader.read()
        status = reply.split(b"\r\n", 1)[0].split()
        return status[1].decode() if len(status) > 1 else "bad-reply"
    finally:
        writer.close()
        await writer.wait_closed()


async def run_sessions(
    send: Sender, *, total: int, concurrency: int, deadline: float | None = None
) -> LoadResult:
    """Call send(serial) `total` times, `concurrency` at once, timing each call.

    With a `deadline` (a time.perf_counter() value) no call starts after it, a call that
    finishes after it is not counted, and the run's elapsed time ends there.
    """
    result = LoadResult()
    counter = iter(range(total))

    def late() -> bool:
        return deadline is not None and time.perf_counter() > deadline

    async def worker() -> None:
        for serial in counter:
            if late():
                return
            started = time.perf_counter()
            try:
                outcome = await send(serial)
            except (OSError, ConnectionError, TimeoutError, ValueError) as exc:
                result.errors += 1
                print(f"smtpload: message {serial}: {exc!r}", file=sys.stderr)
                continue
            if late():
                return  # finished after the window closed: not counted
            result.latencies.append(time.perf_counter() - started)
            result.messages += 1
            result.finals[outcome] = result.finals.get(outcome, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = (deadline if deadline is not None else time.perf_counter()) - started
    return result


def _smtp_sender(port: int, size: int, timeout_s: float) -> Sender:
    async def send(serial: int) -> str:
        async with asyncio.timeout(timeout_s):
            return await smtp_send("127.0.0.1", port, message_bytes(size, serial))

    return send


async def run_smtp(
    port: int, *, total: int, concurrency: int, size: int = 5 * 1024, timeout_s: float = 300.0
) -> LoadResult:
    return await run_sessions(
        _smtp_sender(port, size, timeout_s), total=total, concurrency=concurrency
    )


async def run_shared(
    ports: Mapping[str, int], *, window: float, concurrency: int, size: int = 5 * 1024
) -> dict[str, LoadResult]:
    """Drive several MTAs at once, `concurrency` sessions each, for `window` seconds.

    Messages finished inside the window count; each path's rate is its count over the
    window. The paths share whatever is behind them (one spamd) at the same moments, so
    drift in that backend hits them alike.
    """
    deadline = time.perf_counter() + window
    runs = [
        run_sessions(
            _smtp_sender(port, size, 300.0),
            total=sys.maxsize,
            concurrency=concurrency,
            deadline=deadline,
        )
        for port in ports.values()
    ]
    return dict(zip(ports, await asyncio.gather(*runs), strict=True))


async def run_spamd(
    port: int, *, total: int, concurrency: int, size: int = 5 * 1024, timeout_s: float = 300.0
) -> LoadResult:
    async def send(serial: int) -> str:
        async with asyncio.timeout(timeout_s):
            return await spamd_send("127.0.0.1", port, message_bytes(size, serial))

    return await run_sessions(send, total=total, concurrency=concurrency)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SMTP (or direct spamd) load generator")
    parser.add_argument("address", help="127.0.0.1:PORT of the MTA (or of spamd with --spamd)")
    parser.add_argument("--total", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=5 * 1024)
    parser.add_argument("--spamd", action="store_true", help="talk SPAMC to spamd directly")
    args = parser.parse_args(argv)
    port = int(args.address.rsplit(":", 1)[1])
    runner = run_spamd if args.spamd else run_smtp
    result = asyncio.run(
        runner(port, total=args.total, concurrency=args.concurrency, size=args.size)
    )
    print(json.dumps(result.summary()))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
