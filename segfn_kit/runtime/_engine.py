"""The one engine: a request to an answer (source functions), events to an answer
(destination and insert functions), then delivery.

The workbench's preview, ``run``, ``segfn run``, ``segfn replay`` and every entry point of
an exported handler (Lambda, ASGI, command line) run functions through here:

- ``invoke_source(function, request, settings)``: a body its content type says is JSON but
  is not (or is nested too deeply to parse) is ``InvalidEventPayload`` before the function
  runs, since no function could map it (``body_refusal``, applied by
  ``Function.on_request`` itself); otherwise ``on_request`` runs once;
- ``invoke_events(function, events, settings)``: inputs that are no event
  (``reject_event``) are ``InvalidEventPayload``; with batching on (the function defines
  ``on_batch``) the others go to ``on_batch`` in one call, a batch of one too, and its
  statuses are read by ``batch_results``; else each goes to its single handler;
- ``Engine``: the deployed side around them: checks before the function runs (405, 413,
  415, 401 signature), the outcome-to-status mapping, delivery through ``TrackingClient``
  (200 only once every event and object was accepted), one JSON log line per invocation.

An answer to a destination request carries one result per event, in input order
(``{"outcome", "status"}``, plus ``"error"``, and ``"event"``: an insert function's changed
event, the same one the preview shows in its ``events`` column).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._config import Config, ConfigError
from ._delivery import DeliveryError, TrackingClient, UndeliverableEvent
from ._errors import InvalidEventPayload
from ._function import DEFAULT_TIMEOUT, Function, Invocation
from ._request import Headers, Request
from ._rules import (
    EventResult,
    batch_results,
    event_result,
    reject_event,
    request_refusal,
    status_of,
)
from ._settings import Settings, mask_text
from ._signatures import verify_signature

__all__ = [
    "DELIVERY_RESERVE",
    "Answer",
    "Engine",
    "Outbox",
    "invoke_events",
    "invoke_source",
    "read_events",
]

DELIVERY_RESERVE = 1.0
"""Seconds of a Lambda's remaining time kept back for delivering the events and answering."""

# -- the function's side: the same in the preview and deployed ------------------------------


def invoke_source(
    function: Function, request: Request, settings: Settings | Mapping[str, Any] | None = None,
    *, timeout: float | None = DEFAULT_TIMEOUT,
) -> Invocation:
    """Run a source function on one request, as deployed (``Function.on_request`` applies
    ``body_refusal`` first, so every path that calls it does the same).

    Example:
        >>> fn = Function.from_source("def on_request(request, settings):\\n    pass\\n")
        >>> invoke_source(fn, Request(b"[1,", {"Content-Type": "application/json"})).outcome
        'InvalidEventPayload'
    """
    return function.on_request(request, settings, timeout=timeout)


def batching(function: Function) -> bool:
    """Whether events go to ``on_batch``: whenever the function defines it, as in Segment."""
    return "on_batch" in function.handlers


def invoke_events(
    function: Function,
    events: list[Any],
    settings: Settings | Mapping[str, Any] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    batch: bool | None = None,
) -> list[EventResult]:
    """Run a destination or insert function once over events; one result per event, in order.

    Args:
        function: a destination function.
        events: the inputs, as received (entries that are no event are rejected).
        settings: the function's settings.
        timeout: the time limit of each invocation.
        batch: send the events to ``on_batch`` in one call; ``None``: when it is defined.

    Example:
        >>> fn = Function.from_source("def on_batch(events, settings):\\n    return [{'status': 404}]\\n")
        >>> [(r.outcome, r.status) for r in invoke_events(fn, [{"type": "page", "userId": "u"}, "x"])]
        [('ValidationError', 400), ('InvalidEventPayload', 400)]
    """
    bound = settings if isinstance(settings, Settings) else function.settings(settings)
    rejected = [reject_event(e) for e in events]
    valid: list[Mapping[str, Any]] = [e for e, r in zip(events, rejected, strict=True) if r is None]
    use_batch = batching(function) if batch is None else batch and batching(function)
    results: Iterator[EventResult] = iter(())
    if use_batch and valid:
        results = iter(batch_results(function.on_batch(valid, bound, timeout=timeout), len(valid)))
    out: list[EventResult] = []
    for event, reason in zip(events, rejected, strict=True):
        if reason is not None:
            out.append(EventResult("InvalidEventPayload", f"InvalidEventPayload: {reason}"))
        elif use_batch:
            out.append(next(results))
        else:
            out.append(event_result(function.on_event(event, bound, timeout=timeout)))
    return out


