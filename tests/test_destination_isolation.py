"""Hostile destination functions run in worker processes: each bad call is its event's row.

The function runs in a worker; its httpx requests are answered in this process by the
script (over the worker's pipe), so the record, strict mode and callables work as before.
Time limits are short (a fraction of a second) to keep the suite fast; the rules are the
same at Segment's 5 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from segfn_kit import Responses, preview, run
from segfn_kit._destination import RetryPolicy, run_destination
from segfn_kit._events import sample_events
from segfn_kit.runtime import Function
from segfn_kit.runtime._isolation import DEFAULT_MEMORY_LIMIT

HOSTILE = '''
import os, sys, time
import httpx

SETTINGS = {"apiToken": {"type": "string", "secret": True}}

CLIENT = httpx.Client()  # built once per worker, not in the time of a call

class Boom(BaseException):
    pass

def on_track(event, settings):
    k = event["event"]
    CLIENT.post("https://api.example.com/track", json={"k": k, "token": settings.apiToken})
    print("sent", k, settings.apiToken)
    if k == "swallow":  # a bare except in a loop swallows the timeout signal
        while True:
            try:
                time.sleep(0.01)
            except:
                pass
    if k == "c_call":
        sum(range(10**11))
    if k == "memory":
        blob = bytearray(6 * 2**30)
    if k == "exit":
        os._exit(1)
    if k == "keyboard":
        raise KeyboardInterrupt
    if k == "sys_exit":
        sys.exit(2)
    if k == "base":
        raise Boom("custom base exception")
    if k == "close":
        sys.stdout.close()
        print("still captured")
'''
SETTINGS = {"apiToken": "tok-9d8c7b6a5f"}
TIMEOUT = 0.5
EXPECTED = {
    "swallow": f"FunctionTimeout: the function ran past its {TIMEOUT:g} s limit and did not stop",
    "c_call": f"FunctionTimeout: the function ran past its {TIMEOUT:g} s limit and did not stop",
    "memory": f"MemoryLimitExceeded: the function used more than its {DEFAULT_MEMORY_LIMIT // 2**20:g} MiB",
    "exit": "WorkerExit: the function ended its worker process (exit code 1)",
    "keyboard": "KeyboardInterrupt: the function raised KeyboardInterrupt",
    "sys_exit": "SystemExit: the function called sys.exit(2)",
    "base": "Boom: custom base exception",
}
ONCE = RetryPolicy(max_attempts=1)


def track(name: str, n: int = 0) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": name, "messageId": f"m-{name}-{n}"}


def _events() -> list[dict[str, Any]]:
    events = []
    for n, bad in enumerate(EXPECTED):
        events += [track(bad, n), track(f"ok-after-{bad}", n)]
    return [*events, track("close")]


def _check(out: Any, events: list[dict[str, Any]]) -> None:
    assert len(out) == len(events)
    for event, (_, row) in zip(events, out.iterrows(), strict=True):
        name = event["event"]
        # every event's request reached the script, the hostile ones' too, secrets masked
        assert [r["body"] for r in row["requests"]] == [{"k": name, "token": "••••••"}], name
        if name in EXPECTED:
            assert row["outcome"] == "error", name
            assert row["error"].startswith(EXPECTED[name]), (name, row["error"])
            assert row["final"] in ("discarded", "retries exhausted")
        elif name == "close":
            assert row["outcome"] == "ok" and row["logs"] == "sent close ••••••\nstill captured\n"
        else:
            assert (row["outcome"], row["final"]) == ("ok", "delivered"), (name, row["error"])
            assert row["logs"] == f"sent {name} ••••••\n"
    assert SETTINGS["apiToken"] not in json.dumps(out.drop(columns=["returned"]).to_dict("records"), default=str)


def test_every_hostile_destination_call_is_its_own_row_and_the_next_event_runs() -> None:
    events = _events()
    out = run_destination(Function.from_source(HOSTILE), events, SETTINGS, timeout=TIMEOUT, retry=ONCE)
    _check(out, events)
    assert out.loc[out["event"].map(lambda e: e["event"]) == "swallow", "attempts"].iloc[0][0]["outcome"] == "error"


def test_the_preview_shows_every_hostile_destination_call_as_its_row() -> None:
    events = sample_events(_events())
    wb = preview(HOSTILE, events, SETTINGS, timeout=TIMEOUT, retry=ONCE)
    assert wb.kind == "destination"
    assert wb.summary.total == len(events)
    _check(wb.results, _events())
    exit_id = str(events.index[2 * list(EXPECTED).index("exit")])
    wb.picker.value = exit_id
    assert "WorkerExit" in wb.detail.value
    assert SETTINGS["apiToken"] not in wb.summary_html.value + wb.detail.value


def test_a_timeout_follows_the_retry_policy_and_each_attempt_is_killed() -> None:
    out = run_destination(Function.from_source(HOSTILE), [track("c_call"), track("fine")], SETTINGS,
                          timeout=TIMEOUT)
    row = out.iloc[0]
    assert (row["outcome"], row["final"]) == ("error", "retries exhausted")
    # a hang is rarely transient: given up after RetryPolicy.timeout_attempts timed-out attempts
    assert [a["attempt"] for a in row["attempts"]] == list(range(1, RetryPolicy().timeout_attempts + 1))
    assert [r["attempt"] for r in row["requests"]] == [1, 2]
    assert all("did not stop" in a["error"] for a in row["attempts"])
    assert out["outcome"].iloc[1] == "ok"


SLOW_ANSWER = '''
import httpx
CLIENT = httpx.Client()
def on_track(event, settings):
    try:
        CLIENT.post("https://slow.example.com/", json={})
    except BaseException as exc:  # swallows the timeout that stopped the wait
        print("caught", type(exc).__name__)
    r = CLIENT.post("https://fast.example.com/", json={})
    print("then", r.status_code)
def on_identify(event, settings):
    print("got", CLIENT.get("https://fast.example.com/").status_code)
'''


def test_a_call_stopped_while_its_request_is_answered_leaves_no_answer_behind() -> None:
    """The limit fires while this process answers (a slow script): the late answer is
    skipped, the next request and the next event get their own answers."""
    statuses = iter([201, 202, 203])

    def slow(request: httpx.Request) -> int:
        time.sleep(0.7)  # past the 0.5 s limit, well before the kill at 0.5 + 0.5 s grace
        return 200

    script = Responses().add("https://slow.example.com/", respond=slow)
    script.add("https://fast.example.com/", respond=lambda request: next(statuses))
    out = run_destination(Function.from_source(SLOW_ANSWER),
                          [track("a"), {"type": "identify", "userId": "u2"}], responses=script,
                          timeout=0.5, retry=ONCE)
    first, second = out.iloc[0], out.iloc[1]
    assert first["outcome"] == "error", first["error"]
    assert first["error"].startswith("FunctionTimeout: the function ran past its 0.5 s limit (Segment")
    assert first["logs"] == "caught FunctionTimeout\nthen 201\n"
    assert [(r["url"], r["response"]["status"]) for r in first["requests"]] == [
        ("https://slow.example.com/", 200), ("https://fast.example.com/", 201)]
    assert second["outcome"] == "ok" and second["logs"] == "got 202\n"


def test_scripted_exceptions_reach_the_function_as_their_own_type() -> None:
    source = '''
import httpx
from segfn_kit.runtime import RetryError
def on_track(event, settings):
    try:
        httpx.post("https://api.example.com/", json={})
    except httpx.ReadTimeout as exc:
        raise RetryError(f"timed out: {exc.request.url}")
    except LookupError as exc:
        print("lookup", exc)
'''
    script = Responses().add("https://api.example.com/", respond=["timeout", KeyError("no such key"), 201])
    out = run_destination(Function.from_source(source), [track("x")], responses=script, timeout=5)
    row = out.iloc[0]
    assert [a["outcome"] for a in row["attempts"]] == ["RetryError", "ok"]
    assert row["attempts"][0]["error"] == "RetryError: timed out: https://api.example.com/"
    assert row["logs"] == "[attempt 2]\nlookup 'no such key'\n"
    assert [r.get("error", "") .split(":")[0] for r in row["requests"]] == ["ReadTimeout", ""]


def test_a_gzip_response_step_and_a_thread_of_the_function_are_answered_as_in_process() -> None:
    import gzip

    source = '''
import httpx, threading
def on_track(event, settings):
    box = {}
    def fetch():
        box["r"] = httpx.get("https://api.example.com/zipped").json()
    t = threading.Thread(target=fetch)
    t.start(); t.join()
    return box["r"]
'''
    body = gzip.compress(json.dumps({"zipped": True}).encode())
    answer = httpx.Response(200, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, content=body)
    for isolation in ("process", "none"):
        out = run_destination(Function.from_source(source), [track("x")], responses=Responses(answer),
                              timeout=5, isolation=isolation)
        assert (out["outcome"].iloc[0], out["returned"].iloc[0]) == ("ok", {"zipped": True}), isolation
        if isolation == "process":  # the worker runs one call at a time: its threads' requests are the event's
            assert [r["response"]["body"] for r in out["requests"].iloc[0]] == [{"zipped": True}]


def test_a_function_that_does_not_load_in_the_worker_is_one_error_per_event(tmp_path: Path) -> None:
    marker = tmp_path / "loaded-once"
    # loads in this process, then fails in the worker (the marker exists by then)
    source = (f"import os\nif os.path.exists({str(marker)!r}):\n    raise RuntimeError('only once')\n"
              f"open({str(marker)!r}, 'w').close()\ndef on_track(event, settings):\n    pass\n")
    out = run_destination(Function.from_source(source), [track("a"), track("b")], timeout=5)
    assert out["outcome"].tolist() == ["error", "error"]
    assert all(e.startswith("FunctionLoadError: ") and "only once" in e for e in out["error"])


def test_isolation_none_runs_in_this_process_for_a_debugger() -> None:
    source = "import os\ndef on_track(event, settings):\n    return {'pid': os.getpid()}\n"
    here = run_destination(Function.from_source(source), [track("a")], isolation="none")
    apart = run(source, [track("a")], isolation="process")
    assert here["returned"].iloc[0] == {"pid": os.getpid()}
    assert apart["returned"].iloc[0]["pid"] != os.getpid()
    with pytest.raises(ValueError, match='isolation must be "process" or "none"'):
        run_destination(Function.from_source(source), [track("a")], isolation="thread")


def test_segfn_run_gives_every_hostile_event_its_line(tmp_path: Path) -> None:
    function = tmp_path / "hostile.py"
    function.write_text(HOSTILE, encoding="utf-8")
    (tmp_path / "settings.json").write_text(json.dumps(SETTINGS), encoding="utf-8")
    events = [track(n) for n in ("a", "c_call", "b", "exit", "c")]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "segfn_kit", "run", str(function), str(path), "--jsonl",
         "--settings", str(tmp_path / "settings.json"), "--timeout", str(TIMEOUT), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr  # events errored
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["outcome"] for line in lines] == ["ok", "error", "ok", "error", "ok"]
    assert lines[1]["error"].startswith(EXPECTED["c_call"]) and lines[3]["error"].startswith(EXPECTED["exit"])
    assert [len(line["requests"]) for line in lines] == [1, 2, 1, 1, 1]  # the timeout was retried once
    assert SETTINGS["apiToken"] not in done.stdout + done.stderr


def test_answers_and_requests_larger_than_a_pipe_cross_whole() -> None:
    source = '''
import httpx
def on_track(event, settings):
    r = httpx.post("https://api.example.com/big", content=b"q" * 3_000_000)
    return {"length": len(r.text), "tail": r.text[-3:]}
'''
    answer = {"status": 200, "text": "a" * 2_000_000 + "end"}
    script = Responses().add("https://api.example.com/big", respond=lambda request: {**answer, "status": 200 if len(request.content) == 3_000_000 else 400})
    out = run_destination(Function.from_source(source), [track("x")], responses=script, timeout=30)
    assert (out["outcome"].iloc[0], out["returned"].iloc[0]) == ("ok", {"length": 2_000_003, "tail": "end"})
    assert out["requests"].iloc[0][0]["response"]["status"] == 200


def test_the_result_frame_keeps_its_script_without_copying_it() -> None:
    """pandas deep-copies ``attrs`` on every row read: the script (with raised exceptions
    in its steps) is the same object, never a copy."""
    import copy

    source = '''
import httpx
def on_track(event, settings):
    try:
        httpx.post("https://api.example.com/", json={})
    except LookupError:
        pass
'''
    script = Responses().add("https://api.example.com/", respond=[KeyError("no such key"), 201])
    out = run_destination(Function.from_source(source), [track("x"), track("y")], responses=script, timeout=5)
    assert out.attrs["responses"] is script
    assert out.iloc[0].attrs["responses"] is script
    assert copy.deepcopy(script) is script
    # a strict run works on its own shallow copy: the caller's script stays lenient
    strict = run_destination(Function.from_source(source), [track("z")], responses=script, strict=True)
    assert strict.attrs["responses"] is not script and strict.attrs["responses"].strict
    assert not script.strict and copy.copy(script) is not script


def test_scripted_exceptions_keep_their_type_where_pickled_exceptions_carry_tracebacks() -> None:
    """Dask installs tblib's pickling of exceptions (with their tracebacks) in the caller's
    process; a scripted exception still reaches the worker's function as itself."""
    import tblib.pickling_support

    tblib.pickling_support.install()
    source = '''
import httpx
def on_track(event, settings):
    try:
        httpx.post("https://api.example.com/", json={})
    except LookupError as exc:
        print("caught", type(exc).__name__, exc)
'''
    raised = KeyError("no such key")
    try:  # a step that was raised before carries a traceback
        raise raised
    except KeyError:
        pass
    script = Responses().add("https://api.example.com/", respond=[raised])
    out = run_destination(Function.from_source(source), [track("x")], responses=script, timeout=5)
    row = out.iloc[0]
    assert row["outcome"] == "ok", row["error"]
    assert row["logs"] == "caught KeyError 'no such key'\n"
