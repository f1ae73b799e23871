"""Invocations in worker processes that can be stopped for real: time and memory limits.

A function runs in a worker process (a child Python started with :mod:`subprocess`), never in
the caller's. The caller sends payloads in chunks; the worker runs them one after another and
streams each result back as soon as it is ready, so a chunk's finished results survive
whatever happens to the call after them. A worker that passes a limit is killed and replaced,
and the rest of its chunk runs on the new one:

============================== ================================================================
what the function does          that payload's row (every other payload still runs)
============================== ================================================================
runs past its time limit        ``FunctionTimeout``: a signal interrupts Python code at the
                                limit; a call that ignores it (a bare ``except:`` in a loop)
                                or sits in one long C call is killed ``grace`` seconds later
allocates past the memory limit ``MemoryLimitExceeded`` (the worker's address space is capped
                                with ``RLIMIT_AS``; the worker is replaced afterwards)
``os._exit``, a crash           ``WorkerExit`` with the exit code or signal
``KeyboardInterrupt``,          ``error`` naming the exception (the worker ignores the real
``SystemExit``, any             Ctrl-C: the caller handles that)
``BaseException``
``sys.stdout.close()``          nothing special: the streams it sees are its own, per call
============================== ================================================================

Limits (defaults as Segment's where Segment has one): :data:`DEFAULT_TIMEOUT` (5 s per call)
and :data:`DEFAULT_MEMORY_LIMIT` (512 MiB of address space per worker on top of what it holds
once the function is loaded; Linux enforces it, other systems have no memory limit).

What the function prints (``print``, ``sys.stdout``/``sys.stderr``) is captured inside the
worker, per call, with secrets masked: other threads of the caller never end up in a
payload's logs. Output written to file descriptor 1 directly goes to the caller's stderr,
never into its stdout (which may be JSON Lines).

The worker loads the function from its source text and file name (so a notebook cell works
as well as a file), with the caller's ``sys.path``. Module-level code therefore runs once in
the caller (to read the function's kind and settings) and once per worker.

Example:
    >>> from segfn_kit.runtime import Function, Request
    >>> fn = Function.from_source('''
    ... from segfn_kit.runtime import Segment
    ... def on_request(request, settings):
    ...     print("seen", request.json()["n"])
    ...     Segment.track(user_id="u1", event="Pinged")
    ... ''')
    >>> with WorkerPool(fn) as pool:
    ...     [(r.invocation.outcome, r.logs) for r in pool.map([Request(b'{"n": 1}')])]
    [('ok', 'seen 1\\n')]
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import io
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import EllipsisType
from typing import Any, Literal

from ._errors import FunctionLoadError, FunctionTimeout
from ._function import DEFAULT_TIMEOUT, Function, Invocation, _line_in, _timeout_text
from ._pipes import Pipe, wait
from ._request import Request
from ._settings import mask_text

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_MEMORY_LIMIT",
    "Call",
    "CallResult",
    "HostCallError",
    "WorkerPool",
    "host_call",
]

DEFAULT_MEMORY_LIMIT = 512 * 2**20
"""Bytes of address space a worker may add to what it holds after loading the function."""

DEFAULT_GRACE = 0.5
"""Seconds past the time limit before a call that ignored the timeout signal is killed."""

_CHUNK = 256  # payloads per message to a worker
_DEPTH = 2  # chunks in flight per worker: the next one waits in its pipe
_CHUNK_BYTES = 256 << 10  # about the most request bytes per chunk (a pipe holds 1 MiB)
_RESULTS_BUDGET = 16 << 20  # bytes of read results past which a worker's file is emptied
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_START_TIMEOUT = 60.0  # seconds a worker may take to start and load the function
_POLL = 0.05  # seconds between looks at a busy worker's results while a deadline runs

CallKind = Literal["request", "event", "batch", "raw"]
Call = tuple[CallKind, Any]
"""One invocation to run: ``("request", Request)`` (or the request's wire form, see
:meth:`Request.to_wire`), ``("event", dict)``, ``("batch", [dict])``,
or ``("raw", data)``: data the pool's ``raw`` hook turns into a request in the worker."""


@dataclass(slots=True)
class CallResult:
    """What one isolated call gave.

    Attributes:
        invocation: the :class:`Invocation` (events, outcome, error, ...).
        logs: what the function printed during the call, secrets masked.
        digest: the request's body digest, when the call computed one (so callers can cache it).
        issues: what the pool's ``check`` found in an ``ok`` invocation, computed in the
            worker beside the caller; ``None`` when it did not run.
        reply: what the pool's ``raw`` hook made of a ``("raw", data)`` call's invocation
            (``None`` for other calls).
    """

    invocation: Invocation
    logs: str
    digest: str | None = None
    issues: list[dict[str, Any]] | None = None
    reply: Any = None


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


# -- the caller's side -------------------------------------------------------------------


def _spawn(read_fd: int, write_fd: int, results_fd: int) -> subprocess.Popen[bytes]:
    """A worker started as a new interpreter, given its pipe ends and results file."""
    root = str(Path(__file__).resolve().parents[2])
    code = (
        "import sys; sys.path.insert(0, sys.argv[4]); "
        "from segfn_kit.runtime._isolation import _worker_main; "
        "_worker_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(read_fd), str(write_fd), str(results_fd), root],
        pass_fds=(read_fd, write_fd, results_fd),
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )


class _Worker:
    """One worker process: a pipe each way for messages, and a results file.

    Results go to the file (framed pickles written with one ``write`` each): writing to a
    file wakes nobody, so a chunk costs one notification, and what a killed worker wrote
    is still there to read.
    """

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        """Start a blank worker: Python with the runtime (and ``preload``) imported,
        waiting for a function."""
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        self.results = _results_file()
        self.process: subprocess.Popen[bytes] | _Forked
        try:
            self.process = (_Forked.start(child_r, child_w, self.results) if _can_fork()
                            else _spawn(child_r, child_w, self.results))
        except BaseException:
            for fd in (parent_r, parent_w, self.results):
                os.close(fd)
            raise
        finally:
            os.close(child_r)
            os.close(child_w)
        self.reader = Pipe(parent_r)
        self.writer = Pipe(parent_w)
        self._init_state(preload)

    def _init_state(self, preload: tuple[str, ...]) -> None:
        modules = [*_PRELOAD, *(m for m in preload if m not in _PRELOAD)]
        if modules:  # imported while the worker waits for a function (a spare waits long)
            self.writer.send(("preload", modules))
        self.pending: collections.deque[tuple[int, Call, float | None]] = collections.deque()  # index, call, limit
        self.started = 0.0  # when the call at the head of ``pending`` started (monotonic)
        self.offset = 0  # how far the results file was read
        self.recycle = False  # the worker asked to be replaced (it hit its memory limit)
        self.inflight = 0  # chunks sent whose end the worker has not reported yet
        self._capacity: int | None = None

    def load(self, pool: WorkerPool) -> None:
        """Load the pool's function in the worker; raise ``FunctionLoadError`` if it fails."""
        filename = pool.function.filename
        try:
            self.writer.send(
                (
                    "load",
                    pool.function.source,
                    filename,
                    list(sys.path),
                    pool.settings_values,
                    pool.memory_limit,
                    pool.timeout,
                    pool.prepare,
                    pool.context,
                    pool.check,
                    pool.raw,
                )
            )
        except OSError:  # a spare that died while it waited
            code = self.kill()
            raise FunctionLoadError(f"the worker process ended before it started ({_exit_text(code)})", filename=filename) from None
        if not self.reader.poll(_START_TIMEOUT):
            self.kill()
            raise FunctionLoadError(
                f"the worker process did not load the function within {_START_TIMEOUT:g} s",
                filename=filename,
            )
        try:
            answer = self.reader.recv()
        except EOFError:
            code = self.kill()
            raise FunctionLoadError(
                f"the worker process ended while loading the function ({_exit_text(code)})",
                filename=filename,
            ) from None
        if answer[0] != "loaded":
            self.kill()
            raise FunctionLoadError(answer[1], filename=filename, line=answer[2])

    def submit(self, items: list[tuple[int, Call]], limit: float | None) -> bool:
        """Send a chunk of calls, each with the time limit ``limit``; ``False`` (nothing
        sent) when the worker is busy and the chunk would not fit in its pipe.

        A busy worker gets the next chunk only when the pipe takes it whole: a write never
        blocks on a worker that runs (or hangs in) a call, so its limits are still watched.
        """
        blob = pickle.dumps(("run", [(index, _wire(call), limit) for index, call in items]), _PROTOCOL)
        if self.inflight and len(blob) + 16 > self.capacity - self.unread():
            return False
        if not self.inflight:
            # the worker is idle and every result was read: empty its results file (the
            # file offset is shared with it)
            os.ftruncate(self.results, 0)
            os.lseek(self.results, 0, os.SEEK_SET)
            self.offset = 0
        if not self.pending:
            self.started = time.monotonic()
        self.pending.extend((index, call, limit) for index, call in items)
        self.inflight += 1
        try:
            self.writer.send_bytes(blob)
        except OSError:  # it just ended (os._exit in the chunk before): collecting it says so,
            pass  # and its pending calls, these included, run on another worker
        return True

    def has_room(self) -> bool:
        """Whether another chunk may be sent before the ones in flight finish: at most
        :data:`_DEPTH` in flight, the worker took the last one from its pipe, and the
        results file is emptied now and then."""
        return (
            self.inflight < _DEPTH
            and self.offset < _RESULTS_BUDGET
            and self.capacity > 0
            and self.unread() == 0
        )

    @property
    def capacity(self) -> int:
        """Bytes the pipe to the worker holds (made 1 MiB where Linux allows); 0 where the
        free space cannot be read (then a worker has one chunk at a time)."""
        if self._capacity is None:
            self._capacity = _pipe_capacity(self.writer.fileno())
        return self._capacity

    def unread(self) -> int:
        """Bytes sent to the worker that it has not read yet."""
        import array
        import fcntl
        import termios

        buffer = array.array("i", [0])
        try:
            fcntl.ioctl(self.writer.fileno(), termios.FIONREAD, buffer)
        except OSError:
            return self.capacity
        return buffer[0]

    def drain(self, done: dict[int, CallResult]) -> None:
        """Move the results written so far from the file to ``done``."""
        size = os.fstat(self.results).st_size
        if size <= self.offset:
            return
        data = os.pread(self.results, size - self.offset, self.offset)
        pos, end = 0, len(data)
        loads = pickle.loads
        while pos + 4 <= end and self.pending:
            n = int.from_bytes(data[pos : pos + 4], "little")
            if pos + 4 + n > end:  # still being written
                break
            index, fields, logs, digest, recycle, issues, reply = loads(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
            result = CallResult(Invocation(*fields), logs, digest, issues, reply)
            self.pending.popleft()
            done[index] = result
            self.started = time.monotonic()
            self.recycle = self.recycle or recycle
        self.offset += pos

    def kill(self) -> int | None:
        """Stop the process now; its exit code (negative: the signal)."""
        with contextlib.suppress(OSError):
            self.process.kill()
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process SIGKILL cannot stop
            code = None
        self.close()
        return code

    def close(self) -> None:
        self.reader.close()
        self.writer.close()
        with contextlib.suppress(OSError):
            os.close(self.results)

    def stop(self) -> None:
        """End the process (it holds nothing to save: a kill is the quickest way)."""
        self.kill()


_PRELOAD: list[str] = []  # modules every worker imports while it waits (see preload)


def preload(*modules: str) -> None:
    """Have every worker started from now on import ``modules`` while it waits for a
    function, so a pool's ``check`` (or ``prepare``) hook costs no import when a run starts.

    Example:
        >>> preload("json")
        >>> "json" in _PRELOAD
        True
    """
    for name in modules:
        if name not in _PRELOAD:
            _PRELOAD.append(name)


def _can_fork() -> bool:
    """Whether a worker can be forked from this process rather than started afresh.

    A forked worker has the runtime imported already (no new interpreter to boot: most of a
    cold start's cost), but forking is safe only while this process runs one thread (a lock
    another thread holds would stay locked in the child forever). Elsewhere (a notebook
    kernel, a threaded server, Windows) workers start as new interpreters.
    """
    if not hasattr(os, "fork") or os.environ.get("SEGFN_WORKER_START", "").strip().lower() == "spawn":
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1  # every OS thread, not only Python's
    except OSError:
        return threading.active_count() == 1 and sys.platform != "darwin"  # macOS frameworks are not fork-safe


class _Forked:
    """A worker forked from this process: what ``_Worker`` needs of a ``subprocess.Popen``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    @classmethod
    def start(cls, read_fd: int, write_fd: int, results_fd: int) -> _Forked:
        for stream in (sys.stdout, sys.stderr):  # what is buffered is written once, here
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid:
            return cls(pid)
        code = 1
        try:  # the child: keep only its own descriptors, then serve as a worker
            import gc

            gc.freeze()  # the parent's objects are not the child's to collect (no __del__ of theirs runs here)
            with contextlib.suppress(ValueError, OSError):
                signal.set_wakeup_fd(-1)  # an event loop's wakeup descriptor belongs to the parent
            for signum in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            sys.argv[:] = ["-c", str(read_fd), str(write_fd), str(results_fd)]  # as a started worker sees it
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            keep = sorted({0, 1, 2, read_fd, write_fd, results_fd})
            for low, high in zip([-1, *keep], [*keep, 1 << 16], strict=True):
                if low + 1 < high:  # closerange(n, n) would close everything from n on
                    os.closerange(low + 1, high)
            _worker_main(read_fd, write_fd, results_fd)
            code = 0
        except BaseException as exc:  # the worker's own failure: said on stderr, then exit
            with contextlib.suppress(Exception):
                os.write(2, f"segfn worker {os.getpid()}: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -signal.SIGKILL  # reaped elsewhere: gone
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.poll() is None and hasattr(os, "pidfd_open"):
            # woken the moment it ends (a killed worker), not at the next poll
            try:
                fd = os.pidfd_open(self.pid)
            except OSError:
                pass
            else:
                try:
                    import select

                    select.select([fd], [], [], timeout)
                finally:
                    os.close(fd)
        delay = 0.0005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        assert self.returncode is not None
        return self.returncode


# blank workers started ahead, so a run need not wait for one; by the modules a pool
# preloads besides ``_PRELOAD`` (``WorkerPool(preload=)``)
_SPARES: dict[tuple[str, ...], list[_Worker]] = {}
_SPARES_LOCK = threading.Lock()
_MAX_SPARES = 1


def _blank_worker(preload: tuple[str, ...] = (), *, replace: bool = True) -> _Worker:
    """A started blank worker (a spare when one is ready), and, with ``replace``, a new
    spare in its place (else the caller starts it later, with :func:`_replace_spare`)."""
    with _SPARES_LOCK:
        spares = _SPARES.get(preload)
        worker = spares.pop() if spares else None
    if worker is None or worker.process.poll() is not None:
        if worker is not None:
            worker.kill()
        worker = _Worker(preload)
    if replace:
        _replace_spare(preload)
    return worker


def _replace_spare(preload: tuple[str, ...] = ()) -> None:
    """Start a spare when none is ready (a fork costs a millisecond when it is needed: a
    spare is for new interpreters)."""
    if not _can_fork():
        _replenish(preload)


def start_spare(preload: tuple[str, ...] = ()) -> None:
    """Start a blank worker ahead of the first pool (a handler's cold start overlaps it).

    ``preload``: modules the spare imports while it waits (a pool made with the same
    ``preload`` takes it), e.g. ``("httpx",)`` for destination functions.
    """
    _replenish(preload)


def _replenish(preload: tuple[str, ...] = ()) -> None:
    with _SPARES_LOCK:
        spares = _SPARES.setdefault(preload, [])
        if len(spares) < _MAX_SPARES:
            spares.append(_Worker(preload))


@atexit.register
def _stop_spares() -> None:
    with _SPARES_LOCK:
        spares = [w for group in _SPARES.values() for w in group]
        _SPARES.clear()
    for worker in spares:
        worker.kill()


def _results_file() -> int:
    """An unnamed file (in memory on Linux) for a worker's results."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("segfn-results", 0)
    import tempfile

    fd, path = tempfile.mkstemp(prefix="segfn-results-")
    os.unlink(path)
    return fd


def _pipe_capacity(fd: int) -> int:
    """The pipe's size after asking for 1 MiB, or 0 where it cannot be known (not Linux)."""
    try:
        import fcntl
        import termios  # noqa: F401  (FIONREAD, read by _Worker.unread)

        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        return int(fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ))
    except (ImportError, AttributeError, OSError):
        return 0


def _exit_text(code: int | None) -> str:
    if code is None:
        return "it could not be stopped"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"


def _wire(call: Call) -> tuple[str, Any]:
    """A call as plain data: a ``Request`` as :meth:`Request.to_wire` gives it (the parsed
    body stays behind: the worker parses the bytes, as fast as it would unpickle the value),
    unless the caller gave it in that form already (a tuple :meth:`Request.from_wire` reads)."""
    kind, value = call
    if kind == "request" and type(value) is not tuple:
        return (kind, value.to_wire())
    return (kind, value)


def _take_chunk(queue: collections.deque[tuple[int, Call]], size: int) -> list[tuple[int, Call]]:
    """Up to ``size`` calls from the front of ``queue``, and at most about
    :data:`_CHUNK_BYTES` of request bodies (at least one call)."""
    chunk = [queue.popleft()]
    total = _bytes_of(chunk[0][1])
    while queue and len(chunk) < size and total < _CHUNK_BYTES:
        item = queue.popleft()
        chunk.append(item)
        total += _bytes_of(item[1])
    return chunk


def _bytes_of(call: Call) -> int:
    kind, value = call
    if kind == "request":
        return len(value[0] if type(value) is tuple else value.content) + 256
    if kind == "raw":  # its data, or the data's last item (a line after its number), counts
        last = value[-1] if type(value) is tuple and value else value
        return 256 + len(last) if type(last) is bytes or isinstance(last, str) else 1024
    return 1024


def _wake(future: Any, value: Any) -> None:
    if not future.done():
        future.set_result(value)


class WorkerPool:
    """Worker processes running one function, each call under a time and a memory limit.

    Args:
        function: the loaded function; its source and file name are sent to the workers.
        settings: the setting values (secret ones are masked in errors and logs, as in-process).
        timeout: seconds per call (``None`` or 0: no time limit).
        memory_limit: bytes of address space per worker beyond what the loaded function
            holds (``None``: no memory limit).
        workers: how many processes run calls in parallel.
        grace: seconds past ``timeout`` before a call that ignored the timeout is killed.
        chunk_size: payloads per message to a worker.
        preload: modules a new worker imports before it loads the function (started
            ahead as a spare, so a pool's first call need not wait for them).
        prepare: ``"module:function"`` called on each ``Request`` in the worker before the
            handler (for example a faster JSON parse), or ``None``.
        check: ``"module:function"`` called in the worker as ``check(events, objects,
            problems)`` after each ``ok`` call; what it returns (a list of dicts) is the
            result's ``issues`` (for example spec validation, done beside the caller), or
            ``None``.
        context: ``"module:function"`` returning a context manager entered around each call
            in the worker (for example scripted HTTP answers), or ``None``.
        raw: ``"module:function"`` called in the worker as ``raw(data, call)`` for each
            ``("raw", data)`` call (for example a line of an archive, read there rather
            than here): ``call(request)`` runs the function on a request under the pool's
            limits and returns its :class:`Invocation`; ``raw`` returns ``(invocation,
            reply)``, its own invocation for data the function never sees. The invocation
            comes back without its events, objects, problems and return value, and
            ``reply`` (what the caller needs of them, say counts or encoded events) as the
            result's ``reply``. ``None``: raw calls fail.
        host: called in this process, as ``host(kind, payload)``, for each
            :func:`host_call` the function's worker makes during a call (for example an
            HTTP request answered by a script that lives here); what it returns, or the
            text of what it raises, goes back to the worker. ``None``: host calls fail.

    A pool is thread-safe: :meth:`call` may be used from many threads (a web server's), and
    a call blocks only its own thread. Use it as a context manager, or call :meth:`close`.

    Example:
        >>> fn = Function.from_source("def on_request(r, s):\\n    while True: pass\\n")
        >>> with WorkerPool(fn, timeout=0.2) as pool:
        ...     pool.call(("request", Request(b"{}"))).invocation.error.split(":")[0]
        'FunctionTimeout'
    """

    def __init__(
        self,
        function: Function,
        settings: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
        workers: int = 1,
        grace: float = DEFAULT_GRACE,
        chunk_size: int = _CHUNK,
        prepare: str | None = None,
        context: str | None = None,
        check: str | None = None,
        raw: str | None = None,
        host: Callable[[str, Any], Any] | None = None,
        preload: tuple[str, ...] = (),
    ):
        self.function = function
        self.settings_values = dict(settings or {})
        self.timeout = timeout if timeout and timeout > 0 else None
        self.memory_limit = memory_limit
        self.size = max(1, workers)
        self.grace = grace
        self.chunk_size = max(1, chunk_size)
        self.prepare = prepare
        self.context = context
        self.check = check
        self.raw = raw
        self.host = host
        self.preload = tuple(preload)
        self._secrets = function.settings(self.settings_values).secret_values()
        self._idle: list[_Worker] = []
        self._count = 0  # workers alive (idle or busy)
        self._starting = 0  # workers being started aside (see _start_aside)
        self._aside: threading.Thread | None = None
        self._lock = threading.Lock()
        self._free = threading.Condition(self._lock)
        self._closed = False
        self._waiters: collections.deque[Any] = collections.deque()  # asyncio futures of acall()s waiting for a worker
        self._starter: Any = None  # the thread acall() starts workers in (made on first use)
        # while map() runs, a spare taken is replaced only when it ends: a new interpreter
        # booting beside a batch takes a core from it (about 0.3 s of CPU), and the next
        # batch (the preview's next refresh) finds the spare ready all the same
        self._mapping = 0
        self._spare_owed = False
        self.replaced = 0
        """How many workers were killed (or died) and replaced so far."""

    # -- public ------------------------------------------------------------------------
    def map(self, calls: Iterable[Request | Call]) -> Iterator[CallResult]:
        """Run every call, in chunks, yielding results in input order as they finish.

        A ``Request`` stands for ``("request", request)``.
        """
        queue: collections.deque[tuple[int, Call]] = collections.deque()
        source = enumerate(calls)
        exhausted = False
        busy: dict[Pipe, _Worker] = {}
        done: dict[int, CallResult] = {}
        expected = 0
        with self._lock:
            self._mapping += 1
        try:
            while True:
                # hand chunks to idle workers
                while not exhausted and len(queue) < self.chunk_size * self.size * _DEPTH:
                    try:
                        index, call = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    queue.append((index, ("request", call) if isinstance(call, Request) else call))
                while queue:
                    # an idle worker (the first one waited for), else a busy one with room;
                    # more workers start aside, so the ones running are fed meanwhile
                    worker = self._take_idle() if len(busy) < self.size else None
                    if worker is None and not busy:
                        worker = self._acquire(block=True)
                    if worker is not None:
                        busy[worker.reader] = worker
                    else:
                        if len(busy) < self.size:
                            self._start_aside()
                        worker = next((w for w in busy.values() if w.has_room()), None)
                        if worker is None:
                            break
                    chunk = _take_chunk(queue, self.chunk_size)
                    if not worker.submit(chunk, self.timeout):  # its pipe is full: later
                        queue.extendleft(reversed(chunk))
                        break
                while expected in done:
                    yield done.pop(expected)
                    expected += 1
                if not busy:
                    if exhausted and not queue:
                        if done:  # a result went missing: never end a run short in silence
                            raise RuntimeError(f"worker pool lost the result of call {expected}")
                        return
                    continue
                for worker in self._collect(busy, done):
                    del busy[worker.reader]
                    if worker.pending:  # killed mid-chunk: the rest runs on another worker
                        queue.extendleft((i, c) for i, c, _ in reversed(worker.pending))
                        worker.pending.clear()
                while expected in done:
                    yield done.pop(expected)
                    expected += 1
        finally:
            for worker in busy.values():  # abandoned half-way (the caller stopped reading)
                self._discard(worker)
            with self._lock:
                self._mapping -= 1
                owed = self._spare_owed and not self._mapping
                if owed:
                    self._spare_owed = False
            if owed:
                _replace_spare(self.preload)

    def call(self, call: Request | Call, *, timeout: float | EllipsisType | None = ...) -> CallResult:
        """Run one call on a free worker (waits for one) and return its result.

        ``timeout`` overrides the pool's time limit for this call (a Lambda's remaining time).
        """
        item: Call = ("request", call) if isinstance(call, Request) else call
        limit = self.timeout if timeout is ... else (timeout if timeout and timeout > 0 else None)
        worker = self._acquire(block=True)
        assert worker is not None
        worker.submit([(0, item)], limit)
        done: dict[int, CallResult] = {}
        busy = {worker.reader: worker}
        # until the worker is released or replaced: its result may be read before it says
        # that it is done (and a worker never released would leave the pool short)
        while not self._collect(busy, done):
            pass
        if 0 not in done:  # pragma: no cover - a worker always answers or dies
            raise RuntimeError("worker pool lost the result of the call")
        return done[0]

    async def acall(self, call: Request | Call, *, timeout: float | EllipsisType | None = ...) -> CallResult:
        """:meth:`call` for asyncio code (an ASGI handler): no thread per call.

        It waits for a free worker on the event loop, hands it the call, and waits for the
        worker's pipe to become readable (``loop.add_reader``) or for the call's deadline (a
        timer on the loop), then reads the result as :meth:`call` does: a call past its limit
        is killed with its worker and answered ``FunctionTimeout``. Starting a worker (the
        first call, or one replacing a killed worker) loads the function off the loop.
        """
        import asyncio

        loop = asyncio.get_running_loop()
        item: Call = ("request", call) if isinstance(call, Request) else call
        limit = self.timeout if timeout is ... else (timeout if timeout and timeout > 0 else None)
        worker = await self._aacquire(loop)
        try:
            worker.submit([(0, item)], limit)
        except BaseException:
            self._discard(worker)
            raise
        done: dict[int, CallResult] = {}
        busy = {worker.reader: worker}
        fd = worker.reader.fileno()
        try:
            while True:
                ready: asyncio.Future[bool] = loop.create_future()
                deadline = self._deadline(worker)
                loop.add_reader(fd, _wake, ready, True)  # True: the pipe is readable
                timer = (loop.call_later(max(0.0, deadline - time.monotonic()), _wake, ready, False)
                         if deadline is not None else None)
                try:
                    readable = await ready
                finally:
                    loop.remove_reader(fd)
                    if timer is not None:
                        timer.cancel()
                # released, or killed and replaced (a readable pipe is not polled again)
                if self._collect(busy, done, ready=[worker.reader] if readable else None):
                    break
        except BaseException:  # cancelled mid-call: the worker's state is unknown, end it
            if not done:
                self._discard(worker)
            raise
        finally:
            self._wake_waiter()
        if 0 not in done:  # pragma: no cover - a worker always answers or dies
            raise RuntimeError("worker pool lost the result of the call")
        return done[0]

    async def _aacquire(self, loop: Any) -> _Worker:
        """A free worker, waited for on the event loop (a new one started off the loop)."""
        import asyncio

        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the worker pool is closed")
                if self._idle:
                    return self._idle.pop()
                can_start = self._count < self.size
            if can_start:
                if self._starter is None:  # one thread starts workers for every async call
                    from concurrent.futures import ThreadPoolExecutor

                    self._starter = ThreadPoolExecutor(1, thread_name_prefix="segfn-worker-start")
                worker: _Worker | None = await loop.run_in_executor(self._starter, self._acquire_now)
                if worker is not None:
                    return worker
                continue
            # handed a worker when an asynchronous call frees one (first come, first served);
            # a blocking caller's worker (another thread) wakes nobody here, hence the timer:
            # it looks now and then, and wakes this call only when there is something to take
            waiter: asyncio.Future[_Worker | None] = loop.create_future()
            self._waiters.append(waiter)
            timers: list[asyncio.TimerHandle] = []
            timers.append(loop.call_later(_POLL, self._look, waiter, timers, loop))
            try:
                handed = await waiter
            except BaseException:  # cancelled: a worker handed over meanwhile goes back
                back = waiter.result() if waiter.done() and not waiter.cancelled() else None
                if back is not None:
                    self._release(back)
                    self._wake_waiter()
                raise
            finally:
                timers[-1].cancel()
                if waiter in self._waiters:  # (a remove that misses formats the future's repr)
                    self._waiters.remove(waiter)
            if handed is not None:
                return handed

    def _look(self, waiter: Any, timers: list[Any], loop: Any) -> None:
        """Wake a waiting async call if there is a worker to take (or room to start one),
        else look again later."""
        with self._lock:
            ready = self._closed or bool(self._idle) or self._count < self.size
        if waiter.done():
            return
        if ready:
            waiter.set_result(None)
        else:
            timers.append(loop.call_later(_POLL, self._look, waiter, timers, loop))

    def _acquire_now(self) -> _Worker | None:
        return self._acquire(block=False)

    def _wake_waiter(self) -> None:
        """Hand an idle worker to the async call that has waited longest (a call arriving
        meanwhile does not take it first), or wake it to start one where the pool has room."""
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            with self._lock:
                worker = self._idle.pop() if self._idle else None
                room = self._count < self.size
            if worker is None and not room:
                return
            self._waiters.popleft()
            waiter.set_result(worker)
            return

    def close(self) -> None:
        """Stop every idle worker (busy ones stop when their call returns)."""
        if self._starter is not None:
            self._starter.shutdown(wait=False)
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._free.notify_all()
        for worker in idle:
            worker.stop()
        aside = self._aside
        if aside is not None and aside is not threading.current_thread():
            aside.join(_START_TIMEOUT)  # a worker starting aside is stopped as it joins

    def __del__(self) -> None:
        # a pool dropped without close() (a handler module reloaded) ends its workers too
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers -----------------------------------------------------------------------
    def _acquire(self, *, block: bool) -> _Worker | None:
        with self._lock:
            while True:
                if self._closed:
                    raise RuntimeError("the worker pool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._count < self.size:
                    self._count += 1
                    break
                if not block:
                    return None
                self._free.wait()
        with self._lock:
            replace = not self._mapping
            self._spare_owed = self._spare_owed or not replace
        try:
            worker = _blank_worker(self.preload, replace=replace)
            worker.load(self)
            return worker
        except BaseException:
            with self._lock:
                self._count -= 1
                self._free.notify()
            raise

    def _take_idle(self) -> _Worker | None:
        """An idle worker of this pool, or ``None``; never waits or starts one."""
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _start_aside(self) -> None:
        """Start one more worker (while the pool may grow) in a thread; it joins the idle
        workers once its function is loaded. A worker that fails to start is left out.

        Where a worker can be forked (this process runs one thread), it is started here and
        now instead: a fork and the function's load take milliseconds, while from a thread
        it would be a new interpreter, booting on a CPU the running workers need."""
        with self._lock:
            if self._closed or self._starting or self._count >= self.size:
                return
            self._starting += 1

        def start() -> None:
            try:
                worker = self._acquire(block=False)
                if worker is not None:
                    self._release(worker)
            except Exception:  # the workers running carry the calls
                pass
            finally:
                with self._lock:
                    self._starting -= 1

        if _can_fork():
            start()
            return
        thread = threading.Thread(target=start, daemon=True, name="segfn-worker-start")
        self._aside = thread
        thread.start()

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                self._free.notify()
                return
            self._count -= 1
        worker.stop()

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._lock:
            self._count -= 1
            self.replaced += 1
            self._free.notify()

    def _deadline(self, worker: _Worker) -> float | None:
        limit = worker.pending[0][2] if worker.pending else None
        if limit is None:
            return None
        return worker.started + limit + self.grace

    def _collect(
        self, busy: dict[Pipe, _Worker], done: dict[int, CallResult], *, ready: Iterable[Pipe] | None = None,
    ) -> list[_Worker]:
        """Wait for results of busy workers (up to the nearest deadline); store them in
        ``done``; return the workers that finished their chunk, died or were killed.

        ``ready``: the pipes known to be readable (an event loop said so), not waited on again.
        """
        if ready is None:
            deadlines = [d for d in map(self._deadline, busy.values()) if d is not None]
            wait_for = min(_POLL, max(0.0, min(deadlines) - time.monotonic())) if deadlines else None
            readable: set[Any] = set(wait(list(busy), wait_for))
        else:
            readable = set(ready)
        finished: list[_Worker] = []
        now = time.monotonic()
        for conn, worker in busy.items():
            ended = broken = False
            if conn in readable:
                try:
                    # a chunk is done (every result of it is in the file); maybe two; or the
                    # call asks this process something (a host call: it still runs)
                    message = worker.reader.recv_bytes()
                    while True:
                        if message[:1] == _HOST_CALL:
                            worker.drain(done)
                            broken = not _answer_host_call(self.host, worker, message, self._deadline(worker))
                            now = time.monotonic()
                            if broken:  # its inbox holds half an answer: killed below
                                break
                        else:
                            worker.inflight -= 1
                        if not (worker.inflight and worker.reader.poll(0)):
                            break
                        message = worker.reader.recv_bytes()
                except (EOFError, OSError):
                    ended = True
            worker.drain(done)
            if worker.recycle:
                self._discard(worker)
                finished.append(worker)
                continue
            if ended:
                code = worker.kill()
                self._forget(worker)
                if worker.pending:
                    index, _, _ = worker.pending.popleft()
                    done[index] = self._failure(
                        f"WorkerExit: the function ended its worker process ({_exit_text(code)}); "
                        "a function returns or raises, it never exits the process",
                    )
                finished.append(worker)
                continue
            if not worker.inflight:
                self._release(worker)
                finished.append(worker)
                continue
            deadline = self._deadline(worker)
            if deadline is not None and (now >= deadline or broken) and worker.pending:
                index, _, limit = worker.pending.popleft()
                elapsed = now - worker.started
                self._discard(worker)
                finished.append(worker)
                done[index] = self._failure(
                    f"FunctionTimeout: the function ran past its {limit:g} s limit and "
                    "did not stop; its worker process was killed (Segment retries timeouts)",
                    duration=elapsed,
                    timed_out=True,
                )
        return finished

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._count -= 1
            self.replaced += 1
            self._free.notify()

    def _failure(self, text: str, *, duration: float = 0.0, timed_out: bool = False) -> CallResult:
        message = mask_text(text, self._secrets) if self._secrets else text
        return CallResult(Invocation(outcome="error", error=message, duration=duration, timed_out=timed_out), "")


# -- the worker's side -------------------------------------------------------------------


class _Capture(io.StringIO):
    """A call's ``sys.stdout`` and ``sys.stderr``: closing it does not lose what was printed."""

    def close(self) -> None:
        self.closed_by_function = True

    closed_by_function = False


def _import_quietly(modules: Iterable[str]) -> None:
    """Import modules ahead; one that fails is imported (and fails) again when used."""
    import importlib

    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _resolve(spec: str | None) -> Callable[..., Any] | None:
    if not spec:
        return None
    import importlib

    module, _, name = spec.partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


def _address_space() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _limit_memory(limit: int | None) -> int | None:
    """Cap the address space at what is mapped now plus ``limit``; the cap, or ``None``."""
    if limit is None:
        return None
    try:
        import resource

        cap = _address_space() + limit
        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ImportError, OSError, ValueError):  # no /proc or no RLIMIT_AS: no memory limit here
        return None
    return cap


def _worker_main(read_fd: int, write_fd: int, results_fd: int) -> None:
    """The worker process: load the function, then run chunks until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    os.dup2(2, 1)  # output written to fd 1 never reaches the caller's stdout
    inbox = Pipe(read_fd)
    outbox = Pipe(write_fd)
    _HOST.channel = (inbox, outbox)
    try:
        message = inbox.recv()
        while message[0] == "preload":
            _import_quietly(message[1])
            message = inbox.recv()
    except (EOFError, OSError):
        return
    if message[0] != "load":
        return
    _, source, filename, path, values, memory_limit, _, prepare_spec, context_spec, check_spec, raw_spec = message
    sys.path[:] = path
    try:
        fn = Function.from_source(source, filename=filename)
        prepare = _resolve(prepare_spec)
        context = _resolve(context_spec)
        check = _resolve(check_spec)
        raw = _resolve(raw_spec)
    except FunctionLoadError as exc:
        outbox.send(("error", exc.reason, exc.line))
        return
    except BaseException as exc:
        outbox.send(("error", f"the worker could not start: {type(exc).__name__}: {exc}", None))
        return
    settings = fn.settings(values)
    secrets = settings.secret_values()
    _limit_memory(memory_limit)
    outbox.send(("loaded",))
    real_out, real_err = sys.stdout, sys.stderr
    alarm = _Alarm(fn)
    dumps, write = pickle.dumps, os.write
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            return
        if message[0] != "run":
            return
        for index, (kind, data), timeout in message[1]:
            buffer = _Capture()
            sys.stdout = sys.stderr = buffer
            digest: str | None = None
            reply: Any = None
            try:
                inv, digest, reply = _run_one(fn, kind, data, settings, timeout, prepare, context, alarm, raw)
            except BaseException as exc:
                inv = _error_of(exc, fn.filename, secrets)
            finally:
                sys.stdout, sys.stderr = real_out, real_err
            recycle = False
            if timeout and inv.duration > timeout and not inv.timed_out:
                # it swallowed the timeout signal and then returned: still past the limit
                inv = Invocation(
                    outcome="error",
                    events=inv.events,
                    objects=inv.objects,
                    error=_timeout_text(timeout),
                    duration=inv.duration,
                    timed_out=True,
                )
            elif inv.timed_out:
                inv.error = _timeout_text(timeout)
            elif inv.error and inv.error.startswith("MemoryError"):
                where = f" at {os.path.basename(fn.filename)}, line {inv.error_line}" if inv.error_line else ""
                inv.error = (
                    f"MemoryLimitExceeded: the function used more than its {_mib(memory_limit or 0)} "
                    f"memory limit (MemoryError{where})"
                )
                recycle = True
            text = buffer.getvalue()
            if text and secrets:
                text = mask_text(text, secrets)
            issues = None
            if check is not None and inv.outcome == "ok":
                try:
                    issues = check(inv.events, inv.objects, inv.problems)
                except Exception:  # the caller checks this one itself
                    issues = None
            fields = _fields(inv) if kind != "raw" else _bare_fields(inv)
            try:
                blob = dumps((index, fields, text, digest, recycle, issues, reply), _PROTOCOL)
            except Exception as exc:
                if kind == "request":  # what on_request returns means nothing: leave it behind
                    inv.returned = None
                    with contextlib.suppress(Exception):
                        blob = dumps((index, _fields(inv), text, digest, recycle, issues, None), _PROTOCOL)
                        write(results_fd, len(blob).to_bytes(4, "little") + blob)
                        continue
                inv = Invocation(
                    outcome="error",
                    error=(
                        f"TypeError: what the function emitted or returned cannot leave its "
                        f"worker process ({type(exc).__name__}: {exc})"
                    ),
                    duration=inv.duration,
                )
                blob = dumps((index, _fields(inv), text, digest, recycle, None, None), _PROTOCOL)
            write(results_fd, len(blob).to_bytes(4, "little") + blob)
            if recycle:
                return
        outbox.send_bytes(b"d")


def _fields(inv: Invocation) -> tuple[Any, ...]:
    # a tuple of plain values pickles several times faster than the dataclass
    return (inv.outcome, inv.events, inv.objects, inv.problems, inv.error, inv.error_line,
            inv.duration, inv.returned, inv.timed_out)


def _bare_fields(inv: Invocation) -> tuple[Any, ...]:
    # a raw call's invocation: what the caller needs of its events is in the reply
    return (inv.outcome, [], [], [], inv.error, inv.error_line, inv.duration, None, inv.timed_out)


class _Alarm:
    """The worker's time limit: one signal handler for its life, one timer for many calls.

    The handler raises :class:`FunctionTimeout` only while one of the function's handlers
    is on the stack, so a call that returned just as the timer fired is never reported as
    a timeout. The timer is left running when a call returns: the next call reuses it when
    it fires no later than that call's own limit, and when it fires early (set for an
    earlier call) it is set again for the rest, so each call gets its whole limit with no
    system call in between; one that fires between calls does nothing.
    """

    def __init__(self, fn: Function) -> None:
        self.codes = {getattr(h, "__code__", None) for h in fn.handlers.values()} - {None}
        self.deadline = 0.0  # when the running call runs out (monotonic); 0.0 between calls
        self.fires_at = 0.0  # when the timer set last fires (monotonic); 0.0: none is set
        signal.signal(signal.SIGALRM, self._fire)

    def _fire(self, signum: int, frame: Any) -> None:
        self.fires_at = 0.0
        if not self.deadline:
            return  # between calls: nothing ran out
        left = self.deadline - time.monotonic()
        if left > 0:  # set for an earlier call: wait for this one's own limit
            self._arm(left)
            return
        while frame is not None:
            if frame.f_code in self.codes:
                raise FunctionTimeout()
            frame = frame.f_back

    def _arm(self, seconds: float) -> None:
        self.fires_at = time.monotonic() + seconds
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def run(self, timeout: float | None, fn: Callable[..., Invocation], *args: Any) -> Invocation:
        if not timeout:
            return fn(*args, timeout=None)
        deadline = time.monotonic() + timeout
        if not self.fires_at or self.fires_at > deadline:
            self._arm(timeout)
        self.deadline = deadline
        try:
            return fn(*args, timeout=None)
        finally:
            self.deadline = 0.0


def _run_one(
    fn: Function,
    kind: str,
    data: Any,
    settings: Any,
    timeout: float | None,
    prepare: Callable[..., Any] | None,
    context: Callable[..., Any] | None,
    alarm: _Alarm,
    raw: Callable[..., tuple[Invocation, Any]] | None = None,
) -> tuple[Invocation, str | None, Any]:
    if context is not None:
        with context():
            return _run_one(fn, kind, data, settings, timeout, prepare, None, alarm, raw)
    if kind == "request":
        request = Request.from_wire(data)
        if prepare is not None:
            prepare(request)
        inv = alarm.run(timeout, fn.on_request, request, settings)
        return inv, request.known_digest, None
    if kind == "raw":
        if raw is None:
            raise RuntimeError("a raw call to a pool without a raw hook")

        def call(request: Request) -> Invocation:
            if prepare is not None:
                prepare(request)
            return alarm.run(timeout, fn.on_request, request, settings)

        inv, reply = raw(data, call)
        return inv, None, reply
    if kind == "event":
        return alarm.run(timeout, fn.on_event, data, settings), None, None
    return alarm.run(timeout, fn.on_batch, data, settings), None, None


def _error_of(exc: BaseException, filename: str, secrets: Iterable[str]) -> Invocation:
    """An exception that escaped the runtime's own handling (``KeyboardInterrupt``, ...)."""
    line = _line_in(exc, filename)
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        text = "KeyboardInterrupt: the function raised KeyboardInterrupt"
    if line is not None:
        text += f" ({os.path.basename(filename)}, line {line})"
    secrets = list(secrets)
    return Invocation(outcome="error", error=mask_text(text, secrets) if secrets else text, error_line=line)


