"""Run a destination (or insert) function over spec events: one result row per event.

Each event goes to its handler (``on_track`` for a track, ...) with every httpx request
answered from a ``Responses`` script and recorded. What Segment would do next is simulated,
not slept through:

- ``RetryError`` or a timeout: the event is tried again on Segment's retry schedule
  (``RetryPolicy``); the script answers the later attempts (a status sequence runs on
  across attempts), and the row lists every attempt with its delay;
- ``DropEvent``: filtered on purpose; the other errors: discarded.

``final`` says where the event ended: ``delivered``, ``dropped`` (``DropEvent``),
``discarded`` (unsupported, rejected, or failed), or ``retries exhausted``.

The function runs in a worker process (``isolation="process"``, the default), under the same
hard limits as a source function: a call past its time limit that does not stop (a bare
``except:`` in a loop, one long C call) is killed with its worker, as is one that passes
the memory limit or ends the process; that event's row says which, and the next event
runs. Its httpx requests are answered here, by the script (``_http``), over the worker's
pipe. The retries are simulated here, one isolated call per attempt. ``isolation="none"``
calls the function in this process, for a debugger (no hard limits).

A function that defines ``on_batch`` gets the events in groups (input order kept; a
batch of one too, as deployed; ``batch=False`` uses the single handlers instead). It may
return one ``{"status": ...}`` per event with Segment's meaning (``runtime._rules``): 2xx
delivered, 429 and 5xx retried (only those events), any other status discarded as Bad
Request and never retried. Without an ``on_batch`` handler the single-event handlers are
used, as in Segment.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from segfn_kit._events import is_event_frame, sample_events
from segfn_kit._http import EventRecord, Interception, Responses
from segfn_kit._progress import Bar
from segfn_kit._progress import progress as progress_bar
from segfn_kit._settingsfile import settings_values
from segfn_kit.runtime import (
    DEFAULT_TIMEOUT,
    Function,
    Invocation,
    Settings,
    mask_text,
)
from segfn_kit.runtime._errors import FunctionLoadError
from segfn_kit.runtime._isolation import DEFAULT_MEMORY_LIMIT, WorkerPool, start_spare
from segfn_kit.runtime._rules import (
    MAX_BATCH_EVENTS_PER_CALL,
    EventResult,
    batch_results,
    event_result,
    reject_event,
    retry_after,
)

__all__ = ["RESULT_COLUMNS", "RetryPolicy", "requests_frame", "run_destination"]

RESULT_COLUMNS = [
    "outcome", "events", "objects", "error", "error_line", "issues", "duration", "event_type",
    "discarded_events", "logs", "requests", "returned", "attempts", "final", "payload", "event",
]
MAX_BATCH = MAX_BATCH_EVENTS_PER_CALL
# what a destination's worker imports ahead (nearly every destination function uses httpx)
_PRELOAD = ("httpx", "segfn_kit._http")


@dataclass(frozen=True)
class RetryPolicy:
    """Segment's retry of a destination event, simulated.

    Segment retries destination functions for up to 4 hours with growing waits; its exact
    schedule is not published, so the simulation uses exponential backoff from
    ``first_delay`` (doubling, capped at ``max_delay``) while the total wait stays within
    ``give_up_after``. A ``Retry-After`` header on the last 429 lengthens the next wait.
    A function that times out on ``timeout_attempts`` attempts in a row is not tried again
    (a hang is rarely transient, and each try costs the full time limit).

    Example:
        >>> RetryPolicy().delays()[:4]
        [60.0, 120.0, 240.0, 480.0]
        >>> len(RetryPolicy().delays()) + 1  # attempts in all
        9
    """

    first_delay: float = 60.0
    factor: float = 2.0
    max_delay: float = 3600.0
    give_up_after: float = 4 * 3600.0
    max_attempts: int | None = None
    timeout_attempts: int = 2

    def delays(self) -> list[float]:
        """The waits before each retry, in seconds (without ``Retry-After``)."""
        out: list[float] = []
        delay, total = self.first_delay, 0.0
        while self.max_attempts is None or len(out) + 1 < self.max_attempts:
            wait = min(delay, self.max_delay)
            if total + wait > self.give_up_after or len(out) >= 1000:
                break
            out.append(wait)
            total += wait
            delay *= self.factor
        return out


NO_RETRY = RetryPolicy(max_attempts=1)


def run_destination(
    function: Function | str | os.PathLike[str],
    events: Any,
    settings: Mapping[str, Any] | Settings | str | os.PathLike[str] | None = None,
    *,
    responses: Responses | None = None,
    live: bool = False,
    strict: bool | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    batch: bool | None = None,
    batch_size: int = 20,
    retry: RetryPolicy | None = None,
    progress: bool | None = False,
    validate: bool = True,
    isolation: str = "process",
    memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
) -> pd.DataFrame:
    """Run a destination or insert function over events; one row per event.

    Args:
        function: a loaded ``Function`` or the path of its file.
        events: an event frame (``sample_events``), a source run's result frame, event
            dicts, or JSON / JSON Lines paths.
        settings: setting values (a mapping, ``Settings``, or a JSON file of them).
        responses: the HTTP script; ``None`` answers every request ``200 {}``.
        live: send the requests for real (announced on stderr).
        strict: override the script's strict mode.
        timeout: the per-invocation time limit in seconds (Segment's is 5 s).
        batch: send events to ``on_batch`` in groups of ``batch_size`` (at most 400);
            ``None`` (the default) does so whenever the function defines ``on_batch``, as
            the exported handler does; ``False`` uses the single-event handlers.
        retry: the simulated retry schedule; ``RetryPolicy(max_attempts=1)`` turns it off.
        progress: show a progress bar (``None``: only from 1,000 events on).
        validate: check the input events (and the events an insert function returns)
            against the Segment spec, in the ``issues`` column.
        isolation: ``"process"`` (the default) calls the function in a worker process that
            is killed and replaced when a call passes its time limit or its memory limit or
            ends the process (that event's row says which; the next event runs), its httpx
            requests answered here by the script; ``"none"`` calls it in this process, for a
            debugger (no hard limits: a call that ignores the timeout holds the run).
        memory_limit: bytes of memory the worker may add once the function is loaded
            (``None``: no limit); only with ``isolation="process"``.

    Returns:
        The result frame (see ``docs/ARCHITECTURE.md``) with ``requests``, ``returned``,
        ``attempts`` and ``final`` besides the common columns.

    Example:
        >>> fn = Function.from_source('''
        ... import httpx
        ... from segfn_kit.runtime import RetryError
        ... def on_track(event, settings):
        ...     r = httpx.post("https://api.example.com/events", json={"name": event["event"]})
        ...     if r.status_code >= 500:
        ...         raise RetryError(f"server said {r.status_code}")
        ... ''')
        >>> out = run_destination(fn, [{"type": "track", "userId": "u1", "event": "Paid"},
        ...                            {"type": "page", "userId": "u1"}],
        ...                       responses=Responses([500, 201]))
        >>> out[["outcome", "final"]].values.tolist()
        [['ok', 'delivered'], ['EventNotSupported', 'discarded']]
        >>> [a["outcome"] for a in out["attempts"].iloc[0]]
        ['RetryError', 'ok']
        >>> out["requests"].iloc[0][0]["body"]
        {'name': 'Paid'}
    """
    fn = function if isinstance(function, Function) else Function.from_file(function)
    if fn.kind != "destination":
        raise TypeError(
            f"{fn.filename} is a source function (it defines on_request); run it over payloads "
            "with run(function, load_payloads(...))"
        )
    if isolation not in ("process", "none"):
        raise ValueError(f'isolation must be "process" or "none", not {isolation!r}')
    if isolation == "process":
        start_spare(_PRELOAD)  # boots while the events are read and checked
    frame = _event_frame(events)
    values = settings_values(settings)
    bound = fn.settings(values)
    secrets = bound.secret_values()
    script = responses if responses is not None else Responses()
    if strict is not None and strict != script.strict:
        script = copy.copy(script)
        script.strict = strict
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size={batch_size}: Segment batches 1 to {MAX_BATCH} events")
    policy = retry or RetryPolicy()
    # as deployed: a function with on_batch gets every event through it, batches of one too
    batching = "on_batch" in fn.handlers and batch is not False
    runner = _Runner(fn, bound, secrets, timeout, policy)
    if isolation == "process":
        runner.isolated = (values, memory_limit, live)

    rows: dict[str, dict[str, Any]] = {}
    bar: Bar[Any] = progress_bar(total=len(frame), show=progress, desc="events", unit="event")
    missing = fn.missing_settings(values)
    settings_error = None
    if missing:
        example = ", ".join(f"{n!r}: ..." for n in missing)
        settings_error = {
            "outcome": "error", "final": "discarded",
            "error": f"SettingsError: required setting(s) {', '.join(missing)} missing (declared "
                     f"in SETTINGS of {fn.filename}); pass settings={{{example}}}",
        }
    with script.intercept(secrets, live=live) as http, runner:
        runner.http = http
        pending: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        records: list[dict[str, Any]] = frame.to_dict("records")  # type: ignore[assignment]
        for index, entry in zip(frame.index, records, strict=True):
            pid = str(index)
            base = _base_row(entry, validate)
            rejection = settings_error or _rejection(entry)
            if rejection is not None:
                rows[pid] = {**base, **rejection}
                bar.update(1)
                continue
            event = entry["event"]
            if batching:
                pending.append((pid, event, base))
                if len(pending) == batch_size:
                    rows.update(runner.run_batch(pending))
                    bar.update(len(pending))
                    pending = []
                continue
            rows[pid] = runner.run_one(pid, event, base)
            bar.update(1)
        if pending:
            rows.update(runner.run_batch(pending))
            bar.update(len(pending))
    bar.close()
    # object columns throughout: None stays None (not NaN), lists stay lists
    out = pd.DataFrame([rows[str(pid)] for pid in frame.index], columns=RESULT_COLUMNS,
                       index=pd.Index([str(p) for p in frame.index], name="payload_id"),
                       dtype=object)
    out["duration"] = out["duration"].astype(float)
    out.attrs.update({"function": fn, "kind": "destination", "live": live, "responses": script})
    return out


def requests_frame(results: pd.DataFrame) -> pd.DataFrame:
    r"""The requests of a destination run as a second frame, one row per request.

    Indexed by ``payload_id`` and ``n`` (the request's number within its event), with
    ``attempt``, ``method``, ``url``, ``status`` (``None`` when there was no answer), ``error``,
    ``answered_by``, ``headers`` (masked) and ``body``.

    Example:
        >>> fn = Function.from_source(
        ...     "import httpx\ndef on_track(event, settings):\n    httpx.post('https://x.example/t', json={})")
        >>> out = run_destination(fn, [{"type": "track", "userId": "u", "event": "E"}], responses=Responses(201))
        >>> requests_frame(out)[["method", "url", "status"]].values.tolist()
        [['POST', 'https://x.example/t', 201]]
    """
    rows = []
    for pid, requests in zip(results.index, results["requests"], strict=True):
        for n, r in enumerate(requests if isinstance(requests, list) else [], 1):
            rows.append({
                "payload_id": pid, "n": n, "attempt": r.get("attempt"), "method": r.get("method"),
                "url": r.get("url"), "status": (r.get("response") or {}).get("status"),
                "error": r.get("error"), "answered_by": r.get("answered_by"),
                "headers": r.get("headers"), "body": r.get("body"),
            })
    columns = ["payload_id", "n", "attempt", "method", "url", "status", "error", "answered_by", "headers", "body"]
    return pd.DataFrame(rows, columns=columns, dtype=object).set_index(["payload_id", "n"])


# -- rows ----------------------------------------------------------------------------------
def _event_frame(events: Any) -> pd.DataFrame:
    if is_event_frame(events):
        return events  # type: ignore[no-any-return]
    if isinstance(events, list | tuple) and events and all(
        isinstance(e, str | os.PathLike) for e in events
    ):
        return sample_events(*events)
    return sample_events(events)


def _base_row(entry: Mapping[str, Any], check: bool) -> dict[str, Any]:
    from segfn_kit.spec import validate

    event = entry.get("event")
    kind = event.get("type") if isinstance(event, Mapping) else None
    issues: list[dict[str, Any]] = []
    # the input event's issues carry event_index None; a returned event's carry 0
    if check and isinstance(event, Mapping) and kind != "delete":
        issues = [i.to_dict() for i in validate(dict(event))]
    return {
        "outcome": "ok", "events": [], "objects": [], "error": None, "error_line": None,
        "issues": issues, "duration": 0.0, "event_type": kind if isinstance(kind, str) else None,
        "discarded_events": [], "logs": "", "requests": [], "returned": None, "attempts": [],
        "final": "delivered", "payload": entry.get("payload"), "event": event,
    }


def _rejection(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """Why this entry is not an event Segment would hand a destination, or ``None``."""
    reason = str(entry["error"]) if entry.get("error") else reject_event(entry.get("event"))
    if reason is None:
        return None
    return {"outcome": "InvalidEventPayload", "error": f"InvalidEventPayload: {reason}",
            "final": "discarded"}


class _Runner:
    def __init__(self, fn: Function, settings: Settings, secrets: list[str],
                 timeout: float | None, policy: RetryPolicy):
        self.fn = fn
        self.settings = settings
        self.secrets = secrets
        self.timeout = timeout
        self.policy = policy
        self.delays = policy.delays()
        self.http: Interception | None = None
        self.isolated: tuple[Mapping[str, Any] | None, int | None, bool] | None = None
        self.pool: WorkerPool | None = None
        self.load_error: str | None = None

    def __enter__(self) -> _Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def _invoke(self, kind: Literal["event", "batch"], value: Any, rec: EventRecord) -> tuple[Invocation, str, list[str]]:
        """One invocation (``kind`` ``"event"`` or ``"batch"``) with prints captured and
        interception problems collected."""
        assert self.http is not None
        seen = len(rec.violations)
        token = self.http.record_for(rec)
        try:
            if self.isolated is not None:
                inv, printed = self._isolated(kind, value)
            else:
                buffer = io.StringIO()
                handler = self.fn.on_event if kind == "event" else self.fn.on_batch
                with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                    inv = handler(value, self.settings, timeout=self.timeout)
                printed = mask_text(buffer.getvalue(), self.secrets)
        finally:
            from segfn_kit._http import _current

            _current.reset(token)
        return inv, printed, rec.violations[seen:]

    def _isolated(self, kind: Literal["event", "batch"], value: Any) -> tuple[Invocation, str]:
        """One call in the worker pool (started on first use), its requests answered here."""
        assert self.isolated is not None and self.http is not None
        if self.load_error is not None:
            return Invocation(outcome="error", error=self.load_error), ""
        if self.pool is None:
            values, memory_limit, live = self.isolated
            scope = "worker_scope_live" if live else "worker_scope"
            self.pool = WorkerPool(self.fn, values, timeout=self.timeout, memory_limit=memory_limit,
                                   context=f"segfn_kit._http:{scope}", host=self.http.host,
                                   preload=_PRELOAD)
        try:
            result = self.pool.call((kind, value))
        except FunctionLoadError as exc:
            # the same for every later event: said once per row, tried once
            self.load_error = mask_text(f"FunctionLoadError: {exc}", self.secrets)
            return Invocation(outcome="error", error=self.load_error), ""
        return result.invocation, result.logs

    def _next_delay(self, attempt: int, rec: EventRecord) -> float | None:
        """The wait before attempt ``attempt + 1``, or ``None`` when Segment gives up."""
        if attempt > len(self.delays):
            return None
        delay = self.delays[attempt - 1]
        last = next((r for r in reversed(rec.requests) if r.get("attempt") == attempt), None)
        response = (last or {}).get("response") or {}
        if response.get("status") == 429:
            after = retry_after((response.get("headers") or {}).get("retry-after"))
            if after is not None:
                delay = max(delay, after)
        return delay

    def run_one(self, pid: str, event: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
        rec = EventRecord(pid, event)
        attempts: list[dict[str, Any]] = []
        logs: list[str] = []
        duration, delay, timeouts = 0.0, 0.0, 0
        while True:
            rec.attempt = len(attempts) + 1
            inv, printed, violations = self._invoke("event", event, rec)
            if violations:
                inv = _violated(inv, violations)
            result = event_result(inv)
            duration += inv.duration
            if printed:
                logs.append(printed if rec.attempt == 1 else f"[attempt {rec.attempt}]\n{printed}")
            attempts.append({"attempt": rec.attempt, "delay_s": delay, "outcome": result.outcome,
                             "error": result.error})
            timeouts = timeouts + 1 if result.timed_out else 0
            if not result.retryable or timeouts >= self.policy.timeout_attempts:
                break
            next_delay = self._next_delay(rec.attempt, rec)
            if next_delay is None:
                break
            delay = next_delay
        return self._row(base, result, duration, logs, rec, attempts)

    @staticmethod
    def _row(base: dict[str, Any], result: EventResult, duration: float, logs: list[str],
             rec: EventRecord, attempts: list[dict[str, Any]]) -> dict[str, Any]:
        events, issues = _inserted(result)
        return {
            **base,
            "outcome": result.outcome,
            "events": events,
            "error": result.error,
            "error_line": result.error_line,
            "issues": base["issues"] + issues,
            "duration": duration,
            "logs": "".join(logs),
            "requests": rec.requests,
            "returned": result.returned,
            "attempts": attempts,
            "final": result.final,
        }

    def run_batch(self, items: Sequence[tuple[str, dict[str, Any], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        rec = EventRecord(items[0][0], None)
        pending = list(range(len(items)))
        results: dict[int, EventResult] = {i: EventResult("ok") for i in pending}
        attempts: dict[int, list[dict[str, Any]]] = {i: [] for i in pending}
        logs: list[str] = []
        duration, delay, timeouts, attempt = 0.0, 0.0, 0, 1
        while True:
            rec.attempt = attempt
            batch_events: list[Mapping[str, Any]] = [items[i][1] for i in pending]
            inv, printed, violations = self._invoke("batch", batch_events, rec)
            if violations:
                inv = _violated(inv, violations)
            duration += inv.duration
            if printed:
                logs.append(printed if attempt == 1 else f"[attempt {attempt}]\n{printed}")
            for i, result in zip(pending, batch_results(inv, len(pending)), strict=True):
                results[i] = result
                attempts[i].append({"attempt": attempt, "delay_s": delay,
                                    "outcome": result.outcome, "error": result.error})
            timeouts = timeouts + 1 if inv.timed_out else 0
            retry = [i for i in pending if results[i].retryable]
            if not retry or timeouts >= self.policy.timeout_attempts:
                break
            next_delay = self._next_delay(attempt, rec)
            if next_delay is None:
                break
            # only the failed events go into the next attempt, as Segment retries them
            delay, pending, attempt = next_delay, retry, attempt + 1
        return {
            pid: self._row(base, results[i], duration, logs, rec, attempts[i])
            for i, (pid, _event, base) in enumerate(items)
        }


def _inserted(result: EventResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An insert function's changed event (and its spec issues), when it returned one."""
    if result.event is None:
        return [], []
    from segfn_kit.spec import validate

    event = result.event
    issues = [] if event.get("type") == "delete" else [i.to_dict() for i in validate(event, index=0)]
    return [event], issues


def _violated(inv: Invocation, violations: list[str]) -> Invocation:
    """A strict-mode miss or a blocked connection makes the row an error, even if swallowed."""
    message = violations[0] + (f" (and {len(violations) - 1} more)" if len(violations) > 1 else "")
    return Invocation(outcome="error", error=message, error_line=inv.error_line,
                      duration=inv.duration, returned=None)
