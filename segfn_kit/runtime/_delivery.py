"""``TrackingClient``: deliver spec events to the Segment Tracking API without losing any,
and ``Segment.set`` objects to the Objects API.

What it does that analytics-python does not:

- an event over 32 KB (or one JSON cannot carry, such as ``NaN``) is an error naming its
  ``messageId`` before anything is sent, never a line in a log and a silent drop;
- batches are packed close to the ``/v1/batch`` limits (500 KB and 2,500 events, room kept
  for ``sentAt``) instead of 100 messages per upload, so fewer requests carry the same events;
- every event keeps its ``messageId`` across retries, so Segment deduplicates a batch that
  was accepted but whose answer was lost; events without one get an id derived from their
  content, once, before the first attempt;
- ``asend`` is a group commit: the events of every call in flight on an event loop (the
  webhooks an ASGI handler is answering) are coalesced into shared ``/v1/batch`` bodies, and
  each call returns only once its own events were accepted, so a busy handler sends one
  request where it would send dozens;
- one time budget covers the whole call; what is not accepted within it goes to a
  dead-letter file (JSON Lines) and the call raises ``DeliveryError``, so a webhook handler
  answers 5xx and the sender retries;
- objects (``Segment.set``) go to the Objects API's ``POST /v1/set`` (default host
  ``https://objects.segment.com``) in the same call, through the same retries, budget and
  dead-letter file: one body per collection, at most 100 objects and 500,000 bytes each
  (segmentio/objects-go batches per collection, 100 objects and 500 KiB per request).
  The Objects API is an upsert by ``(collection, id)``, so a retried body changes nothing.

Errors::

    DeliveryError            not every event or object was accepted within the time budget
    └── UndeliverableEvent   an event or object can never be accepted (over 32 KB, not JSON,
                             a collection that is not lower case, ...); nothing sent

The write key goes only into the ``Authorization`` header: it never appears in a log line,
an exception message, a dead-letter file or ``repr(client)``.

Requests go out through the standard library: HTTP/1.1 written on a socket for ``send`` and on
asyncio streams for ``asend``, and each answer read by one parser (``_answer_parser``) fed by
either. httpx is imported only for a ``transport=`` or a proxy in the environment, so
``import segfn_kit.runtime`` and a cold start stay light (``http.client`` alone would load the
``email`` package and ``ssl`` for every first delivery, about 24 ms of a cold start here).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime as _dt
import hashlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._rules import MAX_EVENT_BYTES, retry_after
from ._settings import MASK, mask_text

if TYPE_CHECKING:  # pragma: no cover
    import asyncio
    import logging
    import random
    import socket
    import ssl

    import httpx

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_BATCH_OBJECTS",
    "MAX_EVENT_BYTES",
    "MAX_OBJECT_BYTES",
    "DeliveryError",
    "DeliveryReport",
    "TrackingClient",
    "UndeliverableEvent",
    "encode_event",
    "encode_object",
]

_LOGGER: logging.Logger | None = None


def _logger() -> logging.Logger:
    """The ``segfn_kit.delivery`` logger (``logging`` loads on the first retry or dead letter,
    not at a cold start)."""
    global _LOGGER
    if _LOGGER is None:
        import logging

        _LOGGER = logging.getLogger("segfn_kit.delivery")
    return _LOGGER

MAX_BATCH_BYTES = 500_000
"""Segment's ``/v1/batch`` limit, read as 500,000 bytes (the stricter reading of "500 KB"),
for the whole uncompressed body including ``sentAt``."""
MAX_BATCH_EVENTS = 2_500
"""Segment answers 200 to a larger batch but drops the events past 2,500."""

MAX_OBJECT_BYTES = 32 * 1024
"""Limit for one ``Segment.set`` object serialised (``{"id", "properties"}``), as Segment
Functions apply the 32 KB event limit to what a function emits."""
MAX_BATCH_OBJECTS = 100
"""Objects per ``/v1/set`` body: segmentio/objects-go's ``MaxBatchCount``."""

DEFAULT_HOST = "https://api.segment.io"
DEFAULT_OBJECTS_HOST = "https://objects.segment.com"

_PREFIX = b'{"batch":['
# sentAt is always 24 characters: 2026-11-26T13:40:00.123Z
_SUFFIX_LEN = len(b'],"sentAt":"') + 24 + len(b'"}')
_GZIP_MIN_BYTES = 1024
# retried: rate limited, and server errors (Segment's own guidance and analytics-python's)
_RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
# the key itself is wrong: every later batch would fail the same way
_AUTH_STATUSES = frozenset({401, 403})
_ID_NAMESPACE = uuid.UUID("0b7f5e2a-6c1d-4c38-9a57-3e2d8f4b1a60")


class DeliveryError(Exception):
    """Not every event was accepted by the Tracking API within the time budget.

    Attributes:
        report: the ``DeliveryReport`` of the call: what was accepted, what went to the
            dead-letter file and why.
    """

    def __init__(self, message: str, report: DeliveryReport | None = None):
        super().__init__(message)
        self.report = report if report is not None else DeliveryReport()


class UndeliverableEvent(DeliveryError):
    """An event (or object) Segment can never accept; raised before anything is sent.

    Attributes:
        problems: ``(messageId, reason)`` for each such event.
        object_problems: ``(label, reason)`` for each such ``Segment.set`` object, the label
            being ``<collection>/<id>`` or ``objects[<i>]`` when those are not usable.

    Example:
        >>> client = TrackingClient("KEY")
        >>> big = {"type": "track", "messageId": "m-1", "event": "x", "properties": {"blob": "a" * 40000}}
        >>> try:
        ...     client.check([big])
        ... except UndeliverableEvent as exc:
        ...     print(exc.problems[0][0])
        m-1
    """

    def __init__(
        self,
        problems: list[tuple[str, str]],
        report: DeliveryReport | None = None,
        *,
        object_problems: list[tuple[str, str]] | None = None,
    ):
        objects = object_problems or []
        listed = [f"messageId {mid!r}: {why}" for mid, why in problems]
        listed += [f"object {label!r}: {why}" for label, why in objects]
        shown = "; ".join(listed[:5])
        more = f" (and {len(listed) - 5} more)" if len(listed) > 5 else ""
        counts = [f"{n} {noun}(s)" for n, noun in ((len(problems), "event"), (len(objects), "object")) if n]
        super().__init__(
            f"{' and '.join(counts) or '0 event(s)'} cannot be delivered, nothing was sent: {shown}{more}",
            report,
        )
        self.problems = problems
        self.object_problems = objects


