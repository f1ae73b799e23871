"""Segment spec events to run a destination function over: from files, a source run, or made up.

``sample_events`` returns an *event frame*, the input of ``run`` for destination functions:

========== ===== ==================================================================
column     type  meaning
========== ===== ==================================================================
(index)    str   ``payload_id``: the event's id, stable across loads
event      dict  the spec event (``None`` when the entry could not be read)
event_type str   the event's ``type`` (``None`` when it has none)
source     str   the file it came from, ``generated``, or ``source run``
position   int   line / entry number within the file (1-based; 0 for one-event files)
payload    str   for events from a source run: the payload that produced the event
error      str   why this entry is not an event (bad JSON line, ...), else ``None``
========== ===== ==================================================================

Ids follow the payload frame's rule: ``<file name>`` for a file holding one event,
``<file name>#<n>`` for files holding many, ``<payload_id>:<n>`` for the n-th event a source
run produced from a payload, ``generated#<n>`` for made-up events.
"""

from __future__ import annotations

import datetime as _dt
import glob
import gzip
import json
import os
import random
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["EVENT_COLUMNS", "is_event_frame", "sample_events"]

EVENT_COLUMNS = ["event", "event_type", "source", "position", "payload", "error"]
_SUFFIXES = (".json", ".jsonl", ".ndjson")
_GENERATED_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_ID_NAMESPACE = uuid.UUID("0b7d1c36-52a4-4f0e-9d1e-3f6c2a9e8b41")

Source = str | os.PathLike[str] | pd.DataFrame | Mapping[str, Any] | Iterable[Mapping[str, Any]]


def sample_events(
    *sources: Source,
    n: int = 12,
    types: Sequence[str] = _GENERATED_TYPES,
    seed: int = 0,
) -> pd.DataFrame:
    """Spec events for a destination run, as an event frame.

    Args:
        *sources: JSON or JSON Lines files of spec events (a single event, an array, or a
            Tracking API ``{"batch": [...]}`` body; ``.gz`` too), directories of them, glob
            patterns (``exports/**/*.jsonl``), the
            result frame of a source function's ``run`` (its ``events`` column), a list of
            event dicts, or one event dict. None at all: generated events.
        n: how many events to generate (only without sources).
        types: which types to generate, in turn (``identify``, ``track``, ``page``,
            ``screen``, ``group``, ``alias``, ``delete``).
        seed: the seed of the generated values; the same seed gives the same events.

    Returns:
        One row per event; unreadable entries get a row with ``error`` set, so nothing is
        dropped without a word.

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a source of a kind this function does not read.

    Example:
        >>> events = sample_events(n=3)
        >>> list(events.index)
        ['generated#1', 'generated#2', 'generated#3']
        >>> list(events["event_type"])
        ['identify', 'track', 'page']
        >>> sample_events([{"type": "track", "userId": "u1", "event": "Order Failed"}])["event_type"].tolist()
        ['track']
    """
    if not sources:
        return _frame(_generated(n, types, seed))
    rows: list[dict[str, Any]] = []
    for source in sources:
        rows.extend(_rows_from(source))
    frame = _frame(rows)
    if frame.index.has_duplicates:
        # the same file given twice, or two files with one name in different folders
        seen: dict[str, int] = {}
        ids = []
        for pid in frame.index:
            seen[pid] = seen.get(pid, 0) + 1
            ids.append(pid if seen[pid] == 1 else f"{pid}@{seen[pid]}")
        frame.index = pd.Index(ids, name="payload_id")
    return frame


def is_event_frame(frame: Any) -> bool:
    """A frame ``sample_events`` made (it has an ``event`` column)."""
    return isinstance(frame, pd.DataFrame) and "event" in frame.columns


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["payload_id", *EVENT_COLUMNS])
    frame = frame.astype({"position": "int64"}) if len(frame) else frame
    for column in ("event", "event_type", "payload", "error"):
        frame[column] = frame[column].astype(object)
        frame[column] = frame[column].where(frame[column].notna(), None)
    return frame.set_index("payload_id")


