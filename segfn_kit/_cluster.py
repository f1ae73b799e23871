"""Backfills on a Dask cluster: the same function, one global request rate, nothing lost.

``replay(..., scheduler="tcp://host:8786")`` (or ``"local:N"`` for N local worker
processes) and ``segfn replay ... --scheduler ADDRESS`` cut the archives into partitions
and run each partition on a worker with the single-process replay (``replay(stream=)``),
so the function, the messageIds, the batching, the retries and the dead letters are the
ones of ``segfn replay`` on one machine.

How it holds together:

- **Partitions.** Files are planned on the client (local paths through the loaders' own
  file walk, so payload ids match; ``s3://``, ``gs://``, ``file://``, ``memory://`` and
  globs through fsspec); workers read the bytes themselves. Large uncompressed JSON Lines
  files are cut into byte ranges (a line belongs to the range its first byte is in), and
  small files are grouped, so ``--partitions N`` partitions of similar size spread over
  the workers. Line numbers of a range come from a newline count of the ranges before it,
  so ids stay ``file#line``.
- **One rate for the whole cluster.** Every HTTP attempt of every worker (retries too)
  first takes a slot from a pacer that lives on the scheduler (a scheduler plugin: slots
  ``1/R`` seconds apart, no burst), and a 429 with ``Retry-After`` pauses every worker's
  slots. A worker that dies holds nothing: there are no leases to expire, and a worker that
  joins later shares the same rate.
- **Workers that die.** A partition whose worker died is run again elsewhere; the events
  it sends again carry the same messageIds (Segment deduplicates them). The client releases
  each partition's future as soon as it has its result, so finished partitions are not run
  again when their worker dies later, and with ``checkpoint=`` each task looks for its
  partition's record before sending anything. After three deaths of one partition,
  ``KilledWorker`` ends the replay with ``ClusterError`` (exit 1); a cluster left without
  workers ends it too, after ``worker_wait`` seconds, never a hang.
- **Checkpoints keyed by content.** ``checkpoint=DIR`` (a folder every worker can reach: a
  shared filesystem) is a directory ``Checkpoint`` (``segfn_kit._checkpoint``, the one the
  one-process replay uses): one small JSON record per finished file or byte range, keyed by
  its location and the sha256 of its bytes, under a run key of the function and its
  settings. An identical rerun sends nothing; a changed file is sent again.
- **Secrets.** The write key and the settings travel inside the tasks in an object whose
  ``repr`` hides them; task keys are ``segfn-replay-<n>-<token>`` and name nothing of them,
  so the dashboard and the logs do not show them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from distributed.diagnostics.plugin import SchedulerPlugin

from segfn_kit._replay import ClusterError, ReplayError, ReplaySummary, _prepare, _replay_key
from segfn_kit.runtime._delivery import DEFAULT_OBJECTS_HOST, MAX_BATCH_EVENTS

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from segfn_kit._checkpoint import CheckpointKey
    from segfn_kit._payloads import Payload
    from segfn_kit._payloads._formats import _Reader

__all__ = [
    "ClusterError",
    "ClusterReplaySummary",
    "Partition",
    "Piece",
    "check_address",
    "connect",
    "partition_payloads",
    "plan_partitions",
    "profile_on_cluster",
    "replay_on_cluster",
]

# a partition should be at least this big (bytes) unless the archive is smaller: below that
# the scheduling and the partition's setup stop being small against its work
_MIN_PARTITION_BYTES = 1 << 20
_BLOCK = 1 << 20
_PACER = "segfn-pace"


# --------------------------------------------------------------------------- partitions


@dataclasses.dataclass(frozen=True)
class Piece:
    """A whole file, or a byte range of a JSON Lines file.

    Attributes:
        url: a local path or an fsspec URL.
        base_id: the payload id of the file (lines add ``#n``), as single-process loads name it.
        size: bytes of the file.
        start: first byte of the range.
        end: end of the range (exclusive); ``None`` for the whole file.
        newlines_before: newlines in the file before ``start`` (for line numbers).
    """

    url: str
    base_id: str
    size: int
    start: int = 0
    end: int | None = None
    newlines_before: int = 0


@dataclasses.dataclass(frozen=True)
class Partition:
    """The unit of work of a cluster replay or profile: pieces read and run in order."""

    index: int
    pieces: tuple[Piece, ...]

    @property
    def size(self) -> int:
        """Bytes the partition covers."""
        return sum((p.end if p.end is not None else p.size) - p.start for p in self.pieces)

    @property
    def label(self) -> str:
        """What the partition covers, for messages: ``file`` or ``file[start:end]``."""
        first = self.pieces[0]
        text = first.base_id if first.end is None else f"{first.base_id}[{first.start}:{first.end}]"
        return text + (f" and {len(self.pieces) - 1} more file(s)" if len(self.pieces) > 1 else "")


def _is_url(text: str) -> bool:
    return "://" in text or text.startswith("memory:")


def _name_of(url: str) -> str:
    return PurePosixPath(url.split("://", 1)[-1]).name.lower()


def _splittable(url: str) -> bool:
    from segfn_kit._payloads import JSONL_SUFFIXES

    return _name_of(url).endswith(JSONL_SUFFIXES)


def _url_files(text: str, reader: _Reader) -> Iterator[tuple[str, str, int]]:
    """(url, base id, size) of each file an fsspec URL names (globs and folders too)."""
    import fsspec
    from fsspec.core import url_to_fs

    from segfn_kit._payloads import PAYLOAD_SUFFIXES

    fs, path = url_to_fs(text)
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol

    def unstrip(p: str) -> str:
        return fs.unstrip_protocol(p) if hasattr(fs, "unstrip_protocol") else f"{protocol}://{p}"

    def wanted(p: str) -> bool:
        name = PurePosixPath(p).name
        lowered = name.lower().removesuffix(".gz")
        if name.startswith("."):
            reader.skip(unstrip(p), "a hidden file")
            return False
        if not lowered.endswith(PAYLOAD_SUFFIXES):
            reader.skip(unstrip(p), "not a payload file; payload files end in " + ", ".join(PAYLOAD_SUFFIXES))
            return False
        return True

    if fsspec.core.has_magic(path):
        fixed = []
        for part in PurePosixPath(path).parts:
            if fsspec.core.has_magic(part):
                break
            fixed.append(part)
        root = PurePosixPath(*fixed) if fixed else PurePosixPath("")
        matches = sorted(fs.glob(path, detail=True).items())
        if not matches:
            reader.skip(text, "the pattern matches no file")
        for match, info in matches:
            if info.get("type") == "directory":
                for sub, sinfo in sorted(fs.find(match, detail=True).items()):
                    if wanted(sub):
                        rel = PurePosixPath(sub).relative_to(root).as_posix()
                        yield unstrip(sub), f"{root.name or '.'}/{rel}", int(sinfo.get("size") or 0)
            elif wanted(match):
                rel = PurePosixPath(match).relative_to(root).as_posix()
                yield unstrip(match), f"{root.name}/{rel}", int(info.get("size") or 0)
        return
    if not fs.exists(path):
        raise FileNotFoundError(f"no such file or folder: {text!r}; check the URL (globs like 's3://bucket/*.jsonl' work too)")
    if fs.isdir(path):
        root = PurePosixPath(path)
        for sub, info in sorted(fs.find(path, detail=True).items()):
            if wanted(sub):
                yield unstrip(sub), f"{root.name}/{PurePosixPath(sub).relative_to(root).as_posix()}", int(info.get("size") or 0)
    else:
        yield unstrip(path), PurePosixPath(path).name, int(fs.size(path) or 0)


def _files(paths: Sequence[str | os.PathLike[str]], reader: _Reader) -> list[tuple[str, str, int]]:
    from segfn_kit._payloads import _files_of

    found: list[tuple[str, str, int]] = []
    for arg in paths:
        text = os.fspath(arg)
        items = (
            _url_files(text, reader) if _is_url(text)
            else ((str(p), base, p.stat().st_size if p.is_file() else 0) for p, base in _files_of(text, reader))
        )
        for url, base, size in items:
            # the same rule as one-process loads: a second file of the same id gets "~2"
            found.append((url, reader.unique_id(base), size))
    return found


def plan_partitions(
    paths: Sequence[str | os.PathLike[str]],
    partitions: int,
    *,
    min_bytes: int = 0,
    on_skip: Any = None,
) -> list[Partition]:
    """Cut archives into about ``partitions`` partitions of similar size.

    Files are never split except uncompressed JSON Lines (``.jsonl``, ``.ndjson``), which
    are cut into byte ranges; small files are grouped; no partition is cut smaller than
    ``min_bytes`` (fewer partitions then). Ranges get ``newlines_before`` 0
    here: ``replay_on_cluster`` counts them on the workers.

    Example:
        >>> import tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (tmp / "a.jsonl").write_text("".join(f'{{"n": {i}}}\\n' for i in range(200_000)))
        >>> parts = plan_partitions([tmp / "a.jsonl"], 3)
        >>> len(parts), [p.pieces[0].start for p in parts][:1]
        (3, [0])
    """
    from segfn_kit._payloads._formats import _Reader

    if partitions < 1:
        raise ReplayError(f"partitions must be at least 1, not {partitions}")
    reader = _Reader(split_arrays=False, check_duplicates=True, on_skip=on_skip)
    files = _files(paths, reader)
    total = sum(size for _, _, size in files)
    target = max(1, min_bytes, -(-total // partitions))
    result: list[Partition] = []
    group: list[Piece] = []
    group_size = 0

    def close_group() -> None:
        nonlocal group, group_size
        if group:
            result.append(Partition(len(result), tuple(group)))
            group, group_size = [], 0

    for url, base, size in files:
        if _splittable(url) and size > target:
            close_group()
            count = -(-size // target)
            step = -(-size // count)
            for start in range(0, size, step):
                result.append(Partition(len(result), (Piece(url, base, size, start, min(size, start + step)),)))
            continue
        group.append(Piece(url, base, size))
        group_size += size
        if group_size >= target:
            close_group()
    close_group()
    return result


# --------------------------------------------------------------------------- reading on workers


@contextlib.contextmanager
def _open(url: str) -> Iterator[BinaryIO]:
    if _is_url(url):
        import fsspec

        with fsspec.open(url, "rb") as fh:
            yield fh
    else:
        with open(url, "rb") as fh:
            yield fh


def _count_newlines(url: str, start: int, end: int) -> int:
    """Newlines in ``[start, end)`` of a file (a task: line numbers of later ranges)."""
    count = 0
    with _open(url) as fh:
        fh.seek(start)
        left = end - start
        while left > 0:
            block = fh.read(min(_BLOCK, left))
            if not block:
                break
            count += block.count(b"\n")
            left -= len(block)
    return count


def _range_lines(fh: BinaryIO, piece: Piece) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of the lines whose first byte is in the piece's range."""
    assert piece.end is not None
    pos, number = piece.start, 1
    if piece.start > 0:
        fh.seek(piece.start - 1)
        at_line_start = fh.read(1) == b"\n"
        # lines that began before the range: the first one, and one after each newline
        # before the byte preceding it
        number = 1 + piece.newlines_before - at_line_start + 1
        if not at_line_start:
            pos += len(fh.readline())  # the rest of a line of the range before
    while pos < piece.end:
        line = fh.readline()
        if not line:
            return
        yield number, line
        number += 1
        pos += len(line)


def _piece_payloads(reader: _Reader, piece: Piece) -> Iterator[Payload]:
    if piece.end is not None:
        with _open(piece.url) as fh:
            yield from reader.read_lines(_range_lines(fh, piece), piece.url, piece.base_id)
        return
    if not _is_url(piece.url):
        yield from reader.read_file(Path(piece.url), piece.base_id)
        return
    import gzip

    from segfn_kit._payloads import JSONL_SUFFIXES, Payload

    name = _name_of(piece.url)
    gz = name.endswith(".gz")
    inner = name.removesuffix(".gz")
    path = Path(PurePosixPath(piece.url.split("://", 1)[-1]))
    try:
        with _open(piece.url) as raw:
            stream: Any = gzip.GzipFile(fileobj=raw) if gz else raw
            if inner.endswith(JSONL_SUFFIXES):
                yield from reader.read_lines(enumerate(stream, 1), piece.url, piece.base_id)
                return
            data = stream.read(reader.max_bytes + 1)
            if len(data) > reader.max_bytes:
                yield Payload(piece.base_id, piece.url, 0, "bare", "",
                              error=f"the file is over {reader.max_bytes:,} bytes (decompressed), the loaders' cap")
                return
    except (OSError, EOFError) as exc:
        yield Payload(piece.base_id, piece.url, 0, "bare", "", error=f"cannot read the file: {exc}")
        return
    if inner.endswith(".har"):
        yield from reader.read_har(data, path, piece.base_id)
    else:
        yield from reader.read_document(data, path, piece.base_id)


def partition_payloads(partition: Partition, *, bodies: bool = True) -> Iterator[Payload]:
    """The payloads of a partition, in order, with the ids a one-process load gives them.

    Example:
        >>> import tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (tmp / "a.jsonl").write_text('{"n": 1}\\n{"n": 2}\\n')
        >>> [p.payload_id for p in partition_payloads(plan_partitions([tmp / "a.jsonl"], 1)[0])]
        ['a.jsonl#1', 'a.jsonl#2']
    """
    from segfn_kit._payloads._formats import _Reader

    reader = _Reader(split_arrays=False, check_duplicates=True, on_skip=None, bodies=bodies)
    for piece in partition.pieces:
        yield from _piece_payloads(reader, piece)


def _piece_key(piece: Piece) -> CheckpointKey:
    """The checkpoint key of a piece: its location and the sha256 of the bytes its payloads
    come from (for a byte range, the whole lines that start in it, so a line that changes
    past the range's end still changes the key of the range that owns it)."""
    from segfn_kit._checkpoint import CheckpointKey

    with _open(piece.url) as fh:
        if piece.end is None:
            return CheckpointKey.of_stream(piece.url, fh)
        h = hashlib.sha256()
        for _, line in _range_lines(fh, piece):
            h.update(line)
    return CheckpointKey(piece.url, "sha256:" + h.hexdigest(), piece.start, piece.end)


# --------------------------------------------------------------------------- one rate for all


class PacePlugin(SchedulerPlugin):
    """A scheduler plugin handing out request slots: ``rate`` per second across all workers.

    Workers call ``pace_take`` before every HTTP attempt and sleep the seconds it answers;
    ``pace_pause`` (after a 429 with ``Retry-After``) pushes every later slot past the pause.
    """

    name = _PACER

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.buckets: dict[str, list[float]] = {}  # name -> [next free slot, paused until]
        self.clock = clock

    async def start(self, scheduler: Any) -> None:
        scheduler.handlers.update({"segfn_pace_take": self.take, "segfn_pace_pause": self.pause})

    def take(self, name: str, rate: float | None) -> float:
        now = self.clock()
        bucket = self.buckets.setdefault(name, [now, now])
        at = max(now, bucket[0], bucket[1]) if rate else max(now, bucket[1])
        if rate:
            bucket[0] = at + 1.0 / rate
        return at - now

    def pause(self, name: str, seconds: float) -> None:
        now = self.clock()
        bucket = self.buckets.setdefault(name, [now, now])
        bucket[1] = max(bucket[1], now + min(seconds, 300.0))


def _pacing_transport(name: str, rate: float | None) -> httpx.BaseTransport:
    """An httpx transport that takes a slot from the scheduler's pacer before each request."""
    import httpx
    from distributed import get_client

    from segfn_kit.runtime._rules import retry_after

    class PacedTransport(httpx.BaseTransport):
        def __init__(self) -> None:
            self._inner = httpx.HTTPTransport()
            self._client: Any = get_client()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            wait = self._client.sync(self._client.scheduler.segfn_pace_take, name=name, rate=rate)
            if wait > 0:
                time.sleep(wait)
            response = self._inner.handle_request(request)
            if response.status_code == 429:
                pause = retry_after(response.headers.get("Retry-After"))
                if pause:
                    self._client.sync(self._client.scheduler.segfn_pace_pause, name=name, seconds=pause)
            return response

        def close(self) -> None:
            self._inner.close()

    return PacedTransport()


# --------------------------------------------------------------------------- the tasks


class _Secrets:
    """The write key and the settings' values, on their way to the workers; never shown."""

    def __init__(self, write_key: str | None, settings: dict[str, Any]):
        self.write_key = write_key
        self.settings = settings

    def __repr__(self) -> str:
        return "<secrets: hidden>"


@dataclasses.dataclass(frozen=True)
class _Job:
    source: str
    filename: str
    run_key: str
    mode: str  # deliver or dry-run
    host: str
    objects_host: str
    budget: float
    rate: float | None
    pacer: str
    checkpoint: str | None
    dead_letters: str | None
    batch_events: int
    isolation: str = "process"  # "none": the function runs in the Dask worker's process


@dataclasses.dataclass
class _Result:
    index: int
    summary: ReplaySummary
    skipped: bool = False


_FUNCTIONS: dict[str, Any] = {}


def _function(job: _Job) -> Any:
    from segfn_kit.runtime import Function

    key = hashlib.sha256(f"{job.filename}\0{job.source}".encode("utf-8", "surrogatepass")).hexdigest()
    fn = _FUNCTIONS.get(key)
    if fn is None:
        fn = _FUNCTIONS[key] = Function.from_source(job.source, filename=job.filename)
    return fn


_POOLS = threading.local()  # each task thread's worker pool: {(function, settings): pool}


def _pool(fn: Any, settings: dict[str, Any]) -> Any:
    """This task thread's pool for ``fn`` with ``settings`` (one worker process), kept across
    partitions so each does not start and load a process of its own."""
    from segfn_kit.runtime._isolation import WorkerPool

    pools: dict[tuple[int, str], Any] = getattr(_POOLS, "pools", None) or {}
    _POOLS.pools = pools
    key = (id(fn), json.dumps(settings, sort_keys=True, default=str))
    pool = pools.get(key)
    if pool is None:
        for old in pools.values():  # another function's run: its workers are not needed now
            old.close()
        pools.clear()
        pool = pools[key] = WorkerPool(fn, dict(settings or {}), workers=1)
    return pool


def _counted(partition: Partition, counts: list[int]) -> Iterator[Payload]:
    """The partition's payloads (without parsed bodies: replay reads the raw text), counted per piece."""
    from segfn_kit._payloads._formats import _Reader

    reader = _Reader(split_arrays=False, check_duplicates=True, on_skip=None, bodies=False)
    for i, piece in enumerate(partition.pieces):
        for payload in _piece_payloads(reader, piece):
            counts[i] += 1
            yield payload


def _run_partition(job: _Job, secrets: _Secrets, partition: Partition) -> _Result:
    """Run one partition on a worker (the task of a cluster replay)."""
    from segfn_kit._checkpoint import Checkpoint
    from segfn_kit._replay import replay
    from segfn_kit.runtime._delivery import TrackingClient

    cp, keys = None, []
    if job.checkpoint is not None:
        # the task looks for its own record: a partition the scheduler runs again (its
        # worker died after it finished) sends nothing
        cp = Checkpoint(job.checkpoint, run=job.run_key, directory=True)
        keys = [_piece_key(piece) for piece in partition.pieces]
        entries = [cp.get(key) for key in keys]
        if all(entry is not None and entry.done for entry in entries):
            count = sum(int(e.info.get("payloads", 0)) for e in entries if e is not None)
            return _Result(partition.index, ReplaySummary(payloads=count, resumed=count), skipped=True)
    client = None
    if job.mode == "deliver":
        dead = None
        if job.dead_letters is not None:
            Path(job.dead_letters).mkdir(parents=True, exist_ok=True)
            dead = Path(job.dead_letters) / f"partition-{partition.index:05d}.jsonl"
        client = TrackingClient(secrets.write_key or "", job.host, objects_host=job.objects_host,
                                budget=job.budget, timeout=min(30.0, job.budget), dead_letter=dead,
                                max_batch_events=job.batch_events, transport=_pacing_transport(job.pacer, job.rate))
    counts = [0] * len(partition.pieces)
    try:
        # the function runs in a worker process of this Dask worker (one per task thread, kept
        # for the next partitions, fed the payloads in chunks): a call that ignores its
        # timeout, passes the memory limit or ends its process is killed and is that payload's
        # error (its worker replaced); this Dask worker and the partition's other payloads go on
        # (isolation "none": a trusted function runs on this task thread itself, limited as on
        # a main thread, a watchdog raising FunctionTimeout at the limit: no pipe, no thread
        # hop per call; a call that ignores the timeout holds its partition)
        fn = _function(job)
        with contextlib.ExitStack() as stack:
            pool = None
            if job.isolation == "process":
                pool = _pool(fn, secrets.settings)
            else:
                from segfn_kit.runtime._function import timeouts_in_place

                stack.enter_context(timeouts_in_place())
            summary = replay(fn, partition.label, settings=secrets.settings,
                             dry_run=job.mode == "dry-run", client=client, budget=job.budget,
                             stream=_counted(partition, counts), isolation=job.isolation, pool=pool)
    finally:
        if client is not None:
            client.close()
    if cp is not None and summary.ok:
        for key, count in zip(keys, counts, strict=True):
            cp.mark(key, payloads=count, partition=partition.label)
    return _Result(partition.index, summary)


# --------------------------------------------------------------------------- the client side


@dataclasses.dataclass
class ClusterReplaySummary(ReplaySummary):
    """What a cluster replay did: a ``ReplaySummary`` over all partitions, and the cluster's part.

    Attributes:
        partitions: partitions planned.
        partitions_resumed: partitions skipped because the checkpoint recorded them.
        workers: workers connected at the start.
        dashboard: the Dask dashboard's address, if it is served.
        partition_seconds: the time each partition run took on its worker (its replay: read,
            function, delivery), in the order they finished.
    """

    partitions: int = 0
    partitions_resumed: int = 0
    workers: int = 0
    dashboard: str | None = None
    partition_seconds: list[float] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        head = (f"partitions    {self.partitions:,} on {self.workers} worker(s), "
                f"{self.partitions_resumed:,} skipped (recorded in the checkpoint)")
        return head + "\n" + super().__str__()


def check_address(address: str) -> int:
    """The number of local workers of ``local:N``, 0 for a scheduler's address.

    Raises:
        ReplayError: the address is neither form.

    Example:
        >>> check_address("local:2"), check_address("tcp://10.0.0.5:8786")
        (2, 0)
    """
    match = re.fullmatch(r"local:(\d+)", address.strip())
    if match:
        workers = int(match.group(1))
        if not 1 <= workers <= 256:
            raise ReplayError(f"--scheduler {address}: give between 1 and 256 local workers")
        return workers
    if not re.fullmatch(r"(tcp|tls|ws|wss)://[^\s/]+:\d+/?", address.strip()):
        raise ReplayError(f"--scheduler {address!r}: give tcp://HOST:PORT of a running Dask scheduler, or local:N")
    return 0


@contextlib.contextmanager
def connect(address: str) -> Iterator[Any]:
    """A Dask client for ``tcp://host:port`` (a running scheduler) or ``local:N``.

    ``local:N`` starts N worker processes on this machine (one thread each) and a
    scheduler whose dashboard listens on 127.0.0.1; they stop with the ``with`` block.

    Raises:
        ReplayError: the address is neither form.
        ClusterError: the scheduler cannot be reached.
    """
    import dask
    import distributed

    dist: Any = distributed

    workers = check_address(address)
    if workers:
        with dask.config.set({"distributed.worker.daemon": False}), dist.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
        ) as cluster, dist.Client(cluster) as client:
            yield client
        return
    try:
        client = dist.Client(address.strip(), timeout=15)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({exc}); is it running?") from None
    with client:
        yield client


