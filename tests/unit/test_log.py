from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from spambridge import log


@pytest.fixture
def restore_logger() -> Iterator[None]:
    handlers, level, propagate = list(log.logger.handlers), log.logger.level, log.logger.propagate
    yield
    for handler in list(log.logger.handlers):
        log.logger.removeHandler(handler)
        handler.close()
    for handler in handlers:
        log.logger.addHandler(handler)
    log.logger.setLevel(level)
    log.logger.propagate = propagate


def test_log_syslog_uses_facility_mail_and_context_ids(
    tmp_path: Path, restore_logger: None
) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(path)
        sink.settimeout(5)
        log.setup("syslog", frozenset({"info"}), syslog_address=path)
        token_c, token_q = log.conn_id.set(42), log.queue_id.set("4AB12")
        try:
            log.logger.info("verdict=%s", "spam")
        finally:
            log.conn_id.reset(token_c)
            log.queue_id.reset(token_q)
        datagram = sink.recv(4096)
    # <22> = facility mail (2) * 8 + severity info (6)
    assert datagram.startswith(b"<22>spambridge[")
    assert b"INFO conn=42 qid=4AB12 verdict=spam" in datagram


@pytest.mark.parametrize(
    ("verbose", "level"),
    [
        ({"info"}, logging.INFO),
        (set(), logging.WARNING),
        ({"debug"}, logging.DEBUG),
        ({"dialog"}, logging.DEBUG),
    ],
)
def test_log_verbose_categories_set_the_level(
    verbose: set[str], level: int, restore_logger: None
) -> None:
    log.setup("stderr", frozenset(verbose))
    assert log.logger.level == level
