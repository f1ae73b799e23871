"""Captured webhook payloads: the capture envelope, a loader for every input format, the frame.

Formats read (one ``format`` value each, detected from the file's extension and shape):

=================== ===================================================================
``envelope``        the capture envelope ``{"headers", "body" | "body_base64", ...}``
``bare``            a bare JSON body (a ``.json`` file that is the body itself)
``jsonl``           JSON Lines: one bare body per line (lines may also hold envelopes,
                    wrappers or ``{topic, headers, body}`` records, read as those)
``har``             HAR archives from browser devtools or mitmproxy: each POST entry
``functions-library`` Segment's ``{"payload": {"body", "headers", "queryParameters"}}``
``topic``           ``{topic, headers, body}`` captures (Hookdeck's samples)
``array-item``      one item of a top-level JSON array read with ``split_arrays=True``
``form``            a bare ``application/x-www-form-urlencoded`` body
=================== ===================================================================

A url-encoded body, in any of these, is decoded into ``body`` as a dict (as
``Request.form()`` would) and its text kept in ``raw``. Files may be gzip-compressed
(``.gz``).

Bad input never raises (unless ``strict=True``): a file that cannot be read as a payload
gives a row whose ``error`` says why, and a file that holds no payload at all (a README in a
folder, a HAR without POST entries) is reported in ``frame.attrs["skipped"]``.
"""

from __future__ import annotations

import base64
import binascii
import gc
import glob
import gzip
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from segfn_kit.runtime import Request

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FRAME_COLUMNS",
    "Payload",
    "PayloadError",
    "Skip",
    "flatten",
    "frame_from_payloads",
    "iter_payloads",
    "load_payloads",
    "parse_json",
    "request_from_row",
]

# the fixed columns of the payload frame, in order (index: payload_id)
FRAME_COLUMNS = (
    "source",
    "position",
    "format",
    "method",
    "url",
    "path",
    "query",
    "headers",
    "received_at",
    "content_type",
    "event_type",
    "raw",
    "body",
    "error",
    "warning",
)

# file extensions read when walking a folder; any other file there is reported as skipped
PAYLOAD_SUFFIXES = (".json", ".jsonl", ".ndjson", ".har")
JSONL_SUFFIXES = (".jsonl", ".ndjson")

# Segment's limit on an incoming webhook body
SEGMENT_BODY_LIMIT = 512 * 1024

ENVELOPE_KEYS = frozenset(
    {
        "method",
        "url",
        "path",
        "query",
        "headers",
        "body",
        "body_base64",
        "received_at",
        "signature",
        "client",
        "http_version",
    }
)

# headers that name the event type, most specific first
EVENT_HEADERS = (
    "X-GitHub-Event",
    "X-Gitlab-Event",
    "X-Shopify-Topic",
    "X-Event-Key",  # Bitbucket
    "X-WC-Webhook-Topic",  # WooCommerce
    "X-Zendesk-Event-Type",
    "X-Hook-Event",
    "X-Webhook-Event",
    "X-Event-Type",
)
# body keys that name the event type, first match wins
EVENT_KEYS = (
    "type",
    "event",
    "event_type",
    "eventType",
    "topic",
    "alert_name",  # Paddle classic
    "subscriptionType",  # HubSpot
    "webhookEvent",  # Jira
    "event_name",
)


class PayloadError(ValueError):
    """A payload could not be loaded and ``strict=True`` was asked for.

    Attributes:
        source: the file (or input) that failed.
        reason: why.
    """

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


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
            envelope["body_base64"] = base64.b64encode(
                self.raw.encode("utf-8", "surrogateescape")
            ).decode("ascii")
        if self.received_at is not None:
            envelope["received_at"] = self.received_at
        return envelope


# --------------------------------------------------------------------------- JSON parsing


_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19,}")
_BEFORE_NUMBER_BYTES = b":,[ \t\r\n"


# bytes.translate maps digits to "0" and everything else to " ": finding 19 zeros in a row
# is then a plain substring search, far faster than a regular expression over digit-heavy
# JSON (timestamps, amounts, ids)
_DIGIT_TABLE = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_NINETEEN = b"0" * 19


def _may_hold_long_int(data: bytes | str) -> bool:
    """Whether the JSON text may hold an integer beyond 64 bits (19 digits or more).

    orjson reads such integers as floats without a word; a run of 19 digits inside a
    string (``"sub_0000000000000000000"``) is not one, so only runs that start where a
    number can start count.
    """
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
    if _NINETEEN not in raw.translate(_DIGIT_TABLE):  # the common case, at C speed
        return False
    for match in _LONG_DIGITS_BYTES.finditer(raw):
        start = match.start()
        if raw[start - 1 : start] == b"-":
            start -= 1
        if raw[start - 1 : start] in _BEFORE_NUMBER_BYTES:  # b"" (start 0) is in it too
            return True
    return False


