"""The Segment spec: pydantic models of the Tracking API's messages, and validation.

The models are the single source of truth for the wire format: snake_case fields with
camelCase aliases, and ``type`` as a literal so that :data:`Event` is a discriminated
union of :class:`Identify`, :class:`Track`, :class:`Page`, :class:`Screen`, :class:`Group`
and :class:`Alias`. :class:`SetObject` models a ``Segment.set`` record (Objects API).

:func:`validate` checks one spec dict and returns its problems as :class:`Issue` records,
each naming the field, what was wrong and what to do; an empty list means the event would
be accepted. The rules are the Tracking API's:

- every call needs ``userId`` or ``anonymousId`` (non-empty strings);
- ``track`` needs ``event``, ``group`` needs ``groupId``, ``alias`` needs ``previousId``
  and ``userId``;
- timestamps (``timestamp``, ``sentAt``, ``originalTimestamp``, ``receivedAt``) are
  ISO 8601 strings;
- ``messageId`` is under 100 characters;
- an event is at most 32 KB serialised;
- ``context``, ``integrations``, ``properties`` and ``traits`` are objects.

Unknown top-level keys are flagged too (Segment ignores them, so a ``user_id`` written in
snake_case silently loses the user).

Example:
    >>> from segfn_kit.spec import validate
    >>> validate({"type": "track", "userId": "u1", "event": "Signed Up"})
    []
    >>> for issue in validate({"type": "track", "user_id": "u1", "event": "Signed Up"}):
    ...     print(issue.field, issue.code)
    userId missing_id
    user_id unknown_field
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    TypeAdapter,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from segfn_kit.runtime._rules import MAX_EVENT_BYTES
from segfn_kit.runtime._segment import unix_time_hint

__all__ = [
    "EVENT_TYPES",
    "MAX_EVENT_BYTES",
    "MAX_MESSAGE_ID_LENGTH",
    "Alias",
    "Event",
    "Group",
    "Identify",
    "Issue",
    "Page",
    "Screen",
    "SetObject",
    "Track",
    "invocation_issues",
    "validate",
    "validate_object",
]

MAX_MESSAGE_ID_LENGTH = 99  # "under 100 characters"
EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_TIMESTAMP_FIELDS = ("timestamp", "sentAt", "originalTimestamp", "receivedAt")


# -- issues ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem of one event: which field, what kind, what to do.

    Attributes:
        event_index: the event's position among an invocation's events (``None`` when a
            single event was validated on its own).
        field: the field, as a dotted path (``userId``, ``properties.total``).
        code: a short machine-readable kind (``missing_id``, ``not_iso8601``, ...).
        message: a sentence a person can act on.

    Example:
        >>> issue = Issue(0, "event", "missing", "track events need an event name")
        >>> issue.to_dict()["code"]
        'missing'
        >>> str(issue)
        'events[0].event: track events need an event name'
    """

    event_index: int | None
    field: str
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """A plain dict with keys ``event_index``, ``field``, ``code``, ``message``."""
        return {
            "event_index": self.event_index,
            "field": self.field,
            "code": self.code,
            "message": self.message,
        }

    def __str__(self) -> str:
        where = self.field if self.event_index is None else f"events[{self.event_index}].{self.field}"
        return f"{where}: {self.message}"


# -- models ------------------------------------------------------------------------------


