"""Mapping function files (contract 5): a declarative source function in Mapping Kit JSON.

``NAME.mapping.json``::

    {"kind": "source", "name": "github_activity",
     "settings": {"workspace": {"type": "string", "required": true}},
     "route": {"@path": "$.headers.x-github-event"},
     "routes": {"push": [{"type": "track", "userId": {"@template": "gh:{{body.sender.login}}"},
                          "event": "Pushed", "properties": {"ref": {"@path": "$.body.ref"}}}]},
     "otherwise": "EventNotSupported"}

The mappings see ``{"body", "headers" (lower-case names), "query", "settings"}``. ``route``
picks a list of calls in ``routes``; each call is transformed on that input, its ``type`` names
the Segment call and its other keys are spec fields. The calls go through ``Segment`` like a
Python function's, so messageIds, normalisation and problems follow the same rules.

Example:
    >>> spec = parse_mapping_function('{"route": "x", "routes": {"x": '
    ...     '[{"type": "track", "event": "Seen", "userId": {"@path": "$.body.id"}}]}}')
    >>> sorted(spec.routes)
    ['x']
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import EventNotSupported, FunctionLoadError, InvalidEventPayload, MappingError
from ._function import MAPPING_SUFFIX, is_mapping_source
from ._mapping import _U, CompiledMapping, _compile, validate
from ._segment import Segment

__all__ = ["CALL_FIELDS", "MAPPING_SUFFIX", "MappingSpec", "is_mapping_source", "mapping_module",
           "parse_mapping_function"]


_COMMON = ("userId", "anonymousId", "context", "timestamp", "integrations", "messageId")
# call type -> the spec fields it takes
CALL_FIELDS: dict[str, tuple[str, ...]] = {
    "identify": (*_COMMON, "traits"),
    "track": (*_COMMON, "event", "properties"),
    "page": (*_COMMON, "name", "category", "properties"),
    "screen": (*_COMMON, "name", "properties"),
    "group": (*_COMMON, "groupId", "traits"),
    "alias": (*_COMMON, "previousId"),
    "set": ("collection", "id", "properties"),
}
_OTHERWISE = {"EventNotSupported": EventNotSupported, "InvalidEventPayload": InvalidEventPayload}
_TOP_KEYS = ("kind", "name", "settings", "route", "routes", "otherwise", "description")
_SETTING_KEYS = ("type", "required", "secret", "sensitive", "label", "description", "default")


@dataclass
class _Call:
    where: str
    kind: str
    mapping: CompiledMapping


@dataclass
class MappingSpec:
    """A parsed, checked mapping function file.

    Attributes:
        name: the ``name`` key (the file's stem when absent).
        settings: declared settings, as contract 1 declares them (``secret`` included).
        route: the ``route`` mapping value.
        routes: route value -> the calls' mappings, in order.
        otherwise: ``"EventNotSupported"`` or ``"InvalidEventPayload"``.
        document: the whole file, parsed.
    """

    name: str
    settings: dict[str, dict[str, Any]]
    route: Any
    routes: dict[str, list[dict[str, Any]]]
    otherwise: str
    document: dict[str, Any]
    _calls: dict[str, list[_Call]] = field(default_factory=dict, repr=False)


def _fail(message: str, filename: str, line: int | None = None) -> FunctionLoadError:
    return FunctionLoadError(message, filename=filename, line=line)


def parse_mapping_function(source: str, filename: str = "<mapping>") -> MappingSpec:
    """Parse and check a mapping function file; every problem names its place in the file.

    Raises:
        FunctionLoadError: not JSON, an unknown key, a ``route`` that cannot give a string,
            ``routes`` values that are not lists, a call without a known ``type``, a field the
            call does not take, or an invalid mapping (unknown directive, wrong argument type).
    """
    try:
        doc = json.loads(source)
    except json.JSONDecodeError as exc:
        raise _fail(f"not valid JSON: {exc.msg} (column {exc.colno})", filename, exc.lineno) from None
    if not isinstance(doc, dict):
        raise _fail("a mapping function file is a JSON object with \"route\" and \"routes\"", filename)
    problems: list[str] = []
    for key in doc:
        if key not in _TOP_KEYS:
            problems.append(f"/{key}: unknown key; a mapping function file has {', '.join(_TOP_KEYS)}")
    kind = doc.get("kind", "source")
    if kind != "source":
        problems.append(f"/kind: {json.dumps(kind)} is not supported; mapping functions are \"source\" functions")
    name = doc.get("name", _stem(filename))
    if not isinstance(name, str) or not name:
        problems.append("/name: should be a non-empty string")
        name = _stem(filename)
    settings = _settings(doc.get("settings", {}), problems)
    otherwise = doc.get("otherwise", "EventNotSupported")
    if otherwise not in _OTHERWISE:
        problems.append(f"/otherwise: should be \"EventNotSupported\" or \"InvalidEventPayload\", "
                        f"not {json.dumps(otherwise)}")
    if "route" not in doc:
        problems.append("/route: missing; give a string or a directive such as "
                        "{\"@path\": \"$.headers.x-github-event\"}")
    route = doc.get("route")
    if "route" in doc and not (isinstance(route, str) or (isinstance(route, dict) and route
                                                          and all(k.startswith("@") for k in route))):
        problems.append(f"/route: should be a string or a directive giving one, not {_kind(route)}")
    elif isinstance(route, dict):
        problems.extend(_where(p, "/route") for p in validate(route, strict=True))
    routes = doc.get("routes")
    calls: dict[str, list[_Call]] = {}
    if not isinstance(routes, dict) or not routes:
        problems.append(f"/routes: should be an object of route values to lists of calls, not {_kind(routes)}")
        routes = {}
    for value, items in routes.items():
        here = f"/routes/{value}"
        if not isinstance(items, list):
            problems.append(f"{here}: should be a list of calls, not {_kind(items)}")
            continue
        calls[value] = []
        for i, call in enumerate(items):
            where = f"{here}/{i}"
            found = _check_call(call, where, problems)
            if found is not None:
                calls[value].append(_Call(where, found, CompiledMapping(
                    {k: v for k, v in call.items() if k != "type"})))
    if problems:
        listed = "; ".join(problems)
        raise _fail(f"invalid mapping function: {listed}", filename)
    return MappingSpec(name, settings, route, routes, otherwise, doc, calls)


def _stem(filename: str) -> str:
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (MAPPING_SUFFIX, ".json"):
        if base.endswith(suffix):
            return base[: -len(suffix)] or "mapping"
    return base.strip("<>") or "mapping"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _where(problem: str, prefix: str) -> str:
    """``/x/@path should ...`` of a nested mapping -> ``/routes/push/0/x/@path: should ...``."""
    path, _, message = problem.partition(" ")
    return f"{prefix}{path.rstrip('/')}: {message}"


def _settings(value: Any, problems: list[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        problems.append(f"/settings: should be an object of setting names to declarations, not {_kind(value)}")
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, spec in value.items():
        if not isinstance(spec, dict):
            problems.append(f"/settings/{name}: should be an object such as {{\"type\": \"string\", \"required\": true}}")
            continue
        unknown = [k for k in spec if k not in _SETTING_KEYS]
        if unknown:
            problems.append(f"/settings/{name}/{unknown[0]}: unknown key; a setting takes {', '.join(_SETTING_KEYS)}")
        declared = dict(spec)
        if spec.get("sensitive"):
            declared["secret"] = True
        out[name] = declared
    return out


def _check_call(call: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(call, dict):
        problems.append(f"{where}: a call should be an object with a \"type\", not {_kind(call)}")
        return None
    kind = call.get("type")
    if "type" not in call:
        problems.append(f"{where}: the call has no \"type\"; give one of {', '.join(CALL_FIELDS)}")
        return None
    if kind not in CALL_FIELDS:
        problems.append(f"{where}/type: {json.dumps(kind)} is not a Segment call; give one of {', '.join(CALL_FIELDS)}")
        return None
    ok = True
    for key in call:
        if key != "type" and key not in CALL_FIELDS[kind]:
            problems.append(f"{where}/{key}: a {kind} call takes {', '.join(CALL_FIELDS[kind])}")
            ok = False
    found = validate({k: v for k, v in call.items() if k != "type"}, strict=True)
    problems.extend(_where(p, where) for p in found)
    return kind if ok and not found else None


def mapping_module(spec: MappingSpec, filename: str) -> types.ModuleType:
    """A module with the ``on_request`` handler and ``SETTINGS`` of a mapping function."""
    route_fn = _compile(spec.route, False, True).fn
    otherwise = _OTHERWISE[spec.otherwise]
    calls = spec._calls

    def on_request(request: Any, settings: Mapping[str, Any]) -> None:
        body = request.json()
        data = {
            "body": body,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "query": dict(request.query),
            "settings": dict(settings),
        }
        try:
            route = route_fn(data)
        except MappingError as exc:
            raise MappingError(f"/route: {exc}") from None
        if type(route) is not str:
            shown = "nothing" if route is _U or route is None else json.dumps(route, ensure_ascii=False)[:80]
            raise otherwise(f"the route gave {shown}, not a string")
        chosen = calls.get(route)
        if chosen is None:
            raise otherwise(f"no route for {json.dumps(route, ensure_ascii=False)[:80]}")
        for call in chosen:
            try:
                fields = call.mapping(data)
            except MappingError as exc:
                raise MappingError(f"{call.where}: {exc}") from None
            if call.kind == "set":
                Segment.set(collection=fields.get("collection"), id=fields.get("id"),
                            properties=fields.get("properties", {}))
            else:
                getattr(Segment, call.kind)(fields)

    module = types.ModuleType(f"segfn_mapping_{spec.name}")
    module.__file__ = filename
    module.on_request = on_request  # type: ignore[attr-defined]
    module.SETTINGS = spec.settings  # type: ignore[attr-defined]
    module.MAPPING = spec  # type: ignore[attr-defined]
    return module
