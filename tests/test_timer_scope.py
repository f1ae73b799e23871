"""One timer for a run of calls (``keep_timer_armed``): every call keeps its own whole limit."""

from __future__ import annotations

import signal
import time

import pytest

from segfn_kit.runtime import Function, Request
from segfn_kit.runtime._function import keep_timer_armed

pytestmark = pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")

SOURCE = """
import time
from segfn_kit.runtime import Segment

def on_request(request, settings):
    body = request.json()
    if body.get("forever"):
        while True:
            time.sleep(0.01)
    time.sleep(body.get("sleep", 0))
    Segment.track(user_id="u1", event="Done")
"""


def _call(fn: Function, body: bytes, timeout: float) -> str:
    inv = fn.on_request(Request(body), timeout=timeout)
    return "timeout" if inv.timed_out else inv.outcome


def test_a_call_gets_its_whole_limit_when_the_timer_was_set_by_an_earlier_call() -> None:
    fn = Function.from_source(SOURCE)
    with keep_timer_armed():
        assert _call(fn, b"{}", 1.0) == "ok"  # sets the timer: it fires 1 s from now
        time.sleep(0.7)
        # runs across the moment the first call's timer fires: it is set again for the rest
        assert _call(fn, b'{"sleep": 0.5}', 1.0) == "ok"
        assert _call(fn, b'{"forever": true}', 0.3) == "timeout"
        assert _call(fn, b"{}", 1.0) == "ok"
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # stopped on leaving the block


def test_a_shorter_limit_than_the_pending_timer_is_kept() -> None:
    fn = Function.from_source(SOURCE)
    with keep_timer_armed():
        assert _call(fn, b"{}", 30.0) == "ok"  # the pending timer fires in 30 s
        started = time.monotonic()
        assert _call(fn, b'{"forever": true}', 0.2) == "timeout"
        assert time.monotonic() - started < 20  # stopped at its own limit, not the pending one's
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_timer_firing_between_calls_is_harmless_and_the_previous_handler_is_kept() -> None:
    fn = Function.from_source(SOURCE)
    seen: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    try:
        with keep_timer_armed():
            assert _call(fn, b"{}", 0.1) == "ok"
            time.sleep(0.4)  # the kept timer fires here, outside any call
            assert _call(fn, b'{"forever": true}', 0.2) == "timeout"
        assert seen == []  # our own timer never reaches the handler that was there before
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        time.sleep(0.3)
        assert seen == [signal.SIGALRM]  # outside calls, a SIGALRM still reaches it
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
