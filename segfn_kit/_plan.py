"""Tracking plan files: read them, write one from a run, compare two.

``load_plan`` reads every plan format a team is likely to have and turns it into the
runtime's :class:`~segfn_kit.runtime.Plan` (the one checker, in ``runtime/_plan.py``):

- Segment's Public API rules, as ``GET /tracking-plans/{id}/rules`` answers them
  (``{"data": {"rules": [...]}}``), as ``{"rules": [...]}``, or a bare list of rules;
- typewriter 9's ``plan.json`` (``{"id", "name", "rules": [...]}``, TRACK rules whose
  ``jsonSchema`` is unwrapped to the properties and carries ``eventMetadata``), and the
  older typewriter plans (``{"rules": {"events": [...], "identify", "group", "global"}}``
  and local ``{"events": [...]}`` files);
- a RudderStack tracking plan in the YAML that rudder-cli writes (``kind: tp`` with the
  ``kind: events``, ``properties`` and ``custom-types`` it refers to, in the same file or
  in the YAML files of the same folder; pass the folder or the plan's file). Variants are
  not checked.

``infer_plan(results)`` writes Public API rules from what a run emitted;
``diff_plans(old, new)`` lists added, removed and changed rules and fields.

Example:
    >>> plan = load_plan({"rules": [{"type": "TRACK", "key": "Order Completed", "version": 1,
    ...     "jsonSchema": {"properties": {"properties": {"required": ["total"]}}}}]})
    >>> [i["field"] for i in plan.check([{"type": "track", "event": "Order Completed",
    ...                                   "properties": {}}])]
    ['properties.total']
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segfn_kit.runtime._errors import PlanError
from segfn_kit.runtime._plan import Plan, is_date_time, rule_label

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PlanError", "PlanLike", "diff_plans", "infer_plan", "load_plan", "plan_rules_json"]

PlanLike = Plan | Mapping[str, Any] | Sequence[Any] | str | os.PathLike[str]

DRAFT_07 = "http://json-schema.org/draft-07/schema#"
_YAML_SUFFIXES = (".yaml", ".yml")
# where the fields a rule describes live in an event of each type
_FIELDS_OF = {"TRACK": "properties", "PAGE": "properties", "SCREEN": "properties",
              "IDENTIFY": "traits", "GROUP": "traits"}


def load_plan(plan: PlanLike) -> Plan:
    """Read a tracking plan (a file, a folder of rudder-cli YAML, or parsed JSON).

    Args:
        plan: a path (Public API rules JSON, typewriter ``plan.json``, rudder-cli YAML file
            or folder), the parsed JSON (``{"rules": [...]}``, ``{"data": {"rules": ...}}``,
            a list of rules, an older typewriter plan), or a ``Plan`` (returned as it is).

    Returns:
        The compiled plan: every schema checked and compiled once.

    Raises:
        PlanError: the file is missing or is no plan, a rule is malformed, a schema is not
            valid JSON Schema, a ``$ref`` does not resolve, or two rules share type, key and
            version; the message names the file and the rule.

    Example:
        >>> load_plan([{"type": "IDENTIFY", "version": 1, "jsonSchema": {}}])
        <Plan: 1 rule>
    """
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, str | os.PathLike):
        return _load_path(Path(plan))
    if isinstance(plan, Mapping | list | tuple):
        return _from_json(plan, None)
    raise PlanError(f"load_plan: cannot read a plan from {type(plan).__name__}; pass a path, a dict or a list of rules")


def _load_path(path: Path) -> Plan:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _YAML_SUFFIXES and p.is_file())
        if not files:
            raise PlanError(f"{path}: a folder holds no rudder-cli YAML files (*.yaml, *.yml)")
        return _from_rudder(files, path, None)
    if not path.is_file():
        raise PlanError(f"{path}: no such plan file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot read the plan ({exc})") from None
    if path.suffix.lower() in _YAML_SUFFIXES:
        siblings = sorted(p for p in path.parent.glob("*") if p.suffix.lower() in _YAML_SUFFIXES and p != path)
        return _from_rudder([path, *siblings], path, path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PlanError(f"{path}: not JSON ({exc}); a plan is Public API rules JSON, a typewriter "
                        "plan.json, or rudder-cli YAML (*.yaml)") from None
    return _from_json(data, str(path))


# -- JSON: Public API rules, typewriter --------------------------------------------------


def _from_json(data: Any, source: str | None) -> Plan:
    where = source or "plan"
    name = None
    rules: Any
    if isinstance(data, Mapping):
        name = data.get("name") or data.get("display_name")
        if isinstance(data.get("data"), Mapping):  # the Public API's envelope
            inner = data["data"]
            rules = inner.get("rules")
            tp = inner.get("trackingPlan")
            if isinstance(tp, Mapping):
                name = tp.get("name") or name
        elif isinstance(data.get("rules"), list):  # {"rules": [...]}, typewriter 9's plan.json
            rules = [_unwrap_typewriter(r) for r in data["rules"]]
        elif isinstance(data.get("rules"), Mapping):  # older typewriter plan.json
            rules = _from_old_typewriter(data["rules"], where)
        elif isinstance(data.get("events"), list):  # older typewriter local plan
            rules = _from_old_typewriter(data, where)
        else:
            raise PlanError(
                f"{where}: not a tracking plan: expected Public API rules ({{\"rules\": [...]}} or "
                f"{{\"data\": {{\"rules\": [...]}}}}), a typewriter plan.json or a list of rules; "
                f"found keys {', '.join(sorted(map(str, data))) or '(none)'}"
            )
    else:
        rules = data
    if not isinstance(rules, list | tuple):
        raise PlanError(f"{where}: rules must be a list, not {type(rules).__name__}")
    return Plan.from_rules(rules, name=name if isinstance(name, str) else None, source=source)


def _unwrap_typewriter(rule: Any) -> Any:
    """typewriter 9 writes TRACK schemas of the properties only, marked by ``eventMetadata``."""
    if not isinstance(rule, Mapping):
        return rule
    schema = rule.get("jsonSchema")
    if not isinstance(schema, Mapping) or "eventMetadata" not in schema:
        return rule
    inner = {k: v for k, v in schema.items() if k not in ("eventMetadata", "$schema", "definitions", "labels")}
    wrapped: dict[str, Any] = {"$schema": DRAFT_07, "type": "object", "properties": {"properties": inner}}
    if inner.get("required"):
        wrapped["required"] = ["properties"]
    if "definitions" in schema:
        wrapped["definitions"] = schema["definitions"]
    return {**rule, "jsonSchema": wrapped}


def _from_old_typewriter(rules: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    events = rules.get("events") or []
    if not isinstance(events, list):
        raise PlanError(f"{where}: rules.events must be a list of events")
    for i, event in enumerate(events):
        if not isinstance(event, Mapping) or not isinstance(event.get("name"), str):
            raise PlanError(f"{where}: events[{i}] must be an object with a name and rules")
        out.append({"type": "TRACK", "key": event["name"], "version": event.get("version", 1),
                    "jsonSchema": event.get("rules") or {}})
    for field, rule_type in (("global", "COMMON"), ("identify", "IDENTIFY"), ("group", "GROUP")):
        schema = rules.get(field)
        if isinstance(schema, Mapping) and schema:
            out.append({"type": rule_type, "version": 1, "jsonSchema": dict(schema)})
    return out


# -- rudder-cli YAML ---------------------------------------------------------------------

_RUDDER_TYPES = {"track": "TRACK", "page": "PAGE", "screen": "SCREEN", "identify": "IDENTIFY", "group": "GROUP"}
_PROP_CONFIG = ("enum", "minLength", "maxLength", "pattern", "format", "minimum", "maximum",
                "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "uniqueItems")


def _from_rudder(files: list[Path], where: Path, main: Path | None) -> Plan:
    import yaml

    catalog: dict[str, dict[str, dict[str, Any]]] = {"events": {}, "properties": {}, "custom-types": {}}
    plans: list[tuple[Path, dict[str, Any]]] = []
    kinds_seen = []
    for file in files:
        try:
            docs = list(yaml.safe_load_all(file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            if file == main:
                raise PlanError(f"{file}: not YAML ({exc})") from None
            continue
        for doc in docs:
            if not isinstance(doc, Mapping):
                continue
            kind = doc.get("kind")
            kinds_seen.append(kind)
            raw_spec = doc.get("spec")
            spec: Mapping[str, Any] = raw_spec if isinstance(raw_spec, Mapping) else {}
            group = str((doc.get("metadata") or {}).get("name", "")) if isinstance(doc.get("metadata"), Mapping) else ""
            if kind == "tp":
                plans.append((file, dict(spec)))
            elif kind in ("events", "properties", "custom-types"):
                key = {"events": "events", "properties": "properties", "custom-types": "types"}[kind]
                for item in spec.get(key) or []:
                    if isinstance(item, Mapping) and item.get("id") is not None:
                        catalog[kind][f"{group}/{item['id']}"] = dict(item)
    if main is not None:
        plans = [p for p in plans if p[0] == main] or plans
    if not plans:
        found = ", ".join(sorted({str(k) for k in kinds_seen})) or "no rudder-cli documents"
        raise PlanError(f"{where}: not a RudderStack tracking plan: no YAML document with 'kind: tp' "
                        f"(found {found}); pass the tracking plan's file or its project folder")
    if len(plans) > 1:
        names = ", ".join(str(p[1].get("id") or p[0]) for p in plans)
        raise PlanError(f"{where}: holds {len(plans)} tracking plans ({names}); pass the file of one")
    file, spec = plans[0]
    rules = []
    for i, rule in enumerate(spec.get("rules") or []):
        label = f"{file}: rule {rule.get('id') or i + 1}" if isinstance(rule, Mapping) else f"{file}: rule {i + 1}"
        if not isinstance(rule, Mapping) or not isinstance(rule.get("event"), Mapping):
            raise PlanError(f"{label}: a rule needs an event: {{$ref: '#/events/GROUP/ID'}}")
        event = _resolve(catalog, "events", rule["event"].get("$ref"), label)
        event_type = _RUDDER_TYPES.get(str(event.get("event_type", "track")).lower())
        if event_type is None:
            raise PlanError(f"{label}: event_type {event.get('event_type')!r} is not one of {', '.join(_RUDDER_TYPES)}")
        name = event.get("name") or event.get("display_name")
        fields = _rudder_object(catalog, rule.get("properties") or [], label)
        if rule["event"].get("allow_unplanned") is False:
            fields["additionalProperties"] = False
        where_fields = _FIELDS_OF[event_type]
        schema: dict[str, Any] = {"$schema": DRAFT_07, "type": "object",
                                  "properties": {where_fields: fields}}
        if fields.get("required"):
            schema["required"] = [where_fields]
        out: dict[str, Any] = {"type": event_type, "version": 1, "jsonSchema": schema}
        if event_type in ("TRACK", "PAGE", "SCREEN"):
            if not isinstance(name, str) or not name:
                raise PlanError(f"{label}: event {rule['event'].get('$ref')} has no name")
            out["key"] = name
        rules.append(out)
    name = spec.get("display_name") or spec.get("id")
    return Plan.from_rules(rules, name=name if isinstance(name, str) else None, source=str(file))


def _resolve(catalog: dict[str, dict[str, dict[str, Any]]], kind: str, ref: Any, label: str) -> dict[str, Any]:
    if not isinstance(ref, str) or not ref:
        raise PlanError(f"{label}: $ref must be a string such as '#/{kind}/GROUP/ID', not {ref!r}")
    parts = ref.lstrip("#").strip("/").split("/")
    items = catalog[kind]
    if len(parts) >= 3 and parts[0] == kind and f"{parts[1]}/{parts[2]}" in items:
        return items[f"{parts[1]}/{parts[2]}"]
    by_id = [v for k, v in items.items() if k.split("/", 1)[1] == parts[-1]]
    if len(by_id) == 1:
        return by_id[0]
    raise PlanError(f"{label}: $ref {ref!r} does not resolve: no {kind} with that id in the YAML files read")


def _rudder_type(catalog: dict[str, dict[str, dict[str, Any]]], prop: Mapping[str, Any], label: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    raw = prop.get("type")
    config = dict(prop.get("propConfig") or prop.get("config") or {})
    if isinstance(raw, str) and raw.startswith("#"):
        custom = _resolve(catalog, "custom-types", raw, label)
        inner = _rudder_type(catalog, custom, label)
        inner.update({k: v for k, v in config.items() if k in _PROP_CONFIG})
        return inner
    types = raw if isinstance(raw, list) else [t.strip() for t in str(raw).split(",")] if raw else []
    types = [t for t in types if t]
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    for name in _PROP_CONFIG:
        if name in config:
            out[name] = config[name]
    if "itemTypes" in config:
        item_types = list(config["itemTypes"])
        out["items"] = {"type": item_types[0] if len(item_types) == 1 else item_types}
    return out


def _rudder_object(catalog: dict[str, dict[str, dict[str, Any]]], props: Iterable[Any], label: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for entry in props:
        if not isinstance(entry, Mapping):
            raise PlanError(f"{label}: each property must be {{$ref: '#/properties/GROUP/ID', required: ...}}")
        prop = _resolve(catalog, "properties", entry.get("$ref"), label)
        name = prop.get("name") or prop.get("display_name")
        if not isinstance(name, str) or not name:
            raise PlanError(f"{label}: property {entry.get('$ref')} has no name")
        schema = _rudder_type(catalog, prop, label)
        if entry.get("properties"):
            nested = _rudder_object(catalog, entry["properties"], label)
            schema.update(nested)
        properties[name] = schema
        if entry.get("required") is True:
            required.append(name)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    return out


# -- infer -------------------------------------------------------------------------------


class _Shape:
    """What the values seen at one place of the events look like."""

    __slots__ = ("count", "dates", "fields", "items", "objects", "strings", "types")

    def __init__(self) -> None:
        self.count = 0
        self.objects = 0
        self.types: set[str] = set()
        self.strings = 0
        self.dates = 0
        self.fields: dict[str, _Shape] = {}
        self.items: _Shape | None = None

    def add(self, value: Any) -> None:
        self.count += 1
        if value is None:
            self.types.add("null")
        elif isinstance(value, bool):
            self.types.add("boolean")
        elif isinstance(value, int):
            self.types.add("integer")
        elif isinstance(value, float):
            self.types.add("number")
        elif isinstance(value, str):
            self.types.add("string")
            self.strings += 1
            if is_date_time(value):
                self.dates += 1
        elif isinstance(value, Mapping):
            self.types.add("object")
            self.objects += 1
            for name, inner in value.items():
                self.fields.setdefault(str(name), _Shape()).add(inner)
        elif isinstance(value, list | tuple):
            self.types.add("array")
            if self.items is None:
                self.items = _Shape()
            for inner in value:
                self.items.add(inner)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        types = set(self.types)
        if {"integer", "number"} <= types:
            types.discard("integer")
        order = ("object", "array", "string", "number", "integer", "boolean", "null")
        names = [t for t in order if t in types]
        if names:
            out["type"] = names[0] if len(names) == 1 else names
        if self.strings and self.dates == self.strings:
            out["format"] = "date-time"
        if "object" in types:
            n_objects = self.objects
            out["properties"] = {name: shape.schema() for name, shape in sorted(self.fields.items())}
            required = sorted(name for name, shape in self.fields.items() if _present_in_all(shape, n_objects))
            if required:
                out["required"] = required
        if "array" in types and self.items is not None and self.items.count:
            out["items"] = self.items.schema()
        return out


def _present_in_all(shape: _Shape, objects: int) -> bool:
    return shape.count == objects


def _events_of(results: Any) -> Iterable[dict[str, Any]]:
    if isinstance(results, Mapping):
        results = [results]
    if hasattr(results, "columns"):  # a result frame
        column = results["events"] if "events" in results.columns else []
        for events in column:
            for event in events or []:
                if isinstance(event, Mapping):
                    yield dict(event)
        return
    for item in results:
        if isinstance(item, Mapping) and "events" in item and isinstance(item["events"], list):
            yield from (dict(e) for e in item["events"] if isinstance(e, Mapping))
        elif isinstance(item, Mapping):
            yield dict(item)


def infer_plan(results: pd.DataFrame | Iterable[Mapping[str, Any]], *, name: str | None = None) -> dict[str, Any]:
    """Write Public API rules from what a run emitted: one rule per type and key.

    Each rule is a draft-07 schema of the fields seen (``properties`` of track, page and
    screen events, ``traits`` of identify and group calls): their JSON types,
    ``format: date-time`` where every value is an ISO 8601 date-time, and ``required`` for
    the fields present in every event of that key, nested objects and arrays included.
    Every event it came from passes it; an event whose field changes type does not.

    Args:
        results: a result frame from ``run`` (its ``events`` column), JSON Lines records
            (``{"events": [...]}``) or spec events.
        name: a name for the plan (``"name"`` in the output).

    Returns:
        ``{"rules": [{"type", "key", "version": 1, "jsonSchema"}, ...]}`` (plus ``"name"``),
        ready for ``load_plan``, ``json.dump``, or Segment's Public API.

    Example:
        >>> plan = infer_plan([{"type": "track", "event": "Paid", "properties": {"total": 5}},
        ...                    {"type": "track", "event": "Paid", "properties": {"total": 7.5}}])
        >>> plan["rules"][0]["jsonSchema"]["properties"]["properties"]["properties"]
        {'total': {'type': 'number'}}
    """
    shapes: dict[tuple[str, str | None], _Shape] = {}
    counts: dict[tuple[str, str | None], int] = {}
    order: list[tuple[str, str | None]] = []
    for event in _events_of(results):
        kind = str(event.get("type", "")).upper()
        if kind not in ("TRACK", "PAGE", "SCREEN", "IDENTIFY", "GROUP", "ALIAS"):
            continue
        key: str | None = None
        if kind == "TRACK":
            key = event.get("event") if isinstance(event.get("event"), str) else None
        elif kind in ("PAGE", "SCREEN"):
            key = event.get("name") if isinstance(event.get("name"), str) else None
        if kind in ("TRACK", "PAGE", "SCREEN") and not key:
            continue  # a rule needs the name; the spec check already flags a missing one
        ident = (kind, key)
        if ident not in shapes:
            shapes[ident] = _Shape()
            counts[ident] = 0
            order.append(ident)
        counts[ident] += 1
        where = _FIELDS_OF.get(kind)
        if where is not None:
            # an event without the field counts as an empty object (so nothing in it is
            # required); an explicit null is a null
            shapes[ident].add(event[where] if where in event else {})
    rules = []
    for ident in sorted(order, key=lambda i: (("TRACK", "PAGE", "SCREEN", "IDENTIFY", "GROUP", "ALIAS").index(i[0]), i[1] or "")):
        kind, key = ident
        schema: dict[str, Any] = {
            "$schema": DRAFT_07,
            "description": f"Inferred from {counts[ident]} event{'s' if counts[ident] != 1 else ''}",
            "type": "object",
        }
        where = _FIELDS_OF.get(kind)
        if where is not None:
            inner = shapes[ident].schema()
            schema["properties"] = {"context": {}, where: inner}
            if inner.get("required"):
                schema["required"] = [where]
        rule: dict[str, Any] = {"type": kind}
        if key is not None:
            rule["key"] = key
        rule["version"] = 1
        rule["jsonSchema"] = schema
        rules.append(rule)
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    out["rules"] = rules
    return out


# -- diff --------------------------------------------------------------------------------


def _fields(schema: Any, path: str, required: bool, out: dict[str, str]) -> None:
    if not isinstance(schema, Mapping):
        return
    if path and not schema and not required:
        return  # `{}`: anything goes (Segment writes "context": {} in every rule)
    if path:
        parts = []
        if "type" in schema:
            t = schema["type"]
            parts.append("|".join(t) if isinstance(t, list) else str(t))
        for keyword in ("format", "enum", "pattern", "const", "minimum", "maximum", "minLength", "maxLength", "$ref"):
            if keyword in schema:
                parts.append(f"{keyword}={json.dumps(schema[keyword], ensure_ascii=False)}")
        if required:
            parts.append("required")
        if schema.get("additionalProperties") is False:
            parts.append("closed")
        out[path] = " ".join(parts) or "any"
    req = set(schema.get("required") or []) if isinstance(schema.get("required"), list) else set()
    props = schema.get("properties")
    if isinstance(props, Mapping):
        for name, inner in props.items():
            _fields(inner, f"{path}.{name}" if path else str(name), name in req, out)
    items = schema.get("items")
    if isinstance(items, Mapping):
        _fields(items, f"{path}[]", False, out)


def diff_plans(old: PlanLike, new: PlanLike) -> list[dict[str, Any]]:
    """Added, removed and changed rules and fields between two plans.

    Returns:
        One dict per change, rules first: ``{"change": "added" | "removed" | "changed",
        "rule": "TRACK 'Order Completed' v1", "field": dotted path or "" for the rule,
        "old": what it was or None, "new": what it is or None}``.

    Example:
        >>> a = {"rules": [{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {}}]}
        >>> b = {"rules": [{"type": "TRACK", "key": "B", "version": 1, "jsonSchema": {}}]}
        >>> [(d["change"], d["rule"]) for d in diff_plans(a, b)]
        [('removed', "TRACK 'A' v1"), ('added', "TRACK 'B' v1")]
    """
    before = {(r.type, r.key, r.version): r for r in load_plan(old).rules}
    after = {(r.type, r.key, r.version): r for r in load_plan(new).rules}
    out: list[dict[str, Any]] = []
    for ident in before:
        if ident not in after:
            out.append({"change": "removed", "rule": rule_label(*ident), "field": "", "old": "rule", "new": None})
    for ident in after:
        if ident not in before:
            out.append({"change": "added", "rule": rule_label(*ident), "field": "", "old": None, "new": "rule"})
    for ident, rule in after.items():
        if ident not in before:
            continue
        a: dict[str, str] = {}
        b: dict[str, str] = {}
        _fields(before[ident].schema, "", False, a)
        _fields(rule.schema, "", False, b)
        label = rule_label(*ident)
        for field in sorted(set(a) | set(b)):
            if field not in b:
                out.append({"change": "removed", "rule": label, "field": field, "old": a[field], "new": None})
            elif field not in a:
                out.append({"change": "added", "rule": label, "field": field, "old": None, "new": b[field]})
            elif a[field] != b[field]:
                out.append({"change": "changed", "rule": label, "field": field, "old": a[field], "new": b[field]})
    return out


def plan_rules_json(plan: PlanLike) -> str:
    """The canonical rules JSON of a plan (``{"rules": [...]}``), as exports ship it.

    Example:
        >>> plan_rules_json([{"type": "COMMON", "version": 1, "jsonSchema": {}}])
        '{"rules": [{"type": "COMMON", "version": 1, "jsonSchema": {}}]}'
    """
    return json.dumps(copy.deepcopy(load_plan(plan).to_dict()), ensure_ascii=False)


# -- results -----------------------------------------------------------------------------

PLAN_CODES = frozenset({"plan_violation", "unplanned_event"})


def check_results(results: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """Add the plan's issues to a result frame's ``issues`` column (in place) and return it.

    Earlier plan issues are replaced, so checking again against an edited plan is exact;
    ``attrs["plan"]`` holds the plan.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"events": [[{"type": "track", "event": "B"}]], "issues": [[]]})
        >>> plan = load_plan([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {}}])
        >>> check_results(frame, plan)["issues"][0][0]["code"]
        'unplanned_event'
    """
    if "events" in results.columns and "issues" in results.columns:
        memo = _memo_of(plan)
        column = []
        for events, issues in zip(results["events"], results["issues"], strict=True):
            kept = [i for i in issues or [] if i.get("code") not in PLAN_CODES]
            for index, event in enumerate(events or []):
                if isinstance(event, Mapping):
                    kept.extend(_checked(plan, memo, event, index))
            column.append(kept)
        results["issues"] = column
    results.attrs["plan"] = plan
    return results


# a preview re-runs the function after every edit, and most events come out the same: their
# plan issues are remembered per plan and event content (bounded), so a re-check costs a
# serialisation instead of a schema validation
_MEMO_LIMIT = 200_000
_MEMOS: dict[int, tuple[Plan, dict[bytes, list[dict[str, Any]]]]] = {}


def _memo_of(plan: Plan) -> dict[bytes, list[dict[str, Any]]]:
    held = _MEMOS.get(id(plan))
    if held is None or held[0] is not plan:
        if len(_MEMOS) >= 8:
            _MEMOS.clear()
        held = (plan, {})
        _MEMOS[id(plan)] = held
    return held[1]


def _checked(plan: Plan, memo: dict[bytes, list[dict[str, Any]]], event: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    import orjson

    try:
        key = orjson.dumps(event, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return plan.check_event(event, index)
    found = memo.get(key)
    if found is None:
        found = plan.check_event(event, 0)
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = found
    return [{**issue, "event_index": index} for issue in found]


def plan_summary(results: pd.DataFrame, plan: Plan | None = None) -> pd.DataFrame:
    """Per rule: events checked, events failing, and the unplanned events, of a result frame.

    Columns ``rule``, ``checked``, ``failing``, ``unplanned`` (one row per rule the events
    met, then one per unplanned name); the plan defaults to ``results.attrs["plan"]``.

    Example:
        >>> import pandas as pd
        >>> plan = load_plan([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {}}])
        >>> frame = check_results(pd.DataFrame({"events": [[{"type": "track", "event": "A"},
        ...     {"type": "track", "event": "B"}]], "issues": [[]]}), plan)
        >>> plan_summary(frame).to_dict("records")[1]
        {'rule': "TRACK 'B' (unplanned)", 'checked': 0, 'failing': 0, 'unplanned': 1}
    """
    import pandas as pd

    plan = plan or results.attrs.get("plan")
    if plan is None:
        raise PlanError("plan_summary: the results were not checked against a plan; run(..., plan=FILE)")
    rows: dict[str, dict[str, int]] = {}

    def row(label: str) -> dict[str, int]:
        return rows.setdefault(label, {"checked": 0, "failing": 0, "unplanned": 0})

    for events, issues in zip(results["events"], results["issues"], strict=True):
        failing: dict[int, set[str]] = {}
        for issue in issues or []:
            if issue.get("code") == "plan_violation":
                failing.setdefault(issue.get("event_index"), set()).add(issue.get("rule", ""))
        for i, event in enumerate(events or []):
            if not isinstance(event, Mapping):
                continue
            common = plan.common_for(event)
            if common is not None:
                row(common.label)["checked"] += 1
                if common.label in failing.get(i, ()):
                    row(common.label)["failing"] += 1
            rule, unplanned = plan.rule_for(event)
            if rule is not None:
                row(rule.label)["checked"] += 1
                if rule.label in failing.get(i, ()):
                    row(rule.label)["failing"] += 1
            elif unplanned:
                kind = str(event.get("type")).upper()
                name = event.get("event" if kind == "TRACK" else "name")
                row(f"{kind} {name!r} (unplanned)")["unplanned"] += 1
    planned = sorted(k for k in rows if not k.endswith("(unplanned)"))
    unplanned_rows = sorted(k for k in rows if k.endswith("(unplanned)"))
    return pd.DataFrame(
        [{"rule": k, **rows[k]} for k in planned + unplanned_rows],
        columns=["rule", "checked", "failing", "unplanned"],
    )