def _dashboard(client: Any) -> str | None:
    try:
        info = client.scheduler_info()
        if "dashboard" not in info.get("services", {}):
            return None
        return str(client.dashboard_link)
    except Exception:  # the dashboard is a convenience, never a failure
        return None


def _count_ranges(client: Any, parts: list[Partition], token: str) -> list[Partition]:
    """Fill ``newlines_before`` of byte ranges, counted on the workers."""
    ranges = [p for p in parts if p.pieces[0].end is not None]
    by_file: dict[str, list[Partition]] = {}
    for part in ranges:
        by_file.setdefault(part.pieces[0].url, []).append(part)
    jobs = {}
    for url, group in by_file.items():
        for i, part in enumerate(group[:-1]):
            piece = part.pieces[0]
            assert piece.end is not None
            jobs[(url, i)] = client.submit(_count_newlines, url, piece.start, piece.end, pure=False,
                                           key=f"segfn-count-{part.index:05d}-{token}")
    counts = {k: f.result() for k, f in jobs.items()}
    del jobs
    fixed = {p.index: p for p in parts}
    for url, group in by_file.items():
        before = 0
        for i, part in enumerate(group):
            piece = part.pieces[0]
            fixed[part.index] = Partition(part.index, (dataclasses.replace(piece, newlines_before=before),))
            before += counts.get((url, i), 0)
    return [fixed[p.index] for p in parts]


