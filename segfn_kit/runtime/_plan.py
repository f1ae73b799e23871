"""Tracking plans: hold events against the rules of a Segment Protocols plan.

A plan is a list of rules as Segment's Public API answers ``GET /tracking-plans/{id}/rules``:
``{"type": "TRACK" | "IDENTIFY" | "GROUP" | "PAGE" | "SCREEN" | "ALIAS" | "COMMON",
"key": name (TRACK: the event name; PAGE/SCREEN: the page or screen name; none for the others),
"version": int, "jsonSchema": a JSON Schema (draft-07) of the whole event}``.

Each event is held against the COMMON rule and against the rule of its type (TRACK by event
name, PAGE/SCREEN by name, IDENTIFY/GROUP/ALIAS by type); of several versions, the one the
event names in ``context.protocols.event_version``, else the oldest, as Protocols does. A
failure is an issue ``{"event_index", "field", "code": "plan_violation", "message", "rule"}``;
a track event whose name has no TRACK rule while the plan has TRACK rules is an
``unplanned_event`` (the same for PAGE and SCREEN).

This module ships inside exported handlers: it imports only the standard library, and
``jsonschema`` lazily, when a plan is built. Every schema is compiled once, when the plan
is built; a schema that is not valid JSON Schema, a ``$ref`` that does not resolve or two
rules for the same type, key and version raise :class:`PlanError` naming the rule, before
any event is checked.

Example:
    >>> plan = Plan.from_rules([{"type": "TRACK", "key": "Invoice Paid", "version": 1,
    ...     "jsonSchema": {"properties": {"properties": {"properties": {
    ...         "revenue": {"type": "number"}}}}}}])
    >>> issues = plan.check([{"type": "track", "event": "Invoice Paid",
    ...                       "properties": {"revenue": "12.00"}}])
    >>> issues[0]["code"], issues[0]["field"]
    ('plan_violation', 'properties.revenue')
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal

from ._errors import PlanError

__all__ = [
    "PLAN_FILE",
    "PLAN_MODES",
    "RULE_TYPES",
    "Plan",
    "PlanError",
    "Rule",
    "plan_from_env",
    "rule_label",
]

RULE_TYPES = ("TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN", "ALIAS", "COMMON")
PLAN_MODES = ("report", "block")
PlanMode = Literal["report", "block"]

# rule types whose rules are keyed by a name in the event, and where that name lives
_NAMED = {"TRACK": "event", "PAGE": "name", "SCREEN": "name"}
_VALUE_WIDTH = 60


def rule_label(rule_type: str, key: str | None, version: int) -> str:
    """How a rule is named in messages: ``TRACK 'Invoice Paid' v1``, ``IDENTIFY v2``.

    Example:
        >>> rule_label("TRACK", "Invoice Paid", 1)
        "TRACK 'Invoice Paid' v1"
    """
    return f"{rule_type} {key!r} v{version}" if key else f"{rule_type} v{version}"


class Rule:
    """One rule of a plan, with its schema compiled once.

    Attributes:
        type: ``TRACK``, ``IDENTIFY``, ``GROUP``, ``PAGE``, ``SCREEN``, ``ALIAS`` or ``COMMON``.
        key: the event (TRACK) or page/screen name; ``None`` for the other types.
        version: the rule's version (1 when the file gives none).
        schema: the JSON Schema (draft-07) of the whole event.
        label: how messages name the rule (``TRACK 'Invoice Paid' v1``).
    """

    __slots__ = ("key", "label", "schema", "type", "validator", "version")

    def __init__(self, type: str, key: str | None, version: int, schema: dict[str, Any], validator: Any):
        self.type = type
        self.key = key
        self.version = version
        self.schema = schema
        self.validator = validator
        self.label = rule_label(type, key, version)

    def to_dict(self) -> dict[str, Any]:
        """The rule as the Public API writes it: ``{"type", "key", "version", "jsonSchema"}``."""
        out: dict[str, Any] = {"type": self.type}
        if self.key is not None:
            out["key"] = self.key
        out["version"] = self.version
        out["jsonSchema"] = self.schema
        return out

    def __repr__(self) -> str:
        return f"Rule({self.label})"


# -- formats: checked the same way everywhere, with the standard library only --------------

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$")


def is_date_time(value: str) -> bool:
    """Whether ``value`` is an ISO 8601 date-time (what ``format: date-time`` accepts here).

    Example:
        >>> is_date_time("2024-01-31T12:00:00Z"), is_date_time("yesterday")
        (True, False)
    """
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
    except ValueError:
        return False
    return True


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


_FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": is_date_time,
    "date": _is_date,
    "email": lambda v: bool(_EMAIL.match(v)),
    "uuid": lambda v: bool(_UUID.match(v)),
}


def _format_checker() -> Any:
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    for name, check in _FORMATS.items():
        checker.checks(name)(lambda value, check=check: not isinstance(value, str) or check(value))
    return checker


# -- building ------------------------------------------------------------------------------


def _refs(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        for name, value in schema.items():
            if name == "$ref" and isinstance(value, str):
                yield value
            elif name not in ("enum", "const", "examples", "default"):
                yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def _compile(rules: Sequence[tuple[str, str | None, int, dict[str, Any]]]) -> list[Rule]:
    import jsonschema
    import referencing
    import referencing.exceptions
    import referencing.jsonschema

    checker = _format_checker()
    resources = []
    for _type, _key, _version, schema in rules:
        uri = schema.get("$id")
        if isinstance(uri, str) and uri:
            resources.append((uri, referencing.jsonschema.DRAFT7.create_resource(schema)))
    registry: Any = referencing.Registry().with_resources(resources)
    compiled = []
    for rule_type, key, version, schema in rules:
        label = rule_label(rule_type, key, version)
        try:
            jsonschema.Draft7Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = ".".join(str(p) for p in exc.absolute_path) or "(the schema itself)"
            raise PlanError(
                f"rule {label}: jsonSchema is not valid JSON Schema (draft-07) at {where}: "
                f"{exc.message}; fix that keyword"
            ) from None
        validator = jsonschema.Draft7Validator(schema, registry=registry, format_checker=checker)
        resolver = registry.resolver()
        for ref in _refs(schema):
            try:
                if ref.startswith("#"):
                    _lookup_local(schema, ref)
                else:
                    resolver.lookup(ref)
            except (referencing.exceptions.Unresolvable, LookupError):
                raise PlanError(
                    f"rule {label}: $ref {ref!r} does not resolve (refer to '#/definitions/NAME' "
                    "in the same schema, or to the $id of another rule's schema)"
                ) from None
        compiled.append(Rule(rule_type, key, version, schema, validator))
    return compiled


def _lookup_local(schema: dict[str, Any], ref: str) -> Any:
    """Follow a JSON pointer such as ``#/definitions/money`` inside ``schema``."""
    from urllib.parse import unquote

    node: Any = schema
    pointer = ref[1:]
    if not pointer:
        return node
    if not pointer.startswith("/"):
        raise LookupError(ref)  # an anchor name: draft-07 plans do not use them
    for part in pointer[1:].split("/"):
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise LookupError(ref)
    return node