# -- a Function whose invocations run in a pool ------------------------------------------


class IsolatedFunction(Function):
    """A loaded function whose invocations run in a :class:`WorkerPool`.

    It is the same :class:`Function` to whoever invokes it (``on_request``, ``on_event``,
    ``on_batch`` return an ``Invocation``), so the engine runs every entry point the same
    way isolated or not. The settings are the pool's (bound when the workers load the
    function); what the function prints is written to this process's stderr after each call
    (a handler's log; its stdout may carry JSON Lines).

    Example:
        >>> fn = Function.from_source("def on_request(r, s):\\n    raise SystemExit(1)\\n")
        >>> with WorkerPool(fn) as pool:
        ...     IsolatedFunction(fn, pool).on_request(Request(b"{}")).error.split(":")[0]
        'SystemExit'
    """

    def __init__(self, function: Function, pool: WorkerPool):
        self.__dict__.update(function.__dict__)
        self.function = function
        self.pool = pool

    async def aon_request(self, request: Request, *, timeout: float | None = DEFAULT_TIMEOUT) -> Invocation:
        """``on_request`` for asyncio code: the call waits on the event loop, not in a thread."""
        if self.kind != "source":
            raise TypeError(f"{self.filename} is a destination function; call on_event()")
        result = await self.pool.acall(("request", request), timeout=timeout)
        self._write_logs(result.logs)
        return result.invocation

    def _write_logs(self, logs: str) -> None:
        if logs:
            try:
                sys.stderr.write(logs)
            except (OSError, ValueError):  # a closed stderr must not fail the call
                pass

    def _call(self, call: Call, timeout: float | None) -> Invocation:
        result = self.pool.call(call, timeout=timeout)
        self._write_logs(result.logs)
        return result.invocation

    def on_request(
        self, request: Request, settings: Any = None, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Invocation:
        """Run ``on_request`` once in a worker."""
        if self.kind != "source":
            raise TypeError(f"{self.filename} is a destination function; call on_event()")
        return self._call(("request", request), timeout)

    def on_event(
        self, event: Mapping[str, Any], settings: Any = None, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Invocation:
        """Run the destination handler for one event in a worker."""
        if self.kind != "destination":
            raise TypeError(f"{self.filename} is a source function; call on_request()")
        return self._call(("event", dict(event)), timeout)

    def on_batch(
        self, events: list[Mapping[str, Any]], settings: Any = None, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Invocation:
        """Run ``on_batch`` once over a list of events in a worker."""
        return self._call(("batch", [dict(e) for e in events]), timeout)


# -- calls back to the caller (host calls) -----------------------------------------------
#
# A call running in a worker may need something only the caller has: a destination
# preview's scripted HTTP answers live in the caller, with the record of every request.
# The worker sends ``b"h" + pickle((seq, kind, payload))`` on its message pipe (the same
# pipe that says a chunk is done) and waits on its inbox for ``pickle((seq, ok, value))``.
# The timer signal can stop the call while it waits: the answer then arrives later and is
# skipped by its sequence number (``host_calls_settled`` reads every owed answer before
# the next chunk's message can be read). Sending and reading a message run with the timer
# signal blocked, so a message is never cut in half.

_HOST_CALL = b"h"


class HostCallError(RuntimeError):
    """A host call failed in the caller (or there is no caller to ask)."""


class _HostState:
    def __init__(self) -> None:
        self.channel: tuple[Pipe, Pipe] | None = None
        self.lock = threading.Lock()
        self.seq = 0
        self.owed: set[int] = set()


_HOST = _HostState()


@contextlib.contextmanager
def _timer_blocked() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _read_answer(inbox: Pipe, wanted: int | None) -> tuple[bool, Any]:
    """Read answers until the one numbered ``wanted`` (``None``: until none is owed)."""
    while True:
        inbox.poll(None)  # the time limit may stop the call here; nothing was read yet
        with _timer_blocked():
            seq, ok, value = pickle.loads(inbox.recv_bytes())
            _HOST.owed.discard(seq)
            settled = seq == wanted or (wanted is None and not _HOST.owed)
        if settled:
            return (ok, value) if seq == wanted else (True, None)


def host_call(kind: str, payload: Any) -> Any:
    """Ask the caller of this worker's pool (its ``host``) and wait for the answer.

    Only meaningful inside a worker while a call runs; the call's time limit keeps
    running while the caller answers.

    Raises:
        HostCallError: not in a worker, the pool has no host, or the host raised (its
            message is the host's exception as text).

    Example:
        >>> host_call("http", {})
        Traceback (most recent call last):
        ...
        segfn_kit.runtime._isolation.HostCallError: host_call is only available in a worker process
    """
    channel = _HOST.channel
    if channel is None:
        raise HostCallError("host_call is only available in a worker process")
    inbox, outbox = channel
    with _HOST.lock:
        _HOST.seq += 1
        seq = _HOST.seq
        blob = _HOST_CALL + pickle.dumps((seq, kind, payload), _PROTOCOL)
        with _timer_blocked():
            outbox.send_bytes(blob)
            _HOST.owed.add(seq)
        ok, value = _read_answer(inbox, seq)
    if not ok:
        raise HostCallError(value)
    return value


def host_calls_settled() -> None:
    """Read the answers still owed to calls that the time limit stopped while they waited.

    A worker-side ``context`` that makes host calls runs this when its call ends, so the
    next message the worker reads is its next chunk.

    Example:
        >>> host_calls_settled()  # outside a worker nothing is owed
    """
    channel = _HOST.channel
    if channel is None or not _HOST.owed:
        return
    with _HOST.lock:
        if _HOST.owed:
            _read_answer(channel[0], None)


def _answer_host_call(
    host: Callable[[str, Any], Any] | None, worker: _Worker, message: bytes, deadline: float | None
) -> bool:
    """Answer one host call of ``worker`` (in the caller), writing no longer than ``deadline``;
    ``False`` when the answer could not be written whole (the worker must be killed)."""
    try:
        seq, kind, payload = pickle.loads(message[1:])
    except Exception:  # pragma: no cover - the worker only sends what it pickled
        return True
    try:
        if host is None:
            raise HostCallError(f"this worker pool answers no host calls (asked for {kind!r})")
        answer = pickle.dumps((seq, True, host(kind, payload)), _PROTOCOL)
    except Exception as exc:  # a host that fails, or an answer that cannot be pickled
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        answer = pickle.dumps((seq, False, text), _PROTOCOL)
    return _send_frame(worker.writer, answer, deadline)


def _send_frame(conn: Pipe, data: bytes, deadline: float | None) -> bool:
    """``conn.send_bytes(data)`` that gives up at ``deadline`` (a worker that no longer
    reads, past its limit, is killed then; its pipe is never read again)."""
    import select
    import struct

    if deadline is None:
        conn.send_bytes(data)
        return True
    fd = conn.fileno()
    view = memoryview(struct.pack("!i", len(data)) + data)
    os.set_blocking(fd, False)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                select.select([], [fd], [], left)
            except OSError:  # the worker ended: its exit is seen when its pipe is read
                return False
    finally:
        with contextlib.suppress(OSError):
            os.set_blocking(fd, True)
    return True