def _has_pacer(dask_scheduler: Any) -> bool:
    return _PACER in dask_scheduler.plugins


def _allowed_failures() -> int:
    import dask

    return int(dask.config.get("distributed.scheduler.allowed-failures"))


def _merge(total: ClusterReplaySummary, part: ReplaySummary, outcomes: Counter[str]) -> None:
    total.payloads += part.payloads
    total.resumed += part.resumed
    total.events += part.events
    total.objects += part.objects
    outcomes.update(part.outcomes)
    total.delivery = total.delivery + part.delivery
    total.undeliverable.extend(part.undeliverable)
    total.failed_payloads.extend(part.failed_payloads)
    total.errors.extend(part.errors)
    total.unloadable.extend(part.unloadable)


def replay_on_cluster(
    function: Any,
    *paths: str | os.PathLike[str],
    scheduler: str,
    partitions: int | None = None,
    rate: float | None = None,
    to: str | None = None,
    objects_to: str | None = None,
    write_key: str | None = None,
    dry_run: bool = False,
    settings: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    dead_letter: str | os.PathLike[str] | None = None,
    budget: float = 120.0,
    progress: bool = False,
    batch_events: int | None = None,
    worker_wait: float = 60.0,
    on_dashboard: Any = None,
    isolation: str = "process",
) -> ClusterReplaySummary:
    """``replay`` on a Dask cluster; ``segfn_kit.replay(..., scheduler=)`` calls this.

    Args:
        function: the source function (a file path or a loaded ``Function``).
        *paths: archives: local paths every worker can reach, or fsspec URLs (globs too).
        scheduler: ``tcp://host:port`` or ``local:N``.
        partitions: how many partitions to cut the archives into (default: 4 per worker).
        rate: at most this many requests per second, all workers together.
        to, objects_to, write_key, dry_run, settings, budget, progress: as for ``replay``.
        checkpoint: a folder every worker can reach, recording finished partitions by content.
        dead_letter: a folder for the dead-letter files, one per partition (default
            ``<checkpoint>/dead-letters``, else ``segfn-replay.dead``).
        batch_events: events per ``/v1/batch`` request (default and most: 2,500).
        worker_wait: seconds to wait for a worker when none is connected before giving up.
        on_dashboard: called with the dashboard's address once connected (the CLI prints it).
        isolation: ``"process"`` (the default): each Dask worker calls the function in a
            worker process of its own, where a runaway call is killed and is that payload's
            error; ``"none"``: in the Dask worker's process, faster for a trusted function
            (the time limit still holds for calls that let it; nothing stops one that does not).

    Raises:
        ReplayError: bad arguments, a missing write key.
        ClusterError: the cluster could not finish (exit 1).

    Example:
        >>> import tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (tmp / "fn.py").write_text(
        ...     "from segfn_kit.runtime import Segment\\n"
        ...     "def on_request(request, settings):\\n"
        ...     "    Segment.track(user_id=request.json()['user'], event='Paid')\\n")
        >>> _ = (tmp / "a.jsonl").write_text('{"user": "u1"}\\n{"user": "u2"}\\n')
        >>> s = replay_on_cluster(tmp / "fn.py", tmp / "a.jsonl", scheduler="local:1", dry_run=True)  # doctest: +SKIP
        >>> s.partitions, s.events  # doctest: +SKIP
        (1, 2)
    """
    import distributed
    from distributed.scheduler import KilledWorker

    wait: Any = distributed.wait

    started = time.monotonic()
    check_address(scheduler)
    if not paths:
        raise ReplayError("no archives given: name at least one file, folder or URL of payloads")
    if checkpoint is not None and dry_run:
        raise ReplayError("a checkpoint records what was delivered: use it without dry_run")
    if rate is not None and not rate > 0:
        raise ReplayError(f"rate must be a positive number of requests per second, not {rate}")
    if isolation not in ("process", "none"):
        raise ReplayError(f'isolation must be "process" or "none", not {isolation!r}')
    fn, values = _prepare(function, settings)
    mode = "dry-run" if dry_run else "deliver"
    key = None
    if mode == "deliver":
        key = write_key or os.environ.get("SEGMENT_WRITE_KEY")
        if not key:
            raise ReplayError("no write key: set SEGMENT_WRITE_KEY (or use --dry-run)")
    host = to or os.environ.get("SEGMENT_API_HOST") or "https://api.segment.io"
    objects_host = objects_to or os.environ.get("SEGMENT_OBJECTS_HOST") or DEFAULT_OBJECTS_HOST
    dead = None
    if mode == "deliver":
        dead = os.fspath(dead_letter) if dead_letter is not None else (
            f"{os.fspath(checkpoint)}/dead-letters" if checkpoint is not None
            else "segfn-replay.dead")
        dead = os.path.abspath(dead)
    cp = None
    if checkpoint is not None:
        from segfn_kit._checkpoint import Checkpoint, CheckpointError

        cp = os.fspath(checkpoint)
        if _is_url(cp):
            raise ReplayError(f"--checkpoint {cp}: a cluster replay's checkpoint is a folder every worker can "
                              "reach (a shared filesystem), not a URL")
        cp = os.path.abspath(cp)
        if os.path.isfile(cp):
            raise ReplayError(f"{cp} is a file; a cluster replay's checkpoint is a folder (one record per partition)")
        try:
            Checkpoint(cp, run=_replay_key(fn, values), directory=True)
        except CheckpointError as exc:
            raise ReplayError(str(exc)) from None
    # local paths are given to workers absolute: they need not share the client's directory
    paths = tuple(p if _is_url(os.fspath(p)) else os.path.abspath(os.fspath(p)) for p in paths)
    token = uuid.uuid4().hex[:10]
    job = _Job(source=fn.source, filename=fn.filename, run_key=_replay_key(fn, values), mode=mode,
               host=host, objects_host=objects_host, budget=budget, rate=rate, pacer=f"replay-{token}",
               checkpoint=cp, dead_letters=dead, batch_events=batch_events or MAX_BATCH_EVENTS,
               isolation=isolation)
    secrets = _Secrets(key, values)
    summary = ClusterReplaySummary(mode=mode)
    outcomes: Counter[str] = Counter()
    with connect(scheduler) as client:
        if not client.run_on_scheduler(_has_pacer):
            client.register_plugin(PacePlugin(), name=_PACER)
        summary.workers = len(client.scheduler_info().get("workers", {}))
        summary.dashboard = _dashboard(client)
        if on_dashboard is not None:
            on_dashboard(summary.dashboard)
        parts = plan_partitions(paths, partitions or 4 * max(1, summary.workers),
                                min_bytes=0 if partitions else _MIN_PARTITION_BYTES)
        summary.partitions = len(parts)
        parts = _count_ranges(client, parts, token)
        pending: dict[Any, Partition] = {
            client.submit(_run_partition, job, secrets, part, key=f"segfn-replay-{part.index:05d}-{token}",
                          pure=False): part
            for part in parts
        }
        with contextlib.ExitStack() as stack:
            from segfn_kit._progress import Bar
            from segfn_kit._progress import progress as progress_bar

            bar: Bar[None] = stack.enter_context(
                progress_bar(total=len(parts), show=progress, desc="replay", unit="partitions")
            )
            alone_since: float | None = None
            try:
                while pending:
                    try:
                        done, _ = wait(list(pending), timeout=1.0, return_when="FIRST_COMPLETED")
                    except TimeoutError:
                        done = set()
                    for future in done:
                        part = pending.pop(future)
                        try:
                            result: _Result = future.result()
                        except KilledWorker:
                            deaths = int(client.run_on_scheduler(_allowed_failures)) + 1
                            raise ClusterError(
                                f"partition {part.label} was running on workers that died {deaths} time(s) "
                                "(KilledWorker); it may exhaust a worker's memory or end its process: fix "
                                "the function or try more --partitions, "
                                "then run the same command again (with --checkpoint, finished partitions "
                                "are skipped)"
                            ) from None
                        except Exception as exc:  # raised by the task on its worker
                            raise ClusterError(f"partition {part.label} failed on its worker: "
                                               f"{type(exc).__name__}: {exc}") from None
                        finally:
                            future.release()
                        _merge(summary, result.summary, outcomes)
                        summary.partition_seconds.append(result.summary.elapsed)
                        summary.partitions_resumed += result.skipped
                        bar.update(1)
                    if pending and not done:
                        if client.scheduler_info().get("workers"):
                            alone_since = None
                        elif alone_since is None:
                            alone_since = time.monotonic()
                        elif time.monotonic() - alone_since > worker_wait:
                            raise ClusterError(
                                f"no worker has been connected to {scheduler} for {worker_wait:g} s; "
                                f"{len(pending)} partition(s) not run: start workers, then run the same "
                                "command again"
                            )
            except KeyboardInterrupt:
                summary.interrupted = True
            finally:
                if pending:
                    client.cancel(list(pending))
                    pending.clear()
    summary.outcomes = {k: v for k, v in sorted(outcomes.items()) if v}
    summary.elapsed = time.monotonic() - started
    return summary