@dataclass
class DeliveryReport:
    """What one delivery did (reports add up with ``+``).

    Attributes:
        events: events handed to the client.
        accepted: events the Tracking API accepted (2xx).
        batches: ``/v1/batch`` bodies the events were packed into.
        requests: HTTP requests sent, retries included.
        retries: requests that were repeats of an earlier one.
        bytes: body bytes sent on the wire (after gzip), retries included.
        dead_letter_ids: messageIds of the events not accepted (written to the dead-letter
            file when one is set).
        statuses: HTTP status (or ``"connection"`` / ``"timeout"``) -> count of answers.
        elapsed: seconds spent.
        objects: ``Segment.set`` objects handed to the client.
        objects_accepted: objects the Objects API accepted (2xx).
        dead_letter_objects: ``<collection>/<id>`` of the objects not accepted.

    ``batches``, ``requests``, ``retries``, ``bytes`` and ``statuses`` count ``/v1/set``
    bodies too.
    """

    events: int = 0
    accepted: int = 0
    batches: int = 0
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    dead_letter_ids: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    objects: int = 0
    objects_accepted: int = 0
    dead_letter_objects: list[str] = field(default_factory=list)

    @property
    def dead_letters(self) -> int:
        """How many events were not accepted (objects: ``len(dead_letter_objects)``)."""
        return len(self.dead_letter_ids)

    @property
    def ok(self) -> bool:
        """Every event and every object was accepted."""
        return (self.accepted == self.events and not self.dead_letter_ids
                and self.objects_accepted == self.objects and not self.dead_letter_objects)

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        statuses = dict(self.statuses)
        for key, count in other.statuses.items():
            statuses[key] = statuses.get(key, 0) + count
        return DeliveryReport(
            events=self.events + other.events,
            accepted=self.accepted + other.accepted,
            batches=self.batches + other.batches,
            requests=self.requests + other.requests,
            retries=self.retries + other.retries,
            bytes=self.bytes + other.bytes,
            dead_letter_ids=[*self.dead_letter_ids, *other.dead_letter_ids],
            statuses=statuses,
            elapsed=self.elapsed + other.elapsed,
            objects=self.objects + other.objects,
            objects_accepted=self.objects_accepted + other.objects_accepted,
            dead_letter_objects=[*self.dead_letter_objects, *other.dead_letter_objects],
        )

    def summary(self) -> str:
        """One line for logs and command output."""
        objects = (
            f"{self.objects_accepted}/{self.objects} objects accepted ({len(self.dead_letter_objects)} "
            "dead letters), " if self.objects or self.dead_letter_objects else ""
        )
        return (
            f"{self.accepted}/{self.events} events accepted in {self.batches} batches, {objects}"
            f"{self.requests} requests ({self.retries} retries), {self.bytes} bytes, "
            f"{self.dead_letters} dead letters"
        )

    def _count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def encode_event(event: Mapping[str, Any]) -> tuple[str, bytes]:
    """Serialise one event as sent, returning its ``messageId`` and compact JSON bytes.

    An event without a ``messageId`` gets one derived from its content, so encoding the
    same event again (a retry, a replay) gives the same id.

    Raises:
        UndeliverableEvent: the event is over 32 KB or holds something JSON cannot carry.

    Example:
        >>> mid, data = encode_event({"type": "track", "messageId": "m-1", "event": "Paid"})
        >>> mid, data
        ('m-1', b'{"type":"track","messageId":"m-1","event":"Paid"}')
    """
    msg = event if isinstance(event, dict) else dict(event)
    message_id = msg.get("messageId")
    try:
        if not isinstance(message_id, str) or not message_id:
            canonical = json.dumps(msg, sort_keys=True, separators=(",", ":"), allow_nan=False)
            message_id = str(uuid.uuid5(_ID_NAMESPACE, hashlib.sha256(canonical.encode()).hexdigest()))
            msg = {**msg, "messageId": message_id}
        data = _dumps(msg)
    except (TypeError, ValueError, RecursionError) as exc:
        mid = message_id if isinstance(message_id, str) and message_id else "<none>"
        raise UndeliverableEvent(
            [(mid, f"not JSON-serialisable ({type(exc).__name__}: {str(exc)[:120]}); "
                   "convert NaN, infinities and objects to plain values in the function")]
        ) from None
    if len(data) > MAX_EVENT_BYTES:
        raise UndeliverableEvent(
            [(message_id, f"{len(data):,} bytes, over Segment's {MAX_EVENT_BYTES:,}-byte limit per "
                          "event; send less in properties/traits (large blobs belong elsewhere)")]
        )
    return message_id, data


def encode_object(obj: Any, *, index: int | None = None) -> tuple[str, str, bytes]:
    """Check and serialise one ``Segment.set`` record as the Objects API takes it.

    Returns its collection, its id and the compact JSON of ``{"id", "properties"}`` (the
    collection goes once per ``/v1/set`` body).

    Raises:
        UndeliverableEvent: the record is no object, its collection is empty or not lower
            case, its id empty, its properties not an object, not JSON, or over 32 KB;
            ``object_problems`` names it.

    Example:
        >>> encode_object({"collection": "rooms", "id": "r1", "properties": {"beds": 2}})
        ('rooms', 'r1', b'{"id":"r1","properties":{"beds":2}}')
    """
    where = f"objects[{index}]" if index is not None else "object"

    def fail(label: str, why: str) -> UndeliverableEvent:
        return UndeliverableEvent([], object_problems=[(label, why)])

    if not isinstance(obj, Mapping):
        raise fail(where, f"is {type(obj).__name__}, not a record with collection, id and properties")
    collection, object_id, properties = obj.get("collection"), obj.get("id"), obj.get("properties")
    if not isinstance(collection, str) or not collection.strip():
        raise fail(where, "collection is missing or empty; Segment.set(collection='rooms', id=..., properties=...)")
    if collection != collection.lower():
        raise fail(where, f"collection {collection!r} is not lower case (it names a warehouse table); "
                          f"use {collection.lower()!r}")
    if not isinstance(object_id, str) or not object_id:
        raise fail(f"{collection}/{where}", "id is missing or empty; every object needs a non-empty id")
    label = f"{collection}/{object_id}"
    if not isinstance(properties, Mapping):
        raise fail(label, f"properties is {type(properties).__name__}; it must be an object (dict)")
    try:
        data = _dumps({"id": object_id, "properties": properties})
    except (TypeError, ValueError, RecursionError) as exc:
        raise fail(label, f"not JSON-serialisable ({type(exc).__name__}: {str(exc)[:120]}); "
                          "convert NaN, infinities and objects to plain values in the function") from None
    if len(data) > MAX_OBJECT_BYTES:
        raise fail(label, f"{len(data):,} bytes, over the {MAX_OBJECT_BYTES:,}-byte limit per object; "
                          "send fewer properties")
    return collection, object_id, data


def _dumps(msg: Mapping[str, Any]) -> bytes:
    text = json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them so the body stays valid UTF-8
        return json.dumps(msg, separators=(",", ":"), allow_nan=False).encode("ascii")