def _row(pid: str, event: Any, source: str, position: int, payload: str | None = None,
         error: str | None = None) -> dict[str, Any]:
    kind = event.get("type") if isinstance(event, Mapping) else None
    return {
        "payload_id": pid,
        "event": dict(event) if isinstance(event, Mapping) else event,
        "event_type": kind if isinstance(kind, str) else None,
        "source": source,
        "position": position,
        "payload": payload,
        "error": error,
    }


def _rows_from(source: Source) -> list[dict[str, Any]]:
    if isinstance(source, pd.DataFrame):
        return _rows_from_frame(source)
    if isinstance(source, str | os.PathLike):
        return _rows_from_path(Path(source))
    if isinstance(source, Mapping):
        return [_row("events", source, "events", 0)]
    if isinstance(source, Iterable):
        return [_row(f"events#{i}", e, "events", i) for i, e in enumerate(source, 1)]
    raise ValueError(
        f"cannot read events from a {type(source).__name__}; give JSON / JSON Lines files, "
        "a source run's result frame, or a list of event dicts"
    )


def _rows_from_frame(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if "event" in frame.columns:  # already an event frame
        return [
            {"payload_id": str(pid), **{c: row.get(c) for c in EVENT_COLUMNS}}
            for pid, row in zip(frame.index, frame.to_dict("records"), strict=True)
        ]
    if "events" not in frame.columns and "body" in frame.columns:
        # a payload frame (load_payloads) of captured events: each body is one event
        return [
            _row(str(pid), row.get("body"), str(row.get("source") or "payloads"),
                 int(row.get("position") or 0), error=row.get("error") or None)
            for pid, row in zip(frame.index, frame.to_dict("records"), strict=True)
        ]
    if "events" not in frame.columns:
        raise ValueError(
            "the frame has no 'events' column: pass the result frame of run(source_function, "
            "payloads), or an event frame from sample_events()"
        )
    rows = []
    for pid, events in zip(frame.index, frame["events"], strict=True):
        for i, event in enumerate(events if isinstance(events, list) else [], 1):
            rows.append(_row(f"{pid}:{i}", event, "source run", i, payload=str(pid)))
    return rows


def _rows_from_path(path: Path) -> list[dict[str, Any]]:
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and p.name.removesuffix(".gz").endswith(_SUFFIXES)
        )
        rows = []
        for file in files:
            rows.extend(_rows_from_file(file, f"{path.name}/{file.relative_to(path).as_posix()}"))
        return rows
    if not path.exists():
        if any(c in str(path) for c in "*?["):  # a glob the shell did not expand
            matches = sorted(glob.glob(str(path), recursive=True))
            if matches:
                return [row for match in matches for row in _rows_from_path(Path(match))]
        raise FileNotFoundError(f"{path}: no such file or directory of events")
    return _rows_from_file(path, path.name)


