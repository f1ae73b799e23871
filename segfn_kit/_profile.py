"""What is in a set of payloads: every field with its types, presence and examples; drift.

``profile`` walks the parsed bodies (not the flattened columns), so a field that is absent
and a field that is JSON ``null`` are told apart, and array items are profiled too
(``data.items[].price``).

Timestamps: a field is timestamp-like when its strings are ISO 8601 dates, or when its name
says time (``created``, ``updated_at``, ``period_end``, ``time``...) and its numbers fall in
the Unix range (seconds or milliseconds, 2000 to 2100). The ``timestamp`` column names the
formats seen; the profile's ``attrs["timestamp_formats"]`` lists fields by format, so a set
of payloads that mixes Unix and ISO fields (Stripe's ``created`` next to an ISO date) shows.
"""

from __future__ import annotations

import gc
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["drift", "json_type", "profile"]

PROFILE_COLUMNS = (
    "types",
    "rows",
    "present",
    "null_rate",
    "distinct",
    "examples",
    "mixed_types",
    "timestamp_like",
    "timestamp",
)
MAX_EXAMPLES = 3
MAX_DISTINCT = 100_000  # distinct counting stops here (reported as at least this many)
MAX_DEPTH = 64

_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
)
_TIME_NAME = re.compile(
    r"(^|[_.\-])(created|updated|deleted|modified|time|timestamp|date|at|expires|expiry|"
    r"start|end|since|until|period_start|period_end|ts)($|[_.\-])|_at$|At$|Time$|Date$|^ts$",
    re.IGNORECASE,
)
# 2000-01-01 .. 2100-01-01, in seconds and in milliseconds
_UNIX_S = (946_684_800, 4_102_444_800)
_UNIX_MS = (946_684_800_000, 4_102_444_800_000)


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value.

    Example:
        >>> [json_type(v) for v in (None, True, 1, 1.5, "a", {}, [])]
        ['null', 'boolean', 'integer', 'number', 'string', 'object', 'array']
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _time_named(name: str) -> bool:
    return bool(_TIME_NAME.search(name.rsplit(".", 1)[-1].removesuffix("[]")))


def _timestamp_format(time_named: bool, value: Any) -> str | None:
    if type(value) is str:
        if len(value) < 10 or not value[:1].isdigit() or not _ISO.match(value):
            return None
        # a bare date ("2020-08-27") is a timestamp only where the name says so (not api_version)
        return "iso8601" if len(value) > 10 or time_named else None
    if not time_named or type(value) not in (int, float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if _UNIX_S[0] <= value <= _UNIX_S[1]:
        return "unix"
    if _UNIX_MS[0] <= value <= _UNIX_MS[1]:
        return "unix_ms"
    return None


def _distinct_key(value: Any) -> Any:
    if isinstance(value, dict | list):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONEncodeError, TypeError):
            return repr(value)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return (type(value).__name__, value)


def _example(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 60:
        return value[:57] + "..."
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    if isinstance(value, list):
        return f"[{len(value)} items]"
    return value


@dataclass
class _Field:
    name: str
    time_named: bool = False
    rows: set[int] = field(default_factory=set)
    types: dict[str, int] = field(default_factory=dict)
    nulls: int = 0
    seen: int = 0
    # a set, or a _KeyOrder where partial profiles are merged (the order of first sight
    # decides the examples)
    distinct: Any = field(default_factory=set)
    examples: list[Any] = field(default_factory=list)
    timestamps: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.time_named = _time_named(self.name)

    def add(self, row: int, value: Any) -> None:
        self.rows.add(row)
        self.seen += 1
        kind = _TYPE_NAMES.get(type(value)) or json_type(value)
        self.types[kind] = self.types.get(kind, 0) + 1
        if value is None:
            self.nulls += 1
            return
        if len(self.distinct) < MAX_DISTINCT:
            key = (kind, value) if kind in _HASHABLE else _distinct_key(value)
            if key not in self.distinct:
                self.distinct.add(key)
                if len(self.examples) < MAX_EXAMPLES:
                    self.examples.append(_example(value))
        if kind in _MAYBE_TIME:
            ts = _timestamp_format(self.time_named, value)
            if ts is not None:
                self.timestamps[ts] = self.timestamps.get(ts, 0) + 1


_TYPE_NAMES = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
}
_HASHABLE = frozenset({"boolean", "integer", "string"})  # floats: NaN != NaN, see _distinct_key
_MAYBE_TIME = frozenset({"integer", "number", "string"})