def parse_json(data: bytes | str) -> tuple[Any, str | None]:
    """Parse JSON exactly: orjson where it is exact, the standard library where it is not.

    orjson rejects integers beyond 64 bits and the NaN/Infinity literals; the standard
    library reads both (integers stay exact Python ints). Returns the value and a warning
    for non-standard input (NaN/Infinity literals).

    Raises:
        ValueError: the text is not JSON (the message says where).

    Example:
        >>> parse_json(b'{"id": 123456789012345678901234567890}')[0]["id"]
        123456789012345678901234567890
        >>> parse_json("[NaN]")[1]
        'non-standard JSON literal NaN (kept as a float)'
    """
    # orjson turns integers beyond 64 bits into floats without a word; any run of 19
    # digits may be one, so those texts go to the standard library, which keeps them exact
    if not _may_hold_long_int(data):
        try:
            return orjson.loads(data), None
        except orjson.JSONDecodeError:
            pass
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    literals: list[str] = []

    def constant(name: str) -> float:
        literals.append(name)
        return float(name)

    try:
        value = json.loads(text, parse_constant=constant)
    except json.JSONDecodeError as exc:
        ends_early = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
        hint = " (the text ends early: it looks truncated)" if ends_early else ""
        raise ValueError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos}){hint}"
        ) from None
    except RecursionError:
        raise ValueError("JSON nested too deeply to read (over about 1,000 levels)") from None
    warning = None
    if literals:
        names = ", ".join(dict.fromkeys(literals))
        warning = f"non-standard JSON literal {names} (kept as a float)"
    return value, warning


def _duplicate_key(text: str) -> str | None:
    """The first key that appears twice in one JSON object of ``text``, if any.

    Both parsers keep the last value of a repeated key without a word, so this looks.
    """
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)
        if len(result) != len(items) and not found:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    found.append(key)
                    break
                seen.add(key)
        return result

    try:
        json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None


def _may_have_duplicates(value: Any, text: str | bytes) -> bool:
    # A cheap screen before the exact (slow) check. orjson re-serialises the parsed value
    # compactly (fast, in C): for compact input of the same length nothing was dropped.
    # Otherwise count keys: every key is a string followed by ':', and the re-serialised
    # value has one '":' per key it kept.
    try:
        compact = orjson.dumps(value)
    except orjson.JSONEncodeError:  # ints beyond 64 bits, nesting beyond 255 levels
        raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        return raw.count(b'":') + raw.count(b'" :') > _count_keys(value, 0)
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    if len(compact) == len(raw):
        return False
    return raw.count(b'":') + raw.count(b'" :') != compact.count(b'":')


def _count_keys(value: Any, depth: int) -> int:
    if depth > 200:
        return 1 << 60  # too deep to count cheaply: let the exact check decide
    if isinstance(value, dict):
        n = len(value)
        for v in value.values():
            if isinstance(v, dict | list):
                n += _count_keys(v, depth + 1)
        return n
    if isinstance(value, list):
        n = 0
        for v in value:
            if isinstance(v, dict | list):
                n += _count_keys(v, depth + 1)
        return n
    return 0


def _compact(value: Any) -> str:
    """The compact serialisation a JSON-valued body stands for (contract 2)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------- body reading


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def _is_form(content_type: str | None) -> bool:
    return bool(content_type) and "x-www-form-urlencoded" in str(content_type).lower()


def _looks_form(text: str) -> bool:
    head = text[:400].strip()
    if not head or head[0] in '{["' or "=" not in head:
        return False
    return " " not in head.split("&", 1)[0] and "\n" not in head


def _decode_form(text: str) -> dict[str, Any]:
    parsed = parse_qs(text, keep_blank_values=True)
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


def _is_form_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v))
        for v in value.values()
    )


@dataclass(slots=True)
class _Body:
    raw: str
    body: Any = None
    warning: str | None = None
    error: str | None = None


def _body_from_text(raw: str, content_type: str | None, check_duplicates: bool) -> _Body:
    """Parse a body given as text: JSON, url-encoded, or left as text."""
    if not raw.strip():
        return _Body(raw, None, "the body is empty")
    if _is_form(content_type):
        return _Body(raw, _decode_form(raw))
    try:
        value, warning = parse_json(raw)
    except ValueError as exc:
        if _looks_form(raw):
            return _Body(raw, _decode_form(raw))
        ctype = f" ({content_type})" if content_type else ""
        return _Body(
            raw,
            None,
            f"the body{ctype} is not JSON or url-encoded: {exc}; read it with request.text()",
        )
    if check_duplicates and _may_have_duplicates(value, raw):
        dup = _duplicate_key(raw)
        if dup is not None:
            warning = _join(
                warning, f"duplicate key {dup!r}: the last value is kept, as request.json() does"
            )
    return _Body(raw, value, warning)


def _body_from_value(value: Any, content_type: str | None) -> _Body:
    """A body given as a JSON value (hand-written samples, Hookdeck, functions-library)."""
    if _is_form(content_type) and _is_form_dict(value):
        # a url-encoded request captured as its decoded fields: the wire form is the encoding
        return _Body(urlencode(value, doseq=True), value)
    try:
        return _Body(_compact(value), value)
    except (ValueError, RecursionError) as exc:
        return _Body("", value, None, f"body cannot be serialised: {exc}")


def _body_from_bytes(data: bytes, content_type: str | None, check_duplicates: bool) -> _Body:
    raw = data.decode("utf-8", "surrogateescape")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _Body(
            raw,
            None,
            f"the body is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "read it with request.content",
        )
    return _body_from_text(raw, content_type, check_duplicates)


def _join(a: str | None, b: str | None) -> str | None:
    if a and b:
        return f"{a}; {b}"
    return a or b


# --------------------------------------------------------------------------- event types


def detect_event_type(headers: Mapping[str, str], body: Any, topic: Any = None) -> str | None:
    """The incoming event type: from a header, the capture's topic, or the body.

    Example:
        >>> detect_event_type({"X-GitHub-Event": "push"}, {"ref": "main"})
        'push'
        >>> detect_event_type({}, {"type": "customer.created"})
        'customer.created'
    """
    if headers:
        lowered = {str(k).lower(): v for k, v in headers.items()}
        for name in EVENT_HEADERS:
            value = lowered.get(name.lower())
            if isinstance(value, str) and value:
                return value
    if isinstance(topic, str) and topic:
        return topic
    if isinstance(body, dict):
        for key in EVENT_KEYS:
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    elif isinstance(body, list) and body and isinstance(body[0], dict):
        first = detect_event_type({}, body[0])
        if first is not None and all(
            isinstance(item, dict) and detect_event_type({}, item) == first for item in body
        ):
            return first
    return None


# --------------------------------------------------------------------------- records


def _headers_dict(value: Any) -> tuple[dict[str, str], str | None]:
    """Headers as a dict of str; accepts a mapping, pairs, or HAR's [{name, value}]."""
    if value is None:
        return {}, None
    result: dict[str, str] = {}
    lower_index: dict[str, str] = {}

    def put(name: Any, val: Any) -> None:
        name = str(name)
        if isinstance(val, list | tuple):
            val = ", ".join(str(v) for v in val)
        val = "" if val is None else str(val)
        existing = lower_index.get(name.lower())
        if existing is not None:  # a repeated header: joined as HTTP does
            result[existing] = f"{result[existing]}, {val}"
        else:
            lower_index[name.lower()] = name
            result[name] = val

    if isinstance(value, Mapping):
        for name, val in value.items():
            put(name, val)
        return result, None
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Mapping) and "name" in item:
                put(item["name"], item.get("value"))
            elif isinstance(item, list | tuple) and len(item) == 2:
                put(item[0], item[1])
            else:
                return result, f"headers entry {item!r} is not a name/value pair"
        return result, None
    return {}, f"headers must be an object, not {type(value).__name__}"


