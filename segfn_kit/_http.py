"""Scripted HTTP responses for destination previews, and the record of every request.

A destination function calls APIs through httpx: module-level calls (``httpx.post(...)``)
and clients it creates (``httpx.Client``, ``httpx.AsyncClient``). In a preview, respx
intercepts all of them below the client, in httpcore, so no request leaves the machine:
each one is answered from a script and recorded with its secrets masked.

Scripts (``Responses``):

- nothing scripted: every request answers ``200`` with ``{}``, so a first preview just works;
- a status sequence, ``Responses([429, 500, 201])``: the n-th request of an event gets the
  n-th answer; the count starts again at each event and runs on across retried attempts,
  and the last answer repeats;
- a rule per URL, ``.add("https://*.zendesk.com/api/v2/tickets.json", method="POST",
  respond=...)``, matched with respx patterns (any respx lookup such as
  ``json__ticket__priority="urgent"`` works too);
- a callable, ``respond=lambda request, call: 500 if call.attempt == 1 else 201``.

One answer (a *step*) is a status (``201``), a dict (``{"status": 429, "retry_after": 30,
"json": {...}, "text": "...", "headers": {...}}``), ``"timeout"``, ``"connect_error"``,
an ``httpx.Response``, an exception, or a callable returning one of these.

Strict mode (``strict=True``) answers a request that no rule matches with
``UnscriptedRequest``, and the run marks that event's row as an error even when the function
swallows the exception. Live mode (``intercept(live=True)``) sends every request for real,
still recording it, and announces itself on stderr.

Besides httpx, a preview refuses any other network connection made while a handler runs
(``requests``, ``urllib``, raw sockets): the connection fails with ``NetworkBlocked`` and the
row says so.

A destination run calls the function in a worker process (``runtime._isolation``), where it
can be stopped for real; the script stays here. In the worker, httpx's transports hand every
request to this process (``worker_scope``: a host call over the worker's pipe), where
``Interception.host`` sends it through the same interception as a request made here:
the same rules, callables, strict mode, live mode and record. The answer (or the
exception a step raises) goes back to the function's own client. Other connections are
refused in the worker and reported here as violations.

Exceptions::

    UnscriptedRequest (Exception)    strict mode: no rule for this request
    NetworkBlocked (ConnectionError) a connection outside httpx during a preview
    ScriptError (ValueError)         a script that cannot be understood
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import inspect
import json
import pickle
import re
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from segfn_kit._errors import NetworkBlocked, ScriptError, UnscriptedRequest
from segfn_kit.runtime import MASK, mask_text
from segfn_kit.runtime._isolation import HostCallError, host_call, host_calls_settled
from segfn_kit.runtime._settings import mask_values

__all__ = [
    "Call",
    "EventRecord",
    "Interception",
    "NetworkBlocked",
    "Responses",
    "ScriptError",
    "UnscriptedRequest",
    "mask_request",
    "worker_scope",
    "worker_scope_live",
]

Step = Any  # int | str | Mapping | httpx.Response | BaseException | Callable[..., Step]

_ERROR_STEPS: dict[str, type[httpx.RequestError]] = {
    "timeout": httpx.ReadTimeout,
    "read_timeout": httpx.ReadTimeout,
    "connect_timeout": httpx.ConnectTimeout,
    "connect_error": httpx.ConnectError,
    "connection_error": httpx.ConnectError,
}
_STEP_KEYS = frozenset({"status", "json", "text", "headers", "retry_after", "error"})
# headers whose whole value is a credential, whatever it contains
_SECRET_HEADER = re.compile(
    r"^(proxy-)?authorization$|cookie|api[-_]?key|token|secret|passw|signature|credential",
    re.IGNORECASE,
)
_WIRE_HEADERS = ("content-encoding", "content-length", "transfer-encoding")
# response headers worth keeping in the record (the rest is transport noise)
_KEPT_RESPONSE_HEADERS = ("retry-after", "content-type", "location", "x-rate-limit-remaining")


@dataclass(frozen=True)
class Call:
    """What a callable script sees besides the request.

    Attributes:
        event_id: the id of the event being run (``None`` outside a run).
        event: the event itself.
        attempt: 1 for the first delivery attempt, 2 for the first retry, ...
        index: how many requests this event made before this one (all attempts).
        rule_index: how many times this rule answered for this event before.
    """

    event_id: str | None
    event: Mapping[str, Any] | None
    attempt: int
    index: int
    rule_index: int


@dataclass
class EventRecord:
    """The requests one event caused, and what went wrong with the interception.

    Attributes:
        event_id: the event's id.
        event: the event.
        attempt: the current delivery attempt (set by the runner before each attempt).
        requests: one dict per request: ``method``, ``url``, ``headers`` (masked), ``body``
            (JSON value, text or ``None``), ``attempt``, ``answered_by`` and ``response``
            (``status``, ``headers``, ``body``) or ``error``.
        violations: strict-mode misses and blocked connections, as messages.
    """

    event_id: str | None = None
    event: Mapping[str, Any] | None = None
    attempt: int = 1
    requests: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def next_index(self, key: str) -> int:
        with self.lock:
            n = self.counters.get(key, 0)
            self.counters[key] = n + 1
            return n


@dataclass
class _Rule:
    name: str
    description: str
    lookups: dict[str, Any]
    steps: list[Step]


_current: contextvars.ContextVar[tuple[Interception, EventRecord] | None] = contextvars.ContextVar(
    "segfn_http_current", default=None
)
_passing_through: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "segfn_http_pass", default=False
)


class Responses:
    """A script of HTTP answers for a destination preview.

    Args:
        default: the answer to requests no rule matches: a step, a list of steps (a
            sequence) or a callable. ``None`` means ``200`` with ``{}``.
        strict: answer unmatched requests with ``UnscriptedRequest`` instead.

    Example:
        >>> import httpx
        >>> script = Responses().add(
        ...     "https://api.example.com/*", method="POST",
        ...     respond=[{"status": 429, "retry_after": 30}, 201])
        >>> with script.intercept() as http, http.record("e1") as rec:
        ...     first = httpx.post("https://api.example.com/things", json={"a": 1})
        ...     second = httpx.post("https://api.example.com/things", json={"a": 1})
        ...     other = httpx.get("https://other.example.com/")
        >>> first.status_code, first.headers["Retry-After"], second.status_code, other.json()
        (429, '30', 201, {})
        >>> [(r["method"], r["response"]["status"]) for r in rec.requests]
        [('POST', 429), ('POST', 201), ('GET', 200)]
    """

    def __init__(self, default: Step | Sequence[Step] | None = None, *, strict: bool = False):
        self.strict = strict
        self.default: list[Step] = _steps(default, "default") if default is not None else [200]
        self.rules: list[_Rule] = []

    # A destination run's frame keeps its script in ``attrs["responses"]``, and pandas
    # deep-copies a frame's attrs on every operation. The script's steps may hold exception
    # instances that were raised (with their traceback and context chain) and its counters
    # run on across runs: the frame refers to the one script, never to a deep copy. (A
    # shallow ``copy.copy`` stays a new script sharing the rules, as ``strict=`` needs.)
    def __deepcopy__(self, memo: dict[int, Any]) -> Responses:
        return self

    # -- building ------------------------------------------------------------------------
    def add(
        self,
        url: str | None = None,
        *,
        method: str | None = None,
        respond: Step | Sequence[Step] = 200,
        **lookups: Any,
    ) -> Responses:
        """Add a rule: requests matching ``url`` (``*`` matches anything) and ``method``.

        Rules are tried in the order they were added. Extra keyword arguments are respx
        lookups (``host="api.example.com"``, ``path__startswith="/v2"``,
        ``json__ticket__priority="urgent"``). Returns the script, so calls chain.

        Raises:
            ScriptError: an unknown lookup or an answer that cannot be understood.
        """
        where = f"rule {len(self.rules) + 1}"
        patterns = dict(lookups)
        if url:
            if "*" in url:
                # a glob over the URL without its query string
                regex = "".join(".*" if c == "*" else re.escape(c) for c in url)
                patterns["url__regex"] = f"^{regex}(\\?.*)?$"
            else:
                patterns["url"] = url
        if method:
            patterns["method"] = method.upper()
        from respx.patterns import M

        try:
            M(**patterns)
        except (KeyError, ValueError, NotImplementedError, TypeError) as exc:
            raise ScriptError(
                f"{where}: cannot match on {sorted(patterns)} ({exc}); use url=, method= or "
                "respx lookups such as host=, path__startswith=, json__<key>="
            ) from None
        description = " ".join(
            part for part in (method and method.upper(), url,
                              ", ".join(f"{k}={v!r}" for k, v in lookups.items())) if part
        ) or "any request"
        self.rules.append(_Rule(f"rule{len(self.rules) + 1}", description, patterns, _steps(respond, where)))
        return self

    @classmethod
    def from_json(cls, script: Any) -> Responses:
        """A script from its JSON form (what ``segfn run --responses FILE`` reads).

        The form is a status, a list of steps (a sequence for every request), or an object
        ``{"strict": bool, "default": <steps>, "rules": [{"url", "method", "respond",
        ...lookups}]}``.

        Example:
            >>> s = Responses.from_json({"strict": True, "rules": [
            ...     {"method": "POST", "url": "https://*.zendesk.com/*", "respond": [429, 201]}]})
            >>> s.strict, len(s.rules)
            (True, 1)
        """
        if not isinstance(script, Mapping):
            return cls(script)
        unknown = set(script) - {"strict", "default", "rules"}
        if unknown:
            raise ScriptError(
                f"unknown key(s) {sorted(unknown)} in the response script; "
                "use strict, default and rules"
            )
        out = cls(script.get("default"), strict=bool(script.get("strict", False)))
        rules = script.get("rules", [])
        if not isinstance(rules, list):
            raise ScriptError("'rules' must be a list of {url, method, respond} objects")
        for n, rule in enumerate(rules, 1):
            if not isinstance(rule, Mapping):
                raise ScriptError(f"rule {n} must be an object with url, method and respond")
            rule = dict(rule)
            out.add(rule.pop("url", None), method=rule.pop("method", None),
                    respond=rule.pop("respond", 200), **rule)
        return out

    @classmethod
    def load(cls, path: str | Path) -> Responses:
        """Read a JSON response script from a file (see ``from_json``)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ScriptError(f"{path}: cannot read the response script ({exc.strerror})") from None
        except ValueError as exc:
            raise ScriptError(f"{path}: the response script is not JSON ({exc})") from None
        try:
            return cls.from_json(data)
        except ScriptError as exc:
            raise ScriptError(f"{path}: {exc}") from None

    # -- running -------------------------------------------------------------------------
    @contextmanager
    def intercept(self, secrets: Iterable[str] = (), *, live: bool = False) -> Iterator[Interception]:
        """Intercept every httpx request in this process while the block runs.

        Args:
            secrets: values to mask wherever they appear in the record.
            live: send the requests for real (still recorded); says so on stderr.
        """
        interception = Interception(self, secrets, live=live)
        if live:
            print(
                "segfn: LIVE MODE: requests from the function are sent to the real APIs",
                file=sys.stderr,
                flush=True,
            )
        import respx

        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        if not live:
            for rule in self.rules:
                router.route(name=rule.name, **rule.lookups).mock(
                    side_effect=_bind(interception, rule)
                )
        router.route(name="default").mock(side_effect=_bind(interception, None))
        _install_socket_guard()
        try:
            with router:
                yield interception
        finally:
            interception.close()

    def __repr__(self) -> str:
        rules = "; ".join(r.description for r in self.rules) or "no rules"
        return f"<Responses {rules}{' strict' if self.strict else ''}>"