def _rows_from_file(path: Path, name: str) -> list[dict[str, Any]]:
    source = str(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        return [_row(name, None, source, 0, error=f"{path}: cannot read the file ({exc}); "
                     "give UTF-8 JSON or JSON Lines")]
    stripped = text.strip()
    if not stripped:
        return [_row(name, None, source, 0, error=f"{path}: the file is empty")]
    # JSON Lines files are read line by line even with one line, so ids never shift
    lines = path.name.removesuffix(".gz").endswith((".jsonl", ".ndjson"))
    whole: Any = None
    if not lines:
        try:
            whole = json.loads(stripped)
        except ValueError:
            lines = True  # a .json file holding JSON Lines
    if not lines:
        if isinstance(whole, Mapping) and isinstance(whole.get("batch"), list):
            whole = whole["batch"]  # a Tracking API /v1/batch body
        if isinstance(whole, list):
            return [_row(f"{name}#{i}", e, source, i) for i, e in enumerate(whole, 1)]
        return [_row(name, whole, source, 0)]
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as exc:
            rows.append(_row(f"{name}#{i}", None, source, i,
                             error=f"{path}, line {i}: not JSON ({exc}); fix or remove the line"))
            continue
        rows.append(_row(f"{name}#{i}", event, source, i))
    return rows


# -- generated events --------------------------------------------------------------------
_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Frances", "Donald"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Torvalds", "Allen", "Knuth"]
_TRACKS: list[tuple[str, Callable[[random.Random], dict[str, Any]]]] = [
    ("Order Completed", lambda r: {"order_id": f"ord_{r.randrange(10**6):06d}",
                                   "total": round(r.uniform(10, 400), 2), "currency": "USD"}),
    ("Order Failed", lambda r: {"order_id": f"ord_{r.randrange(10**6):06d}",
                                "total": round(r.uniform(10, 400), 2), "currency": "USD",
                                "reason": r.choice(["card_declined", "out_of_stock", "address_invalid"])}),
    ("Support Requested", lambda r: {"topic": r.choice(["billing", "shipping", "login"]),
                                     "message": "I need help with my account."}),
    ("Product Viewed", lambda r: {"product_id": f"sku_{r.randrange(1000):03d}", "price": 19.99}),
]


def _generated(n: int, types: Sequence[str], seed: int) -> list[dict[str, Any]]:
    from segfn_kit import spec

    unknown = [t for t in types if t not in (*_GENERATED_TYPES, "delete")]
    if unknown or not types:
        raise ValueError(
            f"cannot generate events of type(s) {unknown or '(none given)'}; "
            f"choose from {', '.join((*_GENERATED_TYPES, 'delete'))}"
        )
    rng = random.Random(seed)
    start = _dt.datetime(2026, 1, 15, 9, 0, tzinfo=_dt.UTC)
    rows = []
    tracks = 0
    for i in range(1, n + 1):
        kind = types[(i - 1) % len(types)]
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        user_id = f"user_{rng.randrange(10**4):04d}"
        common: dict[str, Any] = {
            "user_id": user_id,
            "message_id": str(uuid.uuid5(_ID_NAMESPACE, f"{seed}:{i}")),
            "timestamp": (start + _dt.timedelta(minutes=7 * i)).isoformat().replace("+00:00", "Z"),
            "context": {"library": {"name": "segfn_kit.sample_events", "version": "1"}},
        }
        email = f"{first.lower()}.{last.lower()}@example.com"
        model: Any
        if kind == "identify":
            model = spec.Identify(**common, traits={"email": email, "name": f"{first} {last}",
                                                    "plan": rng.choice(["free", "pro", "enterprise"])})
        elif kind == "track":
            name, props = _TRACKS[tracks % len(_TRACKS)]
            tracks += 1
            properties = props(rng)
            properties["email"] = email
            model = spec.Track(**common, event=name, properties=properties)
        elif kind == "page":
            model = spec.Page(**common, name="Pricing", properties={"path": "/pricing", "url": "https://example.com/pricing"})
        elif kind == "screen":
            model = spec.Screen(**common, name="Checkout", properties={"step": rng.randint(1, 3)})
        elif kind == "group":
            model = spec.Group(**common, group_id=f"acct_{rng.randrange(100):02d}",
                               traits={"name": f"{last} & Co", "employees": rng.randint(5, 500)})
        elif kind == "alias":
            model = spec.Alias(**common, previous_id=f"anon_{rng.randrange(10**6):06d}")
        else:  # delete: Segment's deletion request, not a Tracking API message
            model = None
        if model is None:
            event = {"type": "delete", "userId": user_id, "messageId": common["message_id"],
                     "timestamp": common["timestamp"]}
        else:
            event = model.model_dump(by_alias=True, exclude_none=True)
        rows.append(_row(f"generated#{i}", event, "generated", i))
    return rows