def _query_dict(value: Any, url: str | None) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list):  # HAR queryString
        out: dict[str, Any] = {}
        for item in value:
            if isinstance(item, Mapping) and "name" in item:
                name, val = str(item["name"]), item.get("value", "")
                if name in out:
                    prev = out[name]
                    out[name] = [*prev, val] if isinstance(prev, list) else [prev, val]
                else:
                    out[name] = val
        return out
    if url:
        return _decode_form(urlsplit(url).query)
    return {}


def _shape(value: Any) -> str:
    """The capture shape of one parsed JSON document."""
    if not isinstance(value, dict):
        return "bare"
    if isinstance(value.get("log"), dict) and isinstance(value["log"].get("entries"), list):
        return "har"
    payload = value.get("payload")
    if (
        len(value) <= 2
        and isinstance(payload, dict)
        and "body" in payload
        and set(payload) <= {"body", "headers", "queryParameters", "queryParams", "query"}
    ):
        return "functions-library"
    if "topic" in value and "body" in value and "headers" in value and len(value) <= 5:
        return "topic"
    if (
        ("body" in value or "body_base64" in value)
        and "headers" in value
        and isinstance(value["headers"], dict | list)
        and set(value) <= ENVELOPE_KEYS
    ):
        return "envelope"
    return "bare"


