"""The Segment spec: models, validate() and validate_object()."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pytest

from segfn_kit.spec import (
    MAX_EVENT_BYTES,
    Alias,
    Group,
    Identify,
    Issue,
    Page,
    Screen,
    SetObject,
    Track,
    validate,
    validate_object,
)

# -- what analytics-python 2.x sends ---------------------------------------------------------


def analytics_python_message(kind: str, **fields: Any) -> dict[str, Any]:
    """A message built the way analytics-python 2.x's Client._enqueue builds it.

    Client.track/identify/... put every argument in (None when not given), then
    _enqueue defaults timestamp to now (UTC, ISO 8601 with milliseconds), messageId to a
    uuid4, integrations to {}, overwrites context.library, and stringifies the ids.
    """
    msg: dict[str, Any] = {
        "type": kind,
        "integrations": fields.pop("integrations", None) or {},
        "anonymousId": fields.pop("anonymous_id", None),
        "userId": fields.pop("user_id", None),
        "context": fields.pop("context", None) or {},
        "timestamp": fields.pop("timestamp", None),
        "messageId": fields.pop("message_id", None),
    }
    for name, value in fields.items():
        camel = {"group_id": "groupId", "previous_id": "previousId"}.get(name, name)
        msg[camel] = value
    timestamp = msg["timestamp"] or dt.datetime.now(dt.UTC)
    if timestamp.tzinfo is None:  # guess_timezone
        timestamp = timestamp.replace(tzinfo=dt.UTC)
    msg["timestamp"] = timestamp.isoformat(timespec="milliseconds")
    msg["messageId"] = str(msg["messageId"] or uuid.uuid4())
    msg["context"]["library"] = {"name": "analytics-python", "version": "2.3.3"}
    for key in ("userId", "anonymousId"):
        if msg[key] is not None:
            msg[key] = str(msg[key])
    return msg


ANALYTICS_PYTHON_CALLS = [
    ("identify", {"user_id": "u-42", "traits": {"email": "jenny@example.com", "plan": "pro"}}),
    ("identify", {"anonymous_id": uuid.uuid4(), "traits": {}}),
    ("track", {"user_id": 42, "event": "Order Completed",
               "properties": {"revenue": 12.5, "products": [{"sku": "A-1"}]}}),
    ("track", {"anonymous_id": "anon-1", "event": "Viewed", "properties": {},
               "timestamp": dt.datetime(2024, 1, 31, 12, 0)}),
    ("track", {"user_id": "u", "event": "E", "context": {"ip": "203.0.113.9"},
               "integrations": {"All": False, "Mixpanel": True, "Amplitude": {"session_id": 1}},
               "message_id": "order-1234"}),
    ("page", {"user_id": "u", "category": "Docs", "name": "Quick start", "properties": {"path": "/docs"}}),
    ("page", {"anonymous_id": "a", "name": None, "category": None, "properties": {}}),
    ("screen", {"user_id": "u", "name": "Home", "properties": {}}),
    ("group", {"user_id": "u", "group_id": 1001, "traits": {"name": "Acme"}}),
    ("alias", {"previous_id": "anon-1", "user_id": "u-42"}),
]


@pytest.mark.parametrize(("kind", "fields"), ANALYTICS_PYTHON_CALLS)
def test_everything_analytics_python_sends_is_valid(kind: str, fields: dict[str, Any]) -> None:
    message = analytics_python_message(kind, **dict(fields))
    assert validate(message) == []


def test_analytics_python_messages_are_their_models() -> None:
    message = analytics_python_message("track", user_id="u", event="E", properties={"a": 1})
    track = Track.model_validate(message, by_name=False)
    assert (track.user_id, track.event, track.properties) == ("u", "E", {"a": 1})
    assert track.context is not None and track.context["library"]["name"] == "analytics-python"


# -- the models ------------------------------------------------------------------------------


def test_models_dump_camel_case_and_read_snake_case_in_python() -> None:
    assert Group(user_id="u", group_id="g").model_dump(by_alias=True, exclude_none=True) == {
        "userId": "u", "type": "group", "groupId": "g",
    }
    assert Alias(previous_id="a", user_id="b").previous_id == "a"
    assert Page(anonymous_id="x", name="Home").type == "page"
    assert Screen(user_id="u").type == "screen"
    assert Identify(user_id="u").traits is None
    assert SetObject(collection="rooms", id="r1").properties == {}


# -- the rules -------------------------------------------------------------------------------


def codes(event: Any) -> list[tuple[str, str]]:
    return [(i.field, i.code) for i in validate(event)]


def test_valid_track() -> None:
    assert validate({"type": "track", "userId": "u1", "event": "Signed Up"}) == []


@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen", "group"])
def test_every_call_needs_a_user_or_anonymous_id(kind: str) -> None:
    event = {"type": kind, **{"track": {"event": "E"}, "group": {"groupId": "g"}}.get(kind, {})}
    issues = validate(event)
    assert [(i.field, i.code) for i in issues] == [("userId", "missing_id")]
    assert "userId" in issues[0].message and "anonymous_id" in issues[0].message


def test_empty_ids_are_missing_ids() -> None:
    assert codes({"type": "track", "userId": "", "event": "E"}) == [("userId", "empty"), ]
    assert codes({"type": "track", "userId": "  ", "anonymousId": "a", "event": "E"}) == [("userId", "empty")]
    # an empty anonymousId beside a good userId is still a mistake to point at
    assert codes({"type": "track", "userId": "u", "anonymousId": "", "event": "E"}) == [("anonymousId", "empty")]


def test_ids_must_be_strings() -> None:
    issues = validate({"type": "identify", "userId": 42})
    assert [(i.field, i.code) for i in issues] == [("userId", "wrong_type")]
    assert "str(" in issues[0].message
    # analytics-python sends numeric group and previous ids unchanged, and Segment takes them
    assert validate({"type": "group", "userId": "u", "groupId": 1001}) == []
    assert validate({"type": "alias", "userId": "u", "previousId": 7}) == []
    assert codes({"type": "group", "userId": "u", "groupId": True}) == [("groupId", "wrong_type")]


def test_required_fields_per_type() -> None:
    assert codes({"type": "track", "userId": "u"}) == [("event", "missing")]
    assert codes({"type": "group", "userId": "u"}) == [("groupId", "missing")]
    assert codes({"type": "alias", "userId": "u"}) == [("previousId", "missing")]
    # alias needs userId itself; an anonymousId does not do
    assert codes({"type": "alias", "previousId": "a", "anonymousId": "x"}) == [("userId", "missing")]
    message = validate({"type": "track", "userId": "u"})[0].message
    assert "Segment.track(event=" in message


def test_unix_timestamps_get_a_conversion_hint() -> None:
    issues = validate({"type": "track", "userId": "u", "event": "E", "timestamp": 1706702400})
    assert [(i.field, i.code) for i in issues] == [("timestamp", "unix_timestamp")]
    assert "2024-01-31T12:00:00+00:00" in issues[0].message
    assert "datetime.fromtimestamp" in issues[0].message
    # as a string of digits, and in milliseconds, too
    assert codes({"type": "track", "userId": "u", "event": "E", "sentAt": "1706702400"}) == [("sentAt", "unix_timestamp")]
    millis = validate({"type": "track", "userId": "u", "event": "E", "timestamp": 1706702400000})
    assert "2024-01-31T12:00:00+00:00" in millis[0].message


@pytest.mark.parametrize("value", [
    "2024-01-31T12:00:00Z", "2024-01-31T12:00:00.123+02:00", "2024-01-31T12:00:00.123456789Z",
    "2024-01-31", "2024-01-31T12:00:00",
])
def test_iso_8601_timestamps_pass(value: str) -> None:
    assert validate({"type": "track", "userId": "u", "event": "E", "timestamp": value}) == []


@pytest.mark.parametrize("value", ["yesterday", "31/01/2024", "2024-13-45T00:00:00Z", ""])
def test_other_timestamp_strings_fail(value: str) -> None:
    issues = validate({"type": "track", "userId": "u", "event": "E", "originalTimestamp": value})
    assert [(i.field, i.code) for i in issues] == [("originalTimestamp", "not_iso8601")]
    assert "ISO 8601" in issues[0].message


def test_message_id_under_100_characters() -> None:
    assert validate({"type": "track", "userId": "u", "event": "E", "messageId": "m" * 99}) == []
    issues = validate({"type": "track", "userId": "u", "event": "E", "messageId": "m" * 100})
    assert [(i.field, i.code) for i in issues] == [("messageId", "message_id_too_long")]
    assert "100" in issues[0].message


def test_32_kb_per_event() -> None:
    base = {"type": "track", "userId": "u", "event": "E", "properties": {"blob": ""}}
    overhead = len('{"type":"track","userId":"u","event":"E","properties":{"blob":""}}')
    fits = {**base, "properties": {"blob": "x" * (MAX_EVENT_BYTES - overhead)}}
    assert validate(fits) == []
    over = {**base, "properties": {"blob": "x" * (MAX_EVENT_BYTES - overhead + 1)}}
    issues = validate(over)
    assert [(i.field, i.code) for i in issues] == [("event", "too_large")]
    assert "properties.blob" in issues[0].message and "32 KB" in issues[0].message


def test_size_counts_utf8_bytes_not_characters() -> None:
    event = {"type": "track", "userId": "u", "event": "E", "properties": {"t": "é" * 17000}}
    assert [i.code for i in validate(event)] == ["too_large"]


@pytest.mark.parametrize("field", ["context", "integrations", "properties"])
def test_objects_must_be_objects(field: str) -> None:
    issues = validate({"type": "track", "userId": "u", "event": "E", field: ["a"]})
    assert [(i.field, i.code) for i in issues] == [(field, "not_an_object")]
    assert "a list" in issues[0].message


def test_traits_must_be_an_object() -> None:
    assert codes({"type": "identify", "userId": "u", "traits": "vip"}) == [("traits", "not_an_object")]


def test_none_stays_allowed_where_analytics_python_puts_it() -> None:
    assert validate({"type": "track", "userId": "u", "anonymousId": None, "event": "E",
                     "properties": None, "context": None}) == []


def test_unknown_and_missing_types() -> None:
    assert codes({"type": "purchase", "userId": "u"}) == [("type", "unknown_type")]
    assert codes({"userId": "u"}) == [("type", "missing_type")]
    assert codes({"type": "delete", "userId": "u"}) == [("type", "unsupported_type")]
    assert "identify, track, page, screen, group, alias" in validate({"type": "x"})[0].message


def test_not_a_dict() -> None:
    assert codes(["track"]) == [("event", "not_an_object")]
    assert codes(None) == [("event", "not_an_object")]


def test_snake_case_keys_say_what_was_meant() -> None:
    issues = validate({"type": "track", "user_id": "u1", "event": "Signed Up", "message_id": "m"})
    assert [(i.field, i.code) for i in issues] == [
        ("userId", "missing_id"), ("user_id", "unknown_field"), ("message_id", "unknown_field"),
    ]
    assert "did you mean userId" in issues[1].message
    assert "did you mean messageId" in issues[2].message
    assert "did you mean userId" in validate({"type": "identify", "userID": "u", "anonymousId": "a"})[0].message


def test_fields_of_another_type_and_stray_top_level_keys() -> None:
    issues = validate({"type": "identify", "userId": "u", "event": "E", "email": "a@b.c"})
    assert [(i.field, i.code) for i in issues] == [("event", "unknown_field"), ("email", "unknown_field")]
    assert "belongs to track" in issues[0].message
    assert "put it in traits" in issues[1].message


def test_tolerated_client_keys_pass() -> None:
    event = {"type": "track", "userId": "u", "event": "E", "writeKey": "w", "version": 2,
             "channel": "server", "receivedAt": "2024-01-31T12:00:00Z"}
    assert validate(event) == []


def test_integration_values() -> None:
    issues = validate({"type": "track", "userId": "u", "event": "E", "integrations": {"All": 1}})
    assert [(i.field, i.code) for i in issues] == [("integrations.All", "wrong_type")]


def test_every_problem_at_once() -> None:
    event = {"type": "group", "groupId": "", "traits": [], "timestamp": 1, "messageId": "m" * 120}
    fields = {i.field for i in validate(event)}
    assert fields == {"userId", "groupId", "traits", "timestamp", "messageId"}


def test_values_json_cannot_carry() -> None:
    issues = validate({"type": "track", "userId": "u", "event": "E", "properties": {"x": object()}})
    assert [(i.field, i.code) for i in issues] == [("properties.x", "not_serialisable")]


def test_index_is_copied_and_issue_is_readable() -> None:
    issue = validate({"type": "track", "userId": "u"}, index=3)[0]
    assert issue.event_index == 3
    assert str(issue).startswith("events[3].event: event is missing")
    assert issue.to_dict() == {"event_index": 3, "field": "event", "code": "missing", "message": issue.message}
    with pytest.raises(AttributeError):
        issue.code = "x"  # type: ignore[misc]
    assert isinstance(issue, Issue)


def test_validation_does_not_change_the_event() -> None:
    event = {"type": "track", "userId": "u", "event": "E", "properties": {"d": decimal.Decimal("1.5")}}
    before = repr(event)
    validate(event)
    assert repr(event) == before


# -- Objects ---------------------------------------------------------------------------------


def test_valid_object() -> None:
    assert validate_object({"collection": "rooms", "id": "r1", "properties": {"beds": 2}}) == []


def test_object_problems() -> None:
    issues = validate_object({"collection": "Rooms", "id": 5, "properties": [], "extra": 1}, index=2)
    found = {(i.field, i.code) for i in issues}
    assert found == {
        ("objects[2].id", "wrong_type"),
        ("objects[2].properties", "not_an_object"),
        ("objects[2].extra", "unknown_field"),
        ("objects[2].collection", "collection_not_lower_case"),
    }
    lower = next(i for i in issues if i.code == "collection_not_lower_case")
    assert "'rooms'" in lower.message


def test_object_needs_collection_and_id() -> None:
    found = {(i.field, i.code) for i in validate_object({"properties": {}})}
    assert found == {("objects.collection", "missing"), ("objects.id", "missing")}
    assert [i.code for i in validate_object({"collection": "", "id": "x"})] == ["empty"]
    assert [i.code for i in validate_object("rooms")] == ["not_an_object"]


# -- the plain check: validate() asks the models only about values it cannot vouch for ------


def test_the_plain_check_knows_every_field_of_every_model() -> None:
    from segfn_kit.spec import _KEYS_BY_TYPE, _PLAIN_CHECKS, _PLAIN_REQUIRED

    for model in (Identify, Track, Page, Screen, Group, Alias):
        kind = model.model_fields["type"].default
        aliases = {f.alias or name for name, f in model.model_fields.items()}
        required = {f.alias or name for name, f in model.model_fields.items() if f.is_required()}
        assert aliases <= _KEYS_BY_TYPE[kind] and aliases <= _PLAIN_CHECKS.keys(), kind
        assert set(_PLAIN_REQUIRED[kind]) == required, kind


class _Name(str):
    pass


_VALUES = [
    None, "", " ", "u1", "  u1 ", "x" * 99, "x" * 100, _Name("u1"), 0, 7, 2**70, 1.5, float("nan"), True,
    {}, {"a": 1}, [], ["u1"], "2024-01-31T12:00:00Z", "2024-01-31T12:00:00.123+01:00", "1706702400",
    "20240131", "yesterday", "track", b"u1",
]


def _events() -> Any:
    from hypothesis import strategies as st

    from segfn_kit.spec import _ALL_KEYS

    # a valid event of each type with a few fields set to any of the values above
    valid = {
        "identify": {"userId": "u1"}, "track": {"userId": "u1", "event": "E"}, "page": {"anonymousId": "a1"},
        "screen": {"userId": "u1", "name": "Home"}, "group": {"userId": "u1", "groupId": "g1"},
        "alias": {"userId": "u1", "previousId": "p1"},
    }
    keys = st.sampled_from([*sorted(_ALL_KEYS - {"type"}), "user_id", "extra", "version"])
    return st.builds(
        lambda kind, fields, dropped: {k: v for k, v in {"type": kind, **valid[kind], **fields}.items() if k != dropped},
        st.sampled_from(sorted(valid)),
        st.dictionaries(keys, st.sampled_from(_VALUES), max_size=3),
        st.sampled_from([None, "userId", "anonymousId", "event", "groupId", "previousId"]),
    )


def test_the_plain_check_vouches_only_for_what_the_models_accept() -> None:
    from hypothesis import given, settings

    import segfn_kit.spec as spec

    @settings(max_examples=3000, deadline=None, database=None)
    @given(_events())
    def check(event: dict[str, Any]) -> None:
        plain = spec._plainly_valid(event, event["type"])
        if plain:
            spec._event_adapter().validate_python(event, by_name=False)  # raises if not accepted
        found = [i.to_dict() for i in validate(event, index=0)]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(spec, "_plainly_valid", lambda event, kind: False)
            assert [i.to_dict() for i in validate(event, index=0)] == found

    check()
    assert spec._plainly_valid({"type": "track", "userId": "u1", "event": "E"}, "track")
