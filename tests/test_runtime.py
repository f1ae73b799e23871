"""The runtime a function file sees: request, settings, Segment emitters, errors, loading."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from segfn_kit.runtime import (
    MASK,
    EventNotSupported,
    Function,
    FunctionLoadError,
    Headers,
    InvalidEventPayload,
    Request,
    Segment,
    Settings,
    sign,
    verify_signature,
)


def source_fn(body: str) -> Function:
    """A source function whose on_request runs ``body`` (indented by the caller)."""
    text = "from segfn_kit.runtime import *\n\ndef on_request(request, settings):\n" + body
    return Function.from_source(text)


def emit(code: str, request: Request | None = None) -> list[dict[str, Any]]:
    inv = source_fn("    " + code + "\n").on_request(request or Request(b"{}"))
    assert inv.outcome == "ok", inv.error
    return inv.events


# -- request ---------------------------------------------------------------------------------


def test_request_json_text_headers_query_url_method() -> None:
    r = Request(
        b'{"type": "ping", "n": 12345678901234567890}',
        {"Content-Type": "application/json", "X-Trace": "abc"},
        method="post",
        url="https://hooks.example.com/stripe?account=acme&tag=a&tag=b",
    )
    assert r.json() == {"type": "ping", "n": 12345678901234567890}
    assert r.json() is r.json()  # parsed once
    assert r.text() == '{"type": "ping", "n": 12345678901234567890}'
    assert r.headers["content-type"] == "application/json"
    assert r.headers.get("X-TRACE") == "abc"
    assert "x-trace" in r.headers and len(r.headers) == 2
    assert r.query == {"account": "acme", "tag": ["a", "b"]}
    assert r.method == "POST"
    assert r.url.startswith("https://hooks.example.com/stripe")


def test_headers_keep_their_names_and_join_repeats() -> None:
    h = Headers([("Stripe-Signature", "t=1"), ("X-A", "1"), ("x-a", "2")])
    assert list(h) == ["Stripe-Signature", "X-A"]
    assert h["X-A"] == "1, 2"
    assert Headers({"Accept": ["a", "b"]})["accept"] == "a, b"


def test_form_bodies() -> None:
    r = Request(b"From=%2B15550100&Body=hello+there&Tag=a&Tag=b&Empty=",
                {"Content-Type": "application/x-www-form-urlencoded"})
    assert r.form() == {"From": "+15550100", "Body": "hello there", "Tag": ["a", "b"], "Empty": ""}


def test_a_form_body_read_as_json_says_to_use_form() -> None:
    r = Request(b"a=1&b=2", {"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(InvalidEventPayload, match=r"request\.form\(\)"):
        r.json()


@pytest.mark.parametrize(("body", "expected"), [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b'{"a": ', "not valid JSON"),
    (b"\xff\xfe{}", "not valid UTF-8"),
])
def test_bad_bodies_are_invalid_event_payload(body: bytes, expected: str) -> None:
    with pytest.raises(InvalidEventPayload, match=expected):
        Request(body).json()


def test_json_value_bodies_are_their_compact_serialisation() -> None:
    r = Request({"b": "é", "a": [1, 2]})
    assert r.content == '{"b":"é","a":[1,2]}'.encode()


# -- settings --------------------------------------------------------------------------------


def test_settings_read_only_by_key_and_attribute() -> None:
    s = Settings({"subdomain": "acme", "apiToken": "t0k3n-value"}, secrets={"apiToken"})
    assert s["subdomain"] == s.subdomain == "acme"
    assert s.get("missing") is None
    with pytest.raises(TypeError):
        s.subdomain = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s["subdomain"] = "x"  # type: ignore[index]
    with pytest.raises(KeyError, match="settings given: apiToken, subdomain"):
        s["nope"]
    with pytest.raises(AttributeError):
        _ = s.nope


def test_secret_settings_are_masked_everywhere_they_show() -> None:
    fn = Function.from_source(
        'SETTINGS = {"signingKey": {"secret": True}, "region": {}}\n'
        "def on_request(request, settings):\n"
        "    raise ValueError('bad key ' + settings.signingKey + ' and ' + settings.apiKey)\n"
    )
    settings = fn.settings({"signingKey": "declared-secret", "apiKey": "named-like-a-key", "region": "eu"})
    assert settings.secrets == {"signingKey", "apiKey"}
    assert "declared-secret" not in repr(settings) and MASK in repr(settings)
    assert settings.masked() == {"signingKey": MASK, "apiKey": MASK, "region": "eu"}
    inv = fn.on_request(Request(b"{}"), settings)
    assert inv.outcome == "error"
    assert "declared-secret" not in (inv.error or "") and "named-like-a-key" not in (inv.error or "")
    assert inv.error == f"ValueError: bad key {MASK} and {MASK} (<function>, line 3)"


def test_required_settings_are_declared_in_the_file() -> None:
    fn = Function.from_source(
        'SETTINGS = {"apiToken": {"required": True, "secret": True}, "x": {"required": False}}\n'
        "def on_request(request, settings):\n    pass\n"
    )
    assert fn.missing_settings({}) == ["apiToken"]
    assert fn.missing_settings({"apiToken": "t"}) == []


# -- emitters --------------------------------------------------------------------------------


def test_each_emitter_takes_analytics_python_keywords() -> None:
    events = emit(
        "Segment.identify(user_id='u', traits={'a': 1}, anonymous_id='an', context={'ip': '1'}, "
        "integrations={'All': True}, timestamp='2024-01-01T00:00:00Z', message_id='m1')\n"
        "    Segment.track(user_id='u', event='E', properties={'p': 1})\n"
        "    Segment.page(user_id='u', name='Home', category='Docs', properties={})\n"
        "    Segment.screen(anonymous_id='a', name='Main')\n"
        "    Segment.group(user_id='u', group_id='g', traits={'n': 'Acme'})\n"
        "    Segment.alias(previous_id='old', user_id='new')"
    )
    assert [e["type"] for e in events] == ["identify", "track", "page", "screen", "group", "alias"]
    assert events[0] == {
        "type": "identify", "userId": "u", "traits": {"a": 1}, "context": {"ip": "1"},
        "timestamp": "2024-01-01T00:00:00Z", "anonymousId": "an", "integrations": {"All": True},
        "messageId": "m1",
    }
    assert events[2]["name"] == "Home" and events[2]["category"] == "Docs"
    assert events[4]["groupId"] == "g"
    assert events[5]["previousId"] == "old" and events[5]["userId"] == "new"
    assert all(e.get("messageId") for e in events)


def test_unknown_keyword_is_a_clear_error() -> None:
    inv = source_fn("    Segment.track(userId='u', event='E')\n").on_request(Request(b"{}"))
    assert inv.outcome == "error"
    assert "unexpected keyword argument 'userId'" in (inv.error or "")
    assert "user_id" in (inv.error or "")


def test_javascript_style_dict_calls_work() -> None:
    events = emit("Segment.track({'userId': 'u', 'event': 'E', 'properties': {'a': 1}})")
    assert events[0]["userId"] == "u" and events[0]["type"] == "track"


def test_none_stays_null_and_keywords_not_passed_are_left_out() -> None:
    events = emit("Segment.track(user_id='u', event='E', properties={'plan': None}, anonymous_id=None)")
    assert events[0]["properties"] == {"plan": None}
    assert events[0]["anonymousId"] is None
    assert "context" not in events[0] and "timestamp" not in events[0]
    assert '"anonymousId": null' in json.dumps(events[0])


class Plan(enum.Enum):
    PRO = "pro"


def test_values_are_normalised_as_analytics_python_does() -> None:
    fn = source_fn(
        "    Segment.track(user_id=42, event='E', timestamp=settings['when'], properties=settings['props'])\n"
        "    Segment.group(user_id='u', group_id=7)\n"
    )
    props = {
        "price": decimal.Decimal("9.90"),
        "plan": Plan.PRO,
        "day": dt.date(2024, 1, 31),
        "at": dt.datetime(2024, 1, 31, 12, 0, tzinfo=dt.UTC),
        "tags": {"b", "a"},
        "pair": (1, 2),
        "raw": b"bytes",
    }
    inv = fn.on_request(Request(b"{}"), {"when": dt.datetime(2024, 1, 31, 12, 0), "props": props})
    assert inv.outcome == "ok" and inv.problems == []
    track = inv.events[0]
    assert track["userId"] == "42"
    assert track["timestamp"] == "2024-01-31T12:00:00+00:00"
    assert track["properties"] == {
        "price": 9.9, "plan": "pro", "day": "2024-01-31", "at": "2024-01-31T12:00:00+00:00",
        "tags": ["a", "b"], "pair": [1, 2], "raw": "bytes",
    }
    assert inv.events[1]["groupId"] == "7"
    json.dumps(inv.events, allow_nan=False)


def test_values_json_cannot_carry_become_problems() -> None:
    fn = source_fn("    Segment.track(user_id='u', event='E', properties=settings['props'])\n")
    inv = fn.on_request(Request(b"{}"), {"props": {"obj": object(), "nan": math.nan, "inf": math.inf}})
    assert inv.outcome == "ok"
    assert {(p["field"], p["code"]) for p in inv.problems} == {
        ("properties.obj", "not_serialisable"), ("properties.nan", "not_finite"), ("properties.inf", "not_finite"),
    }
    assert inv.events[0]["properties"]["nan"] is None
    json.dumps(inv.events, allow_nan=False)


def test_problems_name_nested_fields_by_their_path() -> None:
    fn = source_fn("    Segment.track(user_id='u', event='E', properties=settings['props'], context=settings['ctx'])\n")
    props = {"items": [{"price": math.nan}, {"tags": {("a", 1)}}], 7: {"deep": [[object()]]}}
    inv = fn.on_request(Request(b"{}"), {"props": props, "ctx": {"ip": b"\xff"}})
    assert inv.outcome == "ok"
    assert [(p["field"], p["code"], p["event_index"]) for p in inv.problems] == [
        ("properties.items[0].price", "not_finite", 0),
        ("properties.7.deep[0][0]", "not_serialisable", 0),
        ("context.ip", "not_serialisable", 0),
    ]
    assert inv.problems[0]["message"].startswith("properties.items[0].price is nan")
    assert inv.events[0]["properties"]["items"] == [{"price": None}, {"tags": [["a", 1]]}]  # a set of tuples: lists
    json.dumps(inv.events, allow_nan=False)


def test_set_records_objects() -> None:
    inv = source_fn("    Segment.set(collection='rooms', id=5, properties={'beds': 2})\n").on_request(Request(b"{}"))
    assert inv.objects == [{"collection": "rooms", "id": "5", "properties": {"beds": 2}}]
    assert inv.events == []


def test_segment_outside_an_invocation_says_how_to_run() -> None:
    with pytest.raises(RuntimeError, match="outside a function invocation"):
        Segment.track(user_id="u", event="E")


# -- deterministic messageIds ----------------------------------------------------------------

STRIPE_EVENT = {"id": "evt_1", "type": "customer.created", "data": {"object": {"id": "cus_1", "email": "a@b.c"}}}
TWO_EVENTS = (
    "    body = request.json()\n"
    "    Segment.identify(user_id=body['data']['object']['id'])\n"
    "    Segment.track(user_id=body['data']['object']['id'], event='Customer Created')\n"
)


def test_message_ids_depend_on_content_not_on_where_it_was_read(tmp_path: Path) -> None:
    from segfn_kit import load_payloads

    (tmp_path / "archive-a").mkdir()
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    pretty = tmp_path / "archive-a" / "customer.created.json"
    pretty.write_text(json.dumps(STRIPE_EVENT, indent=4), encoding="utf-8")
    envelope = tmp_path / "elsewhere" / "deep" / "other-name.json"
    envelope.write_text(json.dumps({
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(STRIPE_EVENT, separators=(",", ":")),
        "received_at": "2024-01-01T00:00:00Z",
    }), encoding="utf-8")
    fn = source_fn(TWO_EVENTS)
    ids = []
    for path in (pretty, envelope):
        row = load_payloads(path).iloc[0]
        from segfn_kit._payloads import request_from_row

        events = fn.on_request(request_from_row(row)).events
        ids.append([e["messageId"] for e in events])
    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 2  # one per call position
    # run again: the same ids
    again = fn.on_request(Request(json.dumps(STRIPE_EVENT).encode())).events
    assert [e["messageId"] for e in again] == ids[0]


def test_a_different_payload_gives_different_ids() -> None:
    fn = source_fn(TWO_EVENTS)
    other = json.loads(json.dumps(STRIPE_EVENT))
    other["id"] = "evt_2"
    a = [e["messageId"] for e in fn.on_request(Request(json.dumps(STRIPE_EVENT).encode())).events]
    b = [e["messageId"] for e in fn.on_request(Request(json.dumps(other).encode())).events]
    assert not set(a) & set(b)


def test_ids_the_function_sets_are_kept() -> None:
    events = emit("Segment.track(user_id='u', event='E', message_id='stripe-evt_1')")
    assert events[0]["messageId"] == "stripe-evt_1"


# -- errors and outcomes ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["EventNotSupported", "InvalidEventPayload", "ValidationError", "RetryError", "DropEvent"])
def test_the_five_errors_are_outcomes(name: str) -> None:
    inv = source_fn(f"    Segment.track(user_id='u', event='E')\n    raise {name}('because')\n").on_request(Request(b"{}"))
    assert inv.outcome == name
    assert inv.error == f"{name}: because"
    assert inv.error_line == 5
    assert [e["event"] for e in inv.events] == ["E"]  # emitted before the error, kept for display
    assert inv.retryable is (name == "RetryError")


def test_subclasses_keep_their_parents_meaning_and_other_errors_are_error() -> None:
    fn = Function.from_source(
        "from segfn_kit.runtime import EventNotSupported\n"
        "class Unmapped(EventNotSupported):\n    pass\n"
        "def on_request(request, settings):\n"
        "    if request.json().get('x'):\n        raise Unmapped('x')\n"
        "    return {}['missing']\n"
    )
    assert fn.on_request(Request(b'{"x": 1}')).outcome == "EventNotSupported"
    inv = fn.on_request(Request(b"{}"))
    assert (inv.outcome, inv.error, inv.error_line) == ("error", "KeyError: 'missing' (<function>, line 7)", 7)


def test_a_slow_function_times_out_even_if_it_catches_exceptions() -> None:
    fn = source_fn(
        "    import time\n"
        "    Segment.track(user_id='u', event='Before')\n"
        "    try:\n        time.sleep(5)\n    except Exception:\n        pass\n"
        "    Segment.track(user_id='u', event='After')\n"
    )
    inv = fn.on_request(Request(b"{}"), timeout=0.2)
    assert inv.outcome == "error" and inv.timed_out and inv.retryable
    assert "ran past its 0.2 s limit" in (inv.error or "")
    assert [e["event"] for e in inv.events] == ["Before"]


def test_timeouts_work_off_the_main_thread() -> None:
    fn = source_fn("    import time\n    time.sleep(2)\n")
    box: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: box.setdefault("inv", fn.on_request(Request(b"{}"), timeout=0.2)))
    worker.start()
    worker.join(5)
    assert box["inv"].timed_out


# -- loading ---------------------------------------------------------------------------------


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.py"
    path.write_text("def on_request(request, settings):\n    x = (\n\n", encoding="utf-8")
    with pytest.raises(FunctionLoadError) as info:
        Function.from_file(path)
    assert info.value.line == 2
    assert str(info.value).startswith(f"{path}, line 2: syntax error")


def test_import_error_names_the_line() -> None:
    with pytest.raises(FunctionLoadError) as info:
        Function.from_source("import os\nimport not_a_module_anywhere\ndef on_request(r, s):\n    pass\n", "fn.py")
    assert info.value.line == 2
    assert "ModuleNotFoundError" in str(info.value) and "not_a_module_anywhere" in str(info.value)


def test_no_handler_says_what_to_define_and_spots_javascript_names() -> None:
    with pytest.raises(FunctionLoadError, match="defines no handler: a source function defines on_request"):
        Function.from_source("x = 1\n")
    with pytest.raises(FunctionLoadError, match=r"onRequest \(rename it on_request\)"):
        Function.from_source("def onRequest(request, settings):\n    pass\n")


def test_missing_file() -> None:
    with pytest.raises(FunctionLoadError, match="cannot read the function file"):
        Function.from_file("/nonexistent/fn.py")


def test_kinds_and_wrong_entry_points() -> None:
    dest = Function.from_source("def on_track(event, settings):\n    return event\n")
    assert dest.kind == "destination"
    assert dest.on_event({"type": "identify"}).outcome == "EventNotSupported"
    with pytest.raises(TypeError, match="destination function"):
        dest.on_request(Request(b"{}"))
    assert source_fn("    pass\n").kind == "source"


def test_a_function_survives_deep_copies() -> None:
    import copy

    fn = source_fn("    pass\n")
    assert copy.deepcopy({"f": fn})["f"] is fn


# -- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["stripe", "github", "shopify", "zendesk", "hmac-sha256"])
def test_sign_then_verify(scheme: str) -> None:
    body = b'{"id":"evt_1"}'
    headers = sign(scheme, "s3cret", body, timestamp=1_700_000_000)
    assert verify_signature(scheme, "s3cret", headers, body, now=1_700_000_010)
    check = verify_signature(scheme, "s3cret", headers, body + b" ", now=1_700_000_010)
    assert not check and check.reason == "signature mismatch"
    assert not verify_signature(scheme, "other", headers, body, now=1_700_000_010)


def test_stripe_signatures_go_stale() -> None:
    headers = sign("stripe", "whsec_x", b"{}", timestamp=1_700_000_000)
    check = verify_signature("stripe", "whsec_x", headers, b"{}", now=1_700_000_000 + 301)
    assert not check and check.reason.startswith("stale")
    assert verify_signature("stripe", "whsec_x", headers, b"{}", tolerance=0)


# -- weight ----------------------------------------------------------------------------------


def test_the_runtime_imports_nothing_heavy() -> None:
    code = (
        "import sys, segfn_kit.runtime\n"
        "heavy = [m for m in ('pandas', 'pydantic', 'ipywidgets', 'IPython', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unused_import_of_event_not_supported_is_the_same_class() -> None:
    from segfn_kit.runtime._errors import EventNotSupported as Same

    assert Same is EventNotSupported


def test_sys_exit_fails_only_its_invocation() -> None:
    inv = source_fn("    import sys\n    sys.exit(3)\n").on_request(Request(b"{}"))
    assert inv.outcome == "error"
    assert inv.error == "SystemExit: the function called sys.exit(3); raise one of the five Segment errors instead (<function>, line 5)"


def test_message_id_none_means_make_one_as_analytics_python_does() -> None:
    events = emit("Segment.track(user_id='u', event='E', message_id=None)")
    assert isinstance(events[0]["messageId"], str) and len(events[0]["messageId"]) == 36


def test_async_handlers_are_awaited() -> None:
    fn = Function.from_source(
        "import asyncio\nfrom segfn_kit.runtime import Segment, RetryError\n"
        "async def on_request(request, settings):\n"
        "    await asyncio.sleep(0)\n"
        "    if request.json().get('retry'):\n        raise RetryError('later')\n"
        "    Segment.track(user_id='u', event='Async')\n"
    )
    inv = fn.on_request(Request(b"{}"))
    assert inv.outcome == "ok" and [e["event"] for e in inv.events] == ["Async"]
    assert fn.on_request(Request(b'{"retry": true}')).outcome == "RetryError"


def test_async_handlers_run_inside_a_running_event_loop() -> None:
    import asyncio

    fn = Function.from_source(
        "from segfn_kit.runtime import Segment\n"
        "async def on_request(request, settings):\n    Segment.identify(user_id='u')\n"
    )

    async def in_a_loop() -> Any:
        return fn.on_request(Request(b"{}"))

    inv = asyncio.run(in_a_loop())
    assert inv.outcome == "ok" and inv.events[0]["type"] == "identify"


def test_message_ids_come_from_the_body_as_received_not_as_the_function_changed_it() -> None:
    plain = Function.from_source(
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    Segment.track(user_id='u', event='E')\n"
    )
    mutating = Function.from_source(
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    body = request.json()\n"
        "    body.pop('noise')\n"
        "    Segment.track(user_id='u', event='E')\n"
    )
    body = b'{"id": "evt_1", "noise": [1, 2, 3]}'
    first = plain.on_request(Request(body)).events[0]["messageId"]
    assert mutating.on_request(Request(body)).events[0]["messageId"] == first