class _Reader:
    """Turns files and values into ``Payload`` records; one instance per load."""

    def __init__(
        self,
        *,
        split_arrays: bool,
        check_duplicates: bool,
        on_skip: Callable[[Skip], None] | None,
    ):
        self.split_arrays = split_arrays
        self.check_duplicates = check_duplicates
        self.on_skip = on_skip
        self.seen_ids: dict[str, int] = {}  # file ids only

    # ids ---------------------------------------------------------------
    def unique_id(self, base: str) -> str:
        count = self.seen_ids.get(base, 0) + 1
        self.seen_ids[base] = count
        return base if count == 1 else f"{base}~{count}"

    def skip(self, source: str, reason: str) -> None:
        if self.on_skip is not None:
            self.on_skip(Skip(source, reason))

    # one document ---------------------------------------------------------
    def from_document(
        self,
        value: Any,
        *,
        pid: str,
        source: str,
        position: int,
        raw_text: str | None,
        fmt_bare: str,
    ) -> Payload:
        """A payload from one parsed JSON document (a file, a line, an array item)."""
        shape = _shape(value)
        if shape == "functions-library":
            inner = value["payload"]
            query = inner.get("queryParameters", inner.get("queryParams", inner.get("query")))
            return self.from_parts(
                pid=pid,
                source=source,
                position=position,
                fmt="functions-library",
                headers=inner.get("headers"),
                body=inner.get("body"),
                query=query,
            )
        if shape == "topic":
            return self.from_parts(
                pid=pid,
                source=source,
                position=position,
                fmt="topic",
                headers=value.get("headers"),
                body=value.get("body"),
                topic=value.get("topic"),
                query=value.get("query"),
                method=value.get("method"),
                url=value.get("url"),
            )
        if shape == "envelope":
            return self.from_parts(
                pid=pid,
                source=source,
                position=position,
                fmt="envelope",
                headers=value.get("headers"),
                body=value.get("body"),
                body_base64=value.get("body_base64"),
                has_body="body" in value,
                query=value.get("query"),
                method=value.get("method"),
                url=value.get("url"),
                path=value.get("path"),
                received_at=value.get("received_at"),
            )
        if shape == "har":
            # a HAR nested in a JSON Lines file or an array: not a request itself
            return Payload(
                pid,
                source,
                position,
                "har",
                raw_text or "",
                None,
                error="a HAR archive inside another file; load the .har file itself",
            )
        raw = raw_text if raw_text is not None else _compact(value)
        return Payload(
            payload_id=pid,
            source=source,
            position=position,
            format=fmt_bare,
            raw=raw,
            body=value,
            content_type=None,
            event_type=detect_event_type({}, value),
        )

    def from_parts(
        self,
        *,
        pid: str,
        source: str,
        position: int,
        fmt: str,
        headers: Any,
        body: Any,
        body_base64: Any = None,
        has_body: bool = True,
        query: Any = None,
        method: Any = None,
        url: Any = None,
        path: Any = None,
        received_at: Any = None,
        topic: Any = None,
    ) -> Payload:
        hdrs, header_problem = _headers_dict(headers)
        ctype = _header(hdrs, "Content-Type")
        url_s = url if isinstance(url, str) else None
        path_s = path if isinstance(path, str) else None
        if path_s is None and url_s:
            path_s = urlsplit(url_s).path or None
        if url_s is None and path_s:
            url_s = path_s
        error: str | None = header_problem
        if body_base64 is not None and not (has_body and body is not None):
            try:
                data = base64.b64decode(str(body_base64), validate=True)
            except (binascii.Error, ValueError) as exc:
                parsed = _Body("", None, None, f"body_base64 is not valid base64: {exc}")
            else:
                parsed = _body_from_bytes(data, ctype, self.check_duplicates)
        elif isinstance(body, str):
            parsed = _body_from_text(body, ctype, self.check_duplicates)
        elif body is None and not has_body:
            parsed = _Body("", None, None, "the envelope has neither body nor body_base64")
        else:
            parsed = _body_from_value(body, ctype)
        if parsed.error and parsed.body is None and not error:
            # an unreadable body is still a request a function would receive: keep it loadable
            warning = parsed.error
        else:
            warning = None
            error = _join(error, parsed.error)
        warning = _join(warning, parsed.warning)
        size = len(parsed.raw)
        if size > SEGMENT_BODY_LIMIT:
            warning = _join(
                warning, f"the body is {size / 1e6:.1f} MB, over Segment's 512 KiB webhook limit"
            )
        return Payload(
            payload_id=pid,
            source=source,
            position=position,
            format=fmt,
            raw=parsed.raw,
            body=parsed.body,
            headers=hdrs,
            query=_query_dict(query, url_s),
            method=str(method).upper() if isinstance(method, str) and method else "POST",
            url=url_s,
            path=path_s,
            received_at=received_at if isinstance(received_at, str) else None,
            content_type=ctype,
            event_type=detect_event_type(hdrs, parsed.body, topic),
            error=error,
            warning=warning,
        )

    # files -------------------------------------------------------------
    def read_file(self, path: Path, base_id: str) -> Iterator[Payload]:
        # ids are made unique per file (lines and entries add "#n"), so the memory this
        # takes grows with the number of files, not of payloads
        base_id = self.unique_id(base_id)
        source = str(path)
        name = path.name.lower()
        gz = name.endswith(".gz")
        inner = name[:-3] if gz else name
        try:
            if inner.endswith(JSONL_SUFFIXES):
                yield from self.read_jsonl(path, base_id, gz)
                return
            opener = gzip.open if gz else open
            with opener(path, "rb") as fh:
                data = fh.read()
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            yield Payload(base_id, source, 0, "bare", "", error=f"cannot read the file: {exc}")
            return
        if inner.endswith(".har"):
            yield from self.read_har(data, path, base_id)
            return
        yield from self.read_document(data, path, base_id)

    def read_document(self, data: bytes, path: Path, base_id: str) -> Iterator[Payload]:
        source = str(path)
        warning = None
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
            warning = "a UTF-8 byte order mark at the start of the file was removed"
        if not data.strip():
            yield Payload(
                base_id,
                source,
                0,
                "bare",
                data.decode("utf-8", "surrogateescape"),
                error="the file is empty; expected a JSON payload",
            )
            return
        raw = data.decode("utf-8", "surrogateescape")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Payload(
                base_id,
                source,
                0,
                "bare",
                raw,
                error=f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                "re-save it as UTF-8 or capture it as an envelope with body_base64",
                warning=warning,
            )
            return
        try:
            value, parse_warning = parse_json(data)
        except ValueError as exc:
            if _looks_form(raw):
                yield Payload(
                    base_id,
                    source,
                    0,
                    "form",
                    raw,
                    _decode_form(raw),
                    content_type="application/x-www-form-urlencoded",
                    warning=warning,
                )
                return
            yield Payload(
                base_id,
                source,
                0,
                "bare",
                raw,
                error=f"{exc}; fix the JSON or remove the file",
                warning=warning,
            )
            return
        warning = _join(warning, parse_warning)
        if isinstance(value, dict) and _shape(value) == "har":
            yield from self.read_har(data, path, base_id, value)
            return
        if isinstance(value, list) and self.split_arrays:
            if not value:
                self.skip(source, "an empty JSON array: no payloads")
            for index, item in enumerate(value, 1):
                yield self.finish(
                    self.from_document(
                        item,
                        pid=f"{base_id}#{index}",
                        source=source,
                        position=index,
                        raw_text=None,
                        fmt_bare="array-item",
                    ),
                    warning,
                    None,
                )
            return
        payload = self.from_document(
            value,
            pid=base_id,
            source=source,
            position=0,
            raw_text=raw,
            fmt_bare="bare",
        )
        yield self.finish(payload, warning, raw if payload.format == "bare" else None)

    def finish(self, payload: Payload, warning: str | None, raw: str | bytes | None) -> Payload:
        """Add file-level warnings and, for a bare body read from text, the duplicate-key check."""
        extra = warning
        if raw is not None and self.check_duplicates and _may_have_duplicates(payload.body, raw):
            dup = _duplicate_key(payload.raw)
            if dup is not None:
                extra = _join(
                    extra, f"duplicate key {dup!r}: the last value is kept, as request.json() does"
                )
        size = len(payload.raw)
        if payload.format in ("bare", "jsonl", "array-item") and size > SEGMENT_BODY_LIMIT:
            extra = _join(
                extra, f"the body is {size / 1e6:.1f} MB, over Segment's 512 KiB webhook limit"
            )
        if not extra:
            return payload
        return _replace(payload, warning=_join(payload.warning, extra))

    def read_jsonl(self, path: Path, base_id: str, gz: bool) -> Iterator[Payload]:
        source = str(path)
        opener = gzip.open if gz else open
        count = 0
        with opener(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]
                stripped = line.strip()
                if not stripped:
                    continue
                count += 1
                pid = f"{base_id}#{number}"
                raw = stripped.decode("utf-8", "surrogateescape")
                exact = False
                try:
                    value = orjson.loads(stripped)
                    warning = None
                    # A compact line that orjson writes back byte for byte lost nothing: no
                    # integer beyond 64 bits turned float, no repeated key dropped. One
                    # comparison then stands for both checks, the common case of exports.
                    try:
                        exact = orjson.dumps(value) == stripped
                    except orjson.JSONEncodeError:
                        exact = False
                    if not exact and _may_hold_long_int(stripped):
                        raise orjson.JSONDecodeError("may hold an integer beyond 64 bits", "", 0)
                except orjson.JSONDecodeError:
                    try:
                        stripped.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        yield Payload(
                            pid,
                            source,
                            number,
                            "jsonl",
                            raw,
                            error=f"line {number} is not valid UTF-8 (offset {exc.start})",
                        )
                        continue
                    try:
                        value, warning = parse_json(raw)
                    except ValueError as exc:
                        yield Payload(
                            pid,
                            source,
                            number,
                            "jsonl",
                            raw,
                            error=f"line {number}: {exc}; fix or remove the line",
                        )
                        continue
                shape = _shape(value) if isinstance(value, dict) else "bare"
                if shape == "bare":
                    # the hot path of large exports: no re-serialisation, the line is the body
                    payload = Payload(
                        pid,
                        source,
                        number,
                        "jsonl",
                        raw,
                        value,
                        event_type=detect_event_type({}, value),
                    )
                    yield self.finish(payload, warning, None if exact else stripped)
                else:
                    payload = self.from_document(
                        value,
                        pid=pid,
                        source=source,
                        position=number,
                        raw_text=raw,
                        fmt_bare="jsonl",
                    )
                    yield self.finish(payload, warning, None)
        if count == 0:
            self.skip(source, "no payloads: the JSON Lines file has no non-blank line")

    def read_har(
        self, data: bytes, path: Path, base_id: str, value: Any = None
    ) -> Iterator[Payload]:
        source = str(path)
        if value is None:
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                value, _ = parse_json(data)
            except ValueError as exc:
                yield Payload(base_id, source, 0, "har", "", error=f"HAR file: {exc}")
                return
        log = value.get("log") if isinstance(value, dict) else None
        entries = log.get("entries") if isinstance(log, dict) else None
        if not isinstance(entries, list):
            yield Payload(
                base_id,
                source,
                0,
                "har",
                "",
                error="not a HAR archive: no log.entries list",
            )
            return
        posts = 0
        for number, entry in enumerate(entries, 1):
            request = entry.get("request") if isinstance(entry, dict) else None
            if not isinstance(request, dict) or str(request.get("method", "")).upper() != "POST":
                continue
            posts += 1
            headers = [
                h
                for h in request.get("headers") or []
                if not str(h.get("name", "")).startswith(":")
            ]
            post = request.get("postData") or {}
            body_text: Any = post.get("text")
            body_b64 = None
            if body_text is not None and post.get("encoding") == "base64":
                body_b64, body_text = body_text, None
            elif body_text is None and isinstance(post.get("params"), list):
                body_text = urlencode(
                    [(p.get("name", ""), p.get("value", "")) for p in post["params"]]
                )
            elif body_text is None:
                body_text = ""
            hdr_dict, _ = _headers_dict(headers)
            if post.get("mimeType") and _header(hdr_dict, "Content-Type") is None:
                headers = [*headers, {"name": "Content-Type", "value": post["mimeType"]}]
            yield self.from_parts(
                pid=f"{base_id}#{number}",
                source=source,
                position=number,
                fmt="har",
                headers=headers,
                body=body_text,
                body_base64=body_b64,
                has_body=body_b64 is None,
                query=request.get("queryString"),
                method="POST",
                url=request.get("url"),
                received_at=entry.get("startedDateTime"),
            )
        if posts == 0:
            self.skip(source, f"a HAR archive with {len(entries)} entries and no POST request")

    # values ------------------------------------------------------------
    def read_value(self, value: Any, base_id: str) -> Iterator[Payload]:
        base_id = self.unique_id(base_id)
        items = value if isinstance(value, list) else [value]
        many = isinstance(value, list)
        for index, item in enumerate(items, 1):
            pid = f"{base_id}#{index}" if many else base_id
            yield self.from_document(
                item,
                pid=pid,
                source="<input>",
                position=index if many else 0,
                raw_text=None,
                fmt_bare="bare",
            )