def _normalise(raw: Any, where: str) -> tuple[str, str | None, int, dict[str, Any]]:
    if not isinstance(raw, Mapping):
        raise PlanError(f"{where}: a rule must be an object with type, key, version and jsonSchema, not {type(raw).__name__}")
    rule_type = raw.get("type")
    if not isinstance(rule_type, str) or rule_type.upper() not in RULE_TYPES:
        raise PlanError(f"{where}: type {rule_type!r} is not one of {', '.join(RULE_TYPES)}")
    rule_type = rule_type.upper()
    key = raw.get("key")
    if rule_type in _NAMED:
        if not isinstance(key, str) or not key:
            raise PlanError(f"{where} ({rule_type}): key must be the {'event' if rule_type == 'TRACK' else 'page or screen'} name")
    else:
        key = None  # the Public API sends "" or nothing for these
    version = raw.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int):
        raise PlanError(f"{where} {rule_label(rule_type, key, 1)}: version must be an integer, not {version!r}")
    schema = raw.get("jsonSchema", raw.get("json_schema", {}))
    if schema is None:
        schema = {}
    if not isinstance(schema, dict):
        raise PlanError(f"rule {rule_label(rule_type, key, version)}: jsonSchema must be an object (a JSON Schema), not {type(schema).__name__}")
    return rule_type, key, version, schema


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"