def _non_blank(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise PydanticCustomError("empty", "is an empty string")
    return value


def _iso8601(value: str | None) -> str | None:
    if value is not None and not _is_iso8601(value):
        raise PydanticCustomError("not_iso8601", "is not an ISO 8601 date-time")
    return value


def _short_id(value: str | None) -> str | None:
    if value is not None and len(value) > MAX_MESSAGE_ID_LENGTH:
        raise PydanticCustomError("too_long", "is 100 characters or more")
    return value


Id = Annotated[str, AfterValidator(_non_blank)]
"""A non-empty string id (``userId``, ``anonymousId``, ``groupId``, ``previousId``)."""
NumberOrId = Id | int | float
"""``groupId`` and ``previousId``: analytics-python sends numbers as they are (it
stringifies only ``userId`` and ``anonymousId``), and the Tracking API takes them."""
Timestamp = Annotated[str, AfterValidator(_iso8601)]
"""An ISO 8601 date-time string."""
MessageId = Annotated[str, AfterValidator(_non_blank), AfterValidator(_short_id)]
"""A deduplication key under 100 characters."""
JsonObject = InstanceOf[dict]  # type: ignore[type-arg]
"""An object of names to values; checked as a dict, not copied (events can be large)."""


class _Message(BaseModel):
    """Fields common to every Tracking API call."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        # snake_case names build models in Python; wire dicts are read by alias only
        validate_by_name=True,
        validate_by_alias=True,
        strict=True,
        extra="allow",
        frozen=True,
        # the validators run on dicts built by the runtime; nothing to revalidate
        revalidate_instances="never",
    )

    user_id: Id | None = None
    anonymous_id: Id | None = None
    message_id: MessageId | None = None
    timestamp: Timestamp | None = None
    sent_at: Timestamp | None = None
    original_timestamp: Timestamp | None = None
    received_at: Timestamp | None = None
    context: JsonObject | None = None
    integrations: JsonObject | None = None

    @model_validator(mode="after")
    def _has_an_id(self) -> _Message:
        if self.user_id is None and self.anonymous_id is None:
            raise PydanticCustomError("missing_id", "needs userId or anonymousId")
        return self


class Identify(_Message):
    """``identify``: who the user is.

    Example:
        >>> Identify(user_id="u1", traits={"plan": "pro"}).model_dump(by_alias=True, exclude_none=True)
        {'userId': 'u1', 'type': 'identify', 'traits': {'plan': 'pro'}}
    """

    type: Literal["identify"] = "identify"
    traits: JsonObject | None = None


class Track(_Message):
    """``track``: something the user did.

    Example:
        >>> Track(user_id="u1", event="Signed Up").event
        'Signed Up'
    """

    type: Literal["track"] = "track"
    event: Annotated[str, AfterValidator(_non_blank)]
    properties: JsonObject | None = None


class Page(_Message):
    """``page``: a web page view."""

    type: Literal["page"] = "page"
    name: str | None = None
    category: str | None = None
    properties: JsonObject | None = None


class Screen(_Message):
    """``screen``: a mobile screen view."""

    type: Literal["screen"] = "screen"
    name: str | None = None
    category: str | None = None
    properties: JsonObject | None = None


class Group(_Message):
    """``group``: the user belongs to an account or company."""

    type: Literal["group"] = "group"
    group_id: NumberOrId
    traits: JsonObject | None = None


class Alias(_Message):
    """``alias``: ``previousId`` and ``userId`` are the same person."""

    type: Literal["alias"] = "alias"
    previous_id: NumberOrId
    user_id: Id  # required here, unlike the other calls


Event = Annotated[Identify | Track | Page | Screen | Group | Alias, Field(discriminator="type")]
"""Any Tracking API message, discriminated by ``type``."""


class SetObject(BaseModel):
    """A ``Segment.set`` record (Objects API): an object upserted into a warehouse collection.

    Example:
        >>> SetObject(collection="rooms", id="r1", properties={"beds": 2}).collection
        'rooms'
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    collection: Annotated[str, AfterValidator(_non_blank)]
    id: Id
    properties: JsonObject = Field(default_factory=dict)


@lru_cache(maxsize=1)
def _event_adapter() -> TypeAdapter[Any]:
    return TypeAdapter(Event)


# -- validation --------------------------------------------------------------------------

# every key the Tracking API reads, per type (anything else is ignored by Segment)
_COMMON_KEYS = frozenset(
    {"type", "userId", "anonymousId", "messageId", "context", "integrations", *_TIMESTAMP_FIELDS}
)
# keys that clients add and Segment accepts without complaint
_TOLERATED_KEYS = frozenset({"version", "channel", "writeKey", "_metadata", "projectId", "options"})
_KEYS_BY_TYPE: dict[str, frozenset[str]] = {
    "identify": _COMMON_KEYS | {"traits"},
    "track": _COMMON_KEYS | {"event", "properties"},
    "page": _COMMON_KEYS | {"name", "category", "properties"},
    "screen": _COMMON_KEYS | {"name", "category", "properties"},
    "group": _COMMON_KEYS | {"groupId", "traits"},
    "alias": _COMMON_KEYS | {"previousId"},
}
_ALL_KEYS = frozenset().union(*_KEYS_BY_TYPE.values())
# "user_id", "userID", "UserId" -> "userId"
_NEAR_MISSES = {k.lower().replace("_", ""): k for k in _ALL_KEYS}
_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
_REQUIRED_HINTS = {
    ("track", "event"): 'a track needs an event name: Segment.track(event="Order Completed", ...)',
    ("group", "groupId"): "a group needs the group's id: Segment.group(group_id=..., ...)",
    ("alias", "previousId"): "an alias needs the id it replaces: Segment.alias(previous_id=..., user_id=...)",
    ("alias", "userId"): "an alias needs the new user id: Segment.alias(previous_id=..., user_id=...)",
}
_STRING_FIELDS = {"event", "name", "category", "type", "collection"}


def _is_iso8601(value: str) -> bool:
    # datetime.fromisoformat (3.11) reads the ISO 8601 forms Segment accepts: "Z", offsets,
    # any number of fraction digits. Bare digits parse as a basic-format date, but a
    # 10-digit string is far likelier a Unix time, so it is refused with a hint below.
    if len(value) < 8 or value.isdigit():
        return False
    try:
        _dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_TYPE_NAMES = {
    dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
    float: "a number", type(None): "null",
}


def _type_name(value: Any) -> str:
    name = type(value).__name__
    return _TYPE_NAMES.get(type(value)) or f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _message_for(kind: str, field: str, code: str, value: Any) -> tuple[str, str]:
    """(code, message) for one pydantic error on ``field`` of a ``kind`` event."""
    if code == "missing":
        hint = _REQUIRED_HINTS.get((kind, field), f"set {field}")
        return "missing", f"{field} is missing; {hint}"
    if code == "missing_id":
        return "missing_id", (
            "the event has neither userId nor anonymousId; the Tracking API rejects it. "
            "Pass user_id=... (or anonymous_id=... when the user is not known)"
        )
    if code == "empty":
        return "empty", f"{field} is an empty string; give it a value or leave it out"
    if code == "not_iso8601" or (field in _TIMESTAMP_FIELDS and code in ("string_type",)):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return "unix_timestamp", unix_time_hint(field, value)
        if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
            return "unix_timestamp", unix_time_hint(field, value)
        if isinstance(value, str):
            return "not_iso8601", (
                f"{field} is {value[:40]!r}, which is not an ISO 8601 date-time; "
                "send e.g. '2024-01-31T12:00:00Z' (datetime.isoformat() with a time zone)"
            )
        return "not_iso8601", f"{field} is {_type_name(value)}; send an ISO 8601 string such as '2024-01-31T12:00:00Z'"
    if code == "too_long":
        return "message_id_too_long", (
            f"{field} is {len(value)} characters; Segment needs under 100 to deduplicate. "
            "Leave message_id out (a stable id is derived from the payload) or use a shorter key"
        )
    if code in ("dict_type", "is_instance_of"):
        return "not_an_object", (
            f"{field} is {_type_name(value)}; it must be an object (dict) of names to values"
        )
    if code == "id_type":
        return "wrong_type", f"{field} is {_type_name(value)}; it must be a string id (or a number)"
    if code == "string_type":
        if field in _STRING_FIELDS:
            return "wrong_type", f"{field} is {_type_name(value)}; it must be a string"
        return "wrong_type", f"{field} is {_type_name(value)} ({value!r}); ids must be strings: pass str(...)"
    return code, f"{field}: {code.replace('_', ' ')}"


def _issues_from(kind: str, event: Any, exc: PydanticValidationError, index: int | None) -> list[Issue]:
    # one issue per field: a union field (groupId: string or number) fails once per member
    by_field: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False, include_context=False, include_input=False):
        loc = tuple(err["loc"])
        if loc and loc[0] == kind:  # a discriminated union puts the tag first
            loc = loc[1:]
        if err["type"] == "missing_id":
            field = "userId"
        elif not loc:
            field = "event"
        else:
            field = str(loc[0])
        by_field.setdefault(field, []).append(err["type"])
    issues: list[Issue] = []
    for field, types in by_field.items():
        if len(types) == 1:
            kind_of_error = types[0]
        else:
            specific = [t for t in types if not t.endswith("_type")]
            kind_of_error = specific[0] if specific else "id_type"
        value = event.get(field) if isinstance(event, dict) else None
        code, message = _message_for(kind, field, kind_of_error, value)
        issues.append(Issue(index, field, code, message))
    return issues