def _replace(payload: Payload, **changes: Any) -> Payload:
    values = {name: getattr(payload, name) for name in Payload.__slots__}
    values.update(changes)
    return Payload(**values)


# --------------------------------------------------------------------------- file walking


def _is_glob(text: str) -> bool:
    return glob.has_magic(text)


def _files_of(arg: str | os.PathLike[str], reader: _Reader) -> Iterator[tuple[Path, str]]:
    """Each (file, base id) an argument names, in a stable order."""
    text = os.fspath(arg)
    if _is_glob(text):
        # ids are relative to the folder before the first wildcard, so they stay unique
        parts = Path(text).parts
        fixed = [p for p in _take_fixed(parts)]
        root = Path(*fixed) if fixed else Path(".")
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            reader.skip(text, "the pattern matches no file")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                yield from _walk(
                    path, f"{root.name or '.'}/{path.relative_to(root).as_posix()}", reader
                )
            elif path.is_file():
                rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
                yield path, f"{root.resolve().name}/{rel}"
        return
    path = Path(text)
    if path.is_dir():
        yield from _walk(path, path.resolve().name, reader)
    elif path.is_file() or path.exists():
        yield path, path.name
    else:
        raise FileNotFoundError(
            f"no such file or folder: {text!r}; check the path (globs like 'captures/*.json' work too)"
        )


