"""The payload record: one captured request as read from any format, and its ``Request``."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from segfn_kit._errors import PayloadError as PayloadError
from segfn_kit.runtime import Request
from segfn_kit.runtime._request import text_bytes

from ._body import _body_from_value


@dataclass(frozen=True, slots=True)
class Skip:
    """An input that holds no payload, with the reason (``frame.attrs["skipped"]``)."""

    source: str
    reason: str


@dataclass(slots=True)
class Payload:
    """One captured request, as read from any input format.

    Attributes:
        payload_id: stable across loads, unique per row (from the source and position).
        source: the file it came from.
        position: line / entry number in the file (1-based), 0 for one-payload files.
        format: ``envelope``, ``bare``, ``jsonl``, ``har``, ``functions-library``, ``topic``, ...
        raw: the body text as received (invalid UTF-8 kept via surrogateescape).
        body: the parsed body (JSON value, or dict for url-encoded), None if unparseable.
        error: why this input could not be loaded as a payload, else None.
        warning: something a person should know about an otherwise loaded payload.
    """

    payload_id: str
    source: str
    position: int
    format: str
    raw: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    method: str = "POST"
    url: str | None = None
    path: str | None = None
    received_at: str | None = None
    content_type: str | None = None
    event_type: str | None = None
    error: str | None = None
    warning: str | None = None

    def request(self) -> Request:
        """The ``runtime.Request`` a source function would receive for this payload."""
        return request_from_row(self)

    def to_envelope(self) -> dict[str, Any]:
        """This payload as a capture envelope (the raw body kept exactly, as a string)."""
        envelope: dict[str, Any] = {"method": self.method}
        if self.url is not None:
            envelope["url"] = self.url
        if self.path is not None:
            envelope["path"] = self.path
        if self.query:
            envelope["query"] = self.query
        envelope["headers"] = self.headers
        try:
            self.raw.encode("utf-8")
            envelope["body"] = self.raw
        except UnicodeEncodeError:
            envelope["body_base64"] = base64.b64encode(text_bytes(self.raw)).decode("ascii")
        if self.received_at is not None:
            envelope["received_at"] = self.received_at
        return envelope


class Line(NamedTuple):
    """One non-blank line of a JSON Lines file, not read yet: ``_Reader.read_line`` makes
    it the ``Payload`` it holds where the function runs (a replay's worker process), so the
    process reading the archive handles a line and its result, nothing more.

    Attributes:
        payload_id: the id its ``Payload`` gets (``<file id>#<line number>``).
        source: the file it came from.
        position: its line number (1-based).
        data: the line without its line break and surrounding blanks.
    """

    payload_id: str
    source: str
    position: int
    data: bytes


def _replace(payload: Payload, **changes: Any) -> Payload:
    values = {name: getattr(payload, name) for name in Payload.__slots__}
    values.update(changes)
    return Payload(**values)


def request_from_row(row_or_payload: Any) -> Request:
    """The ``runtime.Request`` for one payload: a ``Payload``, a frame row, or a dict.

    The body is the raw text as received, so signatures and ``request.text()`` see exactly
    the captured bytes.

    Example:
        >>> from segfn_kit import load_payloads
        >>> frame = load_payloads({"headers": {"X-Shopify-Topic": "orders/create"}, "body": {"id": 1}})
        >>> request = request_from_row(frame.iloc[0])
        >>> request.json(), request.headers["x-shopify-topic"]
        ({'id': 1}, 'orders/create')
    """
    if isinstance(row_or_payload, Payload):
        p = row_or_payload
        url_p = p.url or ""
        return Request(
            text_bytes(p.raw),
            p.headers,
            method=p.method or "POST",
            url=url_p,
            # the loader's query (read from the URL when the capture gave none): passing it,
            # even empty, spares the Request parsing the URL again
            query=p.query if p.query or "?" not in url_p else None,
            received_at=p.received_at,
        )
    else:
        get = row_or_payload.get
        raw = get("raw")
        if raw is None and get("body") is not None:  # a hand-made dict with a parsed body
            raw = _body_from_value(get("body"), None).raw
        headers = get("headers") or {}
        method = get("method") or "POST"
        url = get("url")
        query = get("query")
        received = get("received_at")
    raw_s = raw if isinstance(raw, str) else ""
    return Request(
        text_bytes(raw_s),
        headers if isinstance(headers, Mapping) else {},
        method=str(method) if isinstance(method, str) and method else "POST",
        url=url if isinstance(url, str) else "",
        query=query if isinstance(query, Mapping) and query else None,
        received_at=received if isinstance(received, str) else None,
    )
