"""Destination and insert functions over events: Segment's semantics and every bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from segfn_kit import Responses, run, sample_events
from segfn_kit._destination import RESULT_COLUMNS, RetryPolicy, run_destination
from segfn_kit.runtime import Function

TRACK = {"type": "track", "userId": "u1", "event": "Order Failed", "messageId": "m1"}
IDENTIFY = {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}}

POSTER = '''
import httpx
from segfn_kit.runtime import RetryError
SETTINGS = {"apiKey": {"secret": True, "required": True}}
def on_track(event, settings):
    r = httpx.post("https://api.example.com/track", json={"event": event["event"], "key": settings.apiKey},
                   headers={"X-Key": settings.apiKey})
    print("sent with", settings.apiKey)
    if r.status_code == 429 or r.status_code >= 500:
        raise RetryError(f"status {r.status_code}")
'''
SECRET = "sk_live_abcdef123456"


def fn(source: str) -> Function:
    return Function.from_source(source)


def test_result_frame_shape_and_a_first_preview_that_just_works() -> None:
    out = run_destination(fn(POSTER), [TRACK], {"apiKey": SECRET})
    assert list(out.columns) == RESULT_COLUMNS
    assert out.index.name == "payload_id"
    row = out.iloc[0]
    assert (row["outcome"], row["final"], row["events"], row["error"]) == ("ok", "delivered", [], None)
    assert row["requests"][0]["response"] == {"status": 200, "headers": {"content-type": "application/json"}, "body": {}}
    assert row["attempts"] == [{"attempt": 1, "delay_s": 0.0, "outcome": "ok", "error": None}]
    assert out.attrs["kind"] == "destination"


def test_secrets_never_reach_requests_logs_or_errors() -> None:
    failing = POSTER + "\ndef on_identify(event, settings):\n    raise ValueError('bad key ' + settings.apiKey)\n"
    out = run_destination(fn(failing), [TRACK, IDENTIFY], {"apiKey": SECRET})
    text = json.dumps(out.drop(columns=["returned"]).to_dict("records"), default=str)
    assert SECRET not in text
    assert "sent with ••••••" in out["logs"].iloc[0]
    assert out["error"].iloc[1] == "ValueError: bad key •••••• (<function>, line 13)"
    assert out["outcome"].iloc[1] == "error" and out["error_line"].iloc[1] == 13


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        ({"userId": "u1", "event": "x"}, "has no type"),
        ({"type": "purchase", "userId": "u1"}, "'purchase' is not a Segment event type"),
        ({"type": "track", "event": "x"}, "neither userId nor anonymousId"),
        ({"type": "delete", "anonymousId": "a1"}, "delete event has no userId"),
        (["not", "an", "event"], "the entry is list, not an event object"),
        ("just text", "the entry is str"),
    ],
)
def test_events_that_are_not_spec_events_get_a_clear_row(event: Any, fragment: str) -> None:
    out = run_destination(fn(POSTER), [TRACK, event, TRACK], {"apiKey": SECRET})
    assert out["outcome"].tolist() == ["ok", "InvalidEventPayload", "ok"]
    assert fragment in out["error"].iloc[1]
    assert out["final"].iloc[1] == "discarded" and out["requests"].iloc[1] == []


def test_a_line_that_is_not_json_is_a_row_too(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(TRACK) + "\n{oops\n")
    out = run_destination(fn(POSTER), [path], {"apiKey": SECRET})
    assert out["outcome"].tolist() == ["ok", "InvalidEventPayload"]
    assert "line 2: not JSON" in out["error"].iloc[1]


def test_missing_handler_is_event_not_supported_and_input_issues_are_listed() -> None:
    page = {"type": "page", "userId": "u1", "timestamp": 1706702400}
    out = run_destination(fn(POSTER), [page], {"apiKey": SECRET})
    assert out["outcome"].iloc[0] == "EventNotSupported"
    assert "no on_page handler" in out["error"].iloc[0]
    assert [i["code"] for i in out["issues"].iloc[0]] == ["unix_timestamp"]
    assert out["issues"].iloc[0][0]["event_index"] is None


def test_retry_error_is_retried_on_the_schedule_and_later_attempts_are_scripted() -> None:
    script = Responses([{"status": 429, "retry_after": 900}, 503, 201])
    out = run_destination(fn(POSTER), [TRACK], {"apiKey": SECRET}, responses=script)
    row = out.iloc[0]
    assert (row["outcome"], row["final"]) == ("ok", "delivered")
    assert [(a["attempt"], a["delay_s"], a["outcome"]) for a in row["attempts"]] == [
        (1, 0.0, "RetryError"), (2, 900.0, "RetryError"), (3, 120.0, "ok")]
    assert [r["attempt"] for r in row["requests"]] == [1, 2, 3]


def test_a_failure_that_never_heals_exhausts_the_retries() -> None:
    out = run_destination(fn(POSTER), [TRACK], {"apiKey": SECRET}, responses=Responses(500))
    row = out.iloc[0]
    assert (row["outcome"], row["final"]) == ("RetryError", "retries exhausted")
    assert len(row["attempts"]) == len(RetryPolicy().delays()) + 1
    assert sum(a["delay_s"] for a in row["attempts"]) <= 4 * 3600
    once = run_destination(fn(POSTER), [TRACK], {"apiKey": SECRET}, responses=Responses(500),
                           retry=RetryPolicy(max_attempts=1))
    assert len(once["attempts"].iloc[0]) == 1


def test_a_hanging_function_hits_the_time_limit() -> None:
    hang = "import time\ndef on_track(event, settings):\n    time.sleep(30)\n"
    out = run_destination(fn(hang), [TRACK, IDENTIFY], timeout=0.2)
    row = out.iloc[0]
    assert row["outcome"] == "error"
    assert "FunctionTimeout: the function ran past its 0.2 s limit" in row["error"]
    assert row["final"] == "retries exhausted"
    assert len(row["attempts"]) == RetryPolicy().timeout_attempts
    assert out["outcome"].iloc[1] == "EventNotSupported"  # the next event still ran


def test_strict_mode_marks_the_row_even_when_the_function_swallows_the_error() -> None:
    swallow = '''
import httpx
def on_track(event, settings):
    httpx.post("https://api.example.com/known", json={})
    try:
        httpx.post("https://api.example.com/unknown", json={})
    except Exception:
        pass
'''
    script = Responses().add("https://api.example.com/known", respond=201)
    out = run_destination(fn(swallow), [TRACK], responses=script, strict=True)
    row = out.iloc[0]
    assert row["outcome"] == "error" and row["final"] == "discarded"
    assert row["error"].startswith("UnscriptedRequest: strict mode: no rule answers POST https://api.example.com/unknown")
    lenient = run_destination(fn(swallow), [TRACK], responses=script)
    assert lenient["outcome"].iloc[0] == "ok"
    assert script.strict is False  # strict=True did not change the caller's script


def test_http_outside_httpx_is_blocked_with_a_clear_row() -> None:
    other = "import urllib.request\ndef on_track(event, settings):\n    urllib.request.urlopen('http://127.0.0.1:9/', timeout=1)\n"
    out = run_destination(fn(other), [TRACK])
    assert out["outcome"].iloc[0] == "error"
    assert out["error"].iloc[0].startswith("NetworkBlocked: the preview blocked a network connection to 127.0.0.1:9")


def test_insert_functions_return_the_changed_event_or_drop_it() -> None:
    insert = '''
from segfn_kit.runtime import DropEvent
def on_track(event, settings):
    if event["event"] == "Spam":
        raise DropEvent("spam")
    event["properties"] = {"enriched": True}
    return event
def on_identify(event, settings):
    event["user_id"] = event.pop("userId")
    return event
'''
    out = run_destination(fn(insert), [TRACK, {**TRACK, "event": "Spam"}, IDENTIFY])
    assert out["outcome"].tolist() == ["ok", "DropEvent", "ok"]
    assert out["final"].tolist() == ["delivered", "dropped", "delivered"]
    assert out["events"].iloc[0] == [{**TRACK, "properties": {"enriched": True}}]
    assert out["events"].iloc[1] == []
    # the returned event's spec problems are listed, with its index
    assert {(i["event_index"], i["code"]) for i in out["issues"].iloc[2]} >= {(0, "unknown_field")}


def test_a_returned_api_response_is_not_taken_for_an_event() -> None:
    returns = "def on_track(event, settings):\n    return {'id': 5, 'status': 'created'}\n"
    out = run_destination(fn(returns), [TRACK])
    assert out["events"].iloc[0] == [] and out["returned"].iloc[0] == {"id": 5, "status": "created"}


BATCH = '''
import httpx
STATUS = {"Bad": {"status": 400, "errormessage": "bad one"}, "Busy": {"status": 429}, "Down": {"status": 503},
          "Gone": {"status": 404}}
def on_batch(events, settings):
    httpx.post("https://api.example.com/batch", json=[e["messageId"] for e in events])
    return [STATUS.get(e["event"], {"status": 200}) for e in events]
def on_track(event, settings):
    raise AssertionError("on_batch should be used")
'''


def test_on_batch_keeps_order_and_retries_only_the_failed_events() -> None:
    names = ["Good", "Busy", "Bad", "Down", "Good", "Gone"]
    events = [{**TRACK, "messageId": f"m{i}", "event": name} for i, name in enumerate(names)]
    out = run_destination(fn(BATCH), events, batch=True, batch_size=4, retry=RetryPolicy(max_attempts=2))
    assert out.index.tolist() == [f"events#{i}" for i in range(1, 7)]
    assert out["outcome"].tolist() == ["ok", "RetryError", "ValidationError", "RetryError", "ok", "ValidationError"]
    # Segment's rule: 4xx other than 429 is Bad Request, discarded and never retried
    assert out["error"].iloc[2] == (
        "ValidationError: on_batch gave status 400 for this event (Bad Request: discarded, never retried): bad one")
    assert out["final"].tolist() == ["delivered", "retries exhausted", "discarded", "retries exhausted",
                                     "delivered", "discarded"]
    assert [len(a) for a in out["attempts"]] == [1, 2, 1, 2, 1, 1]
    # the retry sent only the failed (retryable) events
    bodies = [r["body"] for r in out["requests"].iloc[0]]
    assert bodies == [["m0", "m1", "m2", "m3"], ["m1", "m3"]]
    assert [r["body"] for r in out["requests"].iloc[4]] == [["m4", "m5"]]


def test_a_batch_of_one_goes_to_on_batch_by_default_as_deployed() -> None:
    page_only_batch = "def on_batch(events, settings):\n    return [{'status': 200} for e in events]\n"
    out = run_destination(fn(page_only_batch), [{"type": "page", "userId": "u1"}])
    assert out["outcome"].tolist() == ["ok"] and out["final"].tolist() == ["delivered"]
    single = run_destination(fn(page_only_batch + "def on_track(e, s):\n    pass\n"),
                             [{"type": "page", "userId": "u1"}], batch=False)
    assert single["outcome"].tolist() == ["EventNotSupported"]


def test_insert_function_on_batch_returns_the_changed_events() -> None:
    insert = "def on_batch(events, settings):\n    return [{**e, 'properties': {'seen': True}} for e in events]\n"
    out = run_destination(fn(insert), [TRACK, {**TRACK, "event": "Other"}])
    assert out["final"].tolist() == ["delivered", "delivered"]
    assert [row[0]["properties"] for row in out["events"]] == [{"seen": True}, {"seen": True}]
    assert out["events"].iloc[1][0]["event"] == "Other"


@pytest.mark.parametrize(
    ("returned", "fragment"),
    [
        ("'done'", "on_batch returned str 'done'"),
        ("[{'status': 200}]", "on_batch returned 1 statuses for 2 events"),
        ("[{'status': 200}, 'ok']", "on_batch status 2 is 'ok'"),
        ("[{'status': 200}, {'status': True}]", "on_batch status 2 is {'status': True}"),
    ],
)
def test_garbage_from_on_batch_is_a_clear_outcome(returned: str, fragment: str) -> None:
    source = f"def on_batch(events, settings):\n    return {returned}\ndef on_track(event, settings):\n    pass\n"
    out = run_destination(fn(source), [TRACK, IDENTIFY], batch=True)
    assert out["outcome"].tolist() == ["error", "error"]
    assert fragment in out["error"].iloc[0]
    assert "one {'status': <int>" in out["error"].iloc[0]


def test_on_batch_none_means_delivered_and_raising_applies_to_the_batch() -> None:
    ok = "def on_batch(events, settings):\n    return None\n"
    assert run_destination(fn(ok), [TRACK, IDENTIFY], batch=True)["final"].tolist() == ["delivered"] * 2
    raising = "from segfn_kit.runtime import ValidationError\ndef on_batch(events, settings):\n    raise ValidationError('no')\n"
    out = run_destination(fn(raising), [TRACK, IDENTIFY], batch=True)
    assert out["outcome"].tolist() == ["ValidationError"] * 2 and out["final"].tolist() == ["discarded"] * 2


def test_without_on_batch_batch_mode_falls_back_to_single_handlers() -> None:
    out = run_destination(fn(POSTER), [TRACK], {"apiKey": SECRET}, batch=True)
    assert out["outcome"].iloc[0] == "ok" and len(out["requests"].iloc[0]) == 1
    with pytest.raises(ValueError, match="batch_size=401"):
        run_destination(fn(POSTER), [TRACK], {"apiKey": SECRET}, batch=True, batch_size=401)


def test_async_handlers_with_async_clients_are_intercepted() -> None:
    source = '''
import httpx
async def on_track(event, settings):
    async with httpx.AsyncClient() as client:
        r = await client.post("https://api.example.com/async", json={"e": event["event"]})
    print("status", r.status_code)
'''
    out = run_destination(fn(source), [TRACK], responses=Responses(202))
    assert out["outcome"].iloc[0] == "ok"
    assert out["requests"].iloc[0][0]["response"]["status"] == 202
    assert out["logs"].iloc[0] == "status 202\n"


def test_missing_required_settings_are_a_row_error_not_a_crash() -> None:
    out = run_destination(fn(POSTER), [TRACK, TRACK])
    assert out["outcome"].tolist() == ["error", "error"]
    assert "SettingsError: required setting(s) apiKey missing" in out["error"].iloc[0]


def test_settings_from_a_file_and_bad_settings_files(tmp_path: Path) -> None:
    good = tmp_path / "settings.json"
    good.write_text(json.dumps({"apiKey": SECRET}))
    assert run_destination(fn(POSTER), [TRACK], good)["outcome"].iloc[0] == "ok"
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    with pytest.raises(ValueError, match="write a flat object of setting names"):
        run_destination(fn(POSTER), [TRACK], bad)


def test_a_source_function_is_refused_with_the_way_out() -> None:
    source = "def on_request(request, settings):\n    pass\n"
    with pytest.raises(TypeError, match="is a source function"):
        run_destination(fn(source), [TRACK])


def test_run_dispatches_destinations_and_a_source_run_feeds_a_destination() -> None:
    source = '''
from segfn_kit.runtime import Segment
def on_request(request, settings):
    body = request.json()
    Segment.track(user_id=body["id"], event="Order Failed", properties={"n": body["n"]})
'''
    # generous limits: this test is about the hand-over, not about time
    results = run(source, [{"id": "u1", "n": 1}, {"id": "u2", "n": 2}], timeout=60)
    out = run(POSTER, results, {"apiKey": SECRET}, responses=Responses(201), timeout=60)
    assert out.attrs["kind"] == "destination"
    assert out["outcome"].tolist() == ["ok", "ok"], out["error"].tolist()
    assert out["payload"].tolist() == results.index.tolist()
    assert [r[0]["body"]["event"] for r in out["requests"]] == ["Order Failed", "Order Failed"]


def test_event_frames_from_sample_events_run_unchanged() -> None:
    events = sample_events(n=6)
    out = run_destination(fn(POSTER), events, {"apiKey": SECRET})
    assert out.index.tolist() == events.index.tolist()
    assert out["event_type"].tolist() == events["event_type"].tolist()
    assert isinstance(out, pd.DataFrame) and (out["outcome"] == "ok").sum() == 1


# -- segfn run ---------------------------------------------------------------------------------
def _segfn(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from segfn_kit._cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_jsonl_rows_of_a_destination_carry_masked_requests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    function = tmp_path / "poster.py"
    function.write_text(POSTER)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"apiKey": SECRET}))
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(TRACK) + "\n" + json.dumps({"type": "track"}) + "\n")
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"rules": [{"method": "POST", "url": "https://api.example.com/*",
                                             "respond": [{"status": 503}, 201]}]}))
    code, out, err = _segfn(["run", str(function), str(events), "--settings", str(settings),
                             "--responses", str(script), "--jsonl"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["outcome"] for r in rows] == ["ok", "InvalidEventPayload"]
    assert set(rows[0]) == {"payload_id", "outcome", "events", "objects", "error", "issues", "requests"}
    first = rows[0]["requests"][0]
    assert (first["method"], first["url"]) == ("POST", "https://api.example.com/track")
    assert first["headers"]["X-Key"] == "••••••" and first["body"] == {"event": "Order Failed", "key": "••••••"}
    assert [r["response"]["status"] for r in rows[0]["requests"]] == [503, 201]
    assert SECRET not in out + err
    assert "LIVE" not in err


def test_cli_strict_turns_unscripted_requests_into_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    function = tmp_path / "poster.py"
    function.write_text(POSTER)
    events = tmp_path / "events.json"
    events.write_text(json.dumps(TRACK))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"apiKey": SECRET}))
    code, out, _ = _segfn(["run", str(function), str(events), "--settings", str(settings), "--strict"], capsys)
    assert code == 1
    assert "UnscriptedRequest" in out


def test_cli_refuses_destination_options_for_a_source_and_bad_scripts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "source.py"
    source.write_text("def on_request(request, settings):\n    pass\n")
    payload = tmp_path / "p.json"
    payload.write_text("{}")
    code, _, err = _segfn(["run", str(source), str(payload), "--live"], capsys)
    assert code == 2 and "--live: only for destination functions" in err
    function = tmp_path / "poster.py"
    function.write_text(POSTER)
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"default": "teapot"}))
    code, _, err = _segfn(["run", str(function), str(payload), "--responses", str(script)], capsys)
    assert code == 2 and "unknown answer 'teapot'" in err


def test_delete_events_reach_on_delete() -> None:
    source = "import httpx\ndef on_delete(event, settings):\n    httpx.delete(f\"https://api.example.com/users/{event['userId']}\")\n"
    out = run_destination(fn(source), [{"type": "delete", "userId": "u9", "messageId": "d1"}], responses=Responses(204))
    assert (out["outcome"].iloc[0], out["issues"].iloc[0]) == ("ok", [])
    assert [(r["method"], r["url"]) for r in out["requests"].iloc[0]] == [("DELETE", "https://api.example.com/users/u9")]


def test_live_runs_send_for_real_only_when_asked(
    local_api: tuple[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, received = local_api
    source = f"import httpx\ndef on_track(event, settings):\n    httpx.post('{url}/events', json={{'e': event['event']}})\n"
    preview = run_destination(fn(source), [TRACK])
    assert received == [] and preview.attrs["live"] is False
    assert "LIVE" not in capsys.readouterr().err
    live = run_destination(fn(source), [TRACK], live=True)
    assert "LIVE MODE" in capsys.readouterr().err
    assert received == [{"path": "/events", "body": '{"e":"Order Failed"}'}]
    assert live.attrs["live"] is True
    assert live["requests"].iloc[0][0]["response"]["status"] == 202


ASYNC_POSTER = '''
import httpx
async def on_track(event, settings):
    async with httpx.AsyncClient() as client:
        await client.post("https://api.example.com/async", json={})
'''


def test_async_handlers_run_where_an_event_loop_already_runs() -> None:
    """As in a notebook kernel: the caller's thread is inside a running event loop."""
    import asyncio

    async def from_a_running_loop() -> pd.DataFrame:
        return run_destination(fn(ASYNC_POSTER), [TRACK], responses=Responses(201))

    out = asyncio.run(from_a_running_loop())
    assert out["outcome"].iloc[0] == "ok"
    assert out["requests"].iloc[0][0]["response"]["status"] == 201