def _walk(value: Any, prefix: str, depth: int) -> Iterator[tuple[str, Any]]:
    """(path, value) for every field of a body, array items as ``path[]``."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path, item
            if isinstance(item, dict | list) and item:
                yield from _walk(item, path, depth + 1)
    elif isinstance(value, list):
        path = f"{prefix}[]"
        for item in value:
            yield path, item
            if isinstance(item, dict | list) and item:
                yield from _walk(item, path, depth + 1)


class _KeyOrder(dict[Any, None]):
    """The distinct keys of a field in the order first seen (a set that remembers order)."""

    __slots__ = ()

    def add(self, key: Any) -> None:
        self[key] = None


def _profile_rows(bodies: list[Any], ordered: bool = False) -> tuple[dict[str, _Field], int]:
    fields: dict[str, _Field] = {}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # no reference cycles here; collections over the many small sets cost time
    try:
        for row, body in enumerate(bodies):
            for path, value in _walk(body, "", 0):
                entry = fields.get(path)
                if entry is None:
                    entry = fields[path] = _Field(path)
                    if ordered:
                        entry.distinct = _KeyOrder()
                entry.add(row, value)
    finally:
        if gc_was_enabled:
            gc.enable()
    return fields, len(bodies)


def _as_frame(data: Any) -> pd.DataFrame:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    from segfn_kit._payloads import load_payloads

    if isinstance(data, list | tuple):
        return load_payloads(*data)
    return load_payloads(data)


def profile(frame: Any, by: str | None = None, *, scheduler: str | None = None,
            partitions: int | None = None) -> pd.DataFrame:
    """One row per field path of the payload bodies: types, presence, nulls, examples.

    Args:
        frame: a payload frame (``load_payloads``), or anything ``load_payloads`` reads.
        by: a column to profile within, e.g. ``"event_type"`` (Stripe's ``data.object``
            changes shape with the type).
        scheduler: profile on a Dask cluster (``tcp://host:port`` or ``local:N``; needs
            ``segfn_kit[dask]``): ``frame`` is then paths or fsspec URLs, each partition is
            profiled where it is read and the partial profiles are merged, so the archive
            never sits in one process's memory. The result is the one-process profile.
        partitions: with ``scheduler``, the number of partitions (default 4 per worker).

    Returns:
        A DataFrame indexed by ``field`` (or by ``(by, field)``), with columns
        ``types`` (``"integer|string"``), ``rows`` (rows in the group), ``present``
        (share of rows that have the field, null or not), ``null_rate`` (share of the
        field's values that are null), ``distinct`` (distinct non-null values),
        ``examples`` (up to three), ``mixed_types`` (more than one non-null type),
        ``timestamp_like`` and ``timestamp`` (the formats seen: ``unix``, ``unix_ms``,
        ``iso8601``, or several joined by ``|``). ``attrs["timestamp_formats"]`` maps
        each format to the fields that use it.

    Example:
        >>> from segfn_kit._payloads import load_payloads
        >>> frame = load_payloads([{"headers": {}, "body": {"id": 1, "created": 1700000000}},
        ...                        {"headers": {}, "body": {"id": "a", "created": None}}])
        >>> p = profile(frame)
        >>> p.at["id", "types"], bool(p.at["id", "mixed_types"])
        ('integer|string', True)
        >>> float(p.at["created", "null_rate"]), p.at["created", "timestamp"]
        (0.5, 'unix')
    """
    if scheduler is not None:
        from segfn_kit._cluster import profile_on_cluster

        paths = list(frame) if isinstance(frame, list | tuple) else [frame]
        return profile_on_cluster(paths, by=by, scheduler=scheduler, partitions=partitions)[0]
    data = _as_frame(frame)
    bodies = data["body"].tolist() if "body" in data.columns else []
    if by is None:
        groups: list[tuple[Any, list[Any]]] = [(None, bodies)]
    else:
        if by not in data.columns:
            raise KeyError(f"profile(by={by!r}): the frame has no column {by!r}; try 'event_type'")
        keys = ["(none)" if k is None or k != k else k for k in data[by].tolist()]
        grouped: dict[Any, list[Any]] = {}
        for key, body in zip(keys, bodies, strict=True):
            grouped.setdefault(key, []).append(body)
        groups = sorted(grouped.items(), key=lambda kv: str(kv[0]))
    return _profile_frame([(key, *_profile_rows(group_bodies)) for key, group_bodies in groups], by)


def _profile_frame(groups: list[tuple[Any, dict[str, _Field], int]], by: str | None,
                   present: dict[tuple[Any, str], int] | None = None) -> pd.DataFrame:
    """The profile's frame from each group's fields (``present`` overrides ``len(rows)``)."""
    import pandas as pd

    records: list[dict[str, Any]] = []
    formats: dict[str, list[str]] = {}
    for key, fields, count in groups:
        for path, entry in fields.items():
            non_null = [t for t in entry.types if t != "null"]
            ts = "|".join(sorted(entry.timestamps)) or None
            record: dict[str, Any] = {} if by is None else {by: key}
            record.update(
                field=path,
                types="|".join(sorted(entry.types)),
                rows=count,
                present=(len(entry.rows) if present is None else present[key, path]) / count if count else 0.0,
                null_rate=entry.nulls / entry.seen if entry.seen else 0.0,
                distinct=len(entry.distinct),
                examples=entry.examples,
                mixed_types=len(non_null) > 1,
                timestamp_like=ts is not None,
                timestamp=ts,
            )
            records.append(record)
            for fmt in entry.timestamps:
                bucket = formats.setdefault(fmt, [])
                if path not in bucket:
                    bucket.append(path)
    index_cols = ["field"] if by is None else [by, "field"]
    columns = [*index_cols, *PROFILE_COLUMNS]
    result = pd.DataFrame.from_records(records, columns=columns)
    for name in ("rows", "distinct"):
        result[name] = result[name].astype("int64")
    for name in ("present", "null_rate"):
        result[name] = result[name].astype("float64")
    for name in ("mixed_types", "timestamp_like"):
        result[name] = result[name].astype(bool)
    result = result.set_index(index_cols)
    result.attrs["timestamp_formats"] = formats
    result.attrs["mixed_timestamps"] = (
        len({"unix", "unix_ms"} & set(formats)) > 0 and "iso8601" in formats
    )
    return result


def drift(old: Any, new: Any, by: str | None = None) -> pd.DataFrame:
    """Fields added, removed, or whose types changed between two sets of payloads.

    Args:
        old: the earlier payloads: a payload frame, a profile, or paths.
        new: the later payloads, likewise.
        by: compare within groups of this column (``"event_type"``).

    Returns:
        One row per changed field, indexed like ``profile``, with columns ``change``
        (``added``, ``removed``, ``type changed``), ``old_types``, ``new_types``,
        ``old_present`` and ``new_present``. Empty when nothing changed.

    Example:
        >>> from segfn_kit._payloads import load_payloads
        >>> a = load_payloads({"headers": {}, "body": {"id": 1, "plan": "pro"}})
        >>> b = load_payloads({"headers": {}, "body": {"id": "1", "seats": 3}})
        >>> drift(a, b)["change"].to_dict()
        {'id': 'type changed', 'plan': 'removed', 'seats': 'added'}
    """
    import pandas as pd

    before = old if _is_profile(old) else profile(old, by=by)
    after = new if _is_profile(new) else profile(new, by=by)
    rows: list[dict[str, Any]] = []
    keys = list(dict.fromkeys([*before.index.tolist(), *after.index.tolist()]))
    for key in sorted(keys, key=str):
        in_old, in_new = key in before.index, key in after.index
        old_types = before.at[key, "types"] if in_old else None
        new_types = after.at[key, "types"] if in_new else None
        if in_old and in_new:
            was, now = _non_null(old_types), _non_null(new_types)
            if not was or not now or was == now:  # only-null on one side is no type change
                continue
            change = "type changed"
        else:
            change = "added" if in_new else "removed"
        rows.append(
            {
                "key": key,
                "change": change,
                "old_types": old_types,
                "new_types": new_types,
                "old_present": before.at[key, "present"] if in_old else 0.0,
                "new_present": after.at[key, "present"] if in_new else 0.0,
            }
        )
    columns = ["change", "old_types", "new_types", "old_present", "new_present"]
    names = list(before.index.names)
    if not rows:
        empty_index = (
            pd.MultiIndex.from_tuples([], names=names)
            if len(names) > 1
            else pd.Index([], name=names[0])
        )
        return pd.DataFrame(columns=columns, index=empty_index)
    index = (
        pd.MultiIndex.from_tuples([r["key"] for r in rows], names=names)
        if len(names) > 1
        else pd.Index([r["key"] for r in rows], name=names[0])
    )
    return pd.DataFrame([{c: r[c] for c in columns} for r in rows], index=index, columns=columns)


def _non_null(types: Any) -> set[str]:
    # a field that was always null and now has values has not changed type
    return {t for t in str(types).split("|") if t != "null"}


def _is_profile(value: Any) -> bool:
    import pandas as pd

    return (
        isinstance(value, pd.DataFrame) and "types" in value.columns and "present" in value.columns
    )


def _example_of_key(key: Any) -> Any:
    """The example a distinct key stands for (keys are ``(kind, value)``, canonical JSON bytes
    of containers, or ``"NaN"``)."""
    if isinstance(key, tuple):
        return _example(key[1])
    if isinstance(key, bytes):
        return _example(orjson.loads(key))
    if key == "NaN":
        return math.nan
    return key


def _merge_profiles(
    parts: list[dict[Any, tuple[dict[str, _Field], int]]],
) -> tuple[list[tuple[Any, dict[str, _Field], int]], dict[tuple[Any, str], int]]:
    """Partial profiles (per group: fields with ordered distinct keys, rows), in stream order,
    merged into what one profile of all the rows gives; and each field's present count."""
    merged: dict[Any, tuple[dict[str, _Field], list[int]]] = {}
    present: dict[tuple[Any, str], int] = {}
    for part in parts:
        for key, (fields, count) in part.items():
            target, total = merged.setdefault(key, ({}, [0]))
            total[0] += count
            for path, entry in fields.items():
                m = target.get(path)
                if m is None:
                    m = target[path] = _Field(path)
                    present[key, path] = 0
                present[key, path] += len(entry.rows)
                m.seen += entry.seen
                m.nulls += entry.nulls
                for kind, n in entry.types.items():
                    m.types[kind] = m.types.get(kind, 0) + n
                for fmt, n in entry.timestamps.items():
                    m.timestamps[fmt] = m.timestamps.get(fmt, 0) + n
                for i, dk in enumerate(entry.distinct):
                    if len(m.distinct) >= MAX_DISTINCT:
                        break
                    if dk not in m.distinct:
                        m.distinct.add(dk)
                        if len(m.examples) < MAX_EXAMPLES:
                            m.examples.append(entry.examples[i] if i < len(entry.examples) else _example_of_key(dk))
    groups = [(key, fields, total[0]) for key, (fields, total) in merged.items()]
    if not (len(groups) == 1 and groups[0][0] is None):
        groups.sort(key=lambda g: str(g[0]))
    return groups, present
