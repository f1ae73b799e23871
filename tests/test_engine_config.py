"""Engine.config(): read once, re-read whenever a SEGMENT_*/SEGFN_* variable changes, appears or goes."""

from __future__ import annotations

import pytest

from segfn_kit.runtime import Engine, Function


def test_config_follows_every_change_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(Function.from_source("def on_request(r, s):\n    pass\n"), name="fn.py")
    monkeypatch.setenv("SEGFN_ISOLATION", "none")
    monkeypatch.delenv("SEGFN_TIMEOUT", raising=False)
    first = engine.config()
    assert engine.config() is first and first.timeout == 5
    monkeypatch.setenv("SEGFN_TIMEOUT", "2")  # appears
    assert engine.config().timeout == 2
    monkeypatch.setenv("SEGFN_TIMEOUT", "3")  # changes
    assert engine.config().timeout == 3
    monkeypatch.delenv("SEGFN_TIMEOUT")  # goes
    assert engine.config().timeout == 5
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")  # another variable: the same configuration
    assert engine.config() is engine.config()
    monkeypatch.setenv("SEGFN_MAX_BODY", "1000")
    assert engine.config().max_body == 1000
