"""The runtime's Segment.* calls against analytics-python's, field by field.

The same calls go through ``segment.analytics.Client(write_key, send=False)`` (which builds
the message and returns it without sending) and through the runtime. Each message is
compared after JSON encoding, with the differences documented in docs/ARCHITECTURE.md
("analytics-python parity") applied, and nothing else:

- ``messageId``: analytics-python makes a random one; the runtime derives it from the
  payload (given ids must be equal);
- ``timestamp``: analytics-python defaults it to now; the runtime leaves it out (Segment sets
  ``receivedAt``). Given datetimes must be the same instant (analytics-python writes
  milliseconds, the runtime Python's ``isoformat``);
- ``context.library``: added by analytics-python only;
- keys not passed: analytics-python sends ``null`` (ids, name, category) or ``{}``
  (properties, traits, context, integrations); the runtime leaves them out;
- NaN and infinities: ``null`` in the runtime (with an issue), kept by analytics-python
  (which then writes invalid JSON);
- sets: sorted by the runtime, in set order by analytics-python;
- values JSON cannot carry (an object): analytics-python drops the key, the runtime sends
  the value's text (with an issue);
- ``groupId`` and ``previousId`` numbers: strings here (as the spec types them), numbers there;
- ISO 8601 strings as ``timestamp``: analytics-python refuses them, the runtime sends them.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
from typing import Any

import pytest

from segfn_kit.runtime import Function, Request

analytics = pytest.importorskip("segment.analytics")


class Plan(enum.Enum):
    PRO = "pro"


class Opaque:
    def __str__(self) -> str:
        return "opaque"


AWARE = dt.datetime(2024, 3, 1, 12, 30, 15, 250000, tzinfo=dt.UTC)
NAIVE = dt.datetime(2023, 7, 4, 9, 0, 0)
PLUS2 = dt.datetime(2024, 3, 1, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))

# (method, keyword arguments): sent by both, refused by both, or a documented difference
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("track", {"user_id": "u1", "event": "Signed Up"}),
    ("track", {"user_id": "u1", "event": "Paid", "properties": {"amount": 12.5, "currency": "usd"}}),
    ("track", {"user_id": 42, "event": "Numeric Id"}),
    ("track", {"anonymous_id": "a-1", "event": "Anonymous"}),
    ("track", {"user_id": "u1", "event": "None Props", "properties": None}),
    ("track", {"user_id": "u1", "event": "None Context", "context": None, "integrations": None}),
    ("track", {"user_id": "u1", "event": "Decimal", "properties": {"price": decimal.Decimal("9.99")}}),
    ("track", {"user_id": "u1", "event": "Enum", "properties": {"plan": Plan.PRO}}),
    ("track", {"user_id": "u1", "event": "Tuple", "properties": {"t": (1, 2, 3)}}),
    ("track", {"user_id": "u1", "event": "Set", "properties": {"tags": {"b", "a", "c"}}}),
    ("track", {"user_id": "u1", "event": "Nested", "properties": {"a": {"b": [1, {"c": None}]}}}),
    ("track", {"user_id": "u1", "event": "Date", "properties": {"day": dt.date(2024, 1, 31)}}),
    ("track", {"user_id": "u1", "event": "Aware", "properties": {"at": AWARE}}),
    ("track", {"user_id": "u1", "event": "Naive In Props", "properties": {"at": NAIVE}}),
    ("track", {"user_id": "u1", "event": "Timestamp", "timestamp": AWARE}),
    ("track", {"user_id": "u1", "event": "Naive Timestamp", "timestamp": NAIVE}),
    ("track", {"user_id": "u1", "event": "Offset Timestamp", "timestamp": PLUS2}),
    ("track", {"user_id": "u1", "event": "Given Id", "message_id": "m-123"}),
    ("track", {"user_id": "u1", "event": "Int Id", "message_id": 7}),
    ("track", {"user_id": "u1", "event": "NaN", "properties": {"x": math.nan}}),
    ("track", {"user_id": "u1", "event": "Bytes", "properties": {"b": b"caf\xc3\xa9"}}),
    ("track", {"user_id": "u1", "event": "Unicode é ☕", "properties": {"name": "Zoë"}}),
    ("track", {"user_id": "u1", "event": "Context", "context": {"ip": "1.2.3.4"}, "integrations": {"All": False}}),
    ("track", {"user_id": "u1", "event": "Opaque", "properties": {"o": Opaque(), "k": 1}}),
    ("track", {"user_id": "u1", "event": "Empty Name Ok", "properties": {}}),
    ("track", {"user_id": "u1", "event": ""}),
    ("identify", {"user_id": "u1", "traits": {"email": "a@example.com"}}),
    ("identify", {"user_id": "u1", "traits": None}),
    ("identify", {"anonymous_id": "a-2"}),
    ("group", {"user_id": "u1", "group_id": "g1", "traits": {"plan": "pro"}}),
    ("group", {"user_id": "u1", "group_id": 99}),
    ("page", {"user_id": "u1", "name": "Home", "category": "Docs", "properties": {"path": "/"}}),
    ("page", {"user_id": "u1"}),
    ("screen", {"user_id": "u1", "name": "Settings"}),
    ("alias", {"previous_id": "a-1", "user_id": "u1"}),
    ("alias", {"previous_id": 5, "user_id": 6}),
    # refused by both
    ("track", {"user_id": "u1"}),
    ("track", {"user_id": "", "event": "Empty User"}),
    ("track", {"event": "No User"}),
    ("track", {"user_id": None, "anonymous_id": None, "event": "None Users"}),
    ("track", {"user_id": "u1", "event": 5}),
    ("track", {"user_id": "u1", "event": "List Props", "properties": [1, 2]}),
    ("track", {"user_id": {"id": 1}, "event": "Dict User"}),
    ("track", {"user_id": "u1", "event": "Int Timestamp", "timestamp": 1700000000}),
    ("identify", {"traits": {"email": "x@example.com"}}),
    ("identify", {"user_id": "u1", "traits": "not a dict"}),
    ("identify", {"user_id": "u1", "context": "ctx"}),
    ("group", {"user_id": "u1"}),
    ("alias", {"user_id": "u1"}),
    ("alias", {"previous_id": "a-1"}),
    ("page", {"user_id": "u1", "name": 3}),
    ("screen", {"anonymous_id": "", "name": "S"}),
]

# keys analytics-python sends although the call did not pass them
_ABSENT_WHEN_NOT_PASSED = {"userId", "anonymousId", "name", "category", "properties", "traits",
                           "context", "integrations", "previousId", "groupId"}


def _through_analytics(method: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    client = analytics.Client("parity-write-key", send=False)
    try:
        ok, msg = getattr(client, method)(**kwargs)
    except AssertionError:
        return None
    assert ok
    return dict(msg)


def _through_runtime() -> tuple[list[dict[str, Any] | None], list[list[dict[str, Any]]]]:
    """Run every call once in one invocation; map each call to its event or ``None``."""
    code = "from segfn_kit.runtime import Segment\n"
    code += "def on_request(request, settings):\n    for method, kwargs in CALLS:\n        getattr(Segment, method)(**kwargs)\n"
    fn = Function.from_source(code)
    fn.module.__dict__["CALLS"] = CALLS
    inv = fn.on_request(Request(b'{"parity": true}'))
    assert inv.outcome == "ok", inv.error
    refused = {p["call_index"] for p in inv.problems if p["code"] == "refused_call"}
    events = iter(inv.events)
    out: list[dict[str, Any] | None] = []
    for i in range(len(CALLS)):
        out.append(None if i in refused else next(events))
    assert next(events, None) is None
    # the issues of each sent event, by its position among the sent events
    issues: list[list[dict[str, Any]]] = [[] for _ in inv.events]
    for p in inv.problems:
        if p.get("event_index") is not None:
            issues[p["event_index"]].append(p)
    return out, issues


def _as_json(value: Any) -> Any:
    def default(obj: Any) -> Any:
        if isinstance(obj, dt.date):
            return obj.isoformat()
        raise TypeError(type(obj).__name__)

    return json.loads(json.dumps(value, default=default))


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_calls_match_analytics_python_but_for_the_documented_differences() -> None:
    ours_all, issues_all = _through_runtime()
    sent_index = 0
    compared = refused = 0
    for (method, kwargs), ours in zip(CALLS, ours_all, strict=True):
        theirs = _through_analytics(method, kwargs)
        label = f"{method}({kwargs})"
        if theirs is None or ours is None:
            assert theirs is None and ours is None, f"{label}: analytics-python {'refused' if theirs is None else 'sent'} it, the runtime {'refused' if ours is None else 'sent'} it"
            refused += 1
            continue
        issues = issues_all[sent_index]
        sent_index += 1
        compared += 1
        theirs = _as_json(theirs)
        ours = _as_json(ours)
        # messageId: random there, derived here; a given one is kept by both
        if "message_id" in kwargs:
            assert ours["messageId"] == theirs["messageId"] == str(kwargs["message_id"]), label
        else:
            assert isinstance(ours["messageId"], str) and ours["messageId"], label
        del ours["messageId"], theirs["messageId"]
        # timestamp: defaulted to now there only; a given one is the same instant
        if "timestamp" in kwargs:
            assert _instant(ours.pop("timestamp")) == _instant(theirs.pop("timestamp")), label
        else:
            assert "timestamp" not in ours, label
            theirs.pop("timestamp")
        # context.library: analytics-python's own
        assert theirs["context"].pop("library")["name"] == "analytics-python"
        # keys not passed: null or {} there, left out here
        for key in _ABSENT_WHEN_NOT_PASSED:
            if key in theirs and key not in ours:
                assert theirs.pop(key) in (None, {}), (label, key)
        props = kwargs.get("properties") or {}
        if any(isinstance(v, float) and math.isnan(v) for v in props.values()):
            # NaN: null here, with an issue naming the field; analytics-python keeps NaN
            assert ours["properties"]["x"] is None
            assert theirs["properties"]["x"] != theirs["properties"]["x"]
            assert [i["code"] for i in issues] == ["not_finite"]
            ours["properties"]["x"] = theirs["properties"]["x"] = None
        if any(isinstance(v, set) for v in props.values()):
            assert ours["properties"]["tags"] == sorted(theirs["properties"]["tags"])
            theirs["properties"]["tags"] = sorted(theirs["properties"]["tags"])
        if any(isinstance(v, Opaque) for v in props.values()):
            # an object: dropped there, its text here with an issue
            assert "o" not in theirs["properties"] and ours["properties"].pop("o") == "opaque"
            assert [i["code"] for i in issues] == ["not_serialisable"]
        for key in ("groupId", "previousId"):
            # numbers: strings here (the spec's type), left as numbers there
            if isinstance(theirs.get(key), int | float):
                assert ours[key] == str(theirs[key]), label
                theirs[key] = ours[key]
        assert ours == theirs, label
    assert compared >= 30 and refused >= 15, (compared, refused)


def test_refused_calls_are_issues_in_the_preview_and_keep_later_ids() -> None:
    from segfn_kit import run

    fn = (
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    Segment.track(user_id='u1', event='First')\n"
        "    Segment.track(user_id='', event='Refused')\n"
        "    Segment.track(user_id='u1', event='Third')\n"
    )
    kept = (
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    Segment.track(user_id='u1', event='First')\n"
        "    Segment.track(user_id='u2', event='Second')\n"
        "    Segment.track(user_id='u1', event='Third')\n"
    )
    results = run(fn, [{"n": 1}], progress=False)
    row = results.iloc[0]
    assert row["outcome"] == "ok"
    assert [e["event"] for e in row["events"]] == ["First", "Third"]
    refused = [i for i in row["issues"] if i["code"] == "refused_call"]
    assert len(refused) == 1 and "call 2 was not sent" in refused[0]["message"]
    assert "user_id" in refused[0]["message"]
    # the third call keeps the id it has when the second is sent
    other = run(kept, [{"n": 1}], progress=False).iloc[0]
    assert row["events"][1]["messageId"] == other["events"][2]["messageId"]
