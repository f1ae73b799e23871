"""The capture formats: envelopes, bare bodies, JSON Lines, HAR, wrappers, forms.

``_Reader`` turns one file or value into ``Payload`` records; ``_shape`` tells the formats of a
parsed JSON document apart.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from segfn_kit.runtime import Request

from ._body import (
    SEGMENT_BODY_LIMIT,
    _Body,
    _body_from_bytes,
    _body_from_text,
    _body_from_value,
    _decode_form,
    _header,
    _join,
    _looks_form,
    _utf8_problem,
)
from ._eventtype import detect_event_type
from ._files import (
    DEFAULT_MAX_BYTES,
    JSONL_SUFFIXES,
    TooLarge,
    cap_message,
    capped_lines,
    open_binary,
    read_capped,
)
from ._jsonparse import (
    _compact,
    _duplicate_key,
    _may_have_duplicates,
    _may_hold_long_int,
    parse_json,
)
from ._record import Line, Payload, PayloadError, Skip, _replace

_UNPARSED: Any = object()

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
        max_bytes: int = DEFAULT_MAX_BYTES,
        bodies: bool = True,
        lines: bool = False,
    ):
        self.split_arrays = split_arrays
        self.lines = lines
        self.check_duplicates = check_duplicates
        self.on_skip = on_skip
        self.max_bytes = max_bytes
        self.bodies = bodies
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
                parsed = (
                    _body_from_bytes(data, ctype, self.check_duplicates)
                    if self.bodies
                    else _Body(data.decode("utf-8", "surrogateescape"))
                )
        elif isinstance(body, str):
            parsed = (
                _body_from_text(body, ctype, self.check_duplicates) if self.bodies else _Body(body)
            )
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
        """The payloads of one file; whatever goes wrong in it is one error row, never raised."""
        for row in self.read_any(path, base_id):
            assert isinstance(row, Payload), "a reader with lines=True reads files with read_any"
            yield row

    def read_any(self, path: Path, base_id: str) -> Iterator[Payload | Line]:
        """``read_file``, with JSON Lines lines left unread (``Line``) by a reader with ``lines=True``."""
        # ids are made unique per file (lines and entries add "#n"), so the memory this
        # takes grows with the number of files, not of payloads
        base_id = self.unique_id(base_id)
        last: Payload | Line | None = None
        try:
            for last in self.read_file_rows(path, base_id):
                yield last
        except PayloadError:  # strict=True asked for it
            raise
        except Exception as exc:  # one bad file is one error row, never raised
            where = f" after {last.payload_id}" if last is not None else ""
            yield Payload(
                f"{base_id}#error" if last is not None else base_id,
                str(path),
                last.position + 1 if last is not None else 0,
                "bare",
                "",
                error=f"cannot read the file{where} ({type(exc).__name__}: {exc}); "
                "the file may be truncated or corrupt: re-export it or remove it",
            )

    def read_file_rows(self, path: Path, base_id: str) -> Iterator[Payload | Line]:
        source = str(path)
        name = path.name.lower()
        gz = name.endswith(".gz")
        inner = name[:-3] if gz else name
        if inner.endswith(JSONL_SUFFIXES):
            yield from self.read_jsonl(path, base_id, gz)
            return
        try:
            data = read_capped(path, gz, self.max_bytes)
        except TooLarge as exc:
            yield Payload(base_id, source, 0, "bare", "", error=str(exc))
            return
        except (OSError, EOFError, zlib.error) as exc:
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
        bad = _utf8_problem(data)
        if bad is not None:
            yield Payload(
                base_id,
                source,
                0,
                "bare",
                raw,
                error=f"the file is not valid UTF-8 ({bad}); "
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
        if self.bodies and isinstance(value, dict | list):
            # repeated keys anywhere in the file: in a bare body, an envelope or a wrapper's body
            warning = _join(warning, self.duplicate_warning(value, data))
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
        yield self.finish(payload, warning, None)

    def duplicate_warning(self, value: Any, raw: str | bytes) -> str | None:
        """The warning for a key repeated anywhere in one JSON document, if there is one."""
        if not self.check_duplicates or not _may_have_duplicates(value, raw):
            return None
        text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
        dup = _duplicate_key(text)
        if dup is None:
            return None
        return f"duplicate key {dup!r}: the last value is kept, as request.json() does"

    def finish(
        self, payload: Payload, warning: str | None, document: tuple[Any, bytes] | None
    ) -> Payload:
        """Add file-level warnings and, given a ``(value, text)`` document, its duplicate-key check."""
        extra = warning
        if document is not None:
            extra = _join(extra, self.duplicate_warning(*document))
        size = len(payload.raw)
        if payload.format in ("bare", "jsonl", "array-item") and size > SEGMENT_BODY_LIMIT:
            extra = _join(
                extra, f"the body is {size / 1e6:.1f} MB, over Segment's 512 KiB webhook limit"
            )
        if not extra:
            return payload
        return _replace(payload, warning=_join(payload.warning, extra))

    def read_jsonl(self, path: Path, base_id: str, gz: bool) -> Iterator[Payload | Line]:
        source = str(path)
        count = 0
        with open_binary(path, gz) as fh:
            lines = enumerate(capped_lines(fh, self.max_bytes), 1)
            rows = self.unread_lines(lines, source, base_id) if self.lines else self.read_lines(lines, source, base_id)
            for payload in rows:
                count += 1
                yield payload
        if count == 0:
            self.skip(source, "no payloads: the JSON Lines file has no non-blank line")

    def read_lines(
        self, numbered: Iterable[tuple[int, bytes | None]], source: str, base_id: str
    ) -> Iterator[Payload]:
        """One payload per non-blank JSON Lines line, given as ``(line number, bytes)``.

        A file read whole, or a byte range of one (a partition of a cluster replay) whose
        line numbers were counted elsewhere: ids are ``{base_id}#{line number}`` either way.
        A line given as None was over the size cap (``_files.capped_lines``): an error row.
        """
        for number, stripped in _nonblank(numbered):
            if stripped is None:
                yield self.over_cap(number, source, base_id)
            else:
                yield self.read_line(number, stripped, source, base_id)

    def unread_lines(
        self, numbered: Iterable[tuple[int, bytes | None]], source: str, base_id: str
    ) -> Iterator[Payload | Line]:
        """``read_lines`` that leaves each line unread, a ``Line`` for ``read_line`` later
        (in the process that runs the function); a line over the size cap is its error row."""
        for number, stripped in _nonblank(numbered):
            if stripped is None:
                yield self.over_cap(number, source, base_id)
            else:
                yield Line(f"{base_id}#{number}", source, number, stripped)

    def over_cap(self, number: int, source: str, base_id: str) -> Payload:
        return Payload(
            f"{base_id}#{number}",
            source,
            number,
            "jsonl",
            "",
            error=cap_message(f"line {number}", self.max_bytes, False),
        )

    @staticmethod
    def bare_request(stripped: bytes, parsed: Any, digest: str) -> Request | None:
        """The request of a non-blank JSON Lines line that is a bare body, as
        ``read_line(...).request()`` gives it (a POST of the line, no headers), given the line
        parsed (``orjson.loads``, exactly ``json.loads``) and its digest, which the request
        keeps (its body is not parsed again); ``None`` for a line of another shape (an
        envelope, a wrapper: ``read_line`` reads those).

        Example:
            >>> request = _Reader.bare_request(b'{"id": 1}', {"id": 1}, "sha")
            >>> request.json(), request.digest(), dict(request.headers)
            ({'id': 1}, 'sha', {})
        """
        if isinstance(parsed, dict) and _shape(parsed) != "bare":
            return None
        return Request(stripped, parsed=parsed, digest=digest)

    def read_line(
        self, number: int, stripped: bytes, source: str, base_id: str, parsed: Any = _UNPARSED
    ) -> Payload:
        """The payload of one non-blank JSON Lines line (without its line break and blanks);
        ``parsed``, when given, is ``orjson.loads(stripped)`` (a caller that parsed it already)."""
        pid = f"{base_id}#{number}"
        raw = stripped.decode("utf-8", "surrogateescape")
        exact = False
        try:
            value = orjson.loads(stripped) if parsed is _UNPARSED else parsed
            warning = None
            if not self.bodies:
                exact = True  # the value only tells the shape: nothing of it is kept
            else:
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
                return Payload(
                    pid,
                    source,
                    number,
                    "jsonl",
                    raw,
                    error=f"line {number} is not valid UTF-8 (offset {exc.start})",
                )
            try:
                value, warning = parse_json(raw)
            except ValueError as exc:
                return Payload(
                    pid,
                    source,
                    number,
                    "jsonl",
                    raw,
                    error=f"line {number}: {exc}; fix or remove the line",
                )
        shape = _shape(value) if isinstance(value, dict) else "bare"
        if shape == "bare":
            # the hot path of large exports: no re-serialisation, the line is the body
            payload = Payload(
                pid,
                source,
                number,
                "jsonl",
                raw,
                value if self.bodies else None,
                event_type=detect_event_type({}, value),
            )
            if not self.bodies:
                return payload
            return self.finish(payload, warning, None if exact else (value, stripped))
        payload = self.from_document(
            value,
            pid=pid,
            source=source,
            position=number,
            raw_text=raw,
            fmt_bare="jsonl",
        )
        return self.finish(payload, warning, None if exact else (value, stripped))

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
            pid = f"{base_id}#{number}"
            try:
                payload = self.har_entry(entry, request, pid, source, number)
            except Exception as exc:  # one bad entry is one error row
                payload = Payload(
                    pid,
                    source,
                    number,
                    "har",
                    "",
                    error=f"HAR entry {number} cannot be read ({type(exc).__name__}: {exc})",
                )
            yield payload
        if posts == 0:
            self.skip(source, f"a HAR archive with {len(entries)} entries and no POST request")

    def har_entry(
        self, entry: dict[str, Any], request: dict[str, Any], pid: str, source: str, number: int
    ) -> Payload:
        """One POST entry of a HAR archive; headers and postData in any shape tools write."""
        raw_headers = request.get("headers")
        if isinstance(raw_headers, Mapping):  # some tools write {name: value}
            raw_headers = list(raw_headers.items())
        headers: list[Any] = []
        for item in raw_headers if isinstance(raw_headers, list) else []:
            name = item.get("name", "") if isinstance(item, Mapping) else None
            if isinstance(item, list | tuple) and len(item) == 2:
                name = item[0]
            if not str(name).startswith(":"):  # HTTP/2 pseudo-headers are not headers
                headers.append(item)
        problem = None
        if raw_headers is not None and not isinstance(raw_headers, list):
            problem = f"HAR entry {number}: headers must be a list of {{name, value}}, not {type(raw_headers).__name__}"
        post = request.get("postData")
        body_b64 = None
        mime: Any = None
        if post is None:
            body_text: Any = ""
        elif isinstance(post, str):  # the body text itself
            body_text = post
        elif isinstance(post, Mapping):
            mime = post.get("mimeType")
            body_text = post.get("text")
            params = post.get("params")
            if body_text is not None and post.get("encoding") == "base64":
                body_b64, body_text = body_text, None
            elif body_text is None and isinstance(params, list):
                body_text = urlencode(
                    [
                        (str(p.get("name", "")), str(p.get("value", "")))
                        for p in params
                        if isinstance(p, Mapping)
                    ]
                )
            elif body_text is None:
                body_text = ""
        else:
            return Payload(
                pid,
                source,
                number,
                "har",
                "",
                error=f"HAR entry {number}: postData must be an object, not {type(post).__name__}",
            )
        hdr_dict, _ = _headers_dict(headers)
        if isinstance(mime, str) and mime and _header(hdr_dict, "Content-Type") is None:
            headers = [*headers, {"name": "Content-Type", "value": mime}]
        payload = self.from_parts(
            pid=pid,
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
        if problem:
            payload = _replace(payload, warning=_join(payload.warning, problem))
        return payload

    # values ------------------------------------------------------------
    def read_value(self, value: Any, base_id: str) -> Iterator[Payload]:
        base_id = self.unique_id(base_id)
        items = value if isinstance(value, list) else [value]
        many = isinstance(value, list)
        for index, item in enumerate(items, 1):
            pid = f"{base_id}#{index}" if many else base_id
            try:
                payload = self.from_document(
                    item,
                    pid=pid,
                    source="<input>",
                    position=index if many else 0,
                    raw_text=None,
                    fmt_bare="bare",
                )
            except Exception as exc:  # one bad value is one error row
                payload = Payload(
                    pid,
                    "<input>",
                    index if many else 0,
                    "bare",
                    "",
                    error=f"this input cannot be read as a payload ({type(exc).__name__}: {exc}); "
                    "give an envelope {headers, body} or a JSON body",
                )
            yield payload


def _nonblank(numbered: Iterable[tuple[int, bytes | None]]) -> Iterator[tuple[int, bytes | None]]:
    """The non-blank lines of JSON Lines, stripped (the first one of a byte order mark too);
    None (a line over the size cap) passes through."""
    for number, line in numbered:
        if line is None:
            yield number, None
            continue
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        stripped = line.strip()
        if stripped:
            yield number, stripped