@dataclass
class _Batch:
    ids: list[str]  # messageIds, or <collection>/<id> for objects
    parts: list[bytes]
    size: int  # body size without the suffix
    collection: str | None = None  # set: a /v1/set body of this collection's objects
    accepted: bool = False  # set by ``_deliver``: the API took it
    failure: str = ""  # set by ``_deliver``: why it was not accepted
    refused: bool = False  # rejected for its content (a 4xx not about the key), not retried
    owners: int = 1  # callers whose events it holds (group commit): >1 and refused: not buried

    def body(self) -> bytes:
        if self.collection is not None:
            return b"".join((_set_prefix(self.collection), b",".join(self.parts), b"]}"))
        now = _dt.datetime.now(_dt.UTC)
        sent_at = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        return b"".join((_PREFIX, b",".join(self.parts), b'],"sentAt":"', sent_at.encode(), b'"}'))


def _set_prefix(collection: str) -> bytes:
    return b'{"collection":' + json.dumps(collection).encode() + b',"objects":['


@dataclass
class _Step:
    """One thing for the I/O driver to do: post ``body`` to ``url``, or sleep ``sleep`` seconds."""

    url: str = ""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 0.0
    sleep: float | None = None


_GROUP_FLUSHERS = 4
"""Batches a group commit may keep on the wire at once (per client and event loop)."""
_GROUP_STALL = 0.25
"""Seconds a batch may be on its way (retries included) before the calls queued behind it
go out in another batch beside it instead of waiting for it."""


@dataclass(eq=False)
class _Waiter:
    """A call of ``asend`` waiting in a group commit."""

    encoded: list[tuple[str, bytes]]
    size: int  # bytes its events take in a batch body
    deadline: float  # monotonic: the end of its budget
    future: asyncio.Future[DeliveryReport]


