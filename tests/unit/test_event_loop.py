from __future__ import annotations

import asyncio
import builtins
import sys
from typing import Any

import pytest

from spambridge.cli import main
from spambridge.daemon import loop_factory
from spambridge.errors import ConfigError
from tests.support.config import make_config


def _config(*argv: str) -> Any:
    return make_config(*argv)


@pytest.fixture
def no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import uvloop` fail as if it were not installed."""
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop" or name.startswith("uvloop."):
            raise ImportError("No module named 'uvloop'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "uvloop", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_event_loop_asyncio_uses_asyncio_default_loop() -> None:
    config = _config("event-loop=asyncio")
    assert config.event_loop == "asyncio"
    assert loop_factory(config) is None


def test_event_loop_default_is_auto_and_runs() -> None:
    config = _config()
    assert config.event_loop == "auto"
    with asyncio.Runner(loop_factory=loop_factory(config)) as runner:
        assert runner.run(asyncio.sleep(0, result=42)) == 42


def test_event_loop_auto_falls_back_to_asyncio_without_uvloop(no_uvloop: None) -> None:
    assert loop_factory(_config("event-loop=auto")) is None


def test_event_loop_uvloop_missing_is_a_clear_config_error(
    no_uvloop: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        _config("event-loop=uvloop")
    assert caught.value.option == "event-loop"
    assert "pip install uvloop" in str(caught.value)
    assert main(["file=", "--event-loop", "uvloop", "check"]) == 2
    assert "event-loop" in capsys.readouterr().err


def test_event_loop_uvloop_gives_uvloop_loops_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    factory = loop_factory(_config("event-loop=uvloop"))
    assert factory is not None
    loop = factory()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_event_loop_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError, match="event-loop"):
        _config("event-loop=trio")
