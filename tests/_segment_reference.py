"""``Segment`` as it was before its emitters took a fast path for plain keyword calls:
the reference that ``tests/test_segment_emit.py`` compares the runtime's emitters against.

A verbatim copy of ``segfn_kit/runtime/_segment.py`` at that time, but for this docstring and
the absolute import of ``_json``. Do not edit it to follow the runtime: what it does is the
contract.
"""

from __future__ import annotations

import contextvars
import datetime as _dt
import decimal
import enum
import hashlib
import numbers
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from segfn_kit.runtime._json import body_digest, canonical_digest

__all__ = ["Collector", "Segment", "payload_digest", "unix_time_hint"]

_NOT_GIVEN: Any = object()

# namespace of derived messageIds (a fixed, arbitrary UUID): ids are uuid5-shaped strings
_ID_NAMESPACE = uuid.UUID("5e6f7a1c-2b3d-4e5f-8a9b-0c1d2e3f4a5b")

# snake_case keyword -> camelCase spec key
_KEYS = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "group_id": "groupId",
    "previous_id": "previousId",
    "message_id": "messageId",
    "event": "event",
    "name": "name",
    "category": "category",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "timestamp": "timestamp",
    "integrations": "integrations",
}
# "userId", "UserID" -> "user_id"
_SNAKE_BY_FOLDED = {k.replace("_", ""): k for k in _KEYS}
_ID_KEYS = frozenset({"userId", "anonymousId", "groupId", "previousId", "messageId"})


def payload_digest(content: bytes, parsed: Any = _NOT_GIVEN) -> str:
    """A digest of a payload's content, independent of how it was stored.

    JSON bodies are digested in canonical form (sorted keys, no whitespace), so the same
    event pretty-printed in one archive and compact in another gives the same digest.
    Other bodies are digested as raw bytes. ``parsed``, when given, is the body already
    parsed (it is not parsed again).

    Example:
        >>> payload_digest(b'{"b": 1, "a": 2}') == payload_digest(b'{"a":2,"b":1}')
        True
    """
    if parsed is _NOT_GIVEN:
        return body_digest(content)
    return canonical_digest(parsed, content)


class Collector:
    """What one invocation emitted: spec events, Objects, and normalisation problems.

    ``digest`` is called at most once, when the first event without a ``messageId`` needs one.
    """

    __slots__ = ("_digest", "_digest_fn", "calls", "events", "objects", "problems")

    def __init__(self, digest: Callable[[], str] | str):
        self.calls = 0  # Segment.* calls so far, sent or refused: the next call's position
        self.events: list[dict[str, Any]] = []
        self.objects: list[dict[str, Any]] = []
        self.problems: list[dict[str, Any]] = []
        if isinstance(digest, str):
            self._digest: str | None = digest
            self._digest_fn: Callable[[], str] | None = None
        else:
            self._digest, self._digest_fn = None, digest

    def message_id(self, position: int) -> str:
        if self._digest is None:
            assert self._digest_fn is not None
            self._digest = self._digest_fn()
        return _uuid5(f"{self._digest}:{position}")


_NAMESPACE_BYTES = _ID_NAMESPACE.bytes