def _take_fixed(parts: tuple[str, ...]) -> Iterator[str]:
    for part in parts:
        if glob.has_magic(part):
            return
        yield part


def _walk(folder: Path, base: str, reader: _Reader) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            lowered = name.lower().removesuffix(".gz")
            if name.startswith("."):
                reader.skip(str(path), "a hidden file")
            elif not lowered.endswith(PAYLOAD_SUFFIXES):
                suffix = Path(lowered).suffix or "no extension"
                reader.skip(
                    str(path),
                    f"not a payload file ({suffix}); payload files end in "
                    + ", ".join(PAYLOAD_SUFFIXES),
                )
            else:
                yield path, f"{base}/{rel}"


# --------------------------------------------------------------------------- public API

PathArg = str | os.PathLike[str]


def iter_payloads(
    *paths: PathArg | Mapping[str, Any] | list[Any],
    split_arrays: bool = False,
    check_duplicates: bool = True,
    strict: bool = False,
    on_skip: Callable[[Skip], None] | None = None,
) -> Iterator[Payload]:
    """Stream ``Payload`` records from files, folders (recursive), globs or values.

    Reads one file at a time and JSON Lines one line at a time, so memory stays flat
    whatever the size of the input.

    Args:
        *paths: files, folders, glob patterns (``captures/**/*.json``), or payloads given
            as dicts (an envelope or a bare body) or a list of them.
        split_arrays: read a ``.json`` file whose top level is an array as one payload per
            item (by default the array is one body, as SendGrid and HubSpot send it).
        check_duplicates: look for repeated keys in JSON objects (a warning on the row).
        strict: raise ``PayloadError`` on the first input that cannot be loaded or is skipped.
        on_skip: called with a ``Skip`` for each input that holds no payload.

    Raises:
        FileNotFoundError: a named file or folder does not exist.
        PayloadError: only with ``strict=True``.

    Example:
        >>> rows = list(iter_payloads({"headers": {}, "body": {"type": "ping"}}))
        >>> rows[0].event_type, rows[0].raw
        ('ping', '{"type":"ping"}')
    """

    def skip(item: Skip) -> None:
        if strict:
            raise PayloadError(item.source, item.reason)
        if on_skip is not None:
            on_skip(item)

    reader = _Reader(split_arrays=split_arrays, check_duplicates=check_duplicates, on_skip=skip)
    for index, arg in enumerate(paths, 1):
        if isinstance(arg, Mapping | list):
            stream: Iterable[Payload] = reader.read_value(arg, f"input{index}")
        else:
            stream = _stream_files(arg, reader)
        for payload in stream:
            if strict and payload.error:
                raise PayloadError(payload.source, payload.error)
            yield payload


def _stream_files(arg: PathArg, reader: _Reader) -> Iterator[Payload]:
    for path, base_id in _files_of(arg, reader):
        yield from reader.read_file(path, base_id)