class Interception:
    """The running interception: answers requests and records them per event."""

    def __init__(self, script: Responses, secrets: Iterable[str], *, live: bool):
        self.script = script
        self.live = live
        self.secrets = _secret_variants(secrets)
        self.outside = EventRecord()  # requests made outside any ``record`` block
        self._client: httpx.Client | None = None  # sends requests forwarded from a worker

    @contextmanager
    def record(self, event_id: str | None = None, event: Mapping[str, Any] | None = None) -> Iterator[EventRecord]:
        """Attribute requests made in this block (and threads it starts with its context)."""
        rec = EventRecord(event_id, event)
        token = _current.set((self, rec))
        try:
            yield rec
        finally:
            _current.reset(token)

    def record_for(self, rec: EventRecord) -> contextvars.Token[tuple[Interception, EventRecord] | None]:
        """Make ``rec`` the current record (for runners that manage the context)."""
        return _current.set((self, rec))

    def close(self) -> None:
        """Release what answering forwarded requests holds."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def host(self, kind: str, payload: Any) -> Any:
        """Answer a host call from a function running in a worker process (``worker_scope``).

        ``("http", (method, url, raw headers, body bytes))`` goes through this interception
        as a request made here would (so respx's rules and the record see it), and answers
        ``("response", status, raw headers, raw body)`` or ``("raise", ...)`` with the
        exception a step raised; ``("violation", message)`` is a connection the worker
        refused, marked on the current event's record.

        Example:
            >>> with Responses(201).intercept() as http, http.record("e1") as rec:
            ...     answer = http.host("http", ("POST", "https://x.example/t", [], b"{}"))
            >>> answer[:2], [r["response"]["status"] for r in rec.requests]
            (('response', 201), [201])
        """
        if kind == "violation":
            self._record().violations.append(str(payload))
            return None
        if kind != "http":
            raise ScriptError(f"unknown host call {kind!r} from the worker process")
        method, url, headers, content = payload
        request = httpx.Request(method, url, headers=headers, content=content)
        if self._client is None:
            self._client = httpx.Client(trust_env=False)
        try:
            response = self._client.send(request, stream=True)
            try:
                raw = b"".join(response.iter_raw())
            finally:
                response.close()
        except Exception as exc:
            return ("raise", *_exception_wire(exc))
        return ("response", response.status_code, list(response.headers.raw), raw)

    def _record(self) -> EventRecord:
        current = _current.get()
        return current[1] if current and current[0] is self else self.outside

    # -- answering -----------------------------------------------------------------------
    def answer(self, request: httpx.Request, rule: _Rule | None) -> httpx.Response | httpx.Request:
        if _passing_through.get():
            return request  # our own live send, one level down: let respx pass it through
        rec = self._record()
        entry = mask_request(request, self.secrets)
        entry["attempt"] = rec.attempt
        with rec.lock:
            rec.requests.append(entry)
        index = len(rec.requests) - 1
        if self.live:
            entry["answered_by"] = "live"
            return self._send_live(request, entry)
        if rule is None and self.script.strict:
            url = _url_without_query(entry["url"])
            message = (
                f"strict mode: no rule answers {request.method} {entry['url']}; add one, e.g. "
                f"Responses(strict=True).add({url!r}, method={request.method!r}, respond=200), "
                f'or {{"method": "{request.method}", "url": "{url}", "respond": 200}} in the '
                "rules of a response script file"
            )
            entry["answered_by"] = "nothing (strict)"
            entry["error"] = f"UnscriptedRequest: {message}"
            rec.violations.append(f"UnscriptedRequest: {message}")
            raise UnscriptedRequest(message)
        steps = rule.steps if rule else self.script.default
        key = rule.name if rule else "default"
        n = rec.next_index(key)
        entry["answered_by"] = f"{rule.name}: {rule.description}" if rule else "default"
        step = steps[min(n, len(steps) - 1)]
        call = Call(rec.event_id, rec.event, rec.attempt, index, n)
        try:
            response = _response(step, request, call, entry["answered_by"])
        except httpx.RequestError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            raise
        entry["response"] = self._masked_response(response)
        return response

    def _send_live(self, request: httpx.Request, entry: dict[str, Any]) -> httpx.Response:
        token = _passing_through.set(True)
        try:
            with httpx.Client() as client:
                real = client.send(request)
                content = real.read()
        except httpx.RequestError as exc:
            entry["error"] = mask_text(f"{type(exc).__name__}: {exc}", self.secrets)
            raise
        finally:
            _passing_through.reset(token)
        # the body is already decoded: drop the headers that describe the wire encoding
        headers = [(k, v) for k, v in real.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        response = httpx.Response(real.status_code, headers=headers, content=content, request=request)
        entry["response"] = self._masked_response(response)
        return response

    def _masked_response(self, response: httpx.Response) -> dict[str, Any]:
        headers = {k: mask_text(v, self.secrets) for k, v in response.headers.items()
                   if k.lower() in _KEPT_RESPONSE_HEADERS}
        return {"status": response.status_code, "headers": headers,
                "body": _masked_body(response.content, self.secrets)}


def _bind(interception: Interception, rule: _Rule | None) -> Callable[[httpx.Request], Any]:
    def side_effect(request: httpx.Request) -> httpx.Response | httpx.Request:
        return interception.answer(request, rule)

    return side_effect


def _steps(script: Any, where: str) -> list[Step]:
    """A script as a list of steps (a single step is a list of one), each one checked."""
    steps = list(script) if isinstance(script, list | tuple) else [script]
    if not steps:
        raise ScriptError(f"{where}: an empty list of answers; give at least one, e.g. [200]")
    for n, step in enumerate(steps, 1):
        _check_step(step, f"{where}, answer {n}" if len(steps) > 1 else where)
    return steps


def _check_step(step: Step, where: str) -> None:
    if isinstance(step, bool):
        raise ScriptError(f"{where}: {step!r} is not an answer; give a status such as 200")
    if isinstance(step, int):
        if not 100 <= step <= 599:
            raise ScriptError(f"{where}: {step} is not an HTTP status (100-599)")
        return
    if isinstance(step, str):
        if step.isdigit():
            _check_step(int(step), where)
        elif step not in _ERROR_STEPS:
            raise ScriptError(
                f"{where}: unknown answer {step!r}; use a status, "
                f"{', '.join(repr(k) for k in _ERROR_STEPS)} or an object"
            )
        return
    if isinstance(step, Mapping):
        unknown = set(step) - _STEP_KEYS
        if unknown:
            raise ScriptError(
                f"{where}: unknown key(s) {sorted(unknown)}; an answer has "
                f"{', '.join(sorted(_STEP_KEYS))}"
            )
        if "error" in step:
            _check_step(str(step["error"]), where)
            return
        _check_step(step.get("status", 200), where)
        return
    if isinstance(step, httpx.Response | BaseException) or callable(step):
        return
    raise ScriptError(f"{where}: {type(step).__name__} {step!r} is not an answer")


def _response(step: Step, request: httpx.Request, call: Call, where: str, depth: int = 0) -> httpx.Response:
    if isinstance(step, str) and step.isdigit():
        step = int(step)
    if isinstance(step, int):
        return httpx.Response(step, json={}, request=request)
    if isinstance(step, str):
        raise _ERROR_STEPS[step](f"scripted {step.replace('_', ' ')} ({where})", request=request)
    if isinstance(step, Mapping):
        if "error" in step:
            return _response(str(step["error"]), request, call, where)
        headers = {str(k): str(v) for k, v in (step.get("headers") or {}).items()}
        if step.get("retry_after") is not None:
            headers["Retry-After"] = str(step["retry_after"])
        status = int(step.get("status", 200))
        if "text" in step:
            return httpx.Response(status, text=str(step["text"]), headers=headers, request=request)
        return httpx.Response(status, json=step.get("json", {}), headers=headers, request=request)
    if isinstance(step, httpx.Response):
        # ``content`` is already decoded: drop the headers that describe the wire encoding
        kept = [(k, v) for k, v in step.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        return httpx.Response(step.status_code, headers=kept, content=step.content, request=request)
    if isinstance(step, type) and issubclass(step, httpx.RequestError):
        raise step(f"scripted {step.__name__} ({where})", request=request)
    if isinstance(step, BaseException):
        raise step
    if isinstance(step, type) and issubclass(step, BaseException):
        raise step()
    if callable(step):
        if depth > 5:
            raise ScriptError(f"{where}: the callable keeps returning callables")
        result = step(request, call) if _arity(step) >= 2 else step(request)
        if result is None:  # the callable has no opinion: the usual empty success
            return httpx.Response(200, json={}, request=request)
        _check_step(result, f"{where} (returned by the callable)")
        return _response(result, request, call, where, depth + 1)
    raise ScriptError(f"{where}: {step!r} is not an answer")


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


# -- masking -----------------------------------------------------------------------------
def _secret_variants(secrets: Iterable[str]) -> list[str]:
    """Each secret as it may appear on the wire: plain, URL-encoded, JSON-escaped, base64."""
    out: set[str] = set()
    for s in secrets:
        if not isinstance(s, str) or len(s) < 4:
            continue
        out.update({
            s,
            urllib.parse.quote(s, safe=""),
            urllib.parse.quote_plus(s),
            json.dumps(s)[1:-1],
            base64.b64encode(s.encode()).decode().rstrip("="),
        })
    return sorted((v for v in out if len(v) >= 4), key=len, reverse=True)


def _masked_body(content: bytes, secrets: Sequence[str]) -> Any:
    if not content:
        return None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(content)} bytes of binary data>"
    try:
        return mask_values(json.loads(text), secrets)
    except ValueError:
        return mask_text(text, secrets)


def _url_without_query(url: str) -> str:
    return url.split("?", 1)[0]


def mask_request(request: httpx.Request, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON-ready view of a request with its credentials masked.

    ``Authorization`` (and headers named like credentials) are always masked; any other
    header, the URL and the body have every secret value masked wherever it appears.

    Example:
        >>> import httpx
        >>> req = httpx.Request("POST", "https://x.example/v1?key=s3cr3t",
        ...     headers={"Authorization": "Basic dXNlcjpw", "X-Trace": "t-s3cr3t"},
        ...     json={"token": "s3cr3t", "n": 1})
        >>> view = mask_request(req, ["s3cr3t"])
        >>> view["url"], view["headers"]["Authorization"], view["headers"]["X-Trace"], view["body"]
        ('https://x.example/v1?key=••••••', 'Basic ••••••', 't-••••••', {'token': '••••••', 'n': 1})
    """
    variants = secrets if isinstance(secrets, list) else _secret_variants(secrets)
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.headers.raw:
        name = raw_name.decode("latin-1")
        value = raw_value.decode("latin-1")
        if _SECRET_HEADER.search(name):
            scheme, sep, _ = value.partition(" ")
            value = f"{scheme} {MASK}" if sep and scheme.isalpha() else MASK
        else:
            value = mask_text(value, variants)
        headers[name] = value
    try:
        content = request.content
    except httpx.RequestNotRead:
        content = request.read()
    return {
        "method": request.method,
        "url": mask_text(str(request.url), variants),
        "headers": headers,
        "body": _masked_body(content, variants),
    }


# -- the socket guard --------------------------------------------------------------------
_guard_lock = threading.Lock()
_guard_installed = False


def _install_socket_guard() -> None:
    """Make socket connects fail while a preview handler runs (not in other threads)."""
    global _guard_installed
    with _guard_lock:
        if _guard_installed:
            return
        original_connect = socket.socket.connect
        original_connect_ex = socket.socket.connect_ex

        def connect(self: socket.socket, address: Any) -> None:
            _refuse(self, address)
            original_connect(self, address)

        def connect_ex(self: socket.socket, address: Any) -> int:
            _refuse(self, address)
            return original_connect_ex(self, address)

        socket.socket.connect = connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
        _guard_installed = True


def _refuse(sock: socket.socket, address: Any) -> None:
    current = _current.get()
    if current is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    interception, rec = current
    if interception.live or _passing_through.get():
        return
    message = _blocked_message(address)
    rec.violations.append(f"NetworkBlocked: {message}")
    raise NetworkBlocked(message)


def _blocked_message(address: Any) -> str:
    host, port = (address[0], address[1]) if isinstance(address, tuple) else (address, "")
    return (
        f"the preview blocked a network connection to {host}:{port} made outside httpx; "
        "previews only answer requests made with httpx (module-level calls or clients): "
        "use httpx in the function, or run with live=True to send for real"
    )


# -- the worker's side: requests forwarded to the caller ---------------------------------
def _exception_wire(exc: Exception) -> tuple[Any, ...]:
    """An exception a step raised, as data that rebuilds it in the worker."""
    cls = type(exc)
    if isinstance(exc, httpx.RequestError) and getattr(httpx, cls.__name__, None) is cls:
        return ("httpx", cls.__name__, str(exc))  # rebuilt around the worker's own request
    # its class, arguments and attributes only: never its traceback or context chain
    # (libraries such as tblib, which Dask installs, make pickled exceptions carry them)
    try:
        blob = pickle.dumps((cls, exc.args, dict(getattr(exc, "__dict__", {}))))
        _rebuilt(*pickle.loads(blob))
    except Exception:
        return ("text", cls.__name__, str(exc))
    return ("pickle", blob)


def _rebuilt(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    error = cls(*args)
    error.__dict__.update(state)
    return error


def _forwarded_error(wire: tuple[Any, ...], request: httpx.Request) -> BaseException:
    if wire[0] == "httpx":
        error: BaseException = getattr(httpx, wire[1])(wire[2], request=request)
        return error
    if wire[0] == "pickle":
        return _rebuilt(*pickle.loads(wire[1]))
    return RuntimeError(f"{wire[1]}: {wire[2]}")


class _WorkerHTTP:
    """In a worker process: every httpx request goes to the caller's interception.

    httpx's own transports are patched (``HTTPTransport.handle_request`` and its async
    twin, which every ``Client``, ``AsyncClient`` and module-level call uses), so nothing
    but httpx is imported here; the caller's respx sees each request as if made there.
    """

    def __init__(self, live: bool) -> None:
        self.live = live
        self.active = False  # a handler call is running
        state = self

        def handle_request(transport: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
            return state.forward(request, request.read())

        async def handle_async_request(transport: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
            return state.forward(request, await request.aread())

        httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign,assignment]
        httpx.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign,assignment]
        original = socket.socket.connect
        original_ex = socket.socket.connect_ex

        def connect(sock: socket.socket, address: Any) -> None:
            state.refuse(sock, address)
            original(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            state.refuse(sock, address)
            return original_ex(sock, address)

        socket.socket.connect = connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]

    def forward(self, request: httpx.Request, content: bytes) -> httpx.Response:
        if not self.active:
            raise NetworkBlocked(
                f"{request.method} {request.url}: a request made after its handler returned "
                "(from a thread it left running) is not answered in a preview")
        try:
            answer = host_call("http", (request.method, str(request.url), list(request.headers.raw), content))
        except HostCallError as exc:
            raise RuntimeError(f"the preview could not answer {request.method} {request.url}: {exc}") from None
        if answer[0] == "raise":
            raise _forwarded_error(answer[1:], request)
        _, status, headers, raw = answer
        return httpx.Response(status, headers=headers, content=raw, request=request)

    def refuse(self, sock: socket.socket, address: Any) -> None:
        if not self.active or self.live or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        message = _blocked_message(address)
        with contextlib.suppress(HostCallError):
            host_call("violation", f"NetworkBlocked: {message}")
        raise NetworkBlocked(message)


_WORKER_HTTP: list[_WorkerHTTP] = []


@contextmanager
def _scope(live: bool) -> Iterator[None]:
    if not _WORKER_HTTP:
        _WORKER_HTTP.append(_WorkerHTTP(live))
    state = _WORKER_HTTP[0]
    state.active = True
    try:
        yield
    finally:
        state.active = False
        host_calls_settled()


def worker_scope() -> contextlib.AbstractContextManager[None]:
    """In a worker process, around each call: httpx requests are answered by the caller.

    Named as the ``context`` of a ``WorkerPool`` whose ``host`` is
    ``Interception.host``; connections outside httpx are refused.
    """
    return _scope(False)


def worker_scope_live() -> contextlib.AbstractContextManager[None]:
    """``worker_scope`` for live runs: other connections are allowed, as in-process."""
    return _scope(True)