# the version (5) and RFC 4122 variant bits of a UUID as one 128-bit integer: cleared, then set
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_SET = (0x5000 << 64) | (0x8000 << 48)
_sha1 = hashlib.sha1
_from_bytes = int.from_bytes


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_ID_NAMESPACE, name))``, without building a ``UUID`` object.

    Example:
        >>> _uuid5("a:0") == str(uuid.uuid5(_ID_NAMESPACE, "a:0"))
        True
    """
    n = _from_bytes(_sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16], "big")
    x = "%032x" % (n & _UUID_CLEAR | _UUID_SET)
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


_current: contextvars.ContextVar[Collector | None] = contextvars.ContextVar(
    "segfn_collector", default=None
)


def _collector() -> Collector:
    collector = _current.get()
    if collector is None:
        raise RuntimeError(
            "Segment.* was called outside a function invocation; "
            "run the function with segfn_kit.run(...) or the exported handler"
        )
    return collector


_SCALARS = frozenset({str, int, bool, type(None)})
_PLAIN_SCALARS = (str, bool, int)  # and their subclasses


# where a value sits, for a problem's ``field``: a top-level key, or (parent, key or index,
# whether it is an index), written out only when a problem names it
_Path = str | tuple[Any, Any, bool]


def _path_text(path: _Path) -> str:
    """``"properties.items[0].price"`` for a path made of nested (parent, key, index) tuples.

    Example:
        >>> _path_text(((("properties", "items", False), 0, True), "price", False))
        'properties.items[0].price'
    """
    if isinstance(path, str):
        return path
    parent, key, index = path
    return f"{_path_text(parent)}[{key}]" if index else f"{_path_text(parent)}.{key}"


def _clean(value: Any, path: _Path, problems: list[dict[str, Any]], where: dict[str, int]) -> Any:
    """Normalise one value as analytics-python does; record what cannot be sent.

    Plain dicts and lists are copied in one pass that looks at each value's exact type;
    only what is not a plain JSON value takes the general path below. The path of a nested
    value is a tuple, written out as text (which names the field in a problem) only when
    there is a problem to name.
    """
    t = type(value)
    if t in _SCALARS:
        return value
    if t is dict:
        out: dict[str, Any] = {}
        for k, v in value.items():
            tv = type(v)
            if tv in _SCALARS or (tv is float and v - v == 0):
                out[k if type(k) is str else str(k)] = v
            else:
                out[k if type(k) is str else str(k)] = _clean(v, (path, k, False), problems, where)
        return out
    if t is list:
        items: list[Any] = []
        append = items.append
        i = 0
        for v in value:
            tv = type(v)
            append(v if tv in _SCALARS or (tv is float and v - v == 0) else _clean(v, (path, i, True), problems, where))
            i += 1
        return items
    if value is None or isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, float):
        if value - value == 0:  # finite; NaN and infinities are not JSON
            return value
        text = _path_text(path)
        problems.append({
            **where,
            "field": text,
            "code": "not_finite",
            "message": (
                f"{text} is {value}, which JSON cannot carry; it was sent as null. "
                "Check the computation, or send None (or a string) on purpose"
            ),
        })
        return None
    if isinstance(value, dict):
        return {
            str(k): _clean(v, (path, k, False), problems, where) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(v, (path, i, True), problems, where) for i, v in enumerate(value)]
    if isinstance(value, set | frozenset):
        try:
            ordered = sorted(value)
        except TypeError:
            ordered = list(value)
        return [_clean(v, (path, i, True), problems, where) for i, v in enumerate(ordered)]
    if isinstance(value, decimal.Decimal):
        return _clean(float(value), path, problems, where)
    if isinstance(value, enum.Enum):
        return _clean(value.value, path, problems, where)
    if isinstance(value, _dt.datetime):
        # a naive datetime stays naive (no offset), as analytics-python sends it
        return value.isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return _clean(dict(value), path, problems, where)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    text = _path_text(path)
    problems.append(
        {
            **where,
            "field": text,
            "code": "not_serialisable",
            "message": (
                f"{text} is a {type(value).__name__}, which JSON cannot carry; "
                f"it was sent as its text {str(value)[:60]!r}. Convert it to a str, number, "
                "bool, list or dict in the function."
            ),
        }
    )
    return str(value)


_EMPTY_WHEN_NONE = ("properties", "traits", "context", "integrations")
_CLEANED = (*_EMPTY_WHEN_NONE, "timestamp")  # the values normalised (and copied) as they are sent
_ID_TYPES = (numbers.Number, str)  # what analytics-python takes as an id
_NUMBERS = (int, float)
_TIMESTAMPS = (str, _dt.date)
_NEEDS_USER = frozenset({"identify", "track", "group", "page", "screen"})


def _refusal(kind: str, msg: Mapping[str, Any]) -> str | None:
    """Why analytics-python would refuse this call (it raises), or ``None``.

    Its rules: identify, track, group, page and screen need ``userId or anonymousId`` to be
    a string or a number (so an empty or zero ``userId`` without an ``anonymousId`` is none); track an ``event`` string; group a ``groupId``;
    alias a ``previousId`` and a ``userId``; ``properties``, ``traits``, ``context`` and
    ``integrations`` must be objects; a page's or screen's ``name`` and ``category``
    strings. A ``timestamp`` may be a string here too (analytics-python takes only a
    datetime), but not a number or another type.
    """
    if kind in _NEEDS_USER:
        # analytics-python's own test: ``user_id or anonymous_id`` must be a str or number
        uid = msg.get("userId") or msg.get("anonymousId")
        if type(uid) is not str:  # a str, the common case, skips the abstract-class check
            if uid is None:
                snake = [k for k in ("user_id", "anonymous_id") if k in msg]
                hint = f"; the dict has {snake[0]}: did you mean {_KEYS[snake[0]]}?" if snake else ""
                return f"it has no user_id or anonymous_id (an empty or zero user_id counts as none){hint}"
            if not isinstance(uid, _ID_TYPES):
                return f"its user_id / anonymous_id is {_a(uid)}, not a string or number"
    if kind == "track" and not isinstance(msg.get("event"), str):
        return "it has no event name (event= must be a string)"
    if kind == "group" and not isinstance(msg.get("groupId"), _ID_TYPES):
        return "it has no group_id"
    if kind == "alias":
        if not isinstance(msg.get("previousId"), _ID_TYPES):
            return "it has no previous_id"
        if not isinstance(msg.get("userId"), _ID_TYPES):
            return "it has no user_id"
    for key in _EMPTY_WHEN_NONE:
        value = msg.get(key, _NOT_GIVEN)
        if value is not _NOT_GIVEN and type(value) is not dict and not isinstance(value, Mapping):
            return f"{key} is {_a(value)}, not an object (dict)"
    if kind in ("page", "screen"):
        for key in ("name", "category"):
            value = msg.get(key)
            if value and not isinstance(value, str):
                return f"{key} is {_a(value)}, not a string"
    timestamp = msg.get("timestamp")
    if timestamp is None or type(timestamp) is str:
        return None
    if isinstance(timestamp, _NUMBERS) and not isinstance(timestamp, bool):
        return unix_time_hint("timestamp", timestamp)
    if not isinstance(timestamp, _TIMESTAMPS):
        return f"timestamp is {_a(timestamp)}; pass a datetime or an ISO 8601 string"
    return None


def _unknown_keyword(kind: str, unknown: Mapping[str, Any]) -> None:
    """Raise the ``TypeError`` for a keyword the emitters do not take, naming the one meant."""
    key = next(iter(unknown))
    meant = _SNAKE_BY_FOLDED.get(key.lower().replace("_", ""))
    hint = f"did you mean {meant}=...? " if meant else ""
    raise TypeError(
        f"Segment.{kind}() got an unexpected keyword argument {key!r}; {hint}"
        f"it takes analytics-python's keywords: {', '.join(sorted(_KEYS))}"
    )


def _a(value: Any) -> str:
    """``"an int"``, ``"a list"``: the type of ``value`` with its article."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def unix_time_hint(field: str, value: Any) -> str:
    """The message for a Unix time (seconds or milliseconds) given where ISO 8601 is wanted.

    The spec check and the refusal of a call with a number ``timestamp`` both say it.

    Example:
        >>> unix_time_hint("timestamp", 1706702400)  # doctest: +ELLIPSIS
        "timestamp is 1706702400, which looks like a Unix time, ... (here '2024-01-31T12:00:00+00:00')"
    """
    try:
        number = float(value)
        if number > 1e11:  # milliseconds, as JavaScript's Date.now()
            number /= 1000
        iso = _dt.datetime.fromtimestamp(number, _dt.UTC).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        iso = ""
    example = f" (here {iso!r})" if iso else ""
    return (
        f"{field} is {value!r}, which looks like a Unix time, not an ISO 8601 string; "
        "convert it with datetime.fromtimestamp(value, timezone.utc).isoformat()"
        f"{example}"
    )