def flatten(value: Any, prefix: str = "body", max_depth: int = 32) -> dict[str, Any]:
    """A JSON object's fields as ``{"prefix.a.b": value}``; lists and deeper levels kept whole.

    Example:
        >>> flatten({"data": {"object": {"id": "cus_1", "tags": ["a"]}}})
        {'body.data.object.id': 'cus_1', 'body.data.object.tags': ['a']}
    """
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        _flatten_into(out, value, prefix + ".", max_depth)
    return out


def _flatten_into(out: dict[str, Any], obj: dict[str, Any], prefix: str, depth: int) -> None:
    for key, value in obj.items():
        if type(value) is dict and value and depth > 1:
            _flatten_into(out, value, f"{prefix}{key}.", depth - 1)
        else:
            out[prefix + key] = value


# a tree of path names: key -> (path, path + ".", child tree); shared by the rows of one
# load, so equal paths are the same string objects and shape tuples hash and compare fast
_PathTree = dict[str, tuple[str, str, "_PathTree"]]


def load_payloads(
    *paths: PathArg | Mapping[str, Any] | list[Any],
    split_arrays: bool = False,
    check_duplicates: bool = True,
    strict: bool = False,
    flatten_body: bool = True,
    max_depth: int = 32,
    progress: bool = False,
) -> pd.DataFrame:
    """Load captured payloads from files, folders and globs into one DataFrame.

    One row per payload, indexed by a stable ``payload_id``; columns as described in
    ``docs/ARCHITECTURE.md`` ("The payload frame"), then the body's fields flattened to
    ``body.<dot.path>`` columns (object dtype, so integers above 2^53 stay exact).

    Args:
        *paths: files, folders (recursive), glob patterns, or payload dicts.
        split_arrays: read a top-level JSON array as one payload per item.
        check_duplicates: warn on repeated keys in JSON objects.
        strict: raise ``PayloadError`` instead of reporting a bad input in its row.
        flatten_body: add the ``body.<dot.path>`` columns.
        max_depth: the deepest level flattened; deeper objects stay whole in one column.
        progress: show a progress bar (tqdm) while loading.

    Returns:
        The payload frame. ``frame.attrs["skipped"]`` lists ``{"source", "reason"}`` for
        inputs that hold no payload.

    Example:
        >>> frame = load_payloads({"headers": {}, "body": {"type": "customer.created", "data": {"id": 1}}})
        >>> frame[["event_type", "body.data.id"]].to_dict("records")
        [{'event_type': 'customer.created', 'body.data.id': 1}]
    """

    skipped: list[dict[str, str]] = []
    stream: Iterable[Payload] = iter_payloads(
        *paths,
        split_arrays=split_arrays,
        check_duplicates=check_duplicates,
        strict=strict,
        on_skip=lambda s: skipped.append({"source": s.source, "reason": s.reason}),
    )
    if progress:
        from tqdm.auto import tqdm

        stream = tqdm(stream, desc="loading payloads", unit=" payloads")
    frame = frame_from_payloads(stream, flatten_body=flatten_body, max_depth=max_depth)
    frame.attrs["skipped"] = skipped
    return frame


