"""A spamd that answers every request with bytes the test chose (any bytes, not only SPAMC).

`async with ScriptedSpamd(reply) as spamd:` then point spamd-socket at `spamd.address`;
change `spamd.reply` between messages. The request is read to EOF (the client half-closes
after sending), recorded, and answered with `reply`; then the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType


def spamd_reply(body: bytes = b"", *, spam: bytes = b"True ; 1000.0 / 5.0") -> bytes:
    """A well-formed SPAMD/1.1 EX_OK reply carrying `body`."""
    return b"SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: %s\r\n\r\n" % (len(body), spam) + body


class ScriptedSpamd:
    """Answers each request with `reply` on 127.0.0.1."""

    def __init__(self, reply: bytes = b"") -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> ScriptedSpamd:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            self.requests.append(await reader.read())
            writer.write(self.reply)
            await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