def _serialised_size(event: dict[str, Any]) -> int | None:
    try:
        return len(orjson.dumps(event))
    except TypeError:  # ints beyond 64 bits, or a value JSON cannot carry
        try:
            return len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
        except (TypeError, ValueError):
            return None


def _size_issue(event: dict[str, Any], index: int | None) -> Issue | None:
    size = _serialised_size(event)
    if size is None:
        bad = _first_unserialisable(event, "")
        return Issue(
            index,
            bad[0] or "event",
            "not_serialisable",
            f"{bad[0] or 'the event'} is a {type(bad[1]).__name__}, which JSON cannot carry; "
            "convert it to a string, number, boolean, list or object",
        )
    if size <= MAX_EVENT_BYTES:
        return None
    parts = sorted(
        ((f"{k}.{kk}" if isinstance(v, dict) else k, _serialised_size(vv) or 0)
         for k, v in event.items()
         for kk, vv in (v.items() if isinstance(v, dict) else [(k, v)])),
        key=lambda kv: kv[1],
        reverse=True,
    )
    largest = ", ".join(f"{name} ({n / 1024:.1f} KB)" for name, n in parts[:3] if n >= 1024) or "none over 1 KB"
    return Issue(
        index,
        "event",
        "too_large",
        f"the event is {size / 1024:.1f} KB serialised; the Tracking API drops events over 32 KB. "
        f"Largest fields: {largest}. Send fewer or shorter properties (not the whole payload)",
    )


