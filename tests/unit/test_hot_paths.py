from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta, timezone

from spambridge import headers, services
from spambridge.transaction import _clean
from tests.support.config import make_config


def test_hot_paths_format_date_matches_email_utils_across_offsets() -> None:
    base = datetime(2026, 11, 25, 11, 0, 0, 123456, tzinfo=UTC)
    cases = [
        base,
        base.replace(microsecond=999999),  # same second: served from the cache
        base.astimezone(timezone(timedelta(hours=2))),  # same instant, other offset
        base.replace(tzinfo=timezone(timedelta(hours=-5))),  # same wall clock, other offset
        base + timedelta(seconds=1),
        datetime(2026, 11, 25, 11, 0, 0),  # naive
    ]
    for when in cases:
        assert headers.format_date(when) == email.utils.format_datetime(when)


def test_hot_paths_clean_replaces_only_unprintable() -> None:
    assert _clean("mx.example.test") == "mx.example.test"
    assert _clean(b"a\tb\x7fc\xffd") == "a?b?c?d"
    assert _clean("caf\u00e9 \u2603") == "caf? ?"


def test_hot_paths_wanted_is_computed_once_per_services() -> None:
    from spambridge.daemon import build_services
    from spambridge.metrics import Metrics

    first = build_services(make_config(), Metrics())
    second = build_services(make_config("quarantine-score=9"), Metrics())
    assert first.wanted == services.wanted(first.config)
    assert second.wanted == services.wanted(second.config)
    assert second.wanted != first.wanted  # a reload builds new services, so new wants
