"""A milter and a spamd double on their own event loop in a daemon thread.

For tests that drive the milter from blocking code (Hypothesis, raw sockets): the loop's
unhandled errors are collected in ``loop_errors`` so a test can require there were none.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, Protocol, TypeVar

from tests.support.controller import Running, running_milter


class SpamdDouble(Protocol):
    @property
    def address(self) -> str: ...


S = TypeVar("S", bound=SpamdDouble)


class ServerThread(Generic[S]):
    """``with ServerThread(FakeSpamd, args) as (milter, spamd):`` serves until the block ends.

    The milter gets ``spamd-socket`` pointing at the double, then ``args``.
    """

    def __init__(
        self, spamd: Callable[[], AbstractAsyncContextManager[S]], args: Sequence[str]
    ) -> None:
        self.spamd = spamd
        self.args = list(args)
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._on_loop_error)
        self.loop_errors: list[dict[str, Any]] = []
        self.ready: Future[tuple[Running, S]] = Future()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(context)

    def _run(self) -> None:
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    async def _serve(self) -> None:
        self.stop_event = asyncio.Event()
        try:
            async with (
                self.spamd() as spamd,
                running_milter([f"spamd-socket={spamd.address}", *self.args]) as milter,
            ):
                self.ready.set_result((milter, spamd))
                await self.stop_event.wait()
        except BaseException as exc:  # surface start-up failures to the test thread
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    def __enter__(self) -> tuple[Running, S]:
        self.thread.start()
        return self.ready.result(timeout=15)

    def __exit__(self, *exc: object) -> None:
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=15)

    def call(self, coro: Any, timeout: float = 15) -> Any:
        """Run `coro` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