def _field(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _issue(index: int | None, rule: Rule, error: Any) -> dict[str, Any]:
    path = list(error.absolute_path)
    keyword = error.validator
    value = error.instance
    if keyword == "required" and isinstance(value, dict):
        missing = [name for name in error.validator_value if name not in value]
        if missing:
            path.append(missing[0])
            message = f"{rule.label}: {_field(path)} fails required: the field is missing"
            return {"event_index": index, "field": _field(path), "code": "plan_violation",
                    "message": message, "rule": rule.label}
    if keyword == "additionalProperties" and isinstance(value, dict):
        allowed = set((error.schema or {}).get("properties") or ())
        extra = sorted(k for k in value if k not in allowed)
        if extra:
            path.append(extra[0])
            value = value[extra[0]]
            message = f"{rule.label}: {_field(path)} is not in the plan (additionalProperties: false); value {_short(value)}"
            return {"event_index": index, "field": _field(path), "code": "plan_violation",
                    "message": message, "rule": rule.label}
    field = _field(path)
    expected = _short(error.validator_value)
    message = f"{rule.label}: {field or 'the event'} fails {keyword}: {expected}; got {_short(value)}"
    return {"event_index": index, "field": field, "code": "plan_violation", "message": message, "rule": rule.label}


class Plan:
    """A tracking plan, compiled: every rule's schema checked and compiled once.

    Build one with :meth:`from_rules` (Public API rules) or ``segfn_kit.load_plan`` (any
    plan file); then :meth:`check` a list of events.

    Attributes:
        rules: the rules, in file order.
        name: the plan's name, when the file gives one.
        source: the file it was read from, when it was read from one.
    """

    def __init__(self, rules: Sequence[Rule], *, name: str | None = None, source: str | None = None):
        self.rules = list(rules)
        self.name = name
        self.source = source
        # (type, key) -> versions sorted oldest first
        self._by_key: dict[tuple[str, str | None], list[Rule]] = {}
        for rule in self.rules:
            self._by_key.setdefault((rule.type, rule.key), []).append(rule)
        for versions in self._by_key.values():
            versions.sort(key=lambda r: r.version)
        self._common = self._by_key.get(("COMMON", None), [])
        self._planned_types = {rule.type for rule in self.rules if rule.type in _NAMED}

    @classmethod
    def from_rules(cls, rules: Iterable[Any], *, name: str | None = None, source: str | None = None) -> Plan:
        """A plan from Public API rules (dicts with ``type``, ``key``, ``version``, ``jsonSchema``).

        Raises:
            PlanError: a rule is malformed, its schema is not valid JSON Schema, a ``$ref``
                does not resolve, or two rules share type, key and version.

        Example:
            >>> Plan.from_rules([{"type": "IDENTIFY", "version": 1, "jsonSchema": {}}]).rules
            [Rule(IDENTIFY v1)]
        """
        prefix = f"{source}: " if source else ""
        normal = []
        seen: dict[tuple[str, str | None, int], int] = {}
        for i, raw in enumerate(rules):
            try:
                rule = _normalise(raw, f"rule {i + 1}")
            except PlanError as exc:
                raise PlanError(prefix + str(exc)) from None
            ident = rule[:3]
            if ident in seen:
                raise PlanError(
                    f"{prefix}rules {seen[ident] + 1} and {i + 1} are both {rule_label(*ident)}: "
                    "a plan holds one rule per type, key and version; remove one or give it a new version"
                )
            seen[ident] = i
            normal.append(rule)
        try:
            compiled = _compile(normal)
        except PlanError as exc:
            raise PlanError(prefix + str(exc)) from None
        return cls(compiled, name=name, source=source)

    def to_dict(self) -> dict[str, Any]:
        """The plan as canonical Public API rules: ``{"rules": [...]}`` (what exports ship).

        Example:
            >>> Plan.from_rules([{"type": "COMMON", "version": 1, "jsonSchema": {}}]).to_dict()
            {'rules': [{'type': 'COMMON', 'version': 1, 'jsonSchema': {}}]}
        """
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out["rules"] = [rule.to_dict() for rule in self.rules]
        return out

    def rule_for(self, event: Mapping[str, Any]) -> tuple[Rule | None, bool]:
        """The rule an event is held against (besides COMMON), and whether it is unplanned.

        Example:
            >>> plan = Plan.from_rules([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {}}])
            >>> plan.rule_for({"type": "track", "event": "B"})
            (None, True)
        """
        kind = event.get("type")
        rule_type = kind.upper() if isinstance(kind, str) else ""
        name_field = _NAMED.get(rule_type)
        key = event.get(name_field) if name_field else None
        versions = self._by_key.get((rule_type, key if name_field else None))
        if not versions:
            return None, name_field is not None and rule_type in self._planned_types
        return _pick(versions, event), False

    def common_for(self, event: Mapping[str, Any]) -> Rule | None:
        """The COMMON rule version an event is held against, if the plan has one."""
        return _pick(self._common, event) if self._common else None

    def check_event(self, event: Mapping[str, Any], index: int | None = 0) -> list[dict[str, Any]]:
        """The plan issues of one event (``event_index`` is ``index``)."""
        issues: list[dict[str, Any]] = []
        if self._common:
            common = _pick(self._common, event)
            errors = _errors(common, event)
            if errors:
                issues.extend(_issue(index, common, e) for e in errors)
        rule, unplanned = self.rule_for(event)
        if rule is not None:
            errors = _errors(rule, event)
            if errors:
                issues.extend(_issue(index, rule, e) for e in errors)
        elif unplanned:
            kind = str(event.get("type")).upper()
            name_field = _NAMED[kind]
            name = event.get(name_field)
            issues.append({
                "event_index": index,
                "field": name_field,
                "code": "unplanned_event",
                "message": f"{kind} {name!r} has no rule in the plan (it has {kind} rules); "
                           f"add a {kind} rule with key {name!r} or fix the {name_field}",
                "rule": f"{kind} {name!r} (unplanned)",
            })
        return issues

    def check(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The plan issues of a list of events (one invocation's), in event order.

        Example:
            >>> plan = Plan.from_rules([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {}}])
            >>> [i["code"] for i in plan.check([{"type": "track", "event": "A"},
            ...                                  {"type": "track", "event": "B"}])]
            ['unplanned_event']
        """
        issues: list[dict[str, Any]] = []
        for i, event in enumerate(events):
            if isinstance(event, Mapping):
                issues.extend(self.check_event(event, i))
        return issues

    def hold(
        self, events: Sequence[dict[str, Any]], mode: PlanMode = "report"
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Split events as Protocols would: ``(sent, held back, issues)``.

        ``report`` sends every event and only reports; ``block`` holds back every event
        with a plan issue (violation or unplanned), as Protocols' blocking does.

        Example:
            >>> plan = Plan.from_rules([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {}}])
            >>> sent, held, issues = plan.hold([{"type": "track", "event": "B"}], "block")
            >>> len(sent), len(held), issues[0]["code"]
            (0, 1, 'unplanned_event')
        """
        if mode not in PLAN_MODES:
            raise ValueError(f"plan mode {mode!r}: use one of {', '.join(PLAN_MODES)}")
        issues = self.check(events)
        if mode == "report" or not issues:
            return list(events), [], issues
        bad = {i["event_index"] for i in issues}
        sent = [e for i, e in enumerate(events) if i not in bad]
        held = [e for i, e in enumerate(events) if i in bad]
        return sent, held, issues

    def __len__(self) -> int:
        return len(self.rules)

    # a plan is immutable once built: pandas' deep copies of a frame's attrs keep this one
    def __copy__(self) -> Plan:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Plan:
        return self

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"<Plan{name}: {len(self.rules)} rule{'s' if len(self.rules) != 1 else ''}>"


def _pick(versions: list[Rule], event: Mapping[str, Any]) -> Rule:
    if len(versions) > 1:
        context = event.get("context")
        protocols = context.get("protocols") if isinstance(context, Mapping) else None
        wanted = protocols.get("event_version") if isinstance(protocols, Mapping) else None
        if isinstance(wanted, int) and not isinstance(wanted, bool):
            for rule in versions:
                if rule.version == wanted:
                    return rule
    return versions[0]


def _errors(rule: Rule, event: Mapping[str, Any]) -> list[Any]:
    # one pass over the event (no is_valid first: that would validate a failing event twice)
    errors = list(rule.validator.iter_errors(event))
    if len(errors) > 1:  # in a stable order: by field, then keyword
        errors.sort(key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    return errors


PLAN_FILE = "plan.json"
"""The file name of the plan an exported package ships (next to ``function.py``)."""


def plan_from_env(
    environ: Mapping[str, str] | None = None, *, base: str | None = None
) -> tuple[Plan | None, PlanMode]:
    """The plan an exported handler checks against: ``SEGFN_PLAN`` and ``SEGFN_PLAN_MODE``.

    ``SEGFN_PLAN`` is the path of a rules JSON file (``{"rules": [...]}``, what ``segfn export
    --plan`` ships), read relative to ``base`` (the package folder) when relative; unset, it
    is ``base/plan.json`` when that file exists; ``none`` turns checking off.
    ``SEGFN_PLAN_MODE`` is ``report`` (default) or ``block``.

    Raises:
        PlanError: the file cannot be read, is not a plan, or the mode is unknown.

    Example:
        >>> plan_from_env({})
        (None, 'report')
    """
    env = os.environ if environ is None else environ
    mode = env.get("SEGFN_PLAN_MODE", "report").strip().lower() or "report"
    if mode not in PLAN_MODES:
        raise PlanError(f"SEGFN_PLAN_MODE={mode!r}: use report or block")
    path = env.get("SEGFN_PLAN", "").strip()
    if path.lower() == "none":
        return None, mode  # type: ignore[return-value]
    if not path:
        shipped = os.path.join(base, PLAN_FILE) if base else None
        if shipped is None or not os.path.isfile(shipped):
            return None, mode  # type: ignore[return-value]
        path = shipped
    elif base and not os.path.isabs(path):
        path = os.path.join(base, path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise PlanError(f"SEGFN_PLAN={path}: cannot read the plan ({exc})") from None
    rules = data.get("rules") if isinstance(data, dict) else data
    if not isinstance(rules, list):
        raise PlanError(f"SEGFN_PLAN={path}: not a rules file ({{\"rules\": [...]}})")
    name = data.get("name") if isinstance(data, dict) else None
    return Plan.from_rules(rules, name=name if isinstance(name, str) else None, source=path), mode  # type: ignore[return-value]
