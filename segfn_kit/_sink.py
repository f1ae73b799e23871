"""A local server compatible with the Segment Tracking API, that can be told to fail.

It answers ``/v1/batch``, ``/v1/import``, ``/v1/track``, ``/v1/identify``, ``/v1/page``,
``/v1/screen``, ``/v1/group`` and ``/v1/alias`` as Segment does, and the Objects API's
``/v1/set`` (``{"collection", "objects": [{"id", "properties"}, ...]}``, the objects kept in
an ``objects`` table, ``read_sink(store, objects=True)``), so one URL can stand for both hosts:

- HTTP Basic auth with the write key as user name (or ``writeKey`` in the body); 401 otherwise,
  or, with ``segment_auth=True`` (``segfn sink --segment-auth``), 200 as Segment answers, the
  request recorded as rejected and its events in the ``rejected`` table;
- 400 for invalid JSON, an event over 32 KB (the answer names its messageId) or a batch over
  500 KB; gzip request bodies (``Content-Encoding: gzip``) are accepted;
- error answers carry ``{"success": false, "code", "message"}``: ``code`` and ``message`` are
  what analytics-python (``APIError``) and rudder-sdk-python read;
- a lone UTF-16 surrogate escape (``"\\ud83d"``) becomes U+FFFD, as Segment's JSON decoder
  (Go's ``encoding/json``) does; the request's ``note`` says so and the rest of the batch is kept;
- events Segment drops (``runtime.reject_event``: an unknown type, neither userId nor
  anonymousId, a track without ``event``, ...) are answered 200 as Segment does and stored in a
  ``rejected`` table with the reason (``read_sink(store, rejected=True)``), not as delivered;
- a batch of more than 2,500 events is answered 200 but only the first 2,500 are kept, as
  Segment does; the rest are recorded in a ``dropped`` table so a test can see the loss;
- every request is on record with its status (``read_sink(store, requests=True)``), whatever
  happened to it, a failure of the sink itself included (500, ``code: "sink_error"``).

Accepted events go to SQLite with their messageId; a messageId seen before is stored again
but marked ``duplicate`` (Segment would deduplicate it), so redeliveries stay visible.
``read_sink(store)`` reads the store as a DataFrame.

Faults are injected on command, over HTTP (``POST /__faults``) or from the command line
(``segfn sink --fail-rate 0.3``): a share of requests answered 500, 429 with ``Retry-After``,
slowly, or with the connection dropped without an answer; seeded, so runs repeat.

Example:
    >>> import httpx
    >>> with running_sink(write_key="KEY") as url:
    ...     r = httpx.post(url + "/v1/track", auth=("KEY", ""),
    ...                    json={"userId": "u1", "event": "Paid", "messageId": "m1"})
    ...     r.status_code, r.json()
    (200, {'success': True})
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as _dt
import json
import os
import random
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from segfn_kit.runtime._delivery import MAX_BATCH_BYTES, MAX_BATCH_EVENTS
from segfn_kit.runtime._rules import MAX_EVENT_BYTES, reject_event

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "FAULT_KINDS",
    "Faults",
    "Sink",
    "SinkStore",
    "read_sink",
    "running_sink",
    "serve",
]

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
MAX_SET_OBJECTS = 100
"""Objects per ``/v1/set`` body the sink accepts (segmentio/objects-go's batch size)."""
FAULT_KINDS = ("500", "429", "400", "drop", "slow", "lost")
"""``500``, ``429`` (with ``Retry-After``) and ``400`` answer at once without storing; ``drop`` closes
the connection without an answer and stores nothing; ``slow`` answers normally after
``delay`` seconds; ``lost`` stores the events and then drops the connection, so the sender
never learns they were accepted (its retry is a duplicate that Segment deduplicates)."""

# a compressed body may not inflate past this: what a 500 KB batch can be, with headroom
_MAX_BODY = 4 * MAX_BATCH_BYTES


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Faults:
    """What share of requests fail, and how.

    Attributes:
        fail_rate: share of ``/v1/*`` requests that get a fault (0 to 1).
        mix: fault kind -> weight, among ``FAULT_KINDS``.
        retry_after: seconds sent in ``Retry-After`` with a 429.
        delay: seconds a ``slow`` answer waits.
        seed: seeds the choice of which requests fail, so a run repeats.
        script: faults for the next requests, in order, before ``fail_rate`` applies
            (``"ok"`` for a normal answer).

    Example:
        >>> f = Faults(fail_rate=1.0, mix={"500": 1}, seed=1)
        >>> f.choose()
        '500'
        >>> Faults(script=["429", "ok"]).choose()
        '429'
    """

    fail_rate: float = 0.0
    mix: dict[str, float] = field(default_factory=lambda: {"500": 1.0, "429": 1.0, "drop": 1.0})
    retry_after: float = 1.0
    delay: float = 2.0
    seed: int | None = None
    script: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 <= self.fail_rate <= 1:
            raise ValueError(f"fail_rate must be between 0 and 1, not {self.fail_rate}")
        unknown = sorted(set(self.mix) - set(FAULT_KINDS) | set(self.script) - {*FAULT_KINDS, "ok"})
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; choose from {', '.join(FAULT_KINDS)}")
        if self.fail_rate and not any(w > 0 for w in self.mix.values()):
            raise ValueError("mix gives every fault kind a weight of 0")
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def choose(self) -> str | None:
        """The fault for the next request, or ``None`` for a normal answer."""
        with self._lock:
            if self.script:
                kind = self.script.pop(0)
                return None if kind == "ok" else kind
            if not self.fail_rate or self._rng.random() >= self.fail_rate:
                return None
            kinds = [k for k, w in self.mix.items() if w > 0]
            return self._rng.choices(kinds, weights=[self.mix[k] for k in kinds])[0]

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON (what ``GET /__faults`` answers)."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}

    @classmethod
    def parse_mix(cls, text: str) -> dict[str, float]:
        """``"500=1,429=1,drop=2"`` -> ``{"500": 1.0, "429": 1.0, "drop": 2.0}``.

        Example:
            >>> Faults.parse_mix("500=1,drop=2")
            {'500': 1.0, 'drop': 2.0}
        """
        mix: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            kind, _, weight = part.partition("=")
            try:
                mix[kind.strip()] = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(f"bad weight in fault mix {part!r}: write KIND=NUMBER") from None
        return mix


class SinkStore:
    """The SQLite file the sink writes; safe to read while the sink runs (WAL mode).

    Tables: ``events`` (every accepted event, ``duplicate`` = its messageId was seen before),
    ``dropped`` (events past 2,500 in a batch, answered 200 but not kept) and ``objects``
    (every accepted ``/v1/set`` object, redeliveries included).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # durability of a test sink: losing the last commits on power loss is acceptable
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS events (
                seq INTEGER PRIMARY KEY, message_id TEXT, type TEXT, endpoint TEXT,
                received_at TEXT, duplicate INTEGER NOT NULL, event TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS message_ids (message_id TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS requests (
                seq INTEGER PRIMARY KEY, endpoint TEXT, status INTEGER, fault TEXT, events INTEGER,
                body_bytes INTEGER, wire_bytes INTEGER, content_encoding TEXT, received_at TEXT,
                rejected INTEGER NOT NULL DEFAULT 0, note TEXT);
            CREATE TABLE IF NOT EXISTS rejected (
                seq INTEGER PRIMARY KEY, message_id TEXT, type TEXT, endpoint TEXT, reason TEXT NOT NULL,
                received_at TEXT, event TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS dropped (
                seq INTEGER PRIMARY KEY, message_id TEXT, reason TEXT, received_at TEXT,
                event TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS objects (
                seq INTEGER PRIMARY KEY, collection TEXT NOT NULL, object_id TEXT NOT NULL,
                received_at TEXT, properties TEXT NOT NULL);
            """
        )
        # a store written before requests had these columns
        have = {row[1] for row in self._db.execute("PRAGMA table_info(requests)")}
        if "rejected" not in have:
            self._db.execute("ALTER TABLE requests ADD COLUMN rejected INTEGER NOT NULL DEFAULT 0")
        if "note" not in have:
            self._db.execute("ALTER TABLE requests ADD COLUMN note TEXT")
        self._lock = threading.Lock()

    def add(self, events: list[dict[str, Any]], endpoint: str, received_at: str) -> tuple[int, int]:
        """Store accepted events; returns (stored, of which duplicates)."""
        duplicates = 0
        rows = []
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for event in events:
                    mid = event.get("messageId")
                    mid = mid if isinstance(mid, str) else None
                    dup = 0
                    if mid is not None:
                        cur = self._db.execute("INSERT OR IGNORE INTO message_ids VALUES (?)", (mid,))
                        dup = int(cur.rowcount == 0)
                    duplicates += dup
                    rows.append((mid, event.get("type"), endpoint, received_at, dup,
                                 json.dumps(event, ensure_ascii=False, separators=(",", ":"))))
                self._db.executemany(
                    "INSERT INTO events (message_id, type, endpoint, received_at, duplicate, event) "
                    "VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows), duplicates

    def add_objects(self, collection: str, objects: list[dict[str, Any]], received_at: str) -> int:
        """Store the objects of one ``/v1/set`` body; returns how many."""
        rows = [(collection, obj["id"], received_at,
                 json.dumps(obj["properties"], ensure_ascii=False, separators=(",", ":")))
                for obj in objects]
        with self._lock:
            self._db.executemany(
                "INSERT INTO objects (collection, object_id, received_at, properties) VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def add_dropped(self, events: list[Any], reason: str, received_at: str) -> None:
        """Record events the sink answered 200 for but did not keep (as Segment drops them)."""
        with self._lock:
            self._db.executemany(
                "INSERT INTO dropped (message_id, reason, received_at, event) VALUES (?, ?, ?, ?)",
                [(e.get("messageId") if isinstance(e, dict) else None, reason, received_at,
                  json.dumps(e, ensure_ascii=False)) for e in events],
            )

    def add_rejected(self, rejected: list[tuple[Any, str]], endpoint: str, received_at: str) -> None:
        """Record events answered 200 but not delivered, each with the reason Segment drops it."""
        with self._lock:
            self._db.executemany(
                "INSERT INTO rejected (message_id, type, endpoint, reason, received_at, event) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(_text_or_none(e.get("messageId")) if isinstance(e, dict) else None,
                  _text_or_none(e.get("type")) if isinstance(e, dict) else None,
                  endpoint, reason, received_at, json.dumps(e, ensure_ascii=False, separators=(",", ":")))
                 for e, reason in rejected],
            )

    def log_request(self, endpoint: str, status: int, fault: str | None, events: int,
                    body_bytes: int, wire_bytes: int, content_encoding: str | None,
                    rejected: int = 0, note: str | None = None) -> None:
        """Record one request (what ``read_sink(store, requests=True)`` shows)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO requests (endpoint, status, fault, events, body_bytes, wire_bytes, "
                "content_encoding, received_at, rejected, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (endpoint, status, fault, events, body_bytes, wire_bytes, content_encoding, _now(),
                 rejected, note))

    def counts(self) -> dict[str, int]:
        """Events stored, unique messageIds, duplicates, dropped, objects, rejected."""
        with self._lock:
            stored, dups = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(duplicate), 0) FROM events").fetchone()
            (unique,) = self._db.execute("SELECT COUNT(*) FROM message_ids").fetchone()
            (dropped,) = self._db.execute("SELECT COUNT(*) FROM dropped").fetchone()
            (objects,) = self._db.execute("SELECT COUNT(*) FROM objects").fetchone()
            (rejected,) = self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()
        return {"stored": stored, "unique": unique, "duplicates": dups, "dropped": dropped, "objects": objects,
                "rejected": rejected}

    def close(self) -> None:
        with self._lock:
            self._db.close()


ERROR_CODES = {400: "invalid_request", 401: "unauthorized", 429: "rate_limited", 500: "server_error"}
"""The ``code`` of an error answer by status (``message`` says what exactly); SDKs read both."""


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """An error answer as SDKs read it: ``success``, ``code`` and ``message``.

    Example:
        >>> error_body(401, "invalid write key")
        {'success': False, 'code': 'unauthorized', 'message': 'invalid write key'}
    """
    return {"success": False, "code": code or ERROR_CODES.get(status, "error"), "message": message}


class _Reject(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


class Sink:
    """The sink's state and its ASGI app (``sink.app``), to serve with uvicorn.

    Args:
        store: the SQLite file to write.
        write_key: the key requests must carry; ``None`` accepts any non-empty key.
        faults: faults to inject (changeable later through ``POST /__faults``).
        segment_auth: answer a missing or wrong write key as Segment does (200, the request
            recorded as rejected and its events in the ``rejected`` table) instead of 401.
    """

    def __init__(self, store: str | os.PathLike[str], write_key: str | None = None,
                 faults: Faults | None = None, segment_auth: bool = False):
        self.store = SinkStore(store)
        self._write_key = write_key
        self.segment_auth = segment_auth
        self.faults = faults or Faults()
        self.counters: dict[str, int] = {}
        self._paths = frozenset(f"/v1/{kind}" for kind in (*EVENT_TYPES, "batch", "import", "set"))
        routes = [Route(f"/v1/{kind}", self._endpoint, methods=["POST"])
                  for kind in (*EVENT_TYPES, "batch", "import", "set")]
        routes += [
            Route("/__faults", self._faults_endpoint, methods=["GET", "POST"]),
            Route("/__stats", self._stats_endpoint, methods=["GET"]),
            Route("/", self._index, methods=["GET"]),
        ]
        self._starlette = Starlette(routes=routes)

    def __repr__(self) -> str:
        return f"<Sink store={self.store.path}>"

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def stats(self) -> dict[str, Any]:
        """Counters (requests, answers by status, faults by kind) and the store's counts."""
        return {**dict(sorted(self.counters.items())), **self.store.counts()}

    # -- ASGI --------------------------------------------------------------------------
    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point; faults are applied here, where the connection is reachable."""
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith("/v1/"):
            await self._starlette(scope, receive, send)
            return
        self._count("requests")
        endpoint = str(scope["path"]).rsplit("/", 1)[-1]
        if str(scope["path"]) not in self._paths or scope.get("method") != "POST":
            # no such endpoint, or not a POST: answered (and recorded) here, as every request is
            wire = await _drain(receive)
            status, message, code = (
                (404, f"no endpoint {scope['path']}; use " + ", ".join(sorted(self._paths)), "not_found")
                if str(scope["path"]) not in self._paths
                else (405, f"{scope.get('method')} is not allowed; the Tracking API takes POST", "method_not_allowed"))
            self.store.log_request(endpoint, status, None, 0, 0, wire, _header_of(scope, b"content-encoding"))
            self._count(f"status_{status}")
            await JSONResponse(error_body(status, message, code), status)(scope, receive, send)
            return
        fault = self.faults.choose()
        if fault is not None:
            self._count(f"fault_{fault}")
        if fault == "slow":
            await asyncio.sleep(self.faults.delay)
        if fault in ("500", "429", "400", "drop"):
            wire = await _drain(receive)
            encoding = _header_of(scope, b"content-encoding")
            self.store.log_request(endpoint, 0 if fault == "drop" else int(fault), fault, 0, 0, wire, encoding)
            if fault == "drop":
                await _drop_connection(send)
                return
            headers = {"Retry-After": f"{self.faults.retry_after:g}"} if fault == "429" else {}
            message = {"500": "injected fault: server error", "429": "injected fault: rate limited",
                       "400": "injected fault: bad request"}[fault]
            self._count(f"status_{fault}")
            response = JSONResponse(error_body(int(fault), message), int(fault), headers)
            await response(scope, receive, send)
            return
        # Starlette wraps ``send``; keep uvicorn's own, which can reach the connection
        scope.setdefault("state", {}).update(segfn_fault=fault, segfn_send=send)
        await self._starlette(scope, receive, send)

    async def _endpoint(self, request: Request) -> Response:
        kind = request.url.path.rsplit("/", 1)[-1]
        state = request.scope.get("state", {})
        lost = state.get("segfn_fault") == "lost"
        info = _Info()
        try:
            status, body = await self._accept(request, kind, info)
        except _Reject as exc:
            status, body = exc.status, error_body(exc.status, exc.message, exc.code)
        except Exception as exc:  # the sink's own failure: still an answer, still on record
            status = 500
            body = error_body(500, f"the sink failed on this request: {type(exc).__name__}: {exc}", "sink_error")
            info.note = _join(info.note, body["message"])
        try:
            self.store.log_request(kind, 0 if lost and status == 200 else status, state.get("segfn_fault"),
                                   info.events, info.body_bytes, info.wire_bytes,
                                   request.headers.get("content-encoding"), info.rejected, info.note)
        except Exception as exc:  # pragma: no cover - a store that cannot be written
            status, body = 500, error_body(500, f"the sink cannot record the request: {exc}", "sink_error")
        if lost and status == 200:
            return _DropResponse(state["segfn_send"])
        self._count(f"status_{status}")
        return JSONResponse(body, status)

    async def _accept(self, request: Request, kind: str, info: _Info) -> tuple[int, dict[str, Any]]:
        header_key = _basic_user(request.headers.get("authorization"))
        key_refused: str | None = None
        if header_key is not None and not self._key_ok(header_key):
            key_refused = "invalid write key"
            if not self.segment_auth:
                raise _Reject(401, key_refused)
        raw = await _read_body(request, info)
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise _Reject(400, "invalid JSON") from None
        if not isinstance(payload, dict):
            raise _Reject(400, "the body must be a JSON object")
        if _MAYBE_SURROGATE.search(raw):
            replaced = [0]
            payload = _without_lone_surrogates(payload, replaced)
            if replaced[0]:
                info.note = _join(info.note, f"{replaced[0]:,} lone UTF-16 surrogate escape(s) replaced by "
                                             "U+FFFD, as Segment's JSON decoder does")
        body_key = payload.pop("writeKey", None)
        if kind == "set":
            # early objects-go clients put the key in the body as write_key
            body_key = payload.pop("write_key", body_key)
        if header_key is None and not (isinstance(body_key, str) and self._key_ok(body_key)):
            key_refused = "missing or invalid write key: use Basic auth or writeKey"
            if not self.segment_auth:
                raise _Reject(401, key_refused)
        received_at = _now()
        if kind == "set":
            collection, objects = _check_set(payload, len(raw))
            if key_refused is not None:
                return self._refused(info, key_refused)
            stored = self.store.add_objects(collection, objects, received_at)
            info.events = stored
            self._count("objects", stored)
            return 200, {"success": True}
        if kind in ("batch", "import"):
            if len(raw) > MAX_BATCH_BYTES:
                raise _Reject(400, f"batch of {len(raw):,} bytes is over the {MAX_BATCH_BYTES:,}-byte limit",
                              "batch_too_large")
            batch = payload.get("batch")
            if not isinstance(batch, list):
                raise _Reject(400, "a batch body needs a \"batch\" list")
            for event in batch:
                _check_event(event)
            kept, dropped = batch[:MAX_BATCH_EVENTS], batch[MAX_BATCH_EVENTS:]
            # a batch's own context and integrations apply to every message (Segment's batch API)
            shared = {k: payload[k] for k in ("context", "integrations") if isinstance(payload.get(k), dict)}
            events = [_received(_merged(e, shared), None, payload.get("sentAt"), received_at) for e in kept]
        else:
            if len(raw) > MAX_EVENT_BYTES:
                raise _Reject(400, f"event of {len(raw):,} bytes is over the {MAX_EVENT_BYTES:,}-byte limit",
                              "message_too_large")
            _check_event(payload)
            dropped = []
            events = [_received(payload, kind, payload.get("sentAt"), received_at)]
        if key_refused is not None:
            reason = f"{key_refused}: answered 200 as Segment does, nothing delivered"
            self.store.add_rejected([(e, reason) for e in events + dropped], kind, received_at)
            self._count("rejected", len(events) + len(dropped))
            return self._refused(info, key_refused, len(events) + len(dropped))
        if dropped:
            self.store.add_dropped(dropped, f"over {MAX_BATCH_EVENTS} events in one batch", received_at)
            self._count("dropped_over_limit", len(dropped))
        rejected: list[tuple[Any, str]] = []
        accepted: list[dict[str, Any]] = []
        for event in events:
            why = reject_event(event)
            if why is None:
                accepted.append(event)
            else:
                rejected.append((event, why))
        if rejected:
            self.store.add_rejected(rejected, kind, received_at)
            info.rejected = len(rejected)
            self._count("rejected", len(rejected))
        stored, duplicates = self.store.add(accepted, kind, received_at) if accepted else (0, 0)
        info.events = stored
        self._count("events", stored)
        self._count("duplicates", duplicates)
        return 200, {"success": True}

    def _refused(self, info: _Info, why: str, events: int = 0) -> tuple[int, dict[str, Any]]:
        """A request with a bad write key, answered as Segment does (``segment_auth``)."""
        info.rejected = events
        info.note = _join(info.note, f"rejected: {why} (answered 200, as Segment does)")
        self._count("rejected_requests")
        return 200, {"success": True}

    def _key_ok(self, key: str) -> bool:
        if self._write_key is None:
            return bool(key)
        import hmac

        return hmac.compare_digest(key.encode(), self._write_key.encode())

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                spec = await request.json()
                if not isinstance(spec, dict):
                    raise TypeError("a JSON object")
                self.faults = Faults(**{**self.faults.as_dict(), **spec})
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": f"bad fault settings: {exc}"}, 400)
        return JSONResponse(self.faults.as_dict())

    async def _stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def _index(self, request: Request) -> Response:
        return JSONResponse({"service": "segfn sink",
                             "endpoints": [f"/v1/{k}" for k in (*EVENT_TYPES, "batch", "import", "set")],
                             "stats": self.stats()})


class _DropResponse(Response):
    """Close the connection instead of answering."""

    def __init__(self, raw_send: Send) -> None:
        super().__init__(b"", 200)
        self._raw_send = raw_send

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _drop_connection(self._raw_send)


async def _drop_connection(send: Send) -> None:
    """Close the TCP connection without an answer, as a crashed or overloaded server does.

    ASGI has no message for this, so the transport is taken from uvicorn's request cycle
    (``send`` is a bound method of it); waiting a loop turn lets uvicorn see the
    disconnection and not answer 500 in our place. Without uvicorn, answer 503 instead.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    transport.abort()
    for _ in range(3):
        await asyncio.sleep(0)