def frame_from_payloads(
    payloads: Iterable[Payload], *, flatten_body: bool = True, max_depth: int = 32
) -> pd.DataFrame:
    """The payload frame of ``Payload`` records (what ``load_payloads`` returns).

    Example:
        >>> p = next(iter_payloads({"headers": {}, "body": {"a": {"b": 1}}}))
        >>> frame_from_payloads([p])["body.a.b"].tolist()
        [1]
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the loader makes no reference cycles; collections only cost time here
    try:
        rows = list(payloads)
        frame = _build_frame(rows, flatten_body, max_depth)
    finally:
        if gc_was_enabled:
            gc.enable()
    frame.attrs["skipped"] = []
    return frame


def _flatten_pairs(
    keys: list[str],
    values: list[Any],
    obj: dict[str, Any],
    prefix: str,
    tree: _PathTree,
    depth: int,
) -> None:
    # the loader's hot path: two flat lists, so rows of one shape share one key tuple
    for key, value in obj.items():
        entry = tree.get(key)
        if entry is None:
            path = prefix + key
            entry = tree[key] = (path, path + ".", {})
        if type(value) is dict and value and depth > 1:
            _flatten_pairs(keys, values, value, entry[1], entry[2], depth - 1)
        else:
            keys.append(entry[0])
            values.append(value)


_CHUNK = 4096  # rows flattened at a time: bounds the temporary value lists
_BLOCK_WIDTH = 64  # body columns per 2D block (the first 32 blocks; then wider)


class _Columns:
    """Body columns as a few 2D object blocks of ``_BLOCK_WIDTH`` columns each.

    The number of rows is known, the number of columns is not (new paths appear as rows
    are read), so columns go into fixed-size blocks allocated as needed: nothing is copied
    to grow, and pandas receives a handful of blocks (never the hundreds that make a frame
    "fragmented").
    """

    def __init__(self, n: int):
        self.n = n
        self.blocks: list[Any] = []
        self.block_names: list[list[str]] = []
        self.where: dict[str, tuple[int, int]] = {}
        # shape -> per block: (block index, rows in the block, positions in the shape)
        self.placements: dict[tuple[str, ...], list[tuple[int, Any, Any]]] = {}

    def place(self, shape: tuple[str, ...]) -> list[tuple[int, Any, Any]]:
        import numpy as np

        by_block: dict[int, tuple[list[int], list[int]]] = {}
        for position, key in enumerate(shape):
            spot = self.where.get(key)
            if spot is None:
                if not self.blocks or len(self.block_names[-1]) == len(self.blocks[-1]):
                    # wider blocks after every 32, so even thousands of columns make few
                    # blocks; np.empty fills object arrays with None: absent fields are None
                    width = _BLOCK_WIDTH << (len(self.blocks) // 32)
                    self.blocks.append(np.empty((width, self.n), dtype=object))
                    self.block_names.append([])
                spot = (len(self.blocks) - 1, len(self.block_names[-1]))
                self.where[key] = spot
                self.block_names[-1].append(key)
            block_rows, positions = by_block.setdefault(spot[0], ([], []))
            block_rows.append(spot[1])
            positions.append(position)
        placement = [
            (b, np.asarray(block_rows, dtype=np.intp), np.asarray(positions, dtype=np.intp))
            for b, (block_rows, positions) in by_block.items()
        ]
        self.placements[shape] = placement
        return placement

    def fill(self, shape: tuple[str, ...], rows: list[int], value_rows: list[list[Any]]) -> None:
        import numpy as np

        placement = self.placements.get(shape) or self.place(shape)
        width = len(shape)
        # one C-level pass over the values (fromiter never unpacks list values, as building
        # an array from nested lists would), then one fancy assignment per block
        values = np.fromiter(
            chain.from_iterable(value_rows), dtype=object, count=width * len(rows)
        ).reshape(len(rows), width)
        where = np.asarray(rows, dtype=np.intp)
        for b, block_rows, positions in placement:
            self.blocks[b][np.ix_(block_rows, where)] = values[:, positions].T

    def frames(self, index: pd.Index) -> list[pd.DataFrame]:
        import pandas as pd

        out = []
        for b, names in enumerate(self.block_names):
            if len(names) < len(self.blocks[b]):  # the last block: keep the columns in use
                self.blocks[b] = self.blocks[b][: len(names)].copy()
            block = self.blocks[b]
            out.append(pd.DataFrame(block.T, index=index, columns=names, dtype=object, copy=False))
        return out


def _build_frame(payloads: list[Payload], flatten_body: bool, max_depth: int) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    n = len(payloads)
    names = [c for c in FRAME_COLUMNS if c != "position"]
    # object dtype throughout: None stays None and big ints stay exact Python ints
    # (pandas would otherwise infer str columns with NaN, or float columns); the 2D
    # blocks are handed to pandas without a copy
    fixed = np.empty((len(names), n), dtype=object)
    for i, name in enumerate(names):
        fixed[i] = np.fromiter([getattr(p, name) for p in payloads], dtype=object, count=n)
    index = pd.Index([p.payload_id for p in payloads], name="payload_id", dtype=object)
    frame = pd.DataFrame(fixed.T, index=index, columns=names, dtype=object, copy=False)
    positions = np.fromiter((p.position for p in payloads), dtype=np.int64, count=n)
    frame.insert(1, "position", positions)
    if not flatten_body:
        return frame
    columns = _Columns(n)
    tree: _PathTree = {}
    for start in range(0, n, _CHUNK):
        # rows grouped by the tuple of their flattened paths: payloads of one event type
        # mostly share a shape, so each group fills its columns in one assignment
        groups: dict[tuple[str, ...], tuple[list[int], list[list[Any]]]] = {}
        for row in range(start, min(n, start + _CHUNK)):
            body = payloads[row].body
            if type(body) is dict and body:
                keys: list[str] = []
                values: list[Any] = []
                _flatten_pairs(keys, values, body, "body.", tree, max_depth)
                shape = tuple(keys)
                group = groups.get(shape)
                if group is None:
                    groups[shape] = ([row], [values])
                else:
                    group[0].append(row)
                    group[1].append(values)
        for shape, (rows, value_rows) in groups.items():
            columns.fill(shape, rows, value_rows)
    parts = columns.frames(index)
    if not parts:
        return frame
    return pd.concat([frame, *parts], axis=1)


def request_from_row(row_or_payload: Any) -> Request:
    """The ``runtime.Request`` for one payload: a ``Payload``, a frame row, or a dict.

    The body is the raw text as received, so signatures and ``request.text()`` see exactly
    the captured bytes.

    Example:
        >>> frame = load_payloads({"headers": {"X-Shopify-Topic": "orders/create"}, "body": {"id": 1}})
        >>> request = request_from_row(frame.iloc[0])
        >>> request.json(), request.headers["x-shopify-topic"]
        ({'id': 1}, 'orders/create')
    """
    if isinstance(row_or_payload, Payload):
        p = row_or_payload
        raw, headers, method, url, query, received = (
            p.raw,
            p.headers,
            p.method,
            p.url,
            p.query,
            p.received_at,
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
        raw_s.encode("utf-8", "surrogateescape"),
        headers if isinstance(headers, Mapping) else {},
        method=str(method) if isinstance(method, str) and method else "POST",
        url=url if isinstance(url, str) else "",
        query=query if isinstance(query, Mapping) and query else None,
        received_at=received if isinstance(received, str) else None,
    )
