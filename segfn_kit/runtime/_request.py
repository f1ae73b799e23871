"""The incoming webhook request, as a source function sees it."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar, overload
from urllib.parse import parse_qs, urlsplit

from ._errors import InvalidEventPayload
from ._json import MISSING, body_digest, canonical_digest, fast_loads, loads_with_digest

__all__ = ["Headers", "Request", "body_refusal", "text_bytes"]

_UNSET: Any = object()
_T = TypeVar("_T")


def _header_items(headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> dict[str, tuple[str, str]]:
    """Lower-case name -> (name as given, value as text); repeated names joined as HTTP does."""
    if type(headers) is dict:  # the common case: one string per name, no two names alike
        items = {str(k).lower(): (k, v) for k, v in headers.items()}
        if len(items) == len(headers) and all(type(k) is str and type(v) is str for k, v in headers.items()):
            return items
    items = {}
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in pairs:
        if isinstance(value, list | tuple):  # multi-valued headers as captured by some tools
            value = ", ".join(str(v) for v in value)
        key = str(name).lower()
        if key in items:
            items[key] = (items[key][0], f"{items[key][1]}, {value}")
        else:
            items[key] = (str(name), str(value))
    return items


class Headers(Mapping[str, str]):
    """A read-only, case-insensitive mapping of header names to values.

    Example:
        >>> h = Headers({"Stripe-Signature": "t=1,v1=ab"})
        >>> h.get("stripe-signature")
        't=1,v1=ab'
        >>> "STRIPE-SIGNATURE" in h
        True
    """

    __slots__ = ("_lazy", "_store")

    def __init__(self, headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None):
        # read when first looked at (many functions never do): kept as given until then
        self._store: dict[str, tuple[str, str]] | None = None
        if type(headers) is Headers:  # another Headers: share what it read (neither changes it)
            self._store = headers._items
            self._lazy: Any = None
            return
        self._lazy = dict(headers) if type(headers) is dict else headers

    @property
    def _items(self) -> dict[str, tuple[str, str]]:
        items = self._store
        if items is None:
            items = self._store = _header_items(self._lazy)
            self._lazy = None
        return items

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str | _T) -> str | _T: ...

    def get(self, name: str, /, default: Any = None) -> Any:  # no KeyError raised and caught per miss
        """The header's value, or ``default`` when the request has no such header."""
        item = self._items.get(name.lower()) if isinstance(name, str) else None
        return default if item is None else item[1]

    def peek(self, name: str) -> str | None:
        """``get(name)`` that leaves headers nobody read yet unread (a scan of them): for a
        check of one header before the function runs, which may never read any.

        Example:
            >>> Headers({"Content-Type": "text/plain"}).peek("content-type")
            'text/plain'
        """
        lazy = self._lazy
        if type(lazy) is dict:
            wanted = name.lower()
            found = [v for k, v in lazy.items() if type(k) is str and k.lower() == wanted]
            if len(found) == 1 and type(found[0]) is str:
                return found[0]
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