class _Group:
    """The calls of one event loop waiting for a batch, and the tasks sending them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: collections.deque[_Waiter] = collections.deque()
        self.flushers = 0
        self.queued = 0  # bytes the queued calls' events take in a batch body
        self.sending: list[float] = []  # when each batch on its way was taken (monotonic)
        self.tasks: set[asyncio.Task[None]] = set()

    def wants_flusher(self, full: int) -> bool:
        """Whether the queue needs another batch on its way now: none is, or the queue fills
        a batch (``full`` bytes), or every batch on its way is stalled (retrying, or an API
        slow to answer).

        One batch at a time is what coalesces: while it is on its way, the calls that arrive
        wait for the next one, so a busy handler sends a few large bodies instead of many
        small ones; a burst or a slow answer never holds the calls behind it for long.
        """
        if not self.flushers:
            return True
        return (self.flushers < _GROUP_FLUSHERS and len(self.sending) == self.flushers
                and (self.queued >= full or self.stalled()))

    def stalled(self) -> bool:
        """Every batch on its way was taken more than ``_GROUP_STALL`` seconds ago."""
        return time.monotonic() - max(self.sending) > _GROUP_STALL


@dataclass
class _Attempt:
    """What one answer means: done, retry after ``delay``, or give up with ``reason``."""

    accepted: bool = False
    retry: bool = False
    delay: float | None = None
    reason: str = ""
    status: str = ""
    stop_all: bool = False


class TrackingClient:
    """Deliver spec events to the Tracking API's ``/v1/batch`` and ``Segment.set`` objects to
    the Objects API's ``/v1/set``, or both to the local sink.

    Args:
        write_key: the source's write key (sent as the Basic auth user, empty password, to
            both APIs).
        host: the API host: ``https://api.segment.io``, ``https://events.eu1.segmentapis.com``
            for EU workspaces, or a local sink's URL.
        objects_host: the Objects API host, ``https://objects.segment.com`` by default; give
            the sink's URL too when ``host`` is a local sink.
        budget: seconds the whole ``send`` may take, retries and waits included.
        timeout: seconds for one request (never more than what is left of the budget).
        dead_letter: a JSON Lines file to append the events not accepted within the budget;
            ``None`` keeps only their messageIds in the report.
        gzip: compress bodies: ``None`` when it helps (bodies over 1 KB that shrink),
            ``True`` always, ``False`` never.
        max_batch_bytes: body size limit per batch (at most 500,000).
        max_batch_events: events per batch (at most 2,500).
        max_batch_objects: objects per ``/v1/set`` body (at most 100).
        backoff: first retry delay ceiling in seconds; doubles each retry (full jitter).
        max_backoff: ceiling of one retry delay.
        rng: a ``random.Random`` for the jitter (seed it for repeatable tests).
        transport: an httpx transport (tests); the sync and async clients share it only if
            it supports both.

    Example:
        >>> client = TrackingClient("KEY", host="http://127.0.0.1:9", budget=0.5)
        >>> client
        <TrackingClient http://127.0.0.1:9 budget=0.5s>
        >>> client.send([]).events
        0
    """

    def __init__(
        self,
        write_key: str,
        host: str = DEFAULT_HOST,
        *,
        objects_host: str = DEFAULT_OBJECTS_HOST,
        budget: float = 30.0,
        timeout: float = 10.0,
        dead_letter: str | os.PathLike[str] | None = None,
        gzip: bool | None = None,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_batch_events: int = MAX_BATCH_EVENTS,
        max_batch_objects: int = MAX_BATCH_OBJECTS,
        backoff: float = 0.2,
        max_backoff: float = 10.0,
        rng: random.Random | None = None,
        transport: Any = None,
    ):
        if not isinstance(write_key, str) or not write_key:
            raise ValueError("write_key is empty: set the source's write key (SEGMENT_WRITE_KEY)")
        if not 0 < max_batch_bytes <= MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be between 1 and {MAX_BATCH_BYTES}")
        if not 0 < max_batch_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch_events must be between 1 and {MAX_BATCH_EVENTS}")
        if not 0 < max_batch_objects <= MAX_BATCH_OBJECTS:
            raise ValueError(f"max_batch_objects must be between 1 and {MAX_BATCH_OBJECTS}")
        if max_batch_bytes < len(_PREFIX) + _SUFFIX_LEN + MAX_EVENT_BYTES:
            raise ValueError("max_batch_bytes must leave room for one 32 KB event")
        self.host = host.rstrip("/")
        self.url = self.host + "/v1/batch"
        self.objects_host = objects_host.rstrip("/")
        self.objects_url = self.objects_host + "/v1/set"
        self.budget = budget
        self.timeout = timeout
        self.dead_letter = Path(dead_letter) if dead_letter is not None else None
        self.gzip = gzip
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_events = max_batch_events
        self.max_batch_objects = max_batch_objects
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._rng = rng
        self._transport = transport
        self._secrets = (write_key, base64.b64encode(f"{write_key}:".encode()).decode())
        self._headers = {
            "Authorization": "Basic " + self._secrets[1],
            "Content-Type": "application/json",
            "User-Agent": "segfn-kit-delivery",
        }
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        # idle kept-alive connections of asend, per scheme://host:port, and their event loop
        self._streams: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self._streams_loop: asyncio.AbstractEventLoop | None = None
        self._group: _Group | None = None
        self._proxied: bool | None = None  # a proxy is configured in the environment (read once)
        self._connections: dict[str, list[_Connection]] = {}  # idle, per scheme://host:port

    def __repr__(self) -> str:
        return f"<TrackingClient {self.host} budget={self.budget:g}s>"

    # -- packing -----------------------------------------------------------------------
    def check(self, events: Iterable[Mapping[str, Any]]) -> list[tuple[str, bytes]]:
        """Encode every event, raising one error that names all the undeliverable ones.

        Raises:
            UndeliverableEvent: some event is over 32 KB or not JSON; ``problems`` lists them.
        """
        encoded: list[tuple[str, bytes]] = []
        problems: list[tuple[str, str]] = []
        for event in events:
            try:
                encoded.append(encode_event(event))
            except UndeliverableEvent as exc:
                problems.extend(exc.problems)
        if problems:
            raise UndeliverableEvent(problems, DeliveryReport(events=len(encoded) + len(problems)))
        return encoded

    def check_objects(self, objects: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, bytes]]:
        """Check and encode ``Segment.set`` records, raising one error naming every bad one.

        Raises:
            UndeliverableEvent: some record can never be accepted; ``object_problems`` lists them.

        Example:
            >>> client = TrackingClient("KEY")
            >>> try:
            ...     client.check_objects([{"collection": "Rooms", "id": "r1", "properties": {}}])
            ... except UndeliverableEvent as exc:
            ...     print(exc.object_problems[0][0])
            objects[0]
        """
        encoded: list[tuple[str, str, bytes]] = []
        problems: list[tuple[str, str]] = []
        for index, obj in enumerate(objects):
            try:
                encoded.append(encode_object(obj, index=index))
            except UndeliverableEvent as exc:
                problems.extend(exc.object_problems)
        if problems:
            raise UndeliverableEvent(
                [], DeliveryReport(objects=len(encoded) + len(problems)), object_problems=problems
            )
        return encoded

    def _pack_objects(self, encoded: list[tuple[str, str, bytes]]) -> list[_Batch]:
        """One body per collection (the API takes one per request), split at the limits."""
        by_collection: dict[str, list[tuple[str, bytes]]] = {}
        for collection, object_id, data in encoded:
            by_collection.setdefault(collection, []).append((f"{collection}/{object_id}", data))
        batches: list[_Batch] = []
        for collection, items in by_collection.items():
            start = len(_set_prefix(collection))
            limit = self.max_batch_bytes - len(b"]}")
            current = _Batch([], [], start, collection)
            for label, data in items:
                extra = len(data) + (1 if current.parts else 0)
                if current.parts and (current.size + extra > limit or len(current.parts) >= self.max_batch_objects):
                    batches.append(current)
                    current = _Batch([], [], start, collection)
                    extra = len(data)
                current.ids.append(label)
                current.parts.append(data)
                current.size += extra
            if current.parts:
                batches.append(current)
        return batches

    def _pack(self, encoded: list[tuple[str, bytes]]) -> list[_Batch]:
        """Pack events in order into as few batches as the limits allow."""
        limit = self.max_batch_bytes - _SUFFIX_LEN
        batches: list[_Batch] = []
        current = _Batch([], [], len(_PREFIX))
        for message_id, data in encoded:
            extra = len(data) + (1 if current.parts else 0)
            if current.parts and (current.size + extra > limit or len(current.parts) >= self.max_batch_events):
                batches.append(current)
                current = _Batch([], [], len(_PREFIX))
                extra = len(data)
            current.ids.append(message_id)
            current.parts.append(data)
            current.size += extra
        if current.parts:
            batches.append(current)
        return batches

    def _encode_body(self, batch: _Batch) -> tuple[bytes, dict[str, str]]:
        body = batch.body()
        headers = dict(self._headers)
        # objects-go never compresses and the Objects API documents no Content-Encoding:
        # /v1/set bodies are compressed only when asked to (gzip=True)
        auto = self.gzip is None and batch.collection is None
        if self.gzip or (auto and len(body) >= _GZIP_MIN_BYTES):
            # level 5: most of level 9's gain at a fraction of its time on JSON
            import gzip  # here: a cold start that sends a small body never loads it

            packed = gzip.compress(body, compresslevel=5, mtime=0)
            if self.gzip or len(packed) < len(body):
                headers["Content-Encoding"] = "gzip"
                body = packed
        return body, headers

    # -- answers -----------------------------------------------------------------------
    def _judge(self, response: httpx.Response | _Answer | None, error: BaseException | None) -> _Attempt:
        if error is not None:
            httpx = sys.modules.get("httpx")
            timed_out = isinstance(error, TimeoutError) or (
                httpx is not None and isinstance(error, httpx.TimeoutException))
            kind = "timeout" if timed_out else "connection"
            return _Attempt(retry=True, status=kind, reason=f"{kind} error ({type(error).__name__})")
        assert response is not None
        status = response.status_code
        if 200 <= status < 300:
            return _Attempt(accepted=True, status=str(status))
        detail = self._mask(response.text[:200].strip())
        if status in _RETRY_STATUSES:
            return _Attempt(
                retry=True,
                delay=retry_after(response.headers.get("Retry-After")) if status == 429 else None,
                status=str(status),
                reason=f"HTTP {status}" + (f": {detail}" if detail else ""),
            )
        reason = f"rejected with HTTP {status}" + (f": {detail}" if detail else "")
        if status in _AUTH_STATUSES:
            reason += " (the write key was refused: check SEGMENT_WRITE_KEY and the host)"
        return _Attempt(status=str(status), reason=reason, stop_all=status in _AUTH_STATUSES)

    def _delay(self, retry: int, retry_after: float | None) -> float:
        # full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): spreads the
        # retries of many handlers that failed together instead of synchronising them
        ceiling = min(self.max_backoff, self.backoff * (2 ** min(retry, 30)))
        if self._rng is None:
            import random

            self._rng = random.Random()
        jitter = self._rng.uniform(0, ceiling)
        return max(retry_after, jitter) if retry_after is not None else jitter

    def _mask(self, text: str) -> str:
        # the one masker (as written and JSON-escaped); a key under 4 characters is masked too
        text = mask_text(text, self._secrets)
        for secret in self._secrets:
            if secret and len(secret) < 4:
                text = text.replace(secret, MASK)
        return text

    # -- dead letters ------------------------------------------------------------------
    def _bury(self, batch: _Batch, reason: str, attempts: int, report: DeliveryReport) -> None:
        batch.failure = reason
        is_set = batch.collection is not None
        (report.dead_letter_objects if is_set else report.dead_letter_ids).extend(batch.ids)
        host = self.objects_host if is_set else self.host
        _logger().warning(
            "%d %s not delivered to %s after %d attempt(s): %s%s",
            len(batch.ids), "object(s)" if is_set else "event(s)", host, attempts, reason,
            f"; written to {self.dead_letter}" if self.dead_letter else "",
        )
        if self.dead_letter is None:
            return
        failed_at = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
        head = json.dumps({"reason": reason, "attempts": attempts, "failed_at": failed_at, "host": host})
        if is_set:
            # a line per object: {..., "collection", "object": {"id", "properties"}}, resendable as is
            key = b',"collection":' + json.dumps(batch.collection).encode() + b',"object":'
            lines = [b"".join((head[:-1].encode(), key, data, b"}\n")) for data in batch.parts]
        else:
            lines = [
                b"".join((head[:-1].encode(), b',"messageId":', json.dumps(mid).encode(), b',"event":', data, b"}\n"))
                for mid, data in zip(batch.ids, batch.parts, strict=True)
            ]
        with self._lock:
            self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
            with open(self.dead_letter, "ab") as fh:
                fh.writelines(lines)
                fh.flush()
                os.fsync(fh.fileno())

    # -- clients -----------------------------------------------------------------------
    def _tls(self) -> bool:
        """Whether the clients need TLS: not when every host is ``http://`` (a local sink).

        Building the TLS context (loading the CA bundle) is most of a client's start-up
        cost, which a cold start pays on its first delivery.
        """
        return not (self.host.startswith("http://") and self.objects_host.startswith("http://"))

    def _stdlib(self) -> bool:
        """Whether sends go through the standard library rather than httpx (a socket when
        blocking, asyncio streams in ``asend``): always, unless a transport was given or
        a proxy is configured in the environment as the first request is sent (httpx
        honours those). Loading httpx is most of what a Lambda's first delivery costs, and
        its per-request work most of what a batch costs a busy ASGI handler."""
        if self._transport is not None:
            return False
        if self._proxied is None:  # read once, not per request (it walks the whole environment)
            self._proxied = any(k.lower() in ("http_proxy", "https_proxy", "all_proxy") for k in os.environ)
        return not self._proxied

    def _post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> _Answer:
        """One blocking POST on a socket, on a kept-alive connection per host: what
        ``_apost`` is to ``asend``, written and read the same way.

        Raises ``TimeoutError`` or ``OSError`` (connection refused, reset, closed without an
        answer, an answer that is not HTTP) for ``_judge`` to retry.
        """
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{url}: only http:// and https:// hosts are supported")
        netloc = parts.netloc.rpartition("@")[2]
        key = f"{parts.scheme}://{netloc}"
        with self._lock:
            idle = self._connections.setdefault(key, [])
            conn = idle.pop() if idle else None
        if conn is not None and conn.closed_by_peer():
            conn.close()
            conn = None
        try:
            if conn is None:
                conn = _Connection.open(parts.hostname or "", parts.port, parts.scheme == "https", timeout)
            conn.sock.settimeout(timeout)
            conn.sock.sendall(_request_head(parts, netloc, body, headers) + body)
            answer, close = _drive(_answer_parser(), conn.rfile)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, ValueError):  # an answer that is not HTTP
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
            raise
        if close:
            conn.close()
        else:
            with self._lock:
                self._connections.setdefault(key, []).append(conn)
        return answer

    async def _apost(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> _Answer:
        """One POST on asyncio streams, on a kept-alive connection per host (this event
        loop's): what ``_post`` is to blocking sends.

        Raises ``TimeoutError`` or ``OSError`` (connection refused, reset, closed without an
        answer, an answer that is not HTTP) for ``_judge`` to retry.
        """
        import asyncio
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{url}: only http:// and https:// hosts are supported")
        loop = asyncio.get_running_loop()
        if self._streams_loop is not loop:  # streams belong to the loop that opened them
            self._streams, self._streams_loop = {}, loop
        netloc = parts.netloc.rpartition("@")[2]
        idle = self._streams.setdefault(f"{parts.scheme}://{netloc}", [])
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while idle and stream is None:
            stream = idle.pop()
            if stream[0].at_eof() or stream[1].is_closing():  # the server closed it meanwhile
                stream[1].close()
                stream = None
        head = _request_head(parts, netloc, body, headers)
        try:
            async with asyncio.timeout(timeout):
                if stream is None:
                    tls = _tls_context() if parts.scheme == "https" else None
                    stream = await asyncio.open_connection(
                        parts.hostname, parts.port or (443 if tls else 80), ssl=tls)
                stream[1].write(head + body)
                await stream[1].drain()
                answer, close = await _read_answer(stream[0])
        except BaseException as exc:
            if stream is not None:
                stream[1].close()
            if isinstance(exc, (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)):
                raise ConnectionError(f"{type(exc).__name__}: {exc}") from None
            raise
        if close:
            stream[1].close()
        else:
            idle.append(stream)
        return answer

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._sync is None:
                import httpx

                self._sync = httpx.Client(transport=self._transport, follow_redirects=False, verify=self._tls())
            return self._sync

    def _async_client(self) -> httpx.AsyncClient:
        import asyncio  # here, not at the top: only async delivery needs it (cold starts)

        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            import httpx

            # an AsyncClient belongs to the loop it first ran on (a new loop needs a new one)
            self._async = httpx.AsyncClient(transport=self._transport, follow_redirects=False, verify=self._tls())
            self._async_loop = loop
        return self._async

    # -- delivery ----------------------------------------------------------------------

    def _deliver(
        self,
        encoded: list[tuple[str, bytes]],
        objects: list[tuple[str, str, bytes]] | None = None,
        budget: float | None = None,
        batches: list[_Batch] | None = None,
    ) -> Generator[_Step, Any, DeliveryReport]:
        """The delivery itself, without I/O: yields what to do and gets back what happened.

        ``send`` and ``asend`` drive this one generator with blocking and asyncio I/O, so the
        two cannot drift apart. A short loop rather than tenacity or backoff: the runtime ships
        inside exported packages and stays standard library + httpx, and what is needed here
        (one deadline shared by every batch, ``Retry-After`` taking precedence over the
        jittered delay, a dead letter when the budget is spent) is a dozen lines either way.
        Objects follow the events through the same loop: one budget covers both, so a
        handler can answer once everything was accepted. ``batches``: the events already
        packed (group commit keeps them to tell each caller what became of its events).
        """
        budget = self.budget if budget is None else budget
        start = time.monotonic()
        deadline = start + budget
        report = DeliveryReport(events=len(encoded), objects=len(objects or ()))
        batches = (self._pack(encoded) if batches is None else batches) + self._pack_objects(objects or [])
        report.batches = len(batches)
        stop_reason = ""
        for batch in batches:
            if stop_reason:
                self._bury(batch, stop_reason, 0, report)
                continue
            attempts = 0
            last = _Attempt(reason="not sent")
            is_set = batch.collection is not None
            url, host = (self.objects_url, self.objects_host) if is_set else (self.url, self.host)
            noun = f"/v1/set body of {len(batch.ids)} object(s)" if is_set else f"batch of {len(batch.ids)} event(s)"
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._bury(batch, f"time budget of {budget:g} s spent (last: {last.reason})",
                               attempts, report)
                    break
                body, headers = self._encode_body(batch)
                answer = yield _Step(url=url, body=body, headers=headers, timeout=min(self.timeout, remaining))
                attempts += 1
                report.requests += 1
                report.retries += int(attempts > 1)
                report.bytes += len(body)
                last = self._judge(*answer)
                report._count(last.status)
                if last.accepted:
                    batch.accepted = True
                    if is_set:
                        report.objects_accepted += len(batch.ids)
                    else:
                        report.accepted += len(batch.ids)
                    break
                if not last.retry:
                    batch.refused = not last.stop_all
                    if batch.refused and batch.owners > 1:
                        # one caller's events may be what was refused: the group commit sends
                        # each caller's events again on their own instead of burying them all
                        batch.failure = last.reason
                        break
                    self._bury(batch, last.reason, attempts, report)
                    if last.stop_all:
                        stop_reason = last.reason + "; not sent"
                    break
                delay = self._delay(attempts - 1, last.delay)
                if time.monotonic() + delay >= deadline:
                    self._bury(batch, f"{last.reason}; no time left in the {budget:g} s budget to retry",
                               attempts, report)
                    break
                _logger().info("%s to %s: %s; retry %d in %.2f s", noun, host, last.reason, attempts, delay)
                yield _Step(sleep=delay)
        report.elapsed = time.monotonic() - start
        if report.dead_letter_ids or report.dead_letter_objects:
            missed = []
            if report.dead_letter_ids:
                missed.append(f"{report.dead_letters} of {report.events} event(s) were not accepted by {self.host}")
            if report.dead_letter_objects:
                missed.append(f"{len(report.dead_letter_objects)} of {report.objects} object(s) were not "
                              f"accepted by {self.objects_host}")
            # why, as the group commit of asend says it: the first batch's reason
            reason = next((b.failure for b in batches if not b.accepted and b.failure), "not accepted")
            raise DeliveryError(
                f"{' and '.join(missed)} within {budget:g} s ({reason}; {report.summary()})",
                report,
            )
        return report

    def send(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        objects: Iterable[Mapping[str, Any]] = (),
        budget: float | None = None,
    ) -> DeliveryReport:
        """Deliver ``events`` (then ``objects``) and return what happened; blocks until done
        or out of budget.

        Args:
            events: spec events, to ``{host}/v1/batch``.
            objects: ``Segment.set`` records (``{"collection", "id", "properties"}``), to
                ``{objects_host}/v1/set``, within the same budget.
            budget: seconds for this call only (a Lambda's remaining time), instead of the
                client's ``budget``.

        Raises:
            UndeliverableEvent: an event or object can never be accepted (nothing was sent).
            DeliveryError: some events or objects were not accepted within the budget; they
                are in the dead-letter file and ``exc.report`` says what happened.

        Example:
            >>> from segfn_kit._sink import running_sink
            >>> with running_sink(write_key="KEY") as url, TrackingClient("KEY", host=url) as client:
            ...     client.send([{"type": "track", "userId": "u1", "event": "Paid"}]).accepted
            1
        """
        return self.send_encoded(*self.check_all(events, objects), budget=budget)

    def send_objects(self, objects: Iterable[Mapping[str, Any]]) -> DeliveryReport:
        """Deliver ``Segment.set`` records only: ``send([], objects=objects)``.

        Example:
            >>> from segfn_kit._sink import running_sink
            >>> with running_sink(write_key="KEY") as url, TrackingClient("KEY", host=url, objects_host=url) as c:
            ...     c.send_objects([{"collection": "rooms", "id": "r1", "properties": {"beds": 2}}]).objects_accepted
            1
        """
        return self.send([], objects=objects)

    def check_all(
        self, events: Iterable[Mapping[str, Any]], objects: Iterable[Mapping[str, Any]]
    ) -> tuple[list[tuple[str, bytes]], list[tuple[str, str, bytes]]]:
        """``check`` and ``check_objects`` at once: one error naming every bad event and object.

        Example:
            >>> events, objects = TrackingClient("KEY").check_all(
            ...     [{"type": "track", "messageId": "m-1", "event": "Paid"}],
            ...     [{"collection": "rooms", "id": "r1", "properties": {}}])
            >>> events[0][0], objects[0][:2]
            ('m-1', ('rooms', 'r1'))
        """
        encoded: list[tuple[str, bytes]] = []
        encoded_objects: list[tuple[str, str, bytes]] = []
        problems: list[tuple[str, str]] = []
        object_problems: list[tuple[str, str]] = []
        report = DeliveryReport()
        try:
            encoded = self.check(events)
        except UndeliverableEvent as exc:
            problems, report = exc.problems, exc.report
        try:
            encoded_objects = self.check_objects(objects)
        except UndeliverableEvent as exc:
            object_problems, report.objects = exc.object_problems, exc.report.objects
        if problems or object_problems:
            report.events = report.events or len(encoded)
            report.objects = report.objects or len(encoded_objects)
            raise UndeliverableEvent(problems, report, object_problems=object_problems)
        return encoded, encoded_objects

    def send_encoded(
        self,
        encoded: list[tuple[str, bytes]],
        objects: list[tuple[str, str, bytes]] | None = None,
        budget: float | None = None,
    ) -> DeliveryReport:
        """``send`` for events already checked: ``(messageId, bytes)`` from ``check``, and
        objects from ``check_objects``.

        Callers that need each event's size before sending (to cut a stream into batches)
        use this to avoid serialising every event twice.

        Example:
            >>> client = TrackingClient("KEY")
            >>> client.send_encoded(client.check([])).events
            0
        """
        steps = self._deliver(encoded, objects, budget)
        answer: Any = None
        stdlib = self._stdlib()
        errors: tuple[type[BaseException], ...] = (OSError,) if stdlib else _transport_errors()
        try:
            while True:
                step = steps.send(answer)
                if step.sleep is not None:
                    time.sleep(step.sleep)
                    answer = None
                    continue
                try:
                    if stdlib:
                        answer = (self._post(step.url, step.body, step.headers, step.timeout), None)
                    else:
                        response = self._sync_client().post(
                            step.url, content=step.body, headers=step.headers, timeout=step.timeout
                        )
                        answer = (response, None)
                except errors as exc:
                    answer = (None, exc)
        except StopIteration as done:
            report: DeliveryReport = done.value
            return report

    async def asend(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        objects: Iterable[Mapping[str, Any]] = (),
        budget: float | None = None,
        group: bool = True,
    ) -> DeliveryReport:
        """``send`` for asyncio code (an ASGI handler): same packing, retries and budget.

        With ``group`` (the default) the events of every ``asend`` in flight on this event
        loop go out together (a group commit): while one ``/v1/batch`` is on its way, the
        events of the calls that arrive queue up and leave in the next one, packed within
        the batch limits. Each call still returns only once its own events were accepted, and
        raises ``DeliveryError`` when they were not: a batch that fails (after the retries)
        fails every call with events in it; a batch refused for its content (a 4xx) is sent
        again call by call, so one caller's bad events never fail the others. messageIds are
        the callers' own, unchanged. ``Segment.set`` objects follow each call's events on
        their own. In a grouped call's report, ``requests``, ``retries``, ``bytes`` and
        ``statuses`` count the shared batches.

        Example:
            >>> import asyncio
            >>> asyncio.run(TrackingClient("KEY").asend([])).events
            0
        """
        encoded, encoded_objects = self.check_all(events, objects)
        if not group or not encoded:
            return await self._adrive(self._deliver(encoded, encoded_objects, budget))
        budget = self.budget if budget is None else budget
        start = time.monotonic()
        error: DeliveryError | None = None
        try:
            report = await self._commit(encoded, budget)
        except DeliveryError as exc:
            error, report = exc, exc.report
        if encoded_objects:
            left = max(0.0, budget - (time.monotonic() - start))
            try:
                report = report + await self._adrive(self._deliver([], encoded_objects, left))
            except DeliveryError as exc:
                report = report + exc.report
                error = DeliveryError(f"{error}; {exc}" if error else str(exc), report)
        if error is not None:
            error.report = report
            raise error
        return report

    async def _adrive(self, steps: Generator[_Step, Any, DeliveryReport]) -> DeliveryReport:
        """Drive ``_deliver`` with asyncio I/O."""
        answer: Any = None
        stdlib = self._stdlib()
        errors: tuple[type[BaseException], ...] = (OSError,) if stdlib else _transport_errors()
        try:
            while True:
                step = steps.send(answer)
                if step.sleep is not None:
                    import asyncio

                    await asyncio.sleep(step.sleep)
                    answer = None
                    continue
                try:
                    if stdlib:
                        answer = (await self._apost(step.url, step.body, step.headers, step.timeout), None)
                    else:
                        response = await self._async_client().post(
                            step.url, content=step.body, headers=step.headers, timeout=step.timeout
                        )
                        answer = (response, None)
                except errors as exc:
                    answer = (None, exc)
        except StopIteration as done:
            report: DeliveryReport = done.value
            return report

    # -- group commit --------------------------------------------------------------------
    async def _commit(self, encoded: list[tuple[str, bytes]], budget: float) -> DeliveryReport:
        """Queue a call's events for the next batch; return once they were accepted."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._group is None or self._group.loop is not loop:
            self._group = _Group(loop)
        group = self._group
        size = sum(len(data) + 1 for _, data in encoded)
        waiter = _Waiter(encoded, size, time.monotonic() + budget, loop.create_future())
        group.queue.append(waiter)
        group.queued += size
        if group.wants_flusher(self.max_batch_bytes - _SUFFIX_LEN - len(_PREFIX)):
            group.flushers += 1
            task = loop.create_task(self._flusher(group))
            group.tasks.add(task)
            task.add_done_callback(group.tasks.discard)
        return await waiter.future

    async def _flusher(self, group: _Group) -> None:
        limit = self.max_batch_bytes - _SUFFIX_LEN - len(_PREFIX)
        try:
            while group.queue:
                if group.sending and not group.stalled() and group.queued < limit:
                    break  # the batch on its way takes the queue when it is answered
                taken = self._take(group)
                if not taken:
                    break
                taken_at = time.monotonic()
                group.sending.append(taken_at)
                try:
                    await self._flush(taken)
                finally:  # whatever happened, no caller is left waiting
                    group.sending.remove(taken_at)
                    for w in taken:
                        if not w.future.done():
                            w.future.set_exception(DeliveryError("the group commit ended without an answer"))
        finally:
            group.flushers -= 1

    def _take(self, group: _Group) -> list[_Waiter]:
        """The queued calls whose events fit one batch (at least one call)."""
        limit = self.max_batch_bytes - _SUFFIX_LEN - len(_PREFIX)
        queue = group.queue
        taken: list[_Waiter] = []
        size = count = 0
        while queue:
            waiter = queue[0]
            if waiter.future.done():  # its caller went away (cancelled): nothing to send for it
                group.queued -= queue.popleft().size
                continue
            if taken and (size + waiter.size > limit or count + len(waiter.encoded) > self.max_batch_events):
                break
            group.queued -= queue.popleft().size
            taken.append(waiter)
            size += waiter.size
            count += len(waiter.encoded)
        return taken

    async def _flush(self, taken: list[_Waiter]) -> None:
        """Deliver the events of ``taken`` together and tell each caller what became of its own."""
        import asyncio

        budget = max(0.0, min(w.deadline for w in taken) - time.monotonic())
        encoded = [item for w in taken for item in w.encoded]
        batches = self._pack(encoded)
        # which batches hold each caller's events (packing keeps the order)
        home = [i for i, b in enumerate(batches) for _ in b.ids]  # event -> its batch's index
        spans: list[list[_Batch]] = []
        cursor = 0
        for w in taken:
            first, last = home[cursor], home[cursor + len(w.encoded) - 1]
            cursor += len(w.encoded)
            spans.append(batches[first : last + 1])
            for batch in spans[-1]:
                batch.owners += 1
        for batch in batches:
            batch.owners -= 1  # they start at 1
        try:
            report = await self._adrive(self._deliver(encoded, None, budget, batches=batches))
        except DeliveryError as exc:
            report = exc.report
        except asyncio.CancelledError:
            for w in taken:
                w.future.cancel()
            raise
        except BaseException as exc:  # a configuration mistake (an unsupported URL): every caller learns it
            for w in taken:
                if not w.future.done():
                    w.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        again: list[_Waiter] = []
        for w, span in zip(taken, spans, strict=True):
            if any(b.refused and b.owners > 1 for b in span):
                again.append(w)
                continue
            self._answer(w, span, report, budget)
        for w in again:  # refused together: each caller's events on their own
            await self._flush([w])

    def _answer(self, waiter: _Waiter, span: list[_Batch], shared: DeliveryReport, budget: float) -> None:
        failed = [b for b in span if not b.accepted]
        ids = [mid for mid, _ in waiter.encoded]
        lost = set(mid for b in failed for mid in b.ids) if failed else set()
        report = DeliveryReport(
            events=len(ids), accepted=sum(mid not in lost for mid in ids), batches=len(span),
            requests=shared.requests, retries=shared.retries, bytes=shared.bytes,
            dead_letter_ids=[mid for mid in ids if mid in lost], statuses=dict(shared.statuses),
            elapsed=shared.elapsed,
        )
        if waiter.future.done():
            return
        if not failed:
            waiter.future.set_result(report)
            return
        reason = failed[0].failure or "not accepted"
        waiter.future.set_exception(DeliveryError(
            f"{report.dead_letters} of {report.events} event(s) were not accepted by {self.host} within "
            f"{budget:g} s ({reason}; {report.summary()})",
            report,
        ))

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pools (the client can still be used afterwards)."""
        with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None
            pools, self._connections = list(self._connections.values()), {}
        for pool in pools:
            for conn in pool:
                conn.close()

    async def asend_objects(self, objects: Iterable[Mapping[str, Any]]) -> DeliveryReport:
        """``send_objects`` for asyncio code.

        Example:
            >>> import asyncio
            >>> asyncio.run(TrackingClient("KEY").asend_objects([])).objects
            0
        """
        return await self.asend([], objects=objects)

    async def aclose(self) -> None:
        """Close the async connection pool."""
        if self._async is not None:
            client, self._async, self._async_loop = self._async, None, None
            await client.aclose()
        streams, self._streams, self._streams_loop = self._streams, {}, None
        writers = [writer for idle in streams.values() for _, writer in idle]
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def __enter__(self) -> TrackingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> TrackingClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()


@dataclass
class _Answer:
    """An HTTP answer as ``_answer_parser`` read it: what ``_judge`` reads of an ``httpx.Response``."""

    status_code: int
    headers: dict[str, str]
    text: str


def _request_head(parts: Any, netloc: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    """The head of a POST of ``body`` to the URL split in ``parts``, as both senders write it."""
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return "".join((f"POST {path} HTTP/1.1\r\nHost: {netloc}\r\nContent-Length: {len(body)}\r\n",
                    *(f"{k}: {v}\r\n" for k, v in headers.items()), "\r\n")).encode("latin-1")


# what the parser asks for next: bytes up to and including a delimiter, exactly n bytes, or
# the rest up to the end of the connection
_Want = tuple[str, Any]
_HEAD_LIMIT = 64 * 1024  # an answer's head, or a chunk's size line, past this is not HTTP
# an answer's body past this is no answer of a Tracking API (``{"success":true}``, an error
# page): refused unread, so a broken or hostile server cannot make a handler allocate at will
_BODY_LIMIT = 8 << 20


def _answer_parser() -> Generator[_Want, bytes, tuple[_Answer, bool]]:
    r"""The reading of one HTTP/1.1 answer (a body sized by ``Content-Length``, chunked, or up
    to the end), apart from how its bytes arrive: it yields what to read next, ``("until",
    delimiter)``, ``("exactly", n)`` or ``("rest", limit)`` (up to the end, at most ``limit``
    bytes and one more), is sent those bytes, and returns the answer and whether the
    connection must be closed after it. ``ValueError``: not HTTP, or a body over
    ``_BODY_LIMIT``.

    Example:
        >>> parser = _answer_parser()
        >>> next(parser)
        ('until', b'\r\n\r\n')
        >>> parser.send(b"HTTP/1.1 429 Too Many\r\nRetry-After: 2\r\nContent-Length: 2\r\n\r\n")
        ('exactly', 2)
        >>> try:
        ...     parser.send(b"{}")
        ... except StopIteration as done:
        ...     done.value
        (_Answer(status_code=429, headers={'Retry-After': '2'}, text='{}'), False)
    """
    while True:
        lines = (yield ("until", b"\r\n\r\n")).decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status = int(rest[:3])
        if not 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            break
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            fields[name.strip().lower()] = value.strip()
    close = fields.get("connection", "").lower() == "close" or (
        version == "HTTP/1.0" and fields.get("connection", "").lower() != "keep-alive")
    if "chunked" in fields.get("transfer-encoding", "").lower():
        chunks = []
        total = 0
        while size := int((yield ("until", b"\r\n")).split(b";")[0], 16):
            total += size
            if size < 0 or total > _BODY_LIMIT:
                raise ValueError(f"an answer's body over {_BODY_LIMIT:,} bytes")
            chunks.append((yield ("exactly", size + 2))[:-2])
        while (yield ("until", b"\r\n")) != b"\r\n":  # trailers
            pass
        data = b"".join(chunks)
    elif "content-length" in fields:
        size = int(fields["content-length"])
        if not 0 <= size <= _BODY_LIMIT:
            raise ValueError(f"an answer's body of {size:,} bytes (at most {_BODY_LIMIT:,} are read)")
        data = yield ("exactly", size)
    elif status in (204, 304):
        data = b""
    else:  # the body ends with the connection
        data, close = (yield ("rest", _BODY_LIMIT)), True
        if len(data) > _BODY_LIMIT:
            raise ValueError(f"an answer's body over {_BODY_LIMIT:,} bytes")
    retry = fields.get("retry-after")
    return _Answer(status, {"Retry-After": retry} if retry is not None else {}, data.decode("utf-8", "replace")), close


def _drive(parser: Generator[_Want, bytes, tuple[_Answer, bool]], rfile: Any) -> tuple[_Answer, bool]:
    """Run ``parser`` on a blocking binary file (a socket's ``makefile("rb")``); an answer
    cut short is ``ConnectionError``, a head too long ``ValueError``."""
    want = next(parser)
    try:
        while True:
            kind, arg = want
            if kind == "until":
                data = b""
                while not data.endswith(arg):
                    line = rfile.readline(_HEAD_LIMIT + 1 - len(data))
                    if not line:
                        raise ConnectionError("the connection closed before the answer ended")
                    data += line
                    if len(data) > _HEAD_LIMIT:
                        raise ValueError("the answer's head is too long to be HTTP")
            elif kind == "exactly":
                data = rfile.read(arg)
                if len(data) < arg:
                    raise ConnectionError("the connection closed before the answer ended")
            else:
                data = rfile.read(arg + 1)
            want = parser.send(data)
    except StopIteration as done:
        answer: tuple[_Answer, bool] = done.value
        return answer


async def _read_answer(reader: asyncio.StreamReader) -> tuple[_Answer, bool]:
    """Run ``_answer_parser`` on an asyncio stream: the answer and whether the connection
    must be closed after it."""
    parser = _answer_parser()
    want = next(parser)
    try:
        while True:
            kind, arg = want
            if kind == "until":
                data = await reader.readuntil(arg)
            elif kind == "exactly":
                data = await reader.readexactly(arg)
            else:  # up to the end of the stream, or one byte past the limit
                parts: list[bytes] = []
                total = 0
                while total <= arg and (part := await reader.read(min(1 << 16, arg + 1 - total))):
                    parts.append(part)
                    total += len(part)
                data = b"".join(parts)
            want = parser.send(data)
    except StopIteration as done:
        answer: tuple[_Answer, bool] = done.value
        return answer


class _Connection:
    """A blocking kept-alive connection of ``send``: the socket (TLS for https) and its
    buffered reader."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    @classmethod
    def open(cls, host: str, port: int | None, tls: bool, timeout: float) -> _Connection:
        import socket

        sock = socket.create_connection((host, port or (443 if tls else 80)), timeout=timeout)
        if tls:
            try:
                sock = _tls_context().wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        return cls(sock)

    def closed_by_peer(self) -> bool:
        """Whether the server closed this idle connection meanwhile (readable while idle
        means end of file), so a request is not sent into a dead socket."""
        import select

        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.rfile.close()
        with contextlib.suppress(OSError):
            self.sock.close()


_TLS: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """The TLS context of https:// hosts, built once: certifi's CA bundle when it is
    installed (as httpx verifies), else the system's."""
    global _TLS
    if _TLS is None:
        import ssl

        try:
            import certifi

            _TLS = ssl.create_default_context(cafile=certifi.where())
        except ImportError:
            _TLS = ssl.create_default_context()
    return _TLS


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Errors worth a retry: the request may not have arrived, or its answer was lost.

    ``UnsupportedProtocol`` and invalid URLs are configuration mistakes and propagate.
    """
    import httpx

    return (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)