@dataclass
class _Info:
    """What one request carried, for the ``requests`` table."""

    events: int = 0
    body_bytes: int = 0
    wire_bytes: int = 0
    rejected: int = 0
    note: str | None = None


def _join(note: str | None, more: str) -> str:
    return more if not note else f"{note}; {more}"


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# a JSON escape of a UTF-16 surrogate, paired or not: only then can a parsed string hold a lone one
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any, count: list[int]) -> Any:
    """``value`` with each lone surrogate (in keys and strings) replaced by U+FFFD, as Go's
    ``encoding/json`` decodes ``"\\ud83d"``; paired escapes were already joined by the parser."""
    if isinstance(value, str):
        fixed, n = _SURROGATE.subn("\ufffd", value)
        count[0] += n
        return fixed
    if isinstance(value, list):
        return [_without_lone_surrogates(v, count) for v in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k, count): _without_lone_surrogates(v, count) for k, v in value.items()}
    return value


def _header_of(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _drain(receive: Receive) -> int:
    """Read and discard a request body (bounded); returns its size."""
    size = 0
    more = True
    while more and size <= _MAX_BODY:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        size += len(message.get("body", b""))
        more = bool(message.get("more_body"))
    return size


async def _read_body(request: Request, info: _Info) -> bytes:
    encoding = request.headers.get("content-encoding", "").strip().lower()
    chunks: list[bytes] = []
    size = 0
    inflater = zlib.decompressobj(wbits=47) if encoding == "gzip" else None  # 47: gzip or zlib
    if encoding not in ("", "identity", "gzip"):
        raise _Reject(400, f"unsupported Content-Encoding {encoding!r}: send gzip or nothing")
    async for chunk in request.stream():
        info.wire_bytes += len(chunk)
        if inflater is not None:
            try:
                chunk = inflater.decompress(chunk, _MAX_BODY + 1 - size)
            except zlib.error:
                raise _Reject(400, "the gzip body is corrupt") from None
        size += len(chunk)
        if size > _MAX_BODY:
            raise _Reject(400, f"body over {_MAX_BODY:,} bytes")
        chunks.append(chunk)
        info.body_bytes = size
    if inflater is not None and not inflater.eof:
        raise _Reject(400, "the gzip body is truncated")
    return b"".join(chunks)


def _check_event(event: Any) -> None:
    if not isinstance(event, dict):
        raise _Reject(400, "every event must be a JSON object")
    size = len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    if size > MAX_EVENT_BYTES:
        raise _Reject(400, f"event with messageId {event.get('messageId')!r} is {size:,} bytes, "
                           f"over the {MAX_EVENT_BYTES:,}-byte limit", "message_too_large")


def _check_set(payload: dict[str, Any], size: int) -> tuple[str, list[dict[str, Any]]]:
    """The collection and objects of a ``/v1/set`` body, or a 400 naming what is wrong."""
    if size > MAX_BATCH_BYTES:
        raise _Reject(400, f"set body of {size:,} bytes is over the {MAX_BATCH_BYTES:,}-byte limit")
    collection = payload.get("collection")
    if not isinstance(collection, str) or not collection:
        raise _Reject(400, "a set body needs a non-empty \"collection\"")
    if collection != collection.lower():
        raise _Reject(400, f"collection {collection!r} must be lower case")
    objects = payload.get("objects")
    if not isinstance(objects, list) or not objects:
        raise _Reject(400, "a set body needs a non-empty \"objects\" list")
    if len(objects) > MAX_SET_OBJECTS:
        raise _Reject(400, f"{len(objects)} objects in one set body, over {MAX_SET_OBJECTS}")
    for index, obj in enumerate(objects):
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"]:
            raise _Reject(400, f"objects[{index}] needs a non-empty string \"id\"")
        if not isinstance(obj.get("properties"), dict):
            raise _Reject(400, f"objects[{index}] (id {obj['id']!r}) needs \"properties\" as an object")
    return collection, objects


def _merged(event: dict[str, Any], shared: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not shared:
        return event
    event = dict(event)
    for key, value in shared.items():
        own = event.get(key)
        event[key] = {**value, **own} if isinstance(own, dict) else (value if own is None else own)
    return event


def _received(event: dict[str, Any], kind: str | None, sent_at: Any, received_at: str) -> dict[str, Any]:
    event = dict(event)
    event.pop("writeKey", None)
    if kind is not None:
        event["type"] = kind
    if sent_at is not None and "sentAt" not in event:
        event["sentAt"] = sent_at
    event["receivedAt"] = received_at
    return event


def _basic_user(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[0]


# -- running it --------------------------------------------------------------------------
def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and without it every answer waits ~40 ms for a delayed ACK (Nagle)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _uvicorn_server(app: Any) -> Any:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", interface="asgi3",
                            http="h11", loop="asyncio", timeout_keep_alive=30, backlog=2048)
    return uvicorn.Server(config)


def serve(sink: Sink, host: str = "127.0.0.1", port: int = 0,
          ready: Any = None) -> None:
    """Serve ``sink`` with uvicorn until interrupted; ``ready(url)`` is called once listening."""
    sock = _bind(host, port)
    server = _uvicorn_server(sink.app)
    url = f"http://{host}:{sock.getsockname()[1]}"

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if ready is not None and server.started:
            ready(url)
        await task

    try:
        asyncio.run(main())
    finally:
        sock.close()
        sink.store.close()


@contextlib.contextmanager
def running_sink(
    *,
    write_key: str | None = "KEY",
    store: str | os.PathLike[str] | None = None,
    faults: Faults | None = None,
    process: bool = False,
    startup_timeout: float = 20.0,
    segment_auth: bool = False,
) -> Iterator[str]:
    """Run a sink on 127.0.0.1 (free port) for the duration of a ``with`` block; yields its URL.

    Args:
        write_key: the key it accepts (``None``: any).
        store: its SQLite file; a temporary one (deleted afterwards) when ``None``.
        faults: faults from the start; change them with ``POST {url}/__faults``.
        process: run it in a child process (``segfn sink``) instead of a thread, so load
            tests measure the client and not the GIL shared with it.
        startup_timeout: seconds to wait for it to listen.
        segment_auth: answer a missing or wrong write key with 200 as Segment does (the
            request recorded as rejected) instead of 401.

    Example:
        >>> with running_sink() as url:
        ...     url.startswith("http://127.0.0.1:")
        True
    """
    with contextlib.ExitStack() as stack:
        if store is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="segfn-sink-"))
            store = Path(tmp) / "sink.sqlite3"
        if process:
            yield stack.enter_context(_sink_process(store, write_key, faults, startup_timeout, segment_auth))
        else:
            yield stack.enter_context(_sink_thread(store, write_key, faults, startup_timeout, segment_auth))


