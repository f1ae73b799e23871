"""Load a function file and run one invocation of it.

The same code runs in a notebook preview, in ``segfn run`` and inside an exported handler.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import linecache
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._errors import FUNCTION_ERRORS, FunctionLoadError, FunctionTimeout
from ._request import Request, body_refusal
from ._segment import Collector, _current
from ._settings import Settings, declared_settings, mask_text, secret_names

if TYPE_CHECKING:
    from ._mapping_function import MappingSpec

# a mapping function file's name; its loader (and the Mapping Kit) load only for such files
MAPPING_SUFFIX = ".mapping.json"


def is_mapping_source(source: str, filename: str = "") -> bool:
    """A mapping function file's text (a JSON object), rather than a Python function file.

    Example:
        >>> is_mapping_source('{"routes": {}}'), is_mapping_source("def on_request(r, s): pass")
        (True, False)
    """
    return filename.endswith(MAPPING_SUFFIX) or source.lstrip()[:1] == "{"


__all__ = [
    "DEFAULT_TIMEOUT",
    "DESTINATION_HANDLERS",
    "Function",
    "FunctionKind",
    "Invocation",
    "call_with_timeout",
    "keep_timer_armed",
]

FunctionKind = Literal["source", "destination"]

DEFAULT_TIMEOUT = 5.0  # seconds, Segment's execution limit

# spec event type -> handler name
DESTINATION_HANDLERS = {
    "identify": "on_identify",
    "track": "on_track",
    "page": "on_page",
    "screen": "on_screen",
    "group": "on_group",
    "alias": "on_alias",
    "delete": "on_delete",
}
_DESTINATION_NAMES = frozenset(DESTINATION_HANDLERS.values()) | {"on_batch"}
_JS_NAMES = {"onRequest": "on_request", **{
    "on" + n[3:].capitalize(): n for n in _DESTINATION_NAMES
}}


@dataclass(slots=True)
class Invocation:
    """What one invocation did.

    Attributes:
        outcome: ``"ok"``, the name of the Segment error the function raised
            (``EventNotSupported``, ``InvalidEventPayload``, ``ValidationError``,
            ``RetryError``, ``DropEvent``), or ``"error"`` for anything else (timeouts too).
        events: the spec events emitted (source functions), in call order.
        objects: the Objects API records from ``Segment.set``.
        problems: values that could not be sent as they were (see ``Segment``).
        error: ``"ErrorName: message"``, secrets masked; ``None`` when ok.
        error_line: the function file's line that raised, when known.
        duration: seconds spent in the handler.
        returned: what the handler returned (insert functions, ``on_batch`` statuses).
        timed_out: the invocation ran past its time limit (Segment retries these).
    """

    outcome: str
    events: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    error_line: int | None = None
    duration: float = 0.0
    returned: Any = None
    timed_out: bool = False

    @property
    def retryable(self) -> bool:
        """Segment would retry this invocation (``RetryError`` or a timeout)."""
        return self.outcome == "RetryError" or self.timed_out


class Function:
    """A loaded function file.

    Use ``Function.from_file(path)`` or ``Function.from_source(text)``.

    Example:
        >>> fn = Function.from_source('''
        ... from segfn_kit.runtime import Segment
        ... def on_request(request, settings):
        ...     Segment.track(user_id="u1", event="Pinged")
        ... ''')
        >>> fn.kind
        'source'
        >>> inv = fn.on_request(Request(b'{}'))
        >>> inv.outcome, inv.events[0]["event"]
        ('ok', 'Pinged')
    """

    def __init__(self, source: str, filename: str, module: types.ModuleType):
        self.source = source
        self.filename = filename
        self.module = module
        self.declared_settings = declared_settings(source)
        self.mapping: MappingSpec | None = None  # a mapping function file's parsed spec
        ns = module.__dict__
        self.handlers: dict[str, Callable[..., Any]] = {
            name: ns[name]
            for name in ("on_request", *_DESTINATION_NAMES)
            if callable(ns.get(name))
        }
        if "on_request" in self.handlers:
            self.kind: FunctionKind = "source"
        elif self.handlers:
            self.kind = "destination"
        else:
            js = [f"{n} (rename it {_JS_NAMES[n]})" for n in _JS_NAMES if callable(ns.get(n))]
            hint = f"; found JavaScript-style {', '.join(js)}" if js else ""
            raise FunctionLoadError(
                "defines no handler: a source function defines on_request(request, settings); "
                "a destination function defines on_track(event, settings), on_identify, ... "
                f"or on_batch(events, settings){hint}",
                filename=filename,
            )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Function:
        """Load a function from a ``.py`` file."""
        path = Path(path)
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise FunctionLoadError(f"cannot read the function file ({exc.strerror})", filename=str(path)) from None
        except UnicodeDecodeError:
            raise FunctionLoadError("the function file is not UTF-8 text", filename=str(path)) from None
        return cls.from_source(source, filename=str(path))

    @classmethod
    def from_source(cls, source: str, filename: str = "<function>") -> Function:
        """Load a function from its text (a notebook cell, a string).

        A JSON object (or a file named ``*.mapping.json``) is a mapping function file
        (contract 5), loaded by :meth:`from_mapping`.

        Raises:
            FunctionLoadError: a syntax error, an error while the module runs, or no handler;
                the message names the file and line.
        """
        if is_mapping_source(source, filename):
            return cls.from_mapping(source, filename)
        digest = hashlib.sha1(f"{filename}\0{source}".encode("utf-8", "surrogatepass")).hexdigest()[:12]
        name = f"segfn_function_{digest}"
        if filename.startswith("<"):  # text without a file: let tracebacks show its lines
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            code = compile(source, filename, "exec")
        except SyntaxError as exc:
            raise FunctionLoadError(
                f"syntax error: {exc.msg}", filename=filename, line=exc.lineno
            ) from None
        module = types.ModuleType(name)
        module.__file__ = filename
        sys.modules[name] = module
        try:
            exec(code, module.__dict__)
        except Exception as exc:
            del sys.modules[name]
            raise FunctionLoadError(
                f"the module raised {type(exc).__name__}: {exc}",
                filename=filename,
                line=_line_in(exc, filename),
            ) from exc
        return cls(source, filename, module)

    @classmethod
    def from_mapping(cls, source: str, filename: str = "<mapping>") -> Function:
        """Load a mapping function file (``NAME.mapping.json``, Mapping Kit JSON).

        Example:
            >>> fn = Function.from_mapping('{"route": "all", "routes": {"all": '
            ...     '[{"type": "track", "event": "Seen", "userId": {"@path": "$.body.id"}}]}}')
            >>> inv = fn.on_request(Request(b'{"id": "u1"}'))
            >>> inv.outcome, inv.events[0]["userId"], inv.events[0]["event"]
            ('ok', 'u1', 'Seen')

        Raises:
            FunctionLoadError: the file is not JSON or not a valid mapping function; the
                message names each problem's place in the file.
        """
        from ._mapping_function import mapping_module, parse_mapping_function

        spec = parse_mapping_function(source, filename)
        fn = cls(source, filename, mapping_module(spec, filename))
        fn.declared_settings = spec.settings
        fn.mapping = spec
        return fn

    # -- settings ----------------------------------------------------------------------
    def settings(self, values: Mapping[str, Any] | None = None) -> Settings:
        """Wrap setting values, masking the ones this file declares secret."""
        if not values:
            empty = self.__dict__.get("_no_settings")
            if empty is None:  # made once: invocations without settings share it (read-only)
                empty = self.__dict__["_no_settings"] = Settings({}, secrets=secret_names((), self.declared_settings))
            return empty
        values = dict(values)
        return Settings(values, secrets=secret_names(values, self.declared_settings))

    def missing_settings(self, values: Mapping[str, Any] | None) -> list[str]:
        """Declared ``required`` settings that ``values`` lacks."""
        values = values or {}
        return [n for n, spec in self.declared_settings.items() if spec.get("required") and n not in values]

    # -- invocations -------------------------------------------------------------------
    def on_request(
        self,
        request: Request,
        settings: Settings | Mapping[str, Any] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Invocation:
        """Run ``on_request`` once and return what it emitted or raised."""
        if self.kind != "source":
            raise TypeError(f"{self.filename} is a destination function; call on_event()")
        settings = settings if isinstance(settings, Settings) else self.settings(settings)
        refusal = body_refusal(request)
        if refusal is not None:  # no function could map it: as deployed, it never runs
            return Invocation(outcome="InvalidEventPayload", error=refusal)
        handler = self.__dict__.get("_on_request")
        if handler is None:  # made once: whether it is async is known at load time
            handler = self.__dict__["_on_request"] = _awaiting(self.handlers["on_request"])
        return self._invoke(handler, (request, settings), Collector(request.digest), settings, timeout)

    def on_event(
        self,
        event: Mapping[str, Any],
        settings: Settings | Mapping[str, Any] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Invocation:
        """Run the destination handler for one spec event (``on_track`` for a track, ...).

        A type with no handler is ``EventNotSupported``, as in Segment. The handler gets a
        deep copy, so an insert function may change and return it.
        """
        if self.kind != "destination":
            raise TypeError(f"{self.filename} is a source function; call on_request()")
        settings = settings if isinstance(settings, Settings) else self.settings(settings)
        kind = event.get("type") if isinstance(event, Mapping) else None
        handler_name = DESTINATION_HANDLERS.get(kind) if isinstance(kind, str) else None
        handler = self.handlers.get(handler_name) if handler_name else None
        if handler is None:
            reason = (
                f"no {handler_name} handler for {kind!r} events" if handler_name
                else f"event type {kind!r} is not a Segment event type"
            )
            return Invocation(outcome="EventNotSupported", error=f"EventNotSupported: {reason}")
        return self._invoke(_sync(handler), (copy.deepcopy(dict(event)), settings), Collector(""), settings, timeout)

    def on_batch(
        self,
        events: list[Mapping[str, Any]],
        settings: Settings | Mapping[str, Any] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Invocation:
        """Run ``on_batch`` once over a list of events; ``returned`` holds its statuses."""
        handler = self.handlers.get("on_batch")
        if handler is None:
            return Invocation(outcome="EventNotSupported", error="EventNotSupported: no on_batch handler")
        settings = settings if isinstance(settings, Settings) else self.settings(settings)
        return self._invoke(_sync(handler), (copy.deepcopy([dict(e) for e in events]), settings), Collector(""), settings, timeout)

    def _invoke(
        self,
        handler: Callable[..., Any],
        args: tuple[Any, ...],
        collector: Collector,
        settings: Settings,
        timeout: float | None,
    ) -> Invocation:
        token = _current.set(collector)
        start = time.perf_counter()
        try:
            returned = call_with_timeout(handler, args, timeout)
        except FunctionTimeout:
            return Invocation(
                outcome="error",
                # what it emitted before it ran out of time is shown, never sent; copies,
                # since an abandoned worker thread may still be appending
                events=list(collector.events),
                objects=list(collector.objects),
                error=_timeout_text(timeout),
                duration=time.perf_counter() - start,
                timed_out=True,
            )
        except (Exception, SystemExit) as exc:
            duration = time.perf_counter() - start
            # a subclass of one of the five keeps its parent's meaning; a function that calls
            # sys.exit() fails its own invocation, never the run around it
            outcome = _OUTCOMES.get(type(exc)) or next(
                (c.__name__ for c in FUNCTION_ERRORS if isinstance(exc, c)), "error"
            )
            text = (
                f"SystemExit: the function called sys.exit({exc.code!r}); raise one of the "
                "five Segment errors instead" if isinstance(exc, SystemExit)
                else f"{type(exc).__name__}: {exc}"
            )
            line = _line_in(exc, self.filename)
            if outcome == "error" and line is not None:
                # an unexpected error is a bug in the function: say where, in the text itself,
                # so `segfn run --jsonl` and handler logs point at it too
                text += f" ({os.path.basename(self.filename)}, line {line})"
            secrets = settings.secret_values()
            message = mask_text(text, secrets) if secrets else text
            return Invocation(
                outcome=outcome,
                events=collector.events,
                objects=collector.objects,
                problems=collector.problems,
                error=message,
                error_line=line,
                duration=duration,
            )
        finally:
            _current.reset(token)
        return Invocation(
            outcome="ok",
            events=collector.events,
            objects=collector.objects,
            problems=collector.problems,
            duration=time.perf_counter() - start,
            returned=returned,
        )

    def __repr__(self) -> str:
        return f"<Function {self.kind} {self.filename}>"

    # A loaded function holds its module, which cannot be copied; pandas deep-copies a
    # frame's attrs on every operation, and the result frame keeps its Function there.
    def __copy__(self) -> Function:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Function:
        return self


# the outcome of each of the five errors raised as itself (a subclass takes the loop above)
_OUTCOMES: dict[type[BaseException], str] = {c: c.__name__ for c in FUNCTION_ERRORS}


def _timeout_text(timeout: float | None) -> str:
    limit = f"{timeout:g} s limit" if timeout else "time limit"
    return f"FunctionTimeout: the function ran past its {limit} (Segment retries timeouts)"


def _sync(handler: Callable[..., Any]) -> Callable[..., Any]:
    """An ``async def`` destination handler as a plain call (Segment's handlers are async).

    The coroutine runs on its own event loop, in a worker thread when this thread already
    runs one (a notebook kernel), with the caller's context so previews still see it.
    """
    import inspect

    if not inspect.iscoroutinefunction(handler):
        return handler

    def call(*args: Any) -> Any:
        import asyncio
        import contextvars

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(handler(*args))
        ctx = contextvars.copy_context()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = ctx.run(asyncio.run, handler(*args))
            except BaseException as exc:
                box["error"] = exc

        worker = threading.Thread(target=target, daemon=True, name="segfn-async-handler")
        worker.start()
        worker.join()
        if "error" in box:
            raise box["error"]
        return box.get("value")

    return call


def _line_in(exc: BaseException, filename: str) -> int | None:
    """The last line of ``filename`` in the exception's traceback."""
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:  # traceback.walk_tb, without a generator per failed call
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _awaiting(handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler``, made to finish what it returns when it is ``async def`` (as in Segment's
    JavaScript, where handlers are async functions)."""
    if not inspect.iscoroutinefunction(handler):
        return handler

    def call(*args: Any) -> Any:
        return run_coroutine(handler(*args))

    return call


def run_coroutine(coro: Any) -> Any:
    """Run a coroutine to its end, also where an event loop already runs (Jupyter)."""
    import asyncio
    import contextvars

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # a loop runs in this thread (a notebook kernel): finish the coroutine in a thread of its
    # own, in this context, so Segment.* calls reach this invocation's collector
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = ctx.run(asyncio.run, coro)
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="segfn-async-invocation")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class _AlarmTimer:
    """The main thread's time limit: a ``SIGALRM`` handler installed once, armed per call.

    Installing a signal handler is far dearer than arming the timer, so the handler is
    installed on the first call and stays: while no invocation is armed it passes the
    signal on to the handler that was there before (or ignores it, as the default would
    not). Code that installs its own ``SIGALRM`` handler later is noticed, and ours is put
    back in front of it on the next call, chaining to it the same way.
    """

    def __init__(self) -> None:
        self.armed = False
        self.here: Any = None  # the frame of the call_with_timeout that armed it
        self.previous: Any = None
        self.kept = 0  # depth of ``keep_timer_armed`` scopes
        self.pending = False  # a kept timer is set: it fires at ``fires_at``
        self.fires_at = 0.0
        self.deadline = 0.0  # when the kept call now running runs out (monotonic)

    def handle(self, signum: int, frame: Any) -> None:
        if self.pending:  # the timer of a kept scope
            self.pending = False
            if not self.armed or frame is self.here:
                return  # between calls, or the call just returned: nothing ran out
            left = self.deadline - time.monotonic()
            if left > 0:  # set for an earlier call: wait for this one's own limit
                self.arm(left)
                return
            self.armed = False
            raise FunctionTimeout()
        if self.armed:
            # the signal is handled in whatever frame runs when it arrives: in the arming
            # frame itself, the call has already returned (or is just returning), so it did
            # finish in time
            if frame is not self.here:
                self.armed = False
                raise FunctionTimeout()
            return
        previous = self.previous
        if callable(previous):
            previous(signum, frame)

    def arm(self, seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        self.pending = True
        self.fires_at = time.monotonic() + seconds


_ALARM = _AlarmTimer()
_ALARM_HANDLER = _ALARM.handle
_HAS_ITIMER = hasattr(signal, "setitimer")
try:  # the C function: signal.getsignal also turns its answer into an enum, per call
    from _signal import getsignal as _getsignal  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other Pythons
    _getsignal = signal.getsignal
_main_thread = threading.main_thread
_SIGALRM = getattr(signal, "SIGALRM", 14)


def call_with_timeout(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> Any:
    """Call ``fn(*args)``; raise ``FunctionTimeout`` past ``timeout`` seconds.

    On the main thread a timer signal interrupts the function itself; elsewhere it runs in a
    worker thread that is abandoned (not killed) when it overruns. Neither can stop a call
    that swallows the signal or sits in one long C call: :class:`WorkerPool` (a process it
    can kill) is what enforces limits for real; this is the in-process fallback.
    """
    if not timeout or timeout <= 0:
        return fn(*args)
    if _HAS_ITIMER and threading.current_thread() is _main_thread():
        if _getsignal(_SIGALRM) is not _ALARM_HANDLER:
            _ALARM.previous = signal.signal(signal.SIGALRM, _ALARM_HANDLER)
        _ALARM.here = sys._getframe()
        if _ALARM.kept:
            # one timer for many calls: set only when none is pending, or when the pending one
            # fires after this call's limit; when it fires early it is set again for the rest
            deadline = _ALARM.deadline = time.monotonic() + timeout
            if not _ALARM.pending or _ALARM.fires_at > deadline:
                _ALARM.arm(timeout)
            _ALARM.armed = True
            try:
                return fn(*args)
            finally:
                _ALARM.armed = False
        _ALARM.armed = True
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _ALARM.armed = False
    if getattr(_INVOKERS, "in_place", False):
        watchdog = _watchdog()
        token = watchdog.arm(timeout)
        try:
            return fn(*args)
        finally:
            watchdog.disarm(token)
    invoker = getattr(_INVOKERS, "invoker", None)
    if invoker is None:
        invoker = _INVOKERS.invoker = _Invoker()
    outcome = invoker.run(fn, args, timeout)
    if outcome is None:
        _INVOKERS.invoker = None  # abandoned to the overrunning call; the next call gets a new one
        raise FunctionTimeout()
    ok, value = outcome
    if not ok:
        raise value
    return value


@contextlib.contextmanager
def keep_timer_armed() -> Iterator[None]:
    """Time the main thread's calls in this block with one timer, not two system calls each.

    ``call_with_timeout`` then leaves the timer running when a call returns; the next call
    reuses it, and a timer that fires before that call's own limit is set again for the rest,
    so every call still gets its whole limit and no more. The timer is stopped on leaving the
    block. For runs of many short calls (a replay); elsewhere, and on other threads, nothing
    changes.

    Example:
        >>> with keep_timer_armed():
        ...     [call_with_timeout(abs, (n,), 5.0) for n in (-1, -2)]
        [1, 2]
    """
    if not _HAS_ITIMER or threading.current_thread() is not _main_thread():
        yield
        return
    _ALARM.kept += 1
    try:
        yield
    finally:
        _ALARM.kept -= 1
        if not _ALARM.kept and _ALARM.pending:
            signal.setitimer(signal.ITIMER_REAL, 0)
            _ALARM.pending = False


class _Invoker:
    """The thread that runs time-limited calls for one calling thread (not the main one),
    kept from call to call: starting a thread per call costs more than many a function.
    A call that overruns keeps it; the caller moves on and gets a new one next time."""

    def __init__(self) -> None:
        self._job: tuple[Any, Callable[..., Any], tuple[Any, ...]] | None = None
        self._result: tuple[bool, Any] | None = None
        self._ready = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        threading.Thread(target=self._loop, daemon=True, name="segfn-invocation").start()

    def _loop(self) -> None:
        while True:
            self._ready.acquire()
            assert self._job is not None
            ctx, fn, args = self._job
            self._job = None
            try:
                self._result = (True, ctx.run(fn, *args))
            except BaseException as exc:
                self._result = (False, exc)
            self._done.release()

    def run(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> tuple[bool, Any] | None:
        import contextvars

        self._job = (contextvars.copy_context(), fn, args)
        self._ready.release()
        if not self._done.acquire(timeout=timeout):
            return None
        result, self._result = self._result, None
        return result


_INVOKERS = threading.local()


@contextlib.contextmanager
def timeouts_in_place() -> Iterator[None]:
    """Within the block, time-limited calls made by this thread (not the main one) run on it,
    and a watchdog thread raises ``FunctionTimeout`` in it at the limit, as the main thread's
    timer signal does: no thread hop per call. For a thread that does nothing but run calls
    (a Dask worker's task running a partition). As with the signal, a call blocked in one long
    C call (``time.sleep`` included) sees the timeout only once that call returns.

    Example:
        >>> with timeouts_in_place():
        ...     call_with_timeout(sum, ([1, 2],), 5.0)
        3
    """
    previous = getattr(_INVOKERS, "in_place", False)
    _INVOKERS.in_place = threading.current_thread() is not _main_thread()
    try:
        yield
    finally:
        _INVOKERS.in_place = previous


class _Watchdog:
    """Raises ``FunctionTimeout`` in threads that passed their deadline (one thread for all)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._armed: dict[int, tuple[float, int]] = {}  # thread ident -> (deadline, token)
        self._token = 0
        threading.Thread(target=self._loop, daemon=True, name="segfn-watchdog").start()

    def arm(self, timeout: float) -> int:
        with self._lock:
            self._token += 1
            self._armed[threading.get_ident()] = (time.monotonic() + timeout, self._token)
            self._wake.notify()
            return self._token

    def disarm(self, token: int) -> None:
        ident = threading.get_ident()
        with self._lock:
            entry = self._armed.get(ident)
            if entry is not None and entry[1] == token:
                del self._armed[ident]
                return
        # it fired: a FunctionTimeout not yet raised (the call returned just then) is dropped
        _async_raise(ident, None)

    def _loop(self) -> None:
        with self._lock:
            while True:
                if not self._armed:
                    self._wake.wait()
                    continue
                ident, (deadline, _) = min(self._armed.items(), key=lambda item: item[1][0])
                left = deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                del self._armed[ident]
                _async_raise(ident, FunctionTimeout)


def _async_raise(ident: int, exc: type[BaseException] | None) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc))


_WATCHDOG: list[_Watchdog] = []
_WATCHDOG_LOCK = threading.Lock()


def _watchdog() -> _Watchdog:
    if not _WATCHDOG:
        with _WATCHDOG_LOCK:
            if not _WATCHDOG:
                _WATCHDOG.append(_Watchdog())
    return _WATCHDOG[0]