def read_events(body: bytes) -> list[Any]:
    """The events of a destination request: one event, a list, or ``{"batch": [...]}``.

    Raises:
        InvalidEventPayload: the body is not JSON.

    Example:
        >>> read_events(b'{"batch": [{"type": "track"}]}')
        [{'type': 'track'}]
    """
    try:
        parsed = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidEventPayload(f"request body is not valid UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise InvalidEventPayload("request body is nested too deeply to parse") from None
    except ValueError as exc:
        raise InvalidEventPayload(f"request body is not valid JSON ({str(exc).split(':')[0]})") from None
    if isinstance(parsed, dict) and isinstance(parsed.get("batch"), list):
        parsed = parsed["batch"]
    return parsed if isinstance(parsed, list) else [parsed]


# -- the deployed side ----------------------------------------------------------------------


@dataclass
class Answer:
    """What the handler answers, and what it logs.

    Attributes:
        status: the HTTP status code.
        outcome: ``ok``, an error class name, ``error``, ``timeout``, ``partial``, or why the
            request was refused.
        events: events delivered (sources) or events handled (destinations).
        error: a short reason, secrets masked; ``None`` when all went well.
        headers: extra response headers.
        details: one result per event of a destination request, in input order.
        objects: ``Segment.set`` objects delivered (sources).
    """

    status: int
    outcome: str
    events: int = 0
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    objects: int = 0
    plan: list[dict[str, Any]] = field(default_factory=list)
    held: int = 0

    def body(self) -> bytes:
        """The JSON response body: never payload content (but an insert function's changed
        events), never a secret."""
        doc: dict[str, Any] = {"ok": self.status < 300, "outcome": self.outcome, "events": self.events}
        if self.objects:
            doc["objects"] = self.objects
        if self.error:
            doc["error"] = self.error
        if self.details:
            doc["results"] = self.details
        if self.plan:
            doc["plan_issues"] = self.plan
            doc["held"] = self.held
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        try:
            return text.encode()
        except UnicodeEncodeError:  # a lone surrogate (a method or header sent as "\ud83d"): escape it
            return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass
class Outbox:
    """What a source invocation still has to deliver: events, then ``Segment.set`` objects."""

    events: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.objects)


def refuse(status: int, outcome: str, error: str, **headers: str) -> Answer:
    """An answer given before the function runs."""
    return Answer(status=status, outcome=outcome, error=error, headers=dict(headers))


def events_answer(details: list[dict[str, Any]]) -> Answer:
    """One answer for a destination request from its events' results.

    5xx when any event must be retried (the sender must never take what did not land as
    accepted); 400 when no event was accepted; else 200 (``partial`` when some were not).
    """
    codes = [d["status"] for d in details]
    count = len(details)
    if not codes:
        return Answer(200, "ok", 0)
    worst = max(codes, key=lambda s: (s >= 500, s >= 400, s))
    if worst >= 500:
        outcome = next(d["outcome"] for d in details if d["status"] == worst)
        return Answer(worst, outcome, count, "an event must be retried", details=details)
    if all(s >= 400 for s in codes):
        first = details[0].get("error") or "no event was accepted"
        return Answer(400, details[0]["outcome"], count, first, details=details)
    outcome = "ok" if all(d["outcome"] == "ok" for d in details) else "partial"
    return Answer(200, outcome, count, details=details)