@contextlib.contextmanager
def _sink_thread(store: str | os.PathLike[str], write_key: str | None, faults: Faults | None,
                 startup_timeout: float, segment_auth: bool = False) -> Iterator[str]:
    sink = Sink(store, write_key, faults, segment_auth=segment_auth)
    sock = _bind("127.0.0.1", 0)
    server = _uvicorn_server(sink.app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="segfn-sink")
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sink did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        sink.store.close()


@contextlib.contextmanager
def _sink_process(store: str | os.PathLike[str], write_key: str | None, faults: Faults | None,
                  startup_timeout: float, segment_auth: bool = False) -> Iterator[str]:
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "segfn_kit", "sink", "--port", "0", "--store", str(store)]
    if write_key is not None:
        env["SEGFN_SINK_WRITE_KEY"] = write_key
        cmd += ["--write-key-env", "SEGFN_SINK_WRITE_KEY"]
    else:
        cmd += ["--any-key"]
    if faults is not None:
        cmd += ["--faults-json", json.dumps(faults.as_dict())]
    if segment_auth:
        cmd += ["--segment-auth"]
    # stderr goes to a file, not a pipe: a pipe nobody reads would block a chatty child
    with tempfile.TemporaryFile("w+", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        try:
            url = _read_url(proc, startup_timeout, err)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


def _read_url(proc: subprocess.Popen[str], timeout: float, err: Any) -> str:
    assert proc.stdout is not None
    box: dict[str, str] = {}

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on " in line:
                box["url"] = line.split("listening on ", 1)[1].split()[0]
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if "url" not in box:
        proc.kill()
        proc.wait()
        err.seek(0)
        raise RuntimeError(f"the sink process did not start: {err.read()[-2000:]}")
    return box["url"]


# -- reading it --------------------------------------------------------------------------
def read_sink(
    store: str | os.PathLike[str],
    *,
    unique: bool = False,
    dropped: bool = False,
    requests: bool = False,
    objects: bool = False,
    rejected: bool = False,
) -> pd.DataFrame:
    """The events a sink stored, as a DataFrame (one row per accepted event, in arrival order).

    Args:
        store: the sink's SQLite file (``segfn sink --store FILE``).
        unique: keep only the first copy of each messageId (what Segment would keep).
        dropped: read the events answered 200 but dropped (past 2,500 in a batch) instead.
        requests: read the requests instead, every one whatever its answer: ``endpoint``,
            ``status`` (0: connection dropped), ``fault``, ``events`` stored, ``body_bytes``
            (decompressed), ``wire_bytes``, ``content_encoding``, ``received_at``, ``rejected``
            (events of it stored as rejected), ``note`` (a refused write key answered 200,
            surrogate escapes replaced, the sink's own failure), else None.
        rejected: read the events answered 200 but dropped as Segment drops them instead:
            ``message_id``, ``type``, ``endpoint``, ``reason``, ``received_at``, ``payload``.
        objects: read the ``Segment.set`` objects posted to ``/v1/set`` instead:
            ``collection``, ``id``, ``properties`` (a dict), ``received_at``, in arrival order
            (an object set again appears again; the last one is what the warehouse keeps).

    Columns: ``message_id``, ``type``, ``event`` (track name), ``user_id``,
    ``anonymous_id``, ``timestamp``, ``received_at``, ``endpoint``, ``duplicate`` (its
    messageId arrived before), ``payload`` (the event as stored, a dict).

    Example:
        >>> import httpx, tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sink.sqlite3"
        >>> with running_sink(store=path) as url:
        ...     _ = httpx.post(url + "/v1/batch", auth=("KEY", ""), json={"batch": [
        ...         {"type": "track", "userId": "u1", "event": "Paid", "messageId": "m1"},
        ...         {"type": "track", "userId": "u1", "event": "Paid", "messageId": "m1"}]})
        >>> frame = read_sink(path)
        >>> frame[["message_id", "event", "duplicate"]].to_dict("records")
        [{'message_id': 'm1', 'event': 'Paid', 'duplicate': False}, {'message_id': 'm1', 'event': 'Paid', 'duplicate': True}]
        >>> len(read_sink(path, unique=True))
        1
        >>> with running_sink(store=path) as url:
        ...     _ = httpx.post(url + "/v1/set", auth=("KEY", ""), json={"collection": "rooms",
        ...         "objects": [{"id": "r1", "properties": {"beds": 2}}]})
        >>> read_sink(path, objects=True)[["collection", "id", "properties"]].to_dict("records")
        [{'collection': 'rooms', 'id': 'r1', 'properties': {'beds': 2}}]
    """
    import pandas as pd

    path = Path(store)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sink store there; start one with 'segfn sink --store {path}'")
    uri = f"file:{path.resolve()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        if requests:
            columns = ["endpoint", "status", "fault", "events", "body_bytes", "wire_bytes",
                       "content_encoding", "received_at", "rejected", "note"]
            have = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
            selected = [c if c in have else f"NULL AS {c}" for c in columns]
            rows = db.execute(f"SELECT {', '.join(selected)} FROM requests ORDER BY seq").fetchall()
            frame = pd.DataFrame(rows, columns=columns)
            frame["note"] = pd.Series([r[-1] for r in rows], index=frame.index, dtype=object)  # None stays None
            frame["rejected"] = frame["rejected"].fillna(0).astype(int)
            return frame
        if rejected:
            columns = ["message_id", "type", "endpoint", "reason", "received_at", "payload"]
            try:
                rows = db.execute("SELECT message_id, type, endpoint, reason, received_at, event FROM rejected "
                                  "ORDER BY seq").fetchall()
            except sqlite3.OperationalError:  # a store written before the sink kept rejected events
                rows = []
            return pd.DataFrame([(*r[:5], json.loads(r[5])) for r in rows], columns=columns)
        if objects:
            columns = ["collection", "id", "properties", "received_at"]
            try:
                rows = db.execute(
                    "SELECT collection, object_id, properties, received_at FROM objects ORDER BY seq").fetchall()
            except sqlite3.OperationalError:  # a store written before the sink took objects
                rows = []
            return pd.DataFrame([(c, i, json.loads(p), t) for c, i, p, t in rows], columns=columns)
        if dropped:
            rows = db.execute("SELECT message_id, reason, received_at, event FROM dropped ORDER BY seq").fetchall()
            return pd.DataFrame(
                [{"message_id": m, "reason": r, "received_at": t, "payload": json.loads(e)} for m, r, t, e in rows],
                columns=["message_id", "reason", "received_at", "payload"],
            )
        where = " WHERE duplicate = 0" if unique else ""
        rows = db.execute(
            f"SELECT message_id, type, endpoint, received_at, duplicate, event FROM events{where} ORDER BY seq"
        ).fetchall()
    records = []
    for mid, kind, endpoint, received_at, dup, text in rows:
        event = json.loads(text)
        records.append({
            "message_id": mid, "type": kind, "event": event.get("event"), "user_id": event.get("userId"),
            "anonymous_id": event.get("anonymousId"), "timestamp": event.get("timestamp"),
            "received_at": received_at, "endpoint": endpoint, "duplicate": bool(dup), "payload": event,
        })
    columns = ["message_id", "type", "event", "user_id", "anonymous_id", "timestamp", "received_at",
               "endpoint", "duplicate", "payload"]
    return pd.DataFrame(records, columns=columns)


def faults_from_mapping(spec: Mapping[str, Any]) -> Faults:
    """Build ``Faults`` from JSON settings, with a message naming the bad key."""
    try:
        return Faults(**dict(spec))
    except TypeError as exc:
        raise ValueError(f"bad fault settings: {exc}") from None