class _Segment:
    """The ``Segment`` object a function file imports: ``Segment.track(...)`` and friends.

    Example:
        >>> from segfn_kit.runtime import Segment
        >>> Segment.track  # doctest: +ELLIPSIS
        <bound method _Segment.track of <Segment>>
    """

    def __repr__(self) -> str:
        return "<Segment>"

    def _emit(
        self, kind: str, spec: Mapping[str, Any] | None, fields: dict[str, Any], unknown: dict[str, Any]
    ) -> None:
        """Build and record one event; ``fields`` are the spec keys of the keywords given
        or not (``_NOT_GIVEN``), in the keywords' order; ``unknown`` the other keywords."""
        collector = _current.get()
        if collector is None:
            _collector()  # raises, naming the fix
            return
        if spec is not None:  # a JavaScript-style call: Segment.track({"userId": ..., ...})
            if not isinstance(spec, Mapping):
                raise TypeError(f"Segment.{kind}() takes keyword arguments or one dict of spec fields")
            msg: dict[str, Any] = {"type": kind, **spec}
            msg["type"] = kind
        else:
            msg = {"type": kind}
        if unknown:
            _unknown_keyword(kind, unknown)
        for key, value in fields.items():
            if value is not _NOT_GIVEN:
                msg[key] = value
        # a call's position counts every call, sent or refused, so ids never shift
        position = collector.calls
        collector.calls = position + 1
        get = msg.get
        for key in _EMPTY_WHEN_NONE:
            if get(key, msg) is None:  # as analytics-python: None sends {}
                msg[key] = {}
        refusal = _refusal(kind, msg)
        if refusal is not None:
            collector.problems.append({
                "event_index": None,
                "call_index": position,
                "field": "",
                "code": "refused_call",
                "message": (
                    f"Segment.{kind}() call {position + 1} was not sent: {refusal} "
                    "(analytics-python refuses such a call too)"
                ),
            })
            return
        for key in _ID_KEYS:
            value = get(key)
            if value is not None and type(value) is not str and not isinstance(value, str):
                msg[key] = str(value)
        # as analytics-python: message_id=None means "make one", not a null id
        if get("messageId") is None:
            msg["messageId"] = collector.message_id(position)
        timestamp = get("timestamp")
        if isinstance(timestamp, _dt.datetime) and timestamp.tzinfo is None:
            # as analytics-python reads any naive timestamp not made in the last 5 seconds
            msg["timestamp"] = timestamp.replace(tzinfo=_dt.UTC)
        where: dict[str, int] | None = None
        for key in _CLEANED:
            value = get(key)
            if value is not None and type(value) is not str:  # a string is sent as it is
                if where is None:
                    where = {"event_index": len(collector.events)}
                msg[key] = _clean(value, key, collector.problems, where)
        collector.events.append(msg)

    def identify(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        user_id: Any = _NOT_GIVEN,
        traits: Any = _NOT_GIVEN,
        context: Any = _NOT_GIVEN,
        timestamp: Any = _NOT_GIVEN,
        anonymous_id: Any = _NOT_GIVEN,
        integrations: Any = _NOT_GIVEN,
        message_id: Any = _NOT_GIVEN,
        **unknown: Any,
    ) -> None:
        """Emit an identify: who the user is (``user_id`` or ``anonymous_id``, and ``traits``)."""
        self._emit("identify", spec, {"userId": user_id, "traits": traits, "context": context,
                   "timestamp": timestamp, "anonymousId": anonymous_id,
                   "integrations": integrations, "messageId": message_id}, unknown)

    def track(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        user_id: Any = _NOT_GIVEN,
        event: Any = _NOT_GIVEN,
        properties: Any = _NOT_GIVEN,
        context: Any = _NOT_GIVEN,
        timestamp: Any = _NOT_GIVEN,
        anonymous_id: Any = _NOT_GIVEN,
        integrations: Any = _NOT_GIVEN,
        message_id: Any = _NOT_GIVEN,
        **unknown: Any,
    ) -> None:
        """Emit a track: something the user did (``event`` name and ``properties``)."""
        self._emit("track", spec, {"userId": user_id, "event": event, "properties": properties,
                   "context": context, "timestamp": timestamp, "anonymousId": anonymous_id,
                   "integrations": integrations, "messageId": message_id}, unknown)

    def group(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        user_id: Any = _NOT_GIVEN,
        group_id: Any = _NOT_GIVEN,
        traits: Any = _NOT_GIVEN,
        context: Any = _NOT_GIVEN,
        timestamp: Any = _NOT_GIVEN,
        anonymous_id: Any = _NOT_GIVEN,
        integrations: Any = _NOT_GIVEN,
        message_id: Any = _NOT_GIVEN,
        **unknown: Any,
    ) -> None:
        """Emit a group: the user belongs to ``group_id`` (an account, a company)."""
        self._emit("group", spec, {"userId": user_id, "groupId": group_id, "traits": traits,
                   "context": context, "timestamp": timestamp, "anonymousId": anonymous_id,
                   "integrations": integrations, "messageId": message_id}, unknown)

    def page(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        user_id: Any = _NOT_GIVEN,
        category: Any = _NOT_GIVEN,
        name: Any = _NOT_GIVEN,
        properties: Any = _NOT_GIVEN,
        context: Any = _NOT_GIVEN,
        timestamp: Any = _NOT_GIVEN,
        anonymous_id: Any = _NOT_GIVEN,
        integrations: Any = _NOT_GIVEN,
        message_id: Any = _NOT_GIVEN,
        **unknown: Any,
    ) -> None:
        """Emit a page view."""
        self._emit("page", spec, {"userId": user_id, "category": category, "name": name,
                   "properties": properties, "context": context, "timestamp": timestamp,
                   "anonymousId": anonymous_id, "integrations": integrations,
                   "messageId": message_id}, unknown)

    def screen(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        user_id: Any = _NOT_GIVEN,
        category: Any = _NOT_GIVEN,
        name: Any = _NOT_GIVEN,
        properties: Any = _NOT_GIVEN,
        context: Any = _NOT_GIVEN,
        timestamp: Any = _NOT_GIVEN,
        anonymous_id: Any = _NOT_GIVEN,
        integrations: Any = _NOT_GIVEN,
        message_id: Any = _NOT_GIVEN,
        **unknown: Any,
    ) -> None:
        """Emit a mobile screen view."""
        self._emit("screen", spec, {"userId": user_id, "category": category, "name": name,
                   "properties": properties, "context": context, "timestamp": timestamp,
                   "anonymousId": anonymous_id, "integrations": integrations,
                   "messageId": message_id}, unknown)

    def alias(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        previous_id: Any = _NOT_GIVEN,
        user_id: Any = _NOT_GIVEN,
        context: Any = _NOT_GIVEN,
        timestamp: Any = _NOT_GIVEN,
        anonymous_id: Any = _NOT_GIVEN,
        integrations: Any = _NOT_GIVEN,
        message_id: Any = _NOT_GIVEN,
        **unknown: Any,
    ) -> None:
        """Emit an alias: ``previous_id`` and ``user_id`` are the same person."""
        self._emit("alias", spec, {"previousId": previous_id, "userId": user_id,
                   "context": context, "timestamp": timestamp, "anonymousId": anonymous_id,
                   "integrations": integrations, "messageId": message_id}, unknown)

    def set(self, *, collection: Any, id: Any, properties: Any = _NOT_GIVEN) -> None:
        """Upsert an object into a warehouse collection (Segment's Objects API).

        Args:
            collection: the collection (table) name, lower case, e.g. ``"rooms"``.
            id: the object's id.
            properties: the object's fields.
        """
        collector = _collector()
        obj: dict[str, Any] = {
            "collection": collection,
            "id": None if id is None else str(id),
            "properties": {} if properties is _NOT_GIVEN else properties,
        }
        if obj["properties"] is not None:
            obj["properties"] = _clean(
                obj["properties"], "properties", collector.problems, {"object_index": len(collector.objects)}
            )
        collector.objects.append(obj)


Segment = _Segment()