def _first_unserialisable(value: Any, path: str) -> tuple[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            found = _first_unserialisable(v, f"{path}.{k}" if path else str(k))
            if found[0] or found[1] is not None:
                return found
        return "", None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _first_unserialisable(v, f"{path}[{i}]")
            if found[0] or found[1] is not None:
                return found
        return "", None
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return path, value
    return "", None


def _key_issues(event: dict[str, Any], kind: str, index: int | None) -> list[Issue]:
    known = _KEYS_BY_TYPE[kind]
    issues: list[Issue] = []
    for key in event:
        if key in known or key in _TOLERATED_KEYS:
            continue
        meant = _NEAR_MISSES.get(str(key).lower().replace("_", ""))
        if meant and meant in known:
            issues.append(Issue(
                index, str(key), "unknown_field",
                f"{key} is not a Segment field; did you mean {meant}? Segment ignores "
                f"{key}, so its value is lost. Spec dicts use {meant}; the emitters take "
                f"the keyword {_snake(meant)}=...",
            ))
        elif meant:
            issues.append(Issue(
                index, str(key), "unknown_field",
                f"{key} is not a field of a {kind} event ({meant} belongs to "
                f"{', '.join(t for t, ks in _KEYS_BY_TYPE.items() if meant in ks)}); Segment ignores it",
            ))
        else:
            home = "traits" if kind in ("identify", "group") else "properties"
            where = f"; put it in {home}" if kind != "alias" else ""
            issues.append(Issue(
                index, str(key), "unknown_field",
                f"{key} is not a top-level field of a {kind} event and Segment ignores it{where}",
            ))
    return issues


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _integration_issues(event: dict[str, Any], index: int | None) -> list[Issue]:
    integrations = event.get("integrations")
    if not isinstance(integrations, dict):
        return []
    return [
        Issue(
            index, f"integrations.{name}", "wrong_type",
            f"integrations.{name} is {_type_name(value)}; use true, false or an object of options",
        )
        for name, value in integrations.items()
        if not isinstance(value, bool | dict)
    ]


def _id_ok(value: Any) -> bool:
    return value is None or (type(value) is str and bool(value.strip()))


def _message_id_ok(value: Any) -> bool:
    return value is None or (type(value) is str and bool(value.strip()) and len(value) <= MAX_MESSAGE_ID_LENGTH)


def _timestamp_ok(value: Any) -> bool:
    return value is None or (type(value) is str and _is_iso8601(value))


def _object_ok(value: Any) -> bool:
    return value is None or type(value) is dict


def _text_ok(value: Any) -> bool:
    return value is None or type(value) is str


def _given_id_ok(value: Any) -> bool:
    return type(value) is str and bool(value.strip())


# What the models accept, for the plainest values only (exact str and dict, no numbers
# for groupId / previousId): an event made of such values is checked here, in a few dict
# lookups; any other value, a missing required field or no id at all goes to the models,
# which give the issues. tests/test_spec.py holds this table against the models' fields.
_PLAIN_CHECKS: dict[str, Any] = {
    "type": _text_ok,  # its value is one of EVENT_TYPES already
    "userId": _id_ok,
    "anonymousId": _id_ok,
    "messageId": _message_id_ok,
    **dict.fromkeys(_TIMESTAMP_FIELDS, _timestamp_ok),
    **dict.fromkeys(_OBJECT_FIELDS, _object_ok),
    "name": _text_ok,
    "category": _text_ok,
    "event": _given_id_ok,
    "groupId": _given_id_ok,
    "previousId": _given_id_ok,
}
_PLAIN_REQUIRED: dict[str, tuple[str, ...]] = {
    "identify": (), "track": ("event",), "page": (), "screen": (), "group": ("groupId",),
    "alias": ("previousId", "userId"),
}


def _plainly_valid(event: dict[str, Any], kind: str) -> bool:
    """Whether the models certainly accept ``event`` (a ``kind`` event): ``True`` only for
    values they accept; ``False`` means "ask the models", never "invalid".

    Example:
        >>> _plainly_valid({"type": "track", "userId": "u1", "event": "E"}, "track")
        True
        >>> _plainly_valid({"type": "track", "userId": 7, "event": "E"}, "track")
        False
    """
    fields = _KEYS_BY_TYPE[kind]
    checks = _PLAIN_CHECKS
    for key, value in event.items():
        if key in fields and not checks[key](value):
            return False
    for key in _PLAIN_REQUIRED[kind]:
        if event.get(key) is None:
            return False
    return event.get("userId") is not None or event.get("anonymousId") is not None


def validate(event: Any, *, index: int | None = None) -> list[Issue]:
    """The problems of one spec event (a Tracking API message as a dict); empty when valid.

    Args:
        event: the event, with camelCase keys and ``type`` set.
        index: the event's position among an invocation's events, copied into each issue.

    Returns:
        Every problem found, in a stable order: type, ids and fields, unknown keys, size.

    Example:
        >>> validate({"type": "track", "userId": "u1", "event": "Order Completed",
        ...           "timestamp": "2024-01-31T12:00:00Z"})
        []
        >>> [i.code for i in validate({"type": "track", "event": "x", "timestamp": 1706702400})]
        ['missing_id', 'unix_timestamp']
    """
    if not isinstance(event, dict):
        return [Issue(index, "event", "not_an_object", f"the event is {_type_name(event)}; it must be an object (dict)")]
    kind = event.get("type")
    if kind not in _KEYS_BY_TYPE:
        if kind is None:
            message = f"the event has no type; set it to one of {', '.join(EVENT_TYPES)}"
            code = "missing_type"
        elif kind == "delete":
            message = (
                "delete events come from Segment's deletion requests; the Tracking API does "
                f"not accept them from a function. Send one of {', '.join(EVENT_TYPES)}"
            )
            code = "unsupported_type"
        else:
            message = f"type {kind!r} is not a Segment event type; use one of {', '.join(EVENT_TYPES)}"
            code = "unknown_type"
        return [Issue(index, "type", code, message)]
    issues: list[Issue] = []
    try:
        if not _plainly_valid(event, kind):
            _event_adapter().validate_python(event, by_name=False)
    except PydanticValidationError as exc:
        issues = _issues_from(kind, event, exc, index)
        # the id rule is a model validator, which pydantic skips when a field failed;
        # report it anyway so every problem shows at once
        if not event.get("userId") and not event.get("anonymousId") and not any(
            i.field in ("userId", "anonymousId") for i in issues
        ) and kind != "alias":
            code, message = _message_for(kind, "userId", "missing_id", None)
            issues.insert(0, Issue(index, "userId", code, message))
    if not event.keys() <= _KEYS_BY_TYPE[kind]:
        issues.extend(_key_issues(event, kind, index))
    if "integrations" in event:
        issues.extend(_integration_issues(event, index))
    size_issue = _size_issue(event, index)
    if size_issue is not None:
        issues.append(size_issue)
    return issues


def validate_object(obj: Any, *, index: int | None = None) -> list[Issue]:
    """The problems of one ``Segment.set`` record (Objects API); empty when valid.

    The collection is a warehouse table name: lower case, non-empty. The id is a
    non-empty string and the properties an object.

    Example:
        >>> validate_object({"collection": "rooms", "id": "r1", "properties": {}})
        []
        >>> validate_object({"collection": "Rooms", "id": "r1", "properties": {}})[0].code
        'collection_not_lower_case'
    """
    prefix = "objects" if index is None else f"objects[{index}]"
    if not isinstance(obj, dict):
        return [Issue(None, prefix, "not_an_object", f"the record is {_type_name(obj)}; it must be an object (dict)")]
    issues: list[Issue] = []
    try:
        SetObject.model_validate(obj)
    except PydanticValidationError as exc:
        for err in exc.errors(include_url=False, include_input=False):
            field = str(err["loc"][0]) if err["loc"] else "record"
            value = obj.get(field)
            if err["type"] == "extra_forbidden":
                code, message = "unknown_field", f"{field} is not a field of Segment.set (collection, id, properties)"
            elif err["type"] == "missing":
                code, message = "missing", f"{field} is missing; Segment.set(collection=..., id=..., properties=...)"
            else:
                code, message = _message_for("set", field, err["type"], value)
            issues.append(Issue(None, f"{prefix}.{field}", code, message))
    collection = obj.get("collection")
    if isinstance(collection, str) and collection != collection.lower():
        issues.append(Issue(
            None, f"{prefix}.collection", "collection_not_lower_case",
            f"collection {collection!r} is not lower case; Segment needs lower-case collection "
            f"names: use {collection.lower()!r}",
        ))
    size = _serialised_size(obj)
    if size is not None and size > MAX_EVENT_BYTES:
        issues.append(Issue(
            None, prefix, "too_large",
            f"the record is {size / 1024:.1f} KB serialised, over Segment's 32 KB limit; send fewer properties",
        ))
    return issues


def invocation_issues(
    events: list[Any], objects: list[Any], problems: list[dict[str, Any]], *, check: bool = True
) -> list[dict[str, Any]]:
    """The issues of one invocation, as the result frame's ``issues`` column holds them.

    First the problems the emitters recorded (values that could not be sent as they were,
    refused calls), then, with ``check``, each event's and each object's spec problems
    (:func:`validate`, :func:`validate_object`), all as plain dicts with ``event_index``,
    ``field``, ``code`` and ``message``. ``run()`` has it computed in its worker processes
    when it runs several (beside one, it computes it itself).

    Example:
        >>> [i["code"] for i in invocation_issues([{"type": "track", "event": "E"}], [], [])]
        ['missing_id']
        >>> invocation_issues([{"type": "track", "event": "E"}], [], [], check=False)
        []
    """
    issues: list[dict[str, Any]] = []
    for problem in problems:
        if "object_index" in problem:
            issues.append({
                "event_index": None,
                "field": f"objects[{problem['object_index']}].{problem.get('field', '')}",
                "code": problem.get("code", "problem"),
                "message": problem.get("message", ""),
            })
        else:
            issues.append({
                "event_index": problem.get("event_index"),
                "field": problem.get("field", ""),
                "code": problem.get("code", "problem"),
                "message": problem.get("message", ""),
            })
    if check:
        for index, event in enumerate(events):
            for issue in validate(event, index=index):
                issues.append(issue.to_dict())
        for index, obj in enumerate(objects):
            for issue in validate_object(obj, index=index):
                issues.append(issue.to_dict())
    return issues
