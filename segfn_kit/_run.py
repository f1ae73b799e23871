"""Run a function over payloads: the result frame, the diff of two runs, coverage, JSON Lines.

:func:`run` is what the notebook preview, ``segfn run`` and the tests all call. It loads
the function once, turns each payload into a request, runs the handler with a time limit,
checks every emitted event against the Segment spec and returns one row per payload:

=================== ==========================================================================
column              meaning
=================== ==========================================================================
``outcome``         ``ok``, one of the five Segment errors by name, or ``error``
``events``          spec events that would be sent (empty unless ``ok``)
``objects``         ``Segment.set`` records (empty unless ``ok``)
``error``           ``ErrorName: message`` (secrets masked), ``None`` when ok
``error_line``      the function file's line that raised
``issues``          spec violations of the events, as dicts
``duration``        seconds in the handler
``event_type``      the incoming event type
``discarded_events`` events emitted before an error (Segment does not send them)
``logs``            what the function printed (secrets masked)
=================== ==========================================================================

Bad input never stops a run: a function that does not load, a payload that is not JSON,
missing required settings each give rows with outcome ``error`` and a message saying what
to fix, and every other payload still runs.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import gc
import io
import json
import math
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from segfn_kit._inputs import Inputs, PayloadInput, PayloadsLike, is_missing, payload_inputs
from segfn_kit._progress import progress as progress_bar
from segfn_kit._settingsfile import SettingsFileError, read_settings, settings_values
from segfn_kit.runtime import Function, FunctionLoadError, Headers, Request, mask_text
from segfn_kit.runtime._function import keep_timer_armed
from segfn_kit.runtime._isolation import Call, CallResult, WorkerPool
from segfn_kit.runtime._json import MISSING, fast_loads
from segfn_kit.runtime._rules import request_refusal
from segfn_kit.spec import invocation_issues

if TYPE_CHECKING:
    from segfn_kit._plan import PlanLike
    from segfn_kit.runtime import Settings

__all__ = ["COLUMNS", "JSONL_KEYS", "SettingsFileError", "coverage", "diff", "read_settings", "run", "settings_values", "to_jsonl"]

COLUMNS = (
    "outcome",
    "events",
    "objects",
    "error",
    "error_line",
    "issues",
    "duration",
    "event_type",
    "discarded_events",
    "logs",
)
"""The result frame's columns for source functions, in order (index: ``payload_id``)."""

JSONL_KEYS = ("payload_id", "outcome", "events", "objects", "error", "issues")
"""Contract 3: the keys of every ``--jsonl`` line (destinations add ``requests``)."""


FunctionLike = Function | str | os.PathLike[str]


# -- inputs ------------------------------------------------------------------------------


def _load_function(function: FunctionLike) -> Function:
    if isinstance(function, Function):
        return function
    if isinstance(function, os.PathLike):
        return Function.from_file(function)
    if isinstance(function, str):
        looks_like_source = (
            "\n" in function
            or function.lstrip().startswith("{")  # a mapping function's JSON text
            or ("def " in function and not function.endswith((".py", ".json")))
        )
        if looks_like_source:
            return Function.from_source(function)
        return Function.from_file(function)
    raise TypeError(
        f"function must be a Function, a file path or source text, not {type(function).__name__}"
    )


class _DigestCache:
    """Payload digests by body, so that re-running an edited function over the same payloads
    (the preview loop) does not canonicalise every body again.

    A body is known by its bytes, or by the text a payload frame holds it as (the same
    bytes once encoded): Python keeps a string's hash, so a re-run over the same frame
    hashes no body again.

    Bounded by the bytes of the bodies it keys (64 MiB by default, about 60,000 webhooks of
    a kilobyte): past that, the oldest entries go first, so a run larger than the budget
    still finds its most recent payloads, and one of any size never empties it at once.
    """

    def __init__(self, max_bytes: int = 64 << 20):
        self._digests: dict[bytes | str, str] = {}
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self.hits = 0

    def get(self, content: bytes | str) -> str | None:
        digest = self._digests.get(content)
        if digest is not None:
            self.hits += 1
        return digest

    def put(self, content: bytes | str, digest: str) -> None:
        if len(content) > self.max_bytes or content in self._digests:
            return
        self._digests[content] = digest
        self.size_bytes += len(content)
        if self.size_bytes > self.max_bytes:
            digests = self._digests
            while self.size_bytes > self.max_bytes:
                oldest = next(iter(digests))
                del digests[oldest]
                self.size_bytes -= len(oldest)