def text_bytes(text: str) -> bytes:
    r"""The bytes a body given as text stands for: its UTF-8, with the bytes a
    ``surrogateescape`` decoding kept as escapes put back. Text holding a lone surrogate that
    is no such escape (which no UTF-8 body can hold) keeps it as its three bytes
    (``surrogatepass``): the body is then not valid UTF-8, and a function that reads it as
    text or JSON gets ``InvalidEventPayload`` for this payload alone.

    Example:
        >>> text_bytes("caf\u00e9"), text_bytes("\udcff"), text_bytes("\ud800")
        (b'caf\xc3\xa9', b'\xff', b'\xed\xa0\x80')
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


class Request:
    """One webhook request: what ``on_request(request, settings)`` receives.

    Args:
        body: the raw body as received (bytes or text). A JSON value (dict, list, ...) is
            accepted too and serialised compactly, for hand-written payloads.
        headers: header names to values (any case).
        method: the HTTP method; webhooks are POSTs.
        url: the full URL or path the request was sent to.
        query: query parameters; read from ``url`` when not given.
        received_at: when the request was captured (ISO 8601), if known.
        parsed: the body already parsed as JSON by whoever read it (exactly what
            ``json.loads`` gives for ``body``), so that ``json()`` does not parse it again.
        digest: the body's digest (``digest()``) when it is known already, for example from
            a cache keyed by the body: it depends on the body alone.

    Example:
        >>> r = Request(b'{"type": "customer.created"}', {"Content-Type": "application/json"})
        >>> r.json()["type"]
        'customer.created'
        >>> r.headers.get("content-type")
        'application/json'
    """

    __slots__ = ("_digest", "_json", "_query", "content", "headers", "method", "received_at", "url")

    def __init__(
        self,
        body: bytes | str | Any = b"",
        headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        *,
        method: str = "POST",
        url: str = "",
        query: Mapping[str, Any] | None = None,
        received_at: str | None = None,
        parsed: Any = _UNSET,
        digest: str | None = None,
    ):
        self._json: Any = parsed
        self._digest: str | None = digest
        if isinstance(body, bytes | bytearray | memoryview):
            self.content = bytes(body)
        elif isinstance(body, str):
            self.content = text_bytes(body)
        elif body is None:
            self.content = b""
        else:
            self._json = body if parsed is _UNSET else parsed
            self.content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        self.headers = Headers(headers)
        self.method = method.upper()
        self.url = url
        # read from the URL when first asked for (most functions never do)
        self._query: Mapping[str, Any] | None = None if query is None else dict(query)
        self.received_at = received_at

    @property
    def query(self) -> Mapping[str, Any]:
        """Query parameters: one value as a string, a repeated one as a list of strings."""
        if self._query is None:
            url = self.url
            self._query = (
                {k: v[0] if len(v) == 1 else v for k, v in parse_qs(urlsplit(url).query).items()}
                if "?" in url else {}
            )
        return self._query

    @classmethod
    def from_envelope(cls, doc: Any) -> Request:
        """The request a capture envelope (contract 2) or a bare JSON body stands for.

        ``body`` as text is the raw body; as a JSON value its compact serialisation, or,
        with a url-encoded content type and an object of strings, its url encoding;
        ``body_base64`` holds a body that is not UTF-8. Anything else is a bare JSON body
        (posted as ``application/json``).

        Example:
            >>> Request.from_envelope({"headers": {"Content-Type": "application/x-www-form-urlencoded"},
            ...                        "body": {"a": "1"}}).content
            b'a=1'
            >>> Request.from_envelope({"id": 1}).json()
            {'id': 1}
        """
        if not (isinstance(doc, Mapping) and "headers" in doc and ("body" in doc or "body_base64" in doc)):
            return cls(doc, {"Content-Type": "application/json"})
        headers = doc.get("headers") or {}
        body: Any
        if "body_base64" in doc:
            import base64

            body = base64.b64decode(str(doc["body_base64"]))
        else:
            body = doc.get("body")
            ctype = Headers(headers).get("content-type", "") if isinstance(headers, Mapping) else ""
            if isinstance(body, Mapping) and "x-www-form-urlencoded" in ctype.lower() and all(
                isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v))
                for v in body.values()
            ):
                from urllib.parse import urlencode

                body = urlencode(dict(body), doseq=True)
        query = doc.get("query")
        return cls(
            body,
            headers,
            method=str(doc.get("method") or "POST"),
            url=str(doc.get("url") or doc.get("path") or ""),
            query=query if isinstance(query, Mapping) and query else None,
            received_at=doc.get("received_at") if isinstance(doc.get("received_at"), str) else None,
        )

    def text(self) -> str:
        """The body as text (UTF-8).

        Raises:
            InvalidEventPayload: the body is not valid UTF-8.
        """
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEventPayload(
                f"request body is not valid UTF-8 (byte {exc.start}); read it with request.content"
            ) from None

    def json(self) -> Any:
        """The body parsed as JSON (parsed once, then cached).

        Raises:
            InvalidEventPayload: the body is empty, not JSON, or url-encoded (use ``form()``).
        """
        if self._json is _UNSET:
            self._json = self._parse_json()
        return self._json

    def _parse_json(self) -> Any:
        # parsed once: the digest of derived messageIds is taken here too, from the value
        # as parsed, before the function can change it (no second parse for the ids)
        if self._digest is None:
            both = loads_with_digest(self.content)
            if both is not None:
                value, self._digest = both
                return value
        else:
            value = fast_loads(self.content)
            if value is not MISSING:
                return value
        value = self._parse_json_stdlib()
        if self._digest is None:
            self._digest = canonical_digest(value, self.content)
        return value

    def _parse_json_stdlib(self) -> Any:
        if not self.content.strip():
            raise InvalidEventPayload("request body is empty; expected JSON")
        text = self.text()
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            hint = ""
            ctype = self.headers.get("content-type", "")
            if "x-www-form-urlencoded" in ctype or _looks_form_encoded(text):
                hint = "; the body is url-encoded: read it with request.form()"
            raise InvalidEventPayload(
                f"request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}){hint}"
            ) from None

    def parsed_so_far(self) -> Any:
        """The parsed body if it was parsed already (or given parsed), else ``None``; never parses.

        Example:
            >>> Request({"a": 1}).parsed_so_far(), Request(b'{"a": 1}').parsed_so_far()
            ({'a': 1}, None)
        """
        return None if self._json is _UNSET else self._json

    @property
    def known_digest(self) -> str | None:
        """The body's digest when it was computed or given already, else ``None``; never
        computes it (a caller caching digests reads it after the call).

        Example:
            >>> r = Request(b'{"a": 1}')
            >>> r.known_digest is None, r.json() == {"a": 1}, r.known_digest == r.digest()
            (True, True, True)
        """
        return self._digest

    def to_wire(self) -> tuple[Any, ...]:
        """This request as a tuple of plain values that pickles fast (to a worker process);
        :meth:`from_wire` makes an equal request of it. The parsed body is left behind (the
        other side parses the bytes, as fast as it would unpickle the value); the digest and
        the query, when known, travel with it.

        Example:
            >>> r = Request(b'{"a": 1}', {"X-Id": "7"}, url="/hook?x=1")
            >>> back = Request.from_wire(r.to_wire())
            >>> back.content, back.headers["x-id"], back.query
            (b'{"a": 1}', '7', {'x': '1'})
        """
        headers = self.headers
        lazy = headers._lazy
        # headers nobody read yet go as given (a dict), read ones as their (name, value) pairs
        wire_headers = lazy if type(lazy) is dict else list(headers._items.values())
        return (self.content, wire_headers, self.method, self.url, self._query, self.received_at, self._digest)

    @classmethod
    def from_wire(cls, data: tuple[Any, ...]) -> Request:
        """The request :meth:`to_wire` gave ``data`` for."""
        content, headers, method, url, query, received_at, digest = data
        return cls(content, headers, method=method, url=url, query=query, received_at=received_at, digest=digest)

    def seed_digest(self, digest: str) -> None:
        """Give the body's digest when it is known already (a cache keyed by the body), so
        that ``digest()`` does not compute it again. It depends on the body alone."""
        if self._digest is None:
            self._digest = digest

    def digest(self) -> str:
        """A digest of the body's content, the seed of derived ``messageId``s.

        Computed from the body as received (JSON in canonical form), never from what the
        function did to the parsed object, so the same payload always gives the same ids.

        Example:
            >>> Request(b'{"b": 1, "a": 2}').digest() == Request(b'{"a":2,"b":1}').digest()
            True
        """
        if self._digest is None:
            self._digest = body_digest(self.content)
        return self._digest

    def form(self) -> dict[str, Any]:
        """The body parsed as ``application/x-www-form-urlencoded``.

        A field sent once maps to a string, a repeated field to a list of strings.

        Example:
            >>> Request(b"From=%2B15550100&Body=hi").form()
            {'From': '+15550100', 'Body': 'hi'}
        """
        parsed = parse_qs(self.text(), keep_blank_values=True)
        return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url or '/'} {len(self.content)} bytes>"


def _looks_form_encoded(text: str) -> bool:
    head = text[:200]
    return "=" in head and not head.lstrip().startswith(("{", "["))


def _declares_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def body_refusal(request: Request) -> str | None:
    """Why no function could map this body, or ``None`` (then the function runs).

    A body is parsed ahead (once: ``request.json()`` reuses it) when its content type says
    JSON or it starts like JSON. It is refused when the content type says JSON and it is
    not, or when it is nested too deeply to parse at all. ``Function.on_request`` applies
    this before the function runs, in the preview and deployed alike.

    Example:
        >>> body_refusal(Request(b"{oops", {"Content-Type": "application/json"}))
        'InvalidEventPayload: request body is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)'
        >>> body_refusal(Request(b"{oops", {"Content-Type": "text/plain"})) is None
        True
    """
    # the headers are read only when the body does not parse, or does not look like JSON
    if request.content.lstrip()[:1] not in (b"{", b"[") and not _declares_json(request):
        return None
    try:
        request.json()
    except RecursionError:
        return "InvalidEventPayload: request body is nested too deeply to parse"
    except InvalidEventPayload as exc:
        return f"InvalidEventPayload: {exc}" if _declares_json(request) else None
    return None
