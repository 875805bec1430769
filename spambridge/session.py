"""One MTA connection: read -> decode -> collect -> scan -> decide -> encode -> write."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from spambridge import pipeline, policy
from spambridge.decision import Decision
from spambridge.errors import ProtocolError, RemoteProtocolError, SpamdError
from spambridge.log import log_verdict, logger, queue_id
from spambridge.milter.codec import CommandDecoder, encode
from spambridge.milter.flags import ActionFlags
from spambridge.milter.messages import (
    Abort,
    BodyChunk,
    Command,
    Connect,
    Continue,
    Data,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    Macro,
    MailFrom,
    Negotiate,
    Progress,
    Quit,
    QuitNewConnection,
    RcptTo,
    Reply,
    Skip,
    Unknown,
)
from spambridge.milter.negotiate import (
    Negotiated,
    check_reply,
    edit_for_mta,
    value_from_mta,
)
from spambridge.policy import ScanPlan
from spambridge.services import Services
from spambridge.spamd.protocol import Verdict
from spambridge.transaction import Client, Macros, Recipient, Transaction

_CONTINUE = Continue()  # immutable; its wire frame is a pre-encoded constant in the codec

# Seconds the MTA may stay silent after a step it agreed not to wait on before we suspect it
# waits anyway (a milter client that ignores no-reply flags). Below Sendmail's default read
# timeout (10 s), so the warning comes before such a client gives up.
NO_REPLY_STALL = 5.0


@dataclass(slots=True)
class _Scanned:
    """What the scan at end of message left for the verdict line, whatever came of it."""

    started: float  # time.monotonic() at end of message
    host: str = "-"
    spamd_ms: float = 0.0


class Session(asyncio.Protocol):
    """Serve one MTA connection until it quits, closes, idles out or breaks the protocol.

    The session is the transport's protocol: every command but end of message is handled
    right in data_received, in the session's own context, with no task switch per read.
    End of message (the one step that awaits spamd) is passed to the session's task; what
    arrives before its verdict is written is held and handled after it.
    """

    def __init__(
        self,
        services: Callable[[], Services],
        ident: int,
        context: contextvars.Context,
        *,
        admit: Callable[[Session], bool],
    ) -> None:
        self.services = services
        self._admit = admit  # the server's limit check, made as the connection is made
        self.ident = ident
        self.context = context  # the session task's context: conn_id and queue_id live here
        self.svc = services()
        self.transport: asyncio.Transport | None = None
        self.decoder = CommandDecoder(self.svc.config.max_frame_size)
        self.negotiated: Negotiated | None = None
        self.client = Client()
        self.macros = Macros()
        self.txn: Transaction | None = None
        self.in_transaction = False  # between MAIL and the end-of-message reply
        self.closing = False
        self.last: type[Command] = Negotiate
        self.leading_space = False  # SMFIP_HDR_LEADSPC, fixed at negotiation
        self.in_scan = False  # waiting for spamd (or draining the reply) at end of message
        # From the negotiation: commands the MTA waits a reply to, (command, reply) pairs
        # that are always legal. Empty before it: nothing is answered.
        self._replied: frozenset[type] = frozenset()
        self._legal: frozenset[tuple[type, type]] = frozenset()
        self._actions = 0  # the negotiated actions: edits needing others are dropped
        self._warned_withheld = False
        # The no-reply diagnosis: steps sent without waiting for us, its timer, and when it
        # warned (once per connection).
        self._unanswered: frozenset[type] = frozenset()
        self._stall_timer: asyncio.TimerHandle | None = None
        self._stall_warned_at: float | None = None
        self._loop = asyncio.get_running_loop()
        self._timeout = self.svc.config.milter_timeout
        # A packet must arrive whole within milter-timeout of its first byte: a peer that
        # drips one byte at a time (slowloris) never pushes the deadline back.
        self._deadline = self._loop.time() + self._timeout
        self._partial = False
        self._watchdog: asyncio.TimerHandle | None = None
        # What the task is to do next, in order: an EndOfMessage to scan, None to finish
        # (EOF, close) or an exception to end with.
        self._events: collections.deque[EndOfMessage | BaseException | None] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._busy = False  # an end of message is with the task
        self._held: list[Command] = []  # commands decoded after that end of message
        self._unread: list[bytes] = []  # bytes that arrived while busy, fed after it
        self._unread_size = 0
        self._read_paused = False
        self._stopped = False  # the task has been told to finish: ignore further input
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._progress_every = 0.0
        self._progress_timer: asyncio.TimerHandle | None = None
        self._scanned = _Scanned(0.0)  # the scan of the message at end of message

    # ------------------------------------------------------------ transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        if not self._admit(self):
            self._stopped = True
            transport.close()
            return
        self._watchdog = self._loop.call_at(self._deadline, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.context.run(self._receive, data)

    def eof_received(self) -> bool:
        self._finish(None)
        return True  # keep our side open: a verdict in progress may still be written

    def connection_lost(self, exc: Exception | None) -> None:
        lost = ConnectionResetError(str(exc) if exc else "connection closed")
        self._wake_drain(lost)
        self._finish(lost)

    def pause_writing(self) -> None:
        # An MTA that sends without reading our replies must not grow our buffer: stop
        # reading until it has taken what we wrote.
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drain(None)
        self._update_reading()

    def _update_reading(self) -> None:
        """Read unless our replies back up or too much arrived while busy.

        Reading goes on during a scan: an MTA sends nothing then but its next command
        after our reply, and pausing and resuming costs two system calls per message.
        What a broken or hostile peer sends meanwhile is held, up to a limit.
        """
        transport = self.transport
        if transport is None or self._stopped:
            return
        pause = self._write_paused or self._unread_size > _UNREAD_LIMIT
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    # ------------------------------------------------------------ input, in context

    def _receive(self, data: bytes) -> None:
        if self._stopped:
            return
        if self._busy:
            self._unread.append(data)  # kept in order, fed once the verdict is out
            self._unread_size += len(data)
            if self._unread_size > _UNREAD_LIMIT:
                self._update_reading()
            return
        try:
            self._feed(data)
        except Exception as exc:
            self._finish(exc)

    def _feed(self, data: bytes) -> None:
        commands = self.decoder.feed(data)
        if not self.decoder.buffered:
            self._partial = False
            self._deadline = self._loop.time() + self._timeout
        elif commands or not self._partial:
            self._partial = True
            self._deadline = self._loop.time() + self._timeout  # a new packet has begun
        self._run(commands)

    def _run(self, commands: list[Command]) -> None:
        """Handle commands in order; hand an end of message to the task and hold the rest."""
        for index, command in enumerate(commands):
            kind = type(command)
            self.last = kind
            if kind is EndOfMessage:
                self._busy = True
                self._held = commands[index + 1 :]
                self._post(command)  # type: ignore[arg-type]
                return
            _HANDLERS[kind](self, command)
            if self.closing:
                self._finish(None)
                return

    def _finish(self, why: BaseException | None) -> None:
        if not self._stopped:
            self._stopped = True
            self._post(why)

    def _post(self, event: EndOfMessage | BaseException | None) -> None:
        self._events.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ------------------------------------------------------------ the task

    async def run(self) -> None:
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername")
        logger.debug("connection from %s", peer or "unix socket")
        try:
            await self._serve()
        except RemoteProtocolError as exc:
            logger.warning("protocol error from MTA, closing connection: %s", exc)
            self.svc.metrics.inc("protocol_errors")
        except ProtocolError as exc:
            logger.error("internal protocol error, closing connection: %s", exc)
        except TimeoutError:
            logger.info(
                "MTA idle (or a packet left unfinished) for %.0fs, closing connection",
                self._timeout,
            )
        except ConnectionError as exc:
            logger.debug("connection lost: %s", exc)
        finally:
            self._stopped = True
            if self._watchdog is not None:
                self._watchdog.cancel()
            if self._stall_timer is not None:
                self._stall_timer.cancel()
            if self.in_transaction:
                logger.info("connection closed during a message; the MTA keeps it")
            self.transport.close()

    def close(self) -> None:
        """Close between messages (shutdown): the task finishes at its next event."""
        self.closing = True
        self._finish(None)
        if self.transport is not None:
            self.transport.close()

    async def _serve(self) -> None:
        while True:
            while not self._events:
                self._waiter = self._loop.create_future()
                await self._waiter
            self._waiter = None
            event = self._events.popleft()
            if event is None:
                return
            if isinstance(event, BaseException):
                raise event
            self.in_scan = True
            try:
                await self._on_end_of_message(event)
            finally:
                self.in_scan = False
            # Measured after the verdict, so time spent scanning never counts as idle.
            self._deadline = self._loop.time() + self._timeout
            await self._drain()
            if self.closing:
                return
            self._resume()

    def _resume(self) -> None:
        """After end of message: the held commands, then bytes read meanwhile, then read on."""
        self._busy = False
        held, self._held = self._held, []
        try:
            self._run(held)
            while self._unread and not self._busy and not self._stopped:
                data = self._unread.pop(0)
                self._unread_size -= len(data)
                self._feed(data)
        except Exception as exc:
            self._finish(exc)
        self._update_reading()

    def _check_idle(self) -> None:
        """The idle timer: one per connection, re-armed when it fires early, instead of a
        timeout around every read."""
        now = self._loop.time()
        if self._stopped:
            return
        if now < self._deadline:
            self._watchdog = self._loop.call_at(self._deadline, self._check_idle)
        elif self.in_scan:
            # Not idle: the MTA waits for our verdict. The deadline is reset after it.
            self._watchdog = self._loop.call_at(now + self._timeout, self._check_idle)
        else:
            self._finish(TimeoutError())

    def _check_stall(self) -> None:
        """The no-reply diagnosis, a timer that runs only while no-reply steps are granted:
        warn once when the MTA has sent nothing for NO_REPLY_STALL seconds after such a step,
        and note it if the MTA then goes on by itself (it was pausing, not waiting for us)."""
        self._stall_timer = None
        if self._stopped:
            return
        now = self._loop.time()
        quiet_since = self._deadline - self._timeout  # the last packet, or a packet's start
        warned_at = self._stall_warned_at
        if warned_at is not None:
            if quiet_since > warned_at:
                logger.info(
                    "the MTA went on without a reply after the pause above: it honours "
                    "no-reply steps; keep milter-no-reply on"
                )
                return
        elif (
            now - quiet_since >= NO_REPLY_STALL - 0.01
            and self.last in self._unanswered
            and not (self._busy or self._partial)
        ):
            logger.warning(
                "the MTA has sent nothing for %.0fs after %s, a step it agreed to send "
                "without waiting for a reply; if its milter client waits for one anyway, "
                "mail stops here: set milter-no-reply=0 (-milter-no-reply) so every step "
                "is answered",
                now - quiet_since,
                self.last.__name__,
            )
            self._stall_warned_at = now
        at = quiet_since + NO_REPLY_STALL
        self._stall_timer = self._loop.call_at(
            at if at > now else now + NO_REPLY_STALL, self._check_stall, context=self.context
        )

    def _wake_drain(self, exc: BaseException | None) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    async def _drain(self) -> None:
        if not self._write_paused:
            return  # the transport took it (or holds less than its high-water mark)
        self._drain_waiter = self._loop.create_future()
        try:
            async with asyncio.timeout(self._timeout):
                await self._drain_waiter
        finally:
            self._drain_waiter = None

    def _send(self, reply: Reply) -> None:
        assert self.transport is not None
        self.transport.write(self._encode_checked(reply))

    def _encode_checked(self, reply: Reply) -> bytes:
        kind = type(reply)
        negotiated = self.negotiated
        pair_checked = (self.last, kind) in self._legal
        if not pair_checked and kind is not Negotiate and negotiated is not None:
            check_reply(self.last, reply, negotiated)  # raises, or passes an AddRecipient
        return encode(reply)

    def _answer(self, command: Command, reply: Reply | None = None) -> None:
        """Reply to a step unless we promised the MTA not to."""
        if type(command) in self._replied:
            self._send(reply if reply is not None else _CONTINUE)

    def _on_negotiate(self, command: Negotiate) -> None:
        reply, negotiated = self.svc.negotiate(command)
        self.negotiated = negotiated
        self._replied = negotiated.replied
        self._legal = negotiated.legal
        self.leading_space = negotiated.leading_space
        self._actions = int(negotiated.actions)
        self._unanswered = negotiated.unanswered
        if self._unanswered and self._stall_timer is None and self._stall_warned_at is None:
            self._stall_timer = self._loop.call_at(
                self._loop.time() + NO_REPLY_STALL, self._check_stall, context=self.context
            )
        assert self.transport is not None
        self.transport.write(reply)

    def _on_macro(self, command: Macro) -> None:
        self.macros.define(command.stage, command.macros)

    def _on_connect(self, command: Connect) -> None:
        self.macros.enter(b"C")
        self.client = Client(command.hostname, command.family, command.port, command.address)
        self._answer(command)

    def _on_helo(self, command: Helo) -> None:
        self.macros.enter(b"H")
        self.client.helo = command.name
        self._answer(command)

    def _on_mail(self, command: MailFrom) -> None:
        self.macros.enter(b"M")
        self.svc = self.services()  # a reload applies from the next message on
        self.txn = Transaction(sender=command.address, sender_args=command.esmtp_args)
        self.in_transaction = True
        queue_id.set(self.macros.get("i").decode("ascii", "replace") or "-")
        self._answer(command)

    def _on_rcpt(self, command: RcptTo) -> None:
        self.macros.enter(b"R")
        self._rcpt(command)

    def _on_header(self, command: Header) -> None:
        if self.txn is not None:
            self.txn.add_header(command.name, value_from_mta(command.value, self.leading_space))
        self._answer(command)

    def _on_body(self, command: BodyChunk) -> None:
        self._body(command)

    async def _on_end_of_message(self, command: EndOfMessage) -> None:
        if command.data:
            self._body(BodyChunk(command.data), reply=False)
        await self._end_of_message()

    def _on_abort(self, command: Abort) -> None:
        self._reset()

    def _on_quit(self, command: Quit) -> None:
        self.closing = True

    def _on_quit_new_connection(self, command: QuitNewConnection) -> None:
        self._reset()
        self.macros.clear()
        self.client = Client()

    def _rcpt(self, command: RcptTo) -> None:
        txn = self.txn
        if txn is None:
            self._answer(command)
            return
        m = self.macros
        txn.recipients.append(
            Recipient(
                command.address,
                command.esmtp_args,
                m.get("rcpt_mailer"),
                m.get("rcpt_host"),
                m.get("rcpt_addr"),
            )
        )
        config = self.svc.config
        if config.max_untrusted > 0:
            refusal = pipeline.recipient_refusal(config, self.client, txn)
            if refusal is not None:
                txn.recipients.pop()
                self._answer(command, refusal)
                return
        self._answer(command)

    def _body(self, chunk: BodyChunk, *, reply: bool = True) -> None:
        txn = self.txn
        config = self.svc.config
        if txn is None:
            if reply:
                self._answer(chunk)
            return
        fits = policy.take_body(config, txn, chunk.data)
        if (
            not fits
            and reply
            and config.oversize_action == "skip"
            and self.negotiated is not None
            and self.negotiated.can_skip
            and BodyChunk in self._replied
        ):
            self._send(Skip())  # the MTA stops sending the body: we will not scan it
            return
        if reply:
            self._answer(chunk)

    def _reset(self) -> None:
        self.txn = None
        self.in_transaction = False
        queue_id.set("-")

    async def _end_of_message(self) -> None:
        """Answer one end of message. This cannot raise (docs/robustness.md, "Every message
        gets an answer"): the decision comes from the one seam (`pipeline`), which turns our
        own failure into the spamd-error-action; the MTA gets exactly one final reply and the
        log one verdict line."""
        if self.txn is None:  # no MAIL (or aborted): nothing to scan, nothing to change
            logger.debug("end of message outside a transaction; answering continue")
            self._send(_CONTINUE)
            return
        txn = self.txn
        svc = self.svc
        config = svc.config
        queue_id.set(self.macros.get("i").decode("ascii", "replace") or "-")
        result = self._scanned = _Scanned(time.monotonic())
        negotiated = self.negotiated
        actions = negotiated.actions if negotiated is not None else ActionFlags(0)
        outcome = await pipeline.end_of_message(
            config,
            self.client,
            self.macros,
            txn,
            now=svc.clock(),
            actions=actions,
            scan=self._scan_with_progress,
        )
        try:
            wire = self._encode_decision(outcome.decision)
        except Exception as exc:  # an edit the wire refused: our failure, a decision too
            outcome = pipeline.failed(config, txn, exc, self._actions, outcome.spamd)
            try:
                wire = self._encode_decision(outcome.decision)
            except Exception:
                logger.error("internal error while applying spamd-error-action", exc_info=True)
                outcome = pipeline.Outcome(pipeline.last_resort(config), failure=exc)
                wire = encode(outcome.decision.final)
        if outcome.failure is not None:
            svc.metrics.inc("internal_errors")
        if outcome.withheld and not self._warned_withheld:
            self._warned_withheld = True  # once per connection: the offer stays
            logger.warning(
                "edits not granted by the MTA's negotiated actions are dropped: %s",
                ", ".join(outcome.withheld),
            )
        assert self.transport is not None
        self.transport.write(wire)  # one write (one send syscall): the edits and the reply
        decision = outcome.decision
        spamd_ms = result.spamd_ms
        svc.metrics.message(decision, txn.size, spamd_ms / 1000 if spamd_ms else None)
        if logger.isEnabledFor(logging.INFO):
            log_verdict(decision, self.client, txn, result.host, spamd_ms)
        self._reset()

    def _encode_decision(self, decision: Decision) -> bytes:
        """The wire bytes of the edits and the final reply, each checked against what was
        negotiated (the seam already left out what the MTA did not grant)."""
        encode_checked = self._encode_checked
        edits = (
            decision.edits
            if self.leading_space
            else (edit_for_mta(edit, False) for edit in decision.edits)
        )
        return b"".join([*map(encode_checked, edits), encode_checked(decision.final)])

    async def _scan_with_progress(self, plan: ScanPlan) -> Verdict | SpamdError:
        """Scan, sending progress to the MTA every progress-interval while we wait.

        A timer rather than a second task and asyncio.wait: nothing else writes to the MTA
        while we wait, and a fast scan then costs one timer, set and cancelled. The seam's
        scan (`pipeline.Scan`); what it learns goes to the message's `_Scanned`.
        """
        svc, result = self.svc, self._scanned
        self._progress_every = svc.config.progress_interval
        self._progress_timer = self._loop.call_later(self._progress_every, self._progress)
        outcome: Verdict | SpamdError
        try:
            outcome = await svc.pool.scan(
                plan.message, command=plan.command, user=plan.user or None
            )
            result.host = outcome.host
        except SpamdError as exc:
            logger.warning("spamd failed (%s): %s", exc.kind, exc)
            outcome = exc
            result.host = exc.host or "-"
        finally:
            self._progress_timer.cancel()  # also drops its reference to the session
            result.spamd_ms = (time.monotonic() - result.started) * 1000
        return outcome

    def _progress(self) -> None:
        # A method, not a closure that re-arms itself: such a closure refers to itself, and
        # the cycle would leave every session to the garbage collector.
        self._send(Progress())  # 13 bytes; a stuck MTA is caught by the next drain
        self._progress_timer = self._loop.call_later(self._progress_every, self._progress)


# What a peer may send while its end of message is being scanned before we stop reading:
# a well-behaved MTA sends nothing then (it waits for the verdict).
_UNREAD_LIMIT = 64 * 1024

# One dict lookup per command instead of a chain of isinstance checks (about 20 commands
# per message). End of message, the one async step, goes to the task (Session._serve).
_HANDLERS: dict[type[Command], Callable[[Session, Any], None]] = {
    Negotiate: Session._on_negotiate,
    Macro: Session._on_macro,
    Connect: Session._on_connect,
    Helo: Session._on_helo,
    MailFrom: Session._on_mail,
    RcptTo: Session._on_rcpt,
    Data: Session._answer,
    Header: Session._on_header,
    EndOfHeaders: Session._answer,
    BodyChunk: Session._on_body,
    Abort: Session._on_abort,
    Quit: Session._on_quit,
    QuitNewConnection: Session._on_quit_new_connection,
    Unknown: Session._answer,
}