_DIGESTS = _DigestCache()


# -- running -----------------------------------------------------------------------------

# spec validation, run in the worker processes when there are several; beside one worker
# this process has a core with time to spare (the worker is the one it waits for), and
# validates there for about half the CPU time a worker takes (2.5-3 against 4.5-7.5 us per
# Stripe payload, measured side by side)
_CHECK = "segfn_kit.spec:invocation_issues"
# what the workers of a run that validates there import while they wait as spares (so its
# first worker starts at once); the others need not (their spares boot in a third of the time)
_CHECK_PRELOAD = ("segfn_kit.spec",)


def _workers_for(n: int, workers: int | None) -> int:
    """Worker processes for ``n`` payloads: as asked, else one per 4,000 payloads and at most
    one per core but one (the caller, making requests and collecting results, needs one)."""
    if workers is not None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be a whole number of at least 1, not {workers!r}")
        return workers
    return max(1, min((os.cpu_count() or 1) - 1, n // 4000))


def _frame(
    items: Inputs, columns: dict[str, list[Any]], function: Function | None, kind: str
) -> pd.DataFrame:
    # one index for every column and the frame: pandas then aligns nothing (comparing
    # payload ids column by column cost more than building the columns)
    index = pd.Index([i.payload_id for i in items], name="payload_id", dtype=object)
    data = {
        name: pd.Series(values, dtype="float64" if name == "duration" else object, index=index, copy=False)
        for name, values in columns.items()
    }
    frame = pd.DataFrame(data, index=index, copy=False)
    frame.attrs["function"] = function
    frame.attrs["kind"] = kind
    frame.attrs["skipped"] = items.skipped
    return frame


def _error_frame(items: Inputs, message: str, line: int | None, function: Function | None) -> pd.DataFrame:
    n = len(items)
    columns: dict[str, list[Any]] = {
        "outcome": ["error"] * n,
        "events": [[] for _ in items],
        "objects": [[] for _ in items],
        "error": [message] * n,
        "error_line": [line] * n,
        "issues": [[] for _ in items],
        "duration": [0.0] * n,
        "event_type": [i.event_type for i in items],
        "discarded_events": [[] for _ in items],
        "logs": [""] * n,
    }
    return _frame(items, columns, function, function.kind if function else "source")


def run(
    function: FunctionLike,
    payloads: PayloadsLike,
    settings: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    timeout: float | None = 5.0,
    progress: bool | None = None,
    validate: bool = True,
    plan: PlanLike | None = None,
    isolation: str = "process",
    on_progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Run a function over payloads and return the result frame (one row per payload).

    Args:
        function: a ``runtime.Function``, the path of a function file, or its source text.
        payloads: file or folder paths, a payload frame from ``load_payloads``, or a list of
            capture envelopes (``{"headers", "body", ...}``), bare JSON bodies or ``Request``
            objects (ids ``input1``, ``input2``, ...). For a destination function: spec events.
        settings: setting names to values, or the path of a settings file (flat JSON).
        timeout: seconds each invocation may take (Segment's limit is 5); ``None`` for none.
        progress: show a progress bar; by default only from 1,000 payloads on.
        validate: check emitted events against the Segment spec (``issues`` column).
        plan: a tracking plan (a file, parsed rules or a ``Plan``, see ``load_plan``): every
            emitted event is also held against it (``plan_violation`` and
            ``unplanned_event`` issues); ``attrs["plan"]`` holds it.
        isolation: ``"process"`` (the default) runs the function in a worker process that is
            killed and replaced when a call passes its time limit or its memory limit (512 MiB)
            or ends the process, so every payload gets its row; ``"none"`` runs it in this
            process, for a debugger (no hard limits: a call that ignores the timeout holds the
            run). Destination functions too: their httpx requests are answered here.
        on_progress: for source functions, called with the count of payloads done as
            results arrive (every 1% of them and at the end), e.g. to move a progress bar
            without splitting the run (which would start the worker processes again).
        workers: worker processes for ``isolation="process"``; by default one per 4,000
            payloads, at most ``os.cpu_count() - 1`` (the caller needs a core: on two cores,
            one worker). Workers past the first start aside while the first runs. Results
            keep input order.
        **options: passed on to destination runs (scripted responses and the like).

    Returns:
        The result frame, indexed by ``payload_id``; ``attrs["function"]`` holds the loaded
        function and ``attrs["kind"]`` is ``"source"`` or ``"destination"``.

    Raises:
        SettingsFileError: ``settings`` names a file that is not a flat JSON object.
        PlanError: ``plan`` cannot be used (checked before anything runs).

    Example:
        >>> results = run('''
        ... from segfn_kit.runtime import Segment, EventNotSupported
        ... def on_request(request, settings):
        ...     body = request.json()
        ...     if body["type"] != "customer.created":
        ...         raise EventNotSupported(body["type"])
        ...     Segment.identify(user_id=body["data"]["object"]["id"])
        ... ''', [{"type": "customer.created", "data": {"object": {"id": "cus_1"}}},
        ...       {"type": "invoice.voided"}])
        >>> results["outcome"].tolist()
        ['ok', 'EventNotSupported']
        >>> results.loc["input1", "events"][0]["userId"]
        'cus_1'
    """
    if plan is not None:
        # the one place plans join a run; a plan that cannot be used stops it before it starts
        from segfn_kit._plan import check_results, load_plan

        checked = load_plan(plan)
        results = run(function, payloads, settings, timeout=timeout, progress=progress,
                      validate=validate, isolation=isolation, on_progress=on_progress,
                      workers=workers, **options)
        return check_results(results, checked)
    values: Mapping[str, Any] | None
    if isinstance(settings, str | os.PathLike):
        values = read_settings(settings)
    else:
        values = settings
    try:
        fn = _load_function(function)
    except FunctionLoadError as exc:
        return _error_frame(payload_inputs(payloads), f"FunctionLoadError: {exc}", exc.line, None)
    if fn.kind == "destination":
        # the one place destination runs start; that module loads only when needed
        from segfn_kit._destination import run_destination

        result: pd.DataFrame = run_destination(
            fn, payloads, values, timeout=timeout, progress=progress, validate=validate,
            isolation=isolation, **options
        )
        return result
    if options:
        raise TypeError(f"run() got options only destination functions take: {', '.join(sorted(options))}")
    with _without_gc():  # one record per payload, no reference cycles (see _run_source)
        items = payload_inputs(payloads)
    missing = fn.missing_settings(values)
    if missing:
        names = ", ".join(missing)
        example = ", ".join(f"{n!r}: ..." for n in missing)
        return _error_frame(
            items,
            f"SettingsError: required setting{'s' if len(missing) > 1 else ''} {names} "
            f"missing (declared in SETTINGS of {fn.filename}); pass settings={{{example}}} "
            "or --settings FILE",
            None,
            fn,
        )
    if isolation not in ("process", "none"):
        raise ValueError(f'isolation must be "process" or "none", not {isolation!r}')
    size = _workers_for(len(items), workers)
    return _run_source(fn, items, fn.settings(values), timeout, progress, validate, isolation, on_progress, size)


def _run_source(
    fn: Function,
    items: Inputs,
    settings: Settings,
    timeout: float | None,
    progress: bool | None,
    validate: bool,
    isolation: str = "process",
    on_progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    outcome: list[str] = []
    events: list[list[dict[str, Any]]] = []
    objects: list[list[dict[str, Any]]] = []
    error: list[str | None] = []
    error_line: list[int | None] = []
    issues: list[list[dict[str, Any]]] = []
    duration: list[float] = []
    discarded: list[list[dict[str, Any]]] = []
    logs: list[str] = []
    failures: dict[int, str] = {}
    uncached: collections.deque[bytes | str | None] = collections.deque()  # bodies to learn digests of
    digests = _DIGESTS

    def requests() -> Iterator[Request]:
        """The payloads' requests, made one at a time as they are run; rows that cannot
        become a request are set aside in ``failures``."""
        for n, item in enumerate(progress_bar(items, show=progress, desc="running", unit="payload")):
            failure = item.error
            if failure is None:
                try:
                    request = item.request()
                except Exception as exc:  # a frame row the loader could not make sense of
                    failure = _row_failure(exc)
                else:  # what the deployed handler refuses (413, 415) never reaches the function
                    failure = _refused(request.headers, request.content)
            if failure is not None:
                failures[n] = failure
                continue
            content = _body_key(item, request.content)
            cached = digests.get(content)
            if cached is not None:
                request.seed_digest(cached)
                uncached.append(None)
            else:
                uncached.append(content)
            yield request

    def wires() -> Iterator[Call]:
        """``requests()`` in the form the workers read (``Request.to_wire``): a frame row's
        is made without a ``Request`` in this process."""
        for n, item in enumerate(progress_bar(items, show=progress, desc="running", unit="payload")):
            failure = item.error
            if failure is None:
                try:
                    wire = item.wire()
                except Exception as exc:
                    failure = _row_failure(exc)
                else:
                    failure = _refused(wire[1], wire[0])
            if failure is not None:
                failures[n] = failure
                continue
            content = _body_key(item, wire[0])
            cached = digests.get(content)
            if cached is not None:
                if wire[6] is None:
                    wire = (*wire[:6], cached)
                uncached.append(None)
            else:
                uncached.append(content)
            yield ("request", wire)

    if isolation == "none":
        results: Iterator[CallResult] = _in_process(fn, requests(), settings, timeout)
        pool = None
    else:
        check = validate and workers > 1
        pool = WorkerPool(fn, dict(settings), timeout=timeout, workers=workers, check=_CHECK if check else None,
                          preload=_CHECK_PRELOAD if check else ())
        results = pool.map(wires())
    step = max(1, len(items) // 100)
    # no collections while results pile up: the run makes no reference cycles, and with
    # the payload frame and every result alive each full collection walks all of them
    # (most of a run's time); the collector runs again, and catches up, once it returns
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for n, result in enumerate(_interleave(results, failures, len(items))):
            if on_progress is not None and (n + 1) % step == 0:
                on_progress(n + 1)
            if result is None:
                outcome.append("error")
                events.append([])
                objects.append([])
                error.append(failures.pop(n))
                error_line.append(None)
                issues.append([])
                duration.append(0.0)
                discarded.append([])
                logs.append("")
                continue
            inv = result.invocation
            content = uncached.popleft()
            if content is not None and result.digest is not None:
                digests.put(content, result.digest)
            logs.append(result.logs)
            outcome.append(inv.outcome)
            error.append(inv.error)
            error_line.append(inv.error_line)
            duration.append(inv.duration)
            if inv.outcome == "ok":
                events.append(inv.events)
                objects.append(inv.objects)
                discarded.append([])
                found = result.issues
                if found is None or not validate:
                    found = invocation_issues(inv.events, inv.objects, inv.problems, check=validate)
                issues.append(found)
            else:
                events.append([])
                objects.append([])
                discarded.append(inv.events)
                issues.append([])
    except FunctionLoadError as exc:  # it loads here but not in a worker process
        return _error_frame(items, f"FunctionLoadError: {exc}", exc.line, fn)
    finally:
        if gc_was_on:
            gc.enable()
        if pool is not None:
            pool.close()
    if on_progress is not None:
        on_progress(len(items))
    columns: dict[str, list[Any]] = {
        "outcome": outcome,
        "events": events,
        "objects": objects,
        "error": error,
        "error_line": error_line,
        "issues": issues,
        "duration": duration,
        "event_type": [i.event_type for i in items],
        "discarded_events": discarded,
        "logs": logs,
    }
    return _frame(items, columns, fn, "source")


def _row_failure(exc: Exception) -> str:
    # a frame row the loader could not make sense of
    return f"PayloadError: cannot make a request of this row ({type(exc).__name__}: {exc})"


def _refused(headers: Any, content: bytes) -> str | None:
    """The row error of a request the deployed handler refuses (413, 415), else ``None``."""
    if type(headers) is not Headers:
        headers = Headers(headers)
    refusal = request_refusal(headers.peek("content-type"), len(content))
    return None if refusal is None else refusal.row_error()


def _body_key(item: PayloadInput, content: bytes) -> bytes | str:
    """What the digest cache knows a payload's body by: a frame row's text (Python keeps a
    string's hash, so a re-run over the same frame hashes no body again), else its bytes."""
    source = item.source
    return source[0] if type(source) is tuple and type(source[0]) is str else content


def _interleave(results: Iterator[CallResult], failures: dict[int, str], total: int) -> Iterator[CallResult | None]:
    """The results of the payloads that ran, with ``None`` where a payload could not run.

    ``failures`` fills up as ``results`` pulls requests, so it is read only after the result
    before it (or the end of the results) was taken.
    """
    n = 0
    for result in results:
        while n in failures:
            yield None
            n += 1
        yield result
        n += 1
    while n < total:
        yield None
        n += 1


class _ThreadOutput(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` during an in-process run: what the running thread
    writes goes to the payload's log, what other threads write goes where it went before."""

    def __init__(self, original: IO[str], buffer: io.StringIO):
        self._original = original
        self._buffer = buffer
        self._thread = threading.get_ident()

    def write(self, text: str) -> int:
        if threading.get_ident() == self._thread:
            return self._buffer.write(text)
        return self._original.write(text)

    def flush(self) -> None:
        if threading.get_ident() != self._thread:
            self._original.flush()

    def close(self) -> None:  # a function closing "its" stdout must not close the real one
        pass

    def writable(self) -> bool:
        return True


def _in_process(
    fn: Function, requests: Iterable[Request], settings: Settings, timeout: float | None
) -> Iterator[CallResult]:
    """``isolation="none"``: each call in this process (for debugging a function with pdb;
    no hard limits: a call that ignores the timeout signal holds the run)."""
    secrets = settings.secret_values()
    buffer = io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ThreadOutput(saved[0], buffer), _ThreadOutput(saved[1], buffer)
    try:
        # one timer for the run's calls (set again only when needed), not two system calls each
        with keep_timer_armed():
            for request in requests:
                inv = fn.on_request(request, settings, timeout=timeout)
                text = ""
                if buffer.tell():
                    text = buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
                    if secrets:
                        text = mask_text(text, secrets)
                yield CallResult(inv, text, request.known_digest)
    finally:
        sys.stdout, sys.stderr = saved


# -- diff --------------------------------------------------------------------------------

_COMPARED = ("outcome", "events", "objects", "error")


def _views(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Payload id -> what ``diff`` compares of its row (the compared columns the frame has),
    read column by column (no dict of every column of every row)."""
    names = {str(c): c for c in frame.columns}
    keys = [k for k in (*_COMPARED, "requests") if k in names]
    columns = [frame[names[k]].tolist() for k in keys]
    return {str(pid): dict(zip(keys, values, strict=True)) for pid, *values in zip(frame.index, *columns, strict=True)}


def _dump(view: dict[str, Any] | None) -> list[str]:
    if view is None:
        return []
    return json.dumps(view, indent=1, sort_keys=True, ensure_ascii=False, default=str).splitlines()


def diff(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """The payloads whose results changed between two runs, with a readable diff each.

    Outcome, events, objects, error (and requests, for destinations) are compared;
    durations, logs and issues are not.

    Returns:
        A frame indexed by ``payload_id`` with columns ``change`` (``added``, ``removed``,
        ``outcome``, ``events``, ``objects``, ``error``, ``requests``: the first that
        differs), ``outcome_before``, ``outcome_after``, ``events_before``,
        ``events_after`` (counts) and ``diff`` (a unified diff of the JSON).

    Example:
        >>> fn = '''
        ... from segfn_kit.runtime import Segment
        ... def on_request(request, settings):
        ...     Segment.track(user_id="u1", event=request.json()["name"])
        ... '''
        >>> a = run(fn, [{"name": "A"}, {"name": "B"}])
        >>> b = run(fn.replace('event=', 'event="X" or '), [{"name": "A"}, {"name": "B"}])
        >>> diff(a, b)["change"].tolist()
        ['events', 'events']
    """
    ids = list(dict.fromkeys([*map(str, before.index), *map(str, after.index)]))
    b_views, a_views = _views(before), _views(after)
    rows: list[dict[str, Any]] = []
    for pid in ids:
        vo, vn = b_views.get(pid), a_views.get(pid)
        if vo == vn:
            continue
        if vo is None:
            change = "added"
        elif vn is None:
            change = "removed"
        else:
            change = next(k for k in (*_COMPARED, "requests") if vo.get(k) != vn.get(k))
        text = "\n".join(
            difflib.unified_diff(_dump(vo), _dump(vn), f"before/{pid}", f"after/{pid}", lineterm="", n=2)
        )
        rows.append({
            "payload_id": pid,
            "change": change,
            "outcome_before": None if vo is None else vo.get("outcome"),
            "outcome_after": None if vn is None else vn.get("outcome"),
            "events_before": 0 if vo is None else len(vo.get("events") or []),
            "events_after": 0 if vn is None else len(vn.get("events") or []),
            "diff": text,
        })
    columns = ["change", "outcome_before", "outcome_after", "events_before", "events_after", "diff"]
    frame = pd.DataFrame(rows, columns=["payload_id", *columns], dtype=object)
    frame[["events_before", "events_after"]] = frame[["events_before", "events_after"]].astype("int64")
    return frame.set_index("payload_id")


# -- coverage ----------------------------------------------------------------------------


@contextlib.contextmanager
def _without_gc() -> Iterator[None]:
    # following fields makes many small lists and no reference cycles; with every parsed
    # body alive, each collection walks all of them, which costs most of the time
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _leaves(value: Any, path: str, out: dict[str, list[Any]]) -> None:
    # one call per dict or list, not per leaf: scalars are appended in the loop itself
    pairs: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        prefix, pairs, keyed = (f"{path}." if path else ""), value.items(), True
    elif isinstance(value, list):
        prefix, pairs, keyed = f"{path}[]", enumerate(value), False
    else:
        if value is not None and value != "":
            out.setdefault(path, []).append(value)
        return
    for k, v in pairs:
        child = f"{prefix}{k}" if keyed else prefix
        if isinstance(v, dict | list):
            _leaves(v, child, out)
        elif v is not None and v != "":
            found = out.get(child)
            if found is None:
                out[child] = [v]
            else:
                found.append(v)


def _match_key(value: Any) -> Any:
    """What a value is matched by in coverage: booleans match booleans only (``True`` is
    not 1); 5 and 5.0 match; strings match strings, and other values match by their text."""
    if isinstance(value, bool):
        return (bool, value)
    if type(value) is str or isinstance(value, int | float):
        return value
    return str(value)


def _add_values(value: dict[str, Any] | list[Any], out: set[Any], exact: bool) -> None:
    # the values of an event (no paths: coverage matches values only): as match keys when
    # exact, else as they are (then True and 1 are one value) but for values other than
    # JSON's, which match by their text
    for v in value.values() if isinstance(value, dict) else value:
        t = type(v)
        if t is str or t is int or t is float:
            if v != "":
                out.add(v)
        elif isinstance(v, dict | list):
            _add_values(v, out, exact)
        elif v is not None and v != "":
            out.add(v if t is bool and not exact else _match_key(v))


_STAMPS: dict[str, int | None] = {}


def _stamp_seconds(stamp: str) -> int | None:
    if stamp in _STAMPS:
        return _STAMPS[stamp]
    seconds: int | None
    try:
        seconds = int(pd.Timestamp(stamp).timestamp())
    except (ValueError, TypeError):
        seconds = None
    if len(_STAMPS) >= 100_000:  # bounded: a long session sees many distinct times
        _STAMPS.clear()
    _STAMPS[stamp] = seconds
    return seconds


def _event_values(events: list[dict[str, Any]], objects: list[dict[str, Any]], *, exact: bool) -> set[Any]:
    keys: set[Any] = set()
    for record in (*events, *objects):
        if isinstance(record, dict | list):
            _add_values(record, keys, exact)
        elif record is not None and record != "":
            keys.add(_match_key(record) if exact or type(record) is not bool else record)
    # a Unix time in the payload reaches the event as an ISO 8601 timestamp
    for record in events:
        stamp = record.get("timestamp")
        if isinstance(stamp, str):
            seconds = _stamp_seconds(stamp)
            if seconds is not None:
                keys.add(seconds)
    return keys


def _bodies(payloads: PayloadsLike) -> dict[str, Any]:
    bodies: dict[str, Any] = {}
    for item in payload_inputs(payloads):
        if item.error is not None:
            continue
        try:
            request = item.request()
            # the fast parser when it gives exactly what json.loads gives; no digest taken
            body = fast_loads(request.content)
            bodies[item.payload_id] = request.json() if body is MISSING else body
        except Exception:  # bodies that are not JSON have no fields to follow
            continue
    return bodies


def payload_fields(payloads: PayloadsLike) -> dict[str, dict[str, list[Any]]]:
    """Each payload's body fields (dot paths, ``[]`` for list items) with their values.

    What :func:`coverage` follows; it depends on the payloads only, so a preview computes
    it once and passes it to every later ``coverage(..., fields=)`` (no body parsed again).

    Example:
        >>> payload_fields([{"id": "u1", "tags": ["a"]}])["input1"]
        {'id': ['u1'], 'tags[]': ['a']}
    """
    out: dict[str, dict[str, list[Any]]] = {}
    with _without_gc():
        for pid, body in _bodies(payloads).items():
            fields: dict[str, list[Any]] = {}
            _leaves(body, "", fields)
            out[pid] = fields
    return out


def coverage(
    results: pd.DataFrame, payloads: PayloadsLike, *, fields: Mapping[str, dict[str, list[Any]]] | None = None
) -> dict[str, pd.DataFrame]:
    """What a run left out: incoming event types never mapped, payload fields never used.

    A body field counts as used when its value appears among the values of the events
    (or objects) its own payload produced; Unix times count when they reappear as the
    event's ISO 8601 timestamp. Only payloads with outcome ``ok`` are followed for fields.

    Args:
        results: a result frame from :func:`run`.
        payloads: the payloads it ran over (same argument as for :func:`run`).
        fields: :func:`payload_fields` of those payloads, when already computed (the bodies
            are then not read again).

    Returns:
        ``{"event_types": ..., "unmapped_types": ..., "unused_fields": ...}``:
        per incoming event type the count of payloads per outcome; the types with no
        ``ok`` outcome; and the body fields (dot paths, ``[]`` for list items) that never
        reached an event, with how many mapped payloads carried them and an example value.

    Example:
        >>> fn = '''
        ... from segfn_kit.runtime import Segment
        ... def on_request(request, settings):
        ...     body = request.json()
        ...     Segment.track(user_id=body["id"], event="Seen")
        ... '''
        >>> payloads = [{"type": "seen", "id": "u1", "color": "red"}]
        >>> coverage(run(fn, payloads), payloads)["unused_fields"].index.tolist()
        ['color', 'type']
    """
    types = results["event_type"].map(lambda t: "(unknown)" if is_missing(t) else str(t))
    table = pd.crosstab(types, results["outcome"]).rename_axis(index="event_type", columns=None)
    if "ok" not in table.columns:
        table["ok"] = 0
    table.insert(0, "payloads", table.sum(axis=1))
    unmapped = table[table["ok"] == 0]
    if fields is None:
        fields = payload_fields(payloads)
    seen: Counter[str] = Counter()
    used: set[str] = set()
    ok = results[results["outcome"] == "ok"]
    ok_ids = [str(pid) for pid in ok.index]
    with _without_gc():
        for pid, events, objects in zip(ok_ids, ok["events"], ok["objects"], strict=True):
            found_fields = fields.get(pid)
            if found_fields is None:
                continue
            paths = found_fields.keys()
            seen.update(paths)
            todo = paths - used  # a field used once is used: it is not matched again
            if not todo:
                continue
            # a loose match first (in C: True matches 1 there), an exact one for those found
            loose = _event_values(events, objects, exact=False)
            exact: set[Any] | None = None
            for path in todo:
                found = found_fields[path]
                if loose.isdisjoint(found):
                    continue
                if exact is None:
                    exact = _event_values(events, objects, exact=True)
                if any(_match_key(v) in exact for v in found):
                    used.add(path)
        # an example of each unused field: its value in the first mapped payload carrying it
        examples: dict[str, Any] = {}
        missing = seen.keys() - used
        for pid in ok_ids:
            if not missing:
                break
            found_fields = fields.get(pid)
            if found_fields is None:
                continue
            for path in missing & found_fields.keys():
                examples[path] = found_fields[path][0]
            missing.difference_update(examples)
    unused = [
        {"field": path, "payloads": count, "example": examples[path]}
        for path, count in sorted(seen.items())
        if path not in used
    ]
    unused_frame = pd.DataFrame(unused, columns=["field", "payloads", "example"]).set_index("field")
    return {
        "event_types": table.sort_values("payloads", ascending=False, kind="stable"),
        "unmapped_types": unmapped.sort_values("payloads", ascending=False, kind="stable"),
        "unused_fields": unused_frame,
    }


# -- JSON Lines (contract 3) -------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _line(record: dict[str, Any]) -> str:
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:  # NaN or infinity somewhere: JSON has no such numbers
        return json.dumps(_json_safe(record), ensure_ascii=False, allow_nan=False, default=str)


def _records(results: pd.DataFrame) -> Iterator[dict[str, Any]]:
    keys = list(JSONL_KEYS[1:])
    if "requests" in results.columns:
        keys.append("requests")
    present = [k for k in keys if k in results.columns]
    for pid, *values in results[present].itertuples(index=True, name=None):
        record: dict[str, Any] = {"payload_id": str(pid)}
        row = dict(zip(present, values, strict=True))
        for key in keys:
            value = row.get(key)
            if key in ("events", "objects", "issues", "requests"):
                record[key] = list(value) if isinstance(value, list | tuple) else []
            else:
                record[key] = None if is_missing(value) else value
        yield record


def to_jsonl(results: pd.DataFrame, file: str | os.PathLike[str] | IO[str] | None = None) -> str | None:
    """Write a result frame as JSON Lines (contract 3), one object per payload.

    Each line has exactly ``payload_id``, ``outcome``, ``events``, ``objects``, ``error``,
    ``issues`` (destination runs add ``requests``). Integers keep every digit, even above
    2**53; NaN and infinities, which JSON cannot carry, are written as ``null``.

    Args:
        results: a result frame from :func:`run`.
        file: a path or a text stream to write to; ``None`` to return the text.

    Returns:
        The text when ``file`` is ``None``, else ``None``.

    Example:
        >>> fn = 'from segfn_kit.runtime import Segment\\ndef on_request(r, s):\\n    Segment.track(user_id="u", event="E")'
        >>> line = to_jsonl(run(fn, [{}])).splitlines()[0]
        >>> list(json.loads(line))
        ['payload_id', 'outcome', 'events', 'objects', 'error', 'issues']
    """
    lines = (_line(r) + "\n" for r in _records(results))
    if file is None:
        return "".join(lines)
    if isinstance(file, str | os.PathLike):
        with open(file, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
    else:
        file.writelines(lines)
    return None