class Engine:
    """A function deployed: what every entry point of an exported handler calls.

    Configuration comes from the environment (``Config``), read again when it changes.

    Example:
        >>> fn = Function.from_source("def on_request(request, settings):\\n    pass\\n")
        >>> Engine(fn, name="demo.py").handle("GET", {}, b"").status
        405
    """

    def __init__(self, function: Function, *, name: str, kit_version: str = ""):
        self.function = function
        self.name = name
        self.kit_version = kit_version
        self._configs: dict[tuple[tuple[str, str], ...], Config] = {}
        self._last_config: tuple[int, tuple[tuple[str, str], ...], Config] | None = None
        self._clients: dict[tuple[str, str, str, float], TrackingClient] = {}
        self._runner: tuple[Config, Function] | None = None
        self._runner_lock = threading.Lock()
        if os.environ.get("SEGFN_ISOLATION", "process").strip().lower() != "none":
            # start a worker process now: it boots while the rest of the handler loads
            from ._isolation import start_spare

            start_spare()

    # -- configuration and delivery ----------------------------------------------------------

    def config(self) -> Config:
        """The configuration for the current environment (re-read when the environment changes).

        Per request only the variables it was read from and the number of variables are
        compared (a new ``SEGMENT_*``/``SEGFN_*`` variable changes that number), not every
        variable of the environment decoded again.
        """
        last = self._last_config
        if last is not None and len(os.environ) == last[0]:
            get = os.environ.get
            if all(get(name) == value for name, value in last[1]):
                return last[2]
        key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("SEGMENT_", "SEGFN_"))))
        config = self._configs.get(key)
        if config is None:
            config = Config.from_environ(self.function, dict(key))
            self._configs.clear()
            self._configs[key] = config
        self._last_config = (len(os.environ), key, config)
        return config

    def runner(self, config: Config) -> Function:
        """The function as this configuration runs it: in worker processes that are killed
        and replaced past a time or memory limit (``SEGFN_ISOLATION=process``, the default),
        or in this process (``none``)."""
        if config.isolation == "none":
            return self.function
        current = self._runner
        if current is not None and current[0] is config:
            return current[1]
        from ._isolation import IsolatedFunction, WorkerPool

        with self._runner_lock:
            current = self._runner
            if current is not None and current[0] is config:
                return current[1]
            pool = WorkerPool(
                self.function, dict(config.settings), timeout=config.timeout,
                memory_limit=config.memory_limit, workers=config.workers,
            )
            self._runner = (config, IsolatedFunction(self.function, pool))
        if current is not None:
            assert isinstance(current[1], IsolatedFunction)
            current[1].pool.close()
        return self._runner[1]

    def get_client(self, config: Config) -> TrackingClient:
        """The delivery client for this configuration (one per write key and hosts, reused).

        The client loads httpx on its first request, so requests that send nothing never do.
        """
        if not config.write_key:
            raise ConfigError("SEGMENT_WRITE_KEY is not set: the events cannot be delivered")
        key = (config.write_key, config.api_host, config.objects_host, config.delivery_budget)
        client = self._clients.get(key)
        if client is None:
            client = TrackingClient(
                config.write_key, host=config.api_host, objects_host=config.objects_host, budget=config.delivery_budget
            )
            self._clients[key] = client
        return client

    def _delivered(self, result: Answer, report: Any, error: Exception | None, config: Config) -> Answer:
        """The answer once delivery is over: 200 only when every event and object was accepted."""
        if error is None and getattr(report, "ok", True):
            return result
        secrets = config.secret_values()
        if isinstance(error, UndeliverableEvent):
            # retrying cannot help: the sender must learn the payload maps to data Segment refuses
            return Answer(422, "undeliverable", result.events, mask_text(str(error), secrets)[:300],
                          objects=result.objects)
        if error is None:
            message = "not every event and object was accepted by Segment"
        elif isinstance(error, DeliveryError):
            message = mask_text(str(error), secrets)[:300]
        else:
            message = mask_text(f"{type(error).__name__}: {error}", secrets)[:300]
        return Answer(502, "delivery_failed", result.events, message, objects=result.objects)

    def deliver(self, result: Answer, outbox: Outbox, config: Config, deadline: float | None = None) -> Answer:
        """Send the events, then the objects (blocking), and say what to answer."""
        client = self.get_client(config)
        budget = None
        if deadline is not None:
            # Lambda answers nothing once its time is up: deliver within what is left (for
            # this call only: the client is shared)
            budget = max(0.5, min(config.delivery_budget, deadline - time.monotonic() - 0.2))
        try:
            report = client.send(outbox.events, objects=outbox.objects, budget=budget)
        except Exception as exc:
            return self._delivered(result, None, exc, config)
        return self._delivered(result, report, None, config)

    async def adeliver(self, result: Answer, outbox: Outbox, config: Config) -> Answer:
        """Send the events, then the objects, without blocking the event loop."""
        client = self.get_client(config)
        try:
            report = await client.asend(outbox.events, objects=outbox.objects)
        except Exception as exc:
            return self._delivered(result, None, exc, config)
        return self._delivered(result, report, None, config)

    # -- one request ------------------------------------------------------------------------

    def check(self, method: str, headers: Headers, body: bytes, config: Config) -> Answer | None:
        """Refuse a request before the function runs; ``None`` when it may run."""
        if method != "POST":
            return refuse(405, "method_not_allowed", f"{method or '?'} is not allowed; webhooks are POSTs", Allow="POST")
        refusal = request_refusal(headers.get("content-type", ""), len(body), kind=self.function.kind,
                                  max_body=config.max_body)
        if refusal is not None:  # the one rule; run() and the preview apply it too
            return refuse(*refusal)
        if config.signature is not None:
            assert config.signing_secret is not None
            verdict = verify_signature(config.signature, config.signing_secret, headers, body)
            if not verdict:
                return refuse(401, "bad_signature", f"{config.signature} signature: {verdict.reason}")
        return None

    @staticmethod
    def function_timeout(config: Config, deadline: float | None) -> float:
        """The function's time limit, shortened so that a Lambda can still deliver and answer."""
        if deadline is None:
            return config.timeout
        return max(0.05, min(config.timeout, deadline - time.monotonic() - DELIVERY_RESERVE))

    def outcome_answer(self, inv: Invocation, config: Config) -> Answer:
        """The answer to a source invocation's outcome (before delivery)."""
        error = mask_text(inv.error, config.secret_values())[:300] if inv.error else None
        return Answer(status_of(inv.outcome, inv.timed_out), "timeout" if inv.timed_out else inv.outcome, error=error)

    def run_events(self, body: bytes, config: Config, deadline: float | None) -> Answer:
        """A destination request: its events through the function, one result each."""
        try:
            events = read_events(body)
        except InvalidEventPayload as exc:
            return refuse(400, "InvalidEventPayload", str(exc))
        secrets = config.secret_values()
        details: list[dict[str, Any]] = []
        timeout = self.function_timeout(config, deadline)
        for one in invoke_events(self.runner(config), events, config.settings, timeout=timeout):
            detail: dict[str, Any] = {"outcome": "timeout" if one.timed_out else one.outcome, "status": one.status}
            if one.error:
                detail["error"] = mask_text(one.error, secrets)[:300]
            if one.event is not None:
                detail["event"] = one.event  # an insert function's changed event
            details.append(detail)
        return events_answer(details)

    def prepare(
        self, method: str, headers: Headers, body: bytes, url: str, query: Mapping[str, Any] | None,
        config: Config, deadline: float | None,
    ) -> tuple[Answer, Outbox]:
        """Check a request and run the function on it; what is still to deliver comes second."""
        refused = self.check(method, headers, body, config)
        if refused is not None:
            return refused, Outbox()
        if self.function.kind == "destination":
            return self.run_events(body, config, deadline), Outbox()
        request = Request(body, headers, method=method, url=url, query=query)
        function = self.runner(config)
        inv = invoke_source(function, request, config.settings, timeout=self.function_timeout(config, deadline))
        return self.source_answer(inv, config)

    async def aprepare(
        self, method: str, headers: Headers, body: bytes, url: str, config: Config,
    ) -> tuple[Answer, Outbox]:
        """``prepare`` for asyncio code (the ASGI app). A source function in worker processes
        runs without leaving the event loop (``WorkerPool.acall``: no thread per request);
        destinations and ``SEGFN_ISOLATION=none`` run ``prepare`` in a thread, since the
        function then runs in this process and must not hold up the loop."""
        import asyncio

        if self.function.kind == "destination" or config.isolation == "none":
            return await asyncio.to_thread(self.prepare, method, headers, body, url, None, config, None)
        refused = self.check(method, headers, body, config)
        if refused is not None:
            return refused, Outbox()
        from ._isolation import IsolatedFunction

        runner = self.runner(config)
        assert isinstance(runner, IsolatedFunction)
        request = Request(body, headers, method=method, url=url)
        inv = await runner.aon_request(request, timeout=self.function_timeout(config, None))
        return self.source_answer(inv, config)

    def source_answer(self, inv: Invocation, config: Config) -> tuple[Answer, Outbox]:
        """The answer to a source invocation and what is still to deliver (the tracking plan
        applied, refused calls named)."""
        result = self.outcome_answer(inv, config)
        if inv.outcome != "ok" or inv.timed_out:
            return result, Outbox()
        events = inv.events
        if config.plan is not None and events:
            # the tracking plan, as in the preview: report names the issues, block holds
            # the events with one back (they are not sent; the sender is still answered 2xx)
            events, held, issues = config.plan.hold(events, config.plan_mode)  # type: ignore[arg-type]
            result.held = len(held)
            result.plan = [{k: i[k] for k in ("event_index", "code", "rule", "field")} for i in issues[:20]]
        result.events, result.objects = len(events), len(inv.objects)
        not_sent = [p["message"] for p in inv.problems if p.get("code") == "refused_call"]
        if not_sent:  # calls analytics-python would refuse are not sent: the answer says which
            result.error = mask_text("; ".join(not_sent), config.secret_values())[:300]
        return result, Outbox(events, inv.objects)

    def handle(
        self,
        method: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: bytes,
        *,
        url: str = "/",
        query: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        via: str = "call",
        request_id: str | None = None,
    ) -> Answer:
        """Handle one request synchronously: check, run the function, deliver, log one line."""
        start = time.perf_counter()
        h = headers if isinstance(headers, Headers) else Headers(headers)
        config: Config | None = None
        try:
            config = self.config()
            result, outbox = self.prepare(method.upper(), h, body, url, query, config, deadline)
            if outbox:
                result = self.deliver(result, outbox, config, deadline)
        except ConfigError as exc:
            result = Answer(500, "configuration_error", error=str(exc))
        except Exception as exc:  # the handler's last line of defence: answer, log, keep serving
            result = self.crashed(exc, config)
        self.log(result, method=method, body=body, via=via, start=start, config=config, request_id=request_id)
        return result

    @staticmethod
    def crashed(exc: BaseException, config: Config | None) -> Answer:
        """The answer when the handler itself failed: 500, the reason masked."""
        secrets = config.secret_values() if config else []
        return Answer(500, "error", error=mask_text(f"{type(exc).__name__}: {exc}", secrets)[:300])

    def log(
        self, result: Answer, *, method: str, body: bytes, via: str, start: float, config: Config | None,
        request_id: str | None = None,
    ) -> None:
        """Write one JSON line for this invocation to standard error (CloudWatch on Lambda)."""
        line: dict[str, Any] = {
            "logger": "segfn",
            "function": self.name,
            "via": via,
            "method": method[:16],
            "status": result.status,
            "outcome": result.outcome,
            "events": result.events,
            "bytes": len(body),
            "duration_ms": round((time.perf_counter() - start) * 1000, 3),
        }
        if result.objects:
            line["objects"] = result.objects
        if result.plan:  # rule and field, never the value (it is payload content)
            line["plan_issues"] = [f"{i['rule']}: {i['field'] or '(the event)'}" for i in result.plan[:5]]
            line["held"] = result.held
        if request_id:
            line["request_id"] = request_id[:128]
        if result.error:
            line["error"] = result.error
        if config is not None and config.log_payloads:
            line["body"] = mask_text(body[:4096].decode("utf-8", "replace"), config.secret_values())
        try:
            sys.stderr.write(json.dumps(line, ensure_ascii=True) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed stderr must not fail the request
            pass

    # -- entry points -------------------------------------------------------------------------

    def lambda_handler(self, event: Any, context: Any = None) -> dict[str, Any]:
        """AWS Lambda: API Gateway (HTTP API 2.0, REST API 1.0), Function URL and load balancer events."""
        from ._lambda import NotHttp, http_request, http_response

        start = time.perf_counter()
        alb = multi_value = False
        try:
            remaining = getattr(context, "get_remaining_time_in_millis", None)
            deadline = time.monotonic() + float(remaining()) / 1000.0 if callable(remaining) else None
            request_id = getattr(context, "aws_request_id", None)
            request_id = request_id if isinstance(request_id, str) else None
            try:
                http = http_request(event)
            except NotHttp as exc:
                result = refuse(400, exc.outcome, str(exc))
                self.log(result, method="?", body=b"", via="lambda", start=start, config=None, request_id=request_id)
            else:
                alb, multi_value = http.alb, http.multi_value
                result = self.handle(http.method, http.headers, http.body, url=http.url, query=http.query,
                                     deadline=deadline, via="lambda", request_id=request_id)
        except Exception as exc:  # pragma: no cover - handle() already answers every error
            result = Answer(500, "error", error=type(exc).__name__)
        headers = {"content-type": "application/json", **result.headers}
        return http_response(result.status, headers, result.body().decode(), alb=alb, multi_value=multi_value)

    def asgi(self) -> Any:
        """The ASGI application (``uvicorn handler:app``)."""
        from ._asgi import asgi_app

        return asgi_app(self)

    def main(self, argv: list[str] | None = None) -> int:
        """The command line: ``python -m handler [FILE ...] [--deliver]``."""
        from ._command import main

        return main(self, argv)