# --------------------------------------------------------------------------- profile


_PROFILE_BY = ("event_type", "format", "source", "method", "content_type", "path")


def _profile_partition(partition: Partition, by: str | None) -> dict[Any, Any]:
    """One partition's partial profile, per group (the task of a cluster profile)."""
    from segfn_kit._profile import _profile_rows

    grouped: dict[Any, list[Any]] = {}
    for payload in partition_payloads(partition):
        if by is None:
            key = None
        else:
            key = getattr(payload, by)
            key = "(none)" if key is None or key != key else key
        grouped.setdefault(key, []).append(payload.body)
    return {key: _profile_rows(bodies, ordered=True) for key, bodies in grouped.items()}


def profile_on_cluster(
    paths: Sequence[str | os.PathLike[str]],
    *,
    scheduler: str,
    by: str | None = None,
    partitions: int | None = None,
) -> tuple[pd.DataFrame, int]:
    """``profile`` of archives on a Dask cluster, and the number of payloads profiled.

    Each partition is profiled on the worker that reads it; the client merges the partial
    profiles in stream order, so the result equals ``profile(load_payloads(*paths))``.

    Raises:
        ReplayError: a bad address, or ``by`` not a payload column the workers know.
        ClusterError: the cluster could not finish.
    """
    from segfn_kit._profile import _merge_profiles, _profile_frame

    check_address(scheduler)
    if by is not None and by not in _PROFILE_BY:
        raise ReplayError(f"profile(by={by!r}) on a cluster: choose one of {', '.join(_PROFILE_BY)}")
    paths = [p if _is_url(os.fspath(p)) else os.path.abspath(os.fspath(p)) for p in paths]
    token = uuid.uuid4().hex[:10]
    with connect(scheduler) as client:
        workers = len(client.scheduler_info().get("workers", {}))
        parts = plan_partitions(paths, partitions or 4 * max(1, workers),
                                min_bytes=0 if partitions else _MIN_PARTITION_BYTES)
        parts = _count_ranges(client, parts, token)
        futures = [client.submit(_profile_partition, part, by, key=f"segfn-profile-{part.index:05d}-{token}",
                                 pure=False) for part in parts]
        try:
            results = client.gather(futures)
        except Exception as exc:
            from distributed.scheduler import KilledWorker

            if isinstance(exc, KilledWorker):
                raise ClusterError(f"a partition of the profile killed its workers ({exc})") from None
            raise
    groups, present = _merge_profiles(results)
    count = sum(c for part in results for _, c in part.values())
    return _profile_frame(groups, by, present), count
