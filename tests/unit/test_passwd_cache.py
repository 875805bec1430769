from __future__ import annotations

import pwd

import pytest

from spambridge import recipients


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every getpwnam call, with only 'root' existing."""
    calls: list[str] = []

    def fake_getpwnam(name: str) -> object:
        calls.append(name)
        if name != "root":
            raise KeyError(name)
        return object()

    monkeypatch.setattr(pwd, "getpwnam", fake_getpwnam)
    return calls


def test_passwd_cache_remembers_hits_and_misses_until_expiry(lookups: list[str]) -> None:
    clock = _Clock()
    cache = recipients.PasswdCache(ttl=60.0, clock=clock)
    assert cache.has_user("root") is True
    assert cache.has_user("nosuch") is False
    clock.now += 59.0
    assert cache.has_user("root") is True
    assert cache.has_user("nosuch") is False
    assert lookups == ["root", "nosuch"]
    clock.now += 2.0  # past the 60 s expiry: both are looked up again
    assert cache.has_user("root") is True
    assert cache.has_user("nosuch") is False
    assert lookups == ["root", "nosuch", "root", "nosuch"]


def test_passwd_cache_stays_bounded(lookups: list[str]) -> None:
    cache = recipients.PasswdCache(max_size=3, clock=_Clock())
    for n in range(10):
        cache.has_user(f"user{n}")
    assert len(cache._entries) <= 3
    assert cache.has_user("user9") is False
    assert lookups.count("user9") == 1  # the newest entry survived the reset
