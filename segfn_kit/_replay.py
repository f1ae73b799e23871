"""Replay archived webhooks through a source function and deliver the events (and the
``Segment.set`` objects, to the Objects API).

A year of Stripe events, say, in JSON Lines (gzip or not), folders of captures, or any
format ``iter_payloads`` reads. Payloads stream one at a time: the main thread reads them
(JSON Lines lines unread, see ``segfn_kit._replaylines``), worker processes (or the main
thread, with ``isolation="none"``) read each into its request and call the function, and a
second thread delivers the previous chunk, so memory stays flat whatever the size of the
archive.

Exactly once, in effect:

- events keep the messageIds the function derives from each payload's content, so the same
  payload replayed twice gives the same ids and Segment deduplicates them;
- a checkpoint (``segfn_kit._checkpoint.Checkpoint``, a file or a directory) records, after
  each delivered chunk, how far each archive file was accepted, keyed by the file's path AND
  the sha256 of its bytes. Run the same command again after an interruption and accepted
  payloads are skipped; payloads whose events went to the dead-letter file, and payloads that
  could not be loaded, are tried again. A file rewritten at the same path is replayed from its
  start (never skipped), and named in the summary. A hard kill can leave one chunk accepted but
  not yet recorded: it is sent again under the same messageIds, which Segment deduplicates.

Objects travel in the same chunks as the events of their payloads and count for the
checkpoint the same way: a payload is settled only once its events and its objects were
accepted. The Objects API upserts by collection and id, so an object sent twice is harmless.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from segfn_kit._checkpoint import Checkpoint, CheckpointEntry, CheckpointError, CheckpointKey
from segfn_kit._errors import ClusterError, ReplayError
from segfn_kit._progress import Bar
from segfn_kit._progress import progress as progress_bar
from segfn_kit._settingsfile import SettingsFileError, settings_values
from segfn_kit.runtime import Function, FunctionLoadError, Invocation, Request
from segfn_kit.runtime._delivery import (
    DEFAULT_OBJECTS_HOST,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_OBJECTS,
    DeliveryError,
    DeliveryReport,
    TrackingClient,
    UndeliverableEvent,
)
from segfn_kit.runtime._function import keep_timer_armed
from segfn_kit.runtime._isolation import Call, WorkerPool
from segfn_kit.runtime._rules import request_refusal

if TYPE_CHECKING:
    from segfn_kit._payloads import Payload

__all__ = ["ClusterError", "ReplayError", "ReplaySummary", "replay"]

# a chunk (the unit of a checkpoint) holds this many batches' worth of events: enough for the
# client to pack full batches across payload boundaries, small enough that little is re-sent
_CHUNK_BATCHES = 4
_LISTED = 20  # unloadable payloads and changed archives named in the printed summary
_HOOKS_MODULE = "segfn_kit._replaylines"  # what a replay's worker processes run lines with


@dataclasses.dataclass
class ReplaySummary:
    """What a replay did.

    Attributes:
        payloads: payloads read in this run (resumed ones included).
        resumed: payloads skipped because a checkpoint said they were accepted earlier.
        events: events the function emitted for the payloads run now.
        objects: ``Segment.set`` objects the function emitted for the payloads run now.
        outcomes: outcome (``ok``, ``EventNotSupported``, ..., ``error``, ``unloadable``,
            ``undeliverable``) -> payload count.
        delivery: the Tracking API side (batches, requests, retries, bytes, dead letters).
        undeliverable: messageIds of events over 32 KB or not JSON, and ``<collection>/<id>``
            (or ``objects[<i>]``) of objects Segment cannot take (in the dead-letter file).
        failed_payloads: payload ids whose events were not all accepted, or whose function
            raised ``RetryError`` or timed out (tried again on resume, as Segment retries them).
        errors: ``<payload id>: <error>`` of each payload whose call ended in an error (an
            exception, a timeout, a call killed past the memory limit or one that ended its
            worker process): its events are not sent; timeouts are also failed payloads.
        unloadable: ``<payload id>: <reason>`` of each payload that could not be loaded (a
            failure: the exit status is 1; read again on resume).
        changed: archives whose content changed since the checkpoint was written, at the same
            path: replayed from their start (their messageIds let Segment deduplicate).
        elapsed: seconds.
        interrupted: the replay was stopped before the end (Ctrl-C).
        mode: ``deliver``, ``dry-run`` or ``out``.
        plan: with a tracking plan, ``{"mode", "checked", "failing", "held", "issues"}``
            (events checked, events with a plan issue, events held back by ``block``, the
            issue count) and ``plan_examples`` the first issues as ``<payload id>: <message>``.
    """

    payloads: int = 0
    resumed: int = 0
    events: int = 0
    objects: int = 0
    outcomes: dict[str, int] = dataclasses.field(default_factory=dict)
    delivery: DeliveryReport = dataclasses.field(default_factory=DeliveryReport)
    undeliverable: list[str] = dataclasses.field(default_factory=list)
    failed_payloads: list[str] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)
    unloadable: list[str] = dataclasses.field(default_factory=list)
    changed: list[str] = dataclasses.field(default_factory=list)
    elapsed: float = 0.0
    interrupted: bool = False
    mode: str = "deliver"
    plan: dict[str, Any] | None = None
    plan_examples: list[str] = dataclasses.field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        """Events emitted per second of wall time."""
        return self.events / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Nothing was left undelivered (function outcomes other than ok are not failures)."""
        return not (self.failed_payloads or self.undeliverable or self.interrupted or self.unloadable
                    or self.delivery.dead_letter_ids or self.delivery.dead_letter_objects)

    def __str__(self) -> str:
        d = self.delivery
        lines = [
            f"payloads      {self.payloads:,} read, {self.resumed:,} skipped (accepted in an earlier run)",
            f"events        {self.events:,} emitted, {d.accepted:,} accepted"
            + (f" ({self.events_per_second:,.0f} events/s)" if self.elapsed else ""),
        ]
        if self.objects or d.objects:
            lines.append(f"objects       {self.objects:,} emitted, {d.objects_accepted:,} accepted"
                         + (f", {len(d.dead_letter_objects):,} dead letters" if d.dead_letter_objects else ""))
        lines += [
            "outcomes      " + (", ".join(f"{k} {v:,}" for k, v in sorted(self.outcomes.items())) or "none"),
        ]
        if self.mode == "deliver":
            lines += [
                f"batches       {d.batches:,} in {d.requests:,} requests ({d.retries:,} retries), {d.bytes:,} bytes sent",
                f"dead letters  {d.dead_letters + len(d.dead_letter_objects) + len(self.undeliverable):,} "
                + ("events and objects" if self.objects or d.objects else "events")
                + (f" ({len(self.undeliverable):,} undeliverable: over 32 KB, not JSON or an invalid object)"
                   if self.undeliverable else ""),
            ]
        if self.failed_payloads:
            lines.append(f"not accepted  {len(self.failed_payloads):,} payloads (run again to retry them)")
        if self.errors:
            lines.append(f"errors        {len(self.errors):,} payloads ended in an error (no events sent):")
            lines += [f"  {line}" for line in self.errors[:_LISTED]]
            if len(self.errors) > _LISTED:
                lines.append(f"  ... and {len(self.errors) - _LISTED:,} more")
        if self.unloadable:
            lines.append(f"unloadable    {len(self.unloadable):,} payloads could not be loaded:")
            lines += [f"  {line}" for line in self.unloadable[:_LISTED]]
            if len(self.unloadable) > _LISTED:
                lines.append(f"  ... and {len(self.unloadable) - _LISTED:,} more")
        if self.changed:
            lines.append(f"changed       {len(self.changed):,} archives changed since the checkpoint, "
                         "replayed from their start: " + ", ".join(self.changed[:_LISTED])
                         + (" ..." if len(self.changed) > _LISTED else ""))
        if self.plan is not None:
            p = self.plan
            lines.append(f"plan          {p['checked']:,} events checked, {p['failing']:,} with plan issues "
                         f"({p['issues']:,} issues), {p['held']:,} held back ({p['mode']})")
            lines += [f"  {line}" for line in self.plan_examples]
        if self.interrupted:
            lines.append("interrupted   run the same command again to resume")
        lines.append(f"time          {self.elapsed:.1f} s")
        return "\n".join(lines)


@dataclasses.dataclass
class _Chunk:
    first: int  # stream index of its first payload
    last: int  # stream index of its last payload
    payload_ids: list[str]
    events: list[tuple[str, bytes]]
    owners: list[int]  # index into payload_ids for each event
    size: int = 0
    objects: list[tuple[str, str, bytes]] = dataclasses.field(default_factory=list)
    object_owners: list[int] = dataclasses.field(default_factory=list)
    retry: list[str] = dataclasses.field(default_factory=list)  # RetryError or timed out
    unloadable: list[str] = dataclasses.field(default_factory=list)  # read again on resume
    units: list[tuple[_Unit | None, int]] = dataclasses.field(default_factory=list)  # per payload: file, position
    ends: list[tuple[_Unit, int]] = dataclasses.field(default_factory=list)  # files whose last payload is in here


class _Unit:
    """A file of the stream as the checkpoint sees it: its key, and how far it got.

    The main thread owns ``count`` (payloads of the file read so far); the sender thread owns
    ``position``, ``retry`` and ``complete`` (what was accepted)."""

    def __init__(self, source: str, key: CheckpointKey, entry: CheckpointEntry | None):
        self.source = source
        self.key = key
        self.entry = entry
        self.skip_before = entry.position if entry is not None else 0
        self.skip_except = set(entry.retry) if entry is not None else set()
        self.count = 0
        self.position = entry.position if entry is not None else 0
        self.retry: set[str] = set(entry.retry) if entry is not None else set()
        self.complete = entry.complete if entry is not None else False
        self.payloads = entry.info.get("payloads") if entry is not None else None


def _load_settings(settings: Mapping[str, Any] | str | os.PathLike[str] | None) -> dict[str, Any]:
    try:
        return settings_values(settings)
    except SettingsFileError as exc:
        raise ReplayError(str(exc)) from None


def _prepare(
    function: Function | str | os.PathLike[str], settings: Mapping[str, Any] | str | os.PathLike[str] | None
) -> tuple[Function, dict[str, Any]]:
    """The source function and its settings' values, checked before anything runs."""
    fn = function if isinstance(function, Function) else Function.from_file(function)
    if fn.kind != "source":
        raise ReplayError(f"{fn.filename} is a destination function; replay runs source functions (on_request)")
    values = _load_settings(settings)
    missing = fn.missing_settings(values)
    if missing:
        raise ReplayError(f"required setting(s) missing: {', '.join(missing)}; pass them with --settings FILE")
    return fn, values


def _replay_key(function: Function, settings: Mapping[str, Any]) -> str:
    # the checkpoint belongs to one function text and one set of settings (the archives are
    # its entries, each keyed by path and content); settings are hashed, never stored, so
    # secrets do not reach the checkpoint file
    h = hashlib.sha256()
    h.update(function.source.encode("utf-8", "surrogatepass"))
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _unit_key(source: str) -> CheckpointKey:
    path = Path(source)
    if path.is_file():
        return CheckpointKey.of_file(path)
    return CheckpointKey.of_bytes(source, source.encode("utf-8", "surrogatepass"))


def replay(
    function: Function | str | os.PathLike[str],
    *paths: str | os.PathLike[str],
    to: str | None = None,
    objects_to: str | None = None,
    write_key: str | None = None,
    dry_run: bool = False,
    out: str | os.PathLike[str] | TextIO | None = None,
    settings: Mapping[str, Any] | str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    dead_letter: str | os.PathLike[str] | None = None,
    budget: float = 120.0,
    progress: bool = False,
    client: TrackingClient | None = None,
    stream: Iterable[Payload] | None = None,
    scheduler: str | None = None,
    partitions: int | None = None,
    rate: float | None = None,
    batch_events: int | None = None,
    plan: Any = None,
    plan_mode: str = "report",
    isolation: str = "process",
    workers: int | None = None,
    pool: WorkerPool | None = None,
) -> ReplaySummary:
    """Run a source function over archived payloads and deliver (or write) the events.

    Args:
        function: the source function (a file path or a loaded ``Function``).
        *paths: archives: files (JSON Lines, JSON, HAR, ... ; ``.gz`` too), folders, globs.
        to: the Tracking API host (default ``$SEGMENT_API_HOST``, else https://api.segment.io).
        objects_to: the Objects API host for ``Segment.set`` objects (default
            ``$SEGMENT_OBJECTS_HOST``, else https://objects.segment.com); give the same URL as
            ``to`` when that is a local sink.
        write_key: the source's write key (default ``$SEGMENT_WRITE_KEY``).
        dry_run: run the function and count, but send and write nothing.
        out: write the events as JSON Lines (one event per line) to this file instead of
            sending them (``Segment.set`` objects are counted, not written).
        settings: the function's settings (a mapping or a JSON file).
        checkpoint: a file recording what was accepted, to resume without duplicates.
        dead_letter: JSON Lines file for events that could not be delivered (default:
            ``<checkpoint>.dead.jsonl``, or ``segfn-replay.dead.jsonl``).
        budget: seconds each chunk of events may take to be accepted, retries included.
        progress: show a progress bar (on stderr).
        client: a ``TrackingClient`` to use instead of one built from ``to`` and ``write_key``.
        stream: payloads already read (a partition of a cluster replay), run instead of
            reading ``paths``; ``paths`` then only name the run (the checkpoint's key).
        scheduler: run on a Dask cluster: ``tcp://host:port`` of a running scheduler, or
            ``local:N`` for N local worker processes (needs ``segfn_kit[dask]``). Workers
            read the archives themselves (local paths they reach, fsspec URLs such as
            ``s3://bucket/2025/*.jsonl.gz``); ``checkpoint`` is then a folder recording
            finished partitions by content, and ``dead_letter`` a folder. Returns a
            ``ClusterReplaySummary``. See ``segfn_kit._cluster``.
        partitions: with ``scheduler``, the number of partitions (default 4 per worker).
        rate: with ``scheduler``, at most this many requests per second, all workers
            together (429 ``Retry-After`` pauses them all).
        batch_events: events per ``/v1/batch`` request (default and most: 2,500).
        plan: a tracking plan (anything ``segfn_kit.load_plan`` reads) every event is held
            against before it is sent; counts and the first issues are in the summary.
        plan_mode: ``report`` sends every event and reports plan issues; ``block`` holds
            back the events with a plan issue (violations and unplanned events), as
            Protocols' blocking does: they are counted, not sent, written or dead-lettered.
        isolation: ``"process"`` (the default) calls the function in worker processes
            (``segfn_kit.runtime._isolation.WorkerPool``), a chunk of payloads per message:
            a call past the time limit (a bare ``except:`` in a loop, a long C call) or the
            memory limit, or one that ends its process (``os._exit``), is killed and is that
            payload's error; the replay goes on. What the function prints goes to stderr.
            ``"none"`` calls it in this process (for a debugger; no hard limits: such a call
            holds or ends the replay) With ``scheduler``, the same choice on each Dask worker:
            a worker process of its own (the default), or the Dask worker's process.
        workers: with ``isolation="process"``, how many worker processes call the function
            side by side (default: one per CPU, 1 to 4). Events, checkpoints and the
            summary follow the archive's order whatever the number; each worker holds its
            own copy of the function's module-level state.
        pool: with ``isolation="process"``, a running ``WorkerPool`` of this function and
            these settings to call it on, instead of starting one (a cluster worker keeps one
            across its partitions); it is left running.

    Returns:
        A ``ReplaySummary``; print it for the table the command line shows.

    Raises:
        ReplayError: bad arguments, a missing write key, or a checkpoint of another replay.
        PlanError: the plan cannot be used (raised before any payload is read).

    Example:
        >>> import tempfile, pathlib
        >>> tmp = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (tmp / "fn.py").write_text(
        ...     "from segfn_kit.runtime import Segment\\n"
        ...     "def on_request(request, settings):\\n"
        ...     "    body = request.json()\\n"
        ...     "    Segment.track(user_id=body['user'], event='Paid')\\n")
        >>> _ = (tmp / "archive.jsonl").write_text('{"user": "u1"}\\n{"user": "u2"}\\n')
        >>> summary = replay(tmp / "fn.py", tmp / "archive.jsonl", dry_run=True)
        >>> summary.payloads, summary.events, summary.outcomes
        (2, 2, {'ok': 2})
    """
    from segfn_kit._payloads import Line, Payload, iter_archive, iter_payloads
    from segfn_kit._replaylines import ENCODERS, HOOKS

    started = time.monotonic()
    if not paths:
        raise ReplayError("no archives given: name at least one file or folder of payloads")
    if dry_run and out is not None:
        raise ReplayError("choose one of dry_run and out")
    if scheduler is not None:
        if out is not None:
            raise ReplayError("out writes one file on this machine: run it without a scheduler "
                              "(the messageIds are the same)")
        if client is not None or stream is not None:
            raise ReplayError("client and stream belong to a one-process replay; give them without a scheduler")
        if workers is not None:
            raise ReplayError("workers are for a replay on this machine; with a scheduler the cluster's "
                              "workers run the calls (local:N starts N)")
        if plan is not None:
            raise ReplayError("a tracking plan is checked in one-process replays only: run without a "
                              "scheduler, or check the plan with `segfn run --plan` on a sample first")
        from segfn_kit._cluster import replay_on_cluster

        return replay_on_cluster(
            function, *paths, scheduler=scheduler, partitions=partitions, rate=rate, to=to,
            objects_to=objects_to, write_key=write_key, dry_run=dry_run, settings=settings,
            checkpoint=checkpoint, dead_letter=dead_letter, budget=budget, progress=progress,
            batch_events=batch_events, isolation=isolation,
        )
    checker = None
    if plan is not None:
        from segfn_kit._plan import load_plan
        from segfn_kit.runtime._plan import PLAN_MODES

        if plan_mode not in PLAN_MODES:
            raise ReplayError(f"plan_mode {plan_mode!r}: use report or block")
        checker = load_plan(plan)
    if isolation not in ("process", "none"):
        raise ReplayError(f'isolation must be "process" or "none", not {isolation!r}')
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ReplayError(f"workers must be a whole number of processes, 1 or more, not {workers!r}")
    if workers is not None and isolation == "none":
        raise ReplayError('workers are processes of isolation="process": give one or the other')
    if partitions is not None or rate is not None:
        raise ReplayError("partitions and rate are options of a cluster replay: give a scheduler too "
                          "(local:N runs one on this machine)")
    if checkpoint is not None and (dry_run or out is not None):
        raise ReplayError("a checkpoint records what was delivered: use it without dry_run and out")
    fn, values = _prepare(function, settings)
    fn_settings = fn.settings(values)
    mode = "dry-run" if dry_run else "out" if out is not None else "deliver"
    summary = ReplaySummary(mode=mode)
    if checker is not None:
        summary.plan = {"mode": plan_mode, "checked": 0, "failing": 0, "held": 0, "issues": 0}

    cp: Checkpoint | None = None
    own_client = client is None  # the events are then encoded where the function runs
    sender: _Sender | None = None
    writer: TextIO | None = None
    with contextlib.ExitStack() as stack:
        if mode == "deliver":
            if client is None:
                key = write_key or os.environ.get("SEGMENT_WRITE_KEY")
                if not key:
                    raise ReplayError("no write key: set SEGMENT_WRITE_KEY (or use --dry-run / --out FILE)")
                host = to or os.environ.get("SEGMENT_API_HOST") or "https://api.segment.io"
                objects_host = objects_to or os.environ.get("SEGMENT_OBJECTS_HOST") or DEFAULT_OBJECTS_HOST
                if dead_letter is None:
                    dead_letter = (f"{os.fspath(checkpoint).rstrip('/' + os.sep)}.dead.jsonl" if checkpoint
                                   else "segfn-replay.dead.jsonl")
                client = TrackingClient(key, host, objects_host=objects_host, budget=budget,
                                        timeout=min(30.0, budget), dead_letter=dead_letter,
                                        max_batch_events=batch_events or MAX_BATCH_EVENTS)
                stack.callback(client.close)
            if checkpoint is not None:
                try:
                    cp = Checkpoint(checkpoint, run=_replay_key(fn, values))
                except CheckpointError as exc:
                    raise ReplayError(str(exc)) from None
            sender = _Sender(client, cp, summary)
            stack.callback(sender.close)
        elif mode == "out":
            if isinstance(out, str | os.PathLike):
                writer = stack.enter_context(open(out, "w", encoding="utf-8"))
            else:
                writer = out

        bar: Bar[None] | None = (
            stack.enter_context(progress_bar(show=True, desc="replay", unit="payloads")) if progress else None
        )
        outcomes: Counter[str] = Counter()
        assert client is not None or mode != "deliver"
        limit_bytes = (client.max_batch_bytes if client else MAX_BATCH_BYTES) * _CHUNK_BATCHES
        limit_events = (client.max_batch_events if client else MAX_BATCH_EVENTS) * _CHUNK_BATCHES
        limit_objects = (client.max_batch_objects if client else MAX_BATCH_OBJECTS) * _CHUNK_BATCHES
        chunk: _Chunk | None = None
        unit: _Unit | None = None
        seen: set[str] = set()

        # what the function is called on, in stream order; records without a call (payloads
        # skipped by the checkpoint are not even recorded, unloadable ones and the ends of
        # files are) keep their place between the calls, so chunks see the stream as it is
        records: collections.deque[tuple[Any, ...]] = collections.deque()
        given: dict[int, tuple[Invocation, Any]] = {}  # stream index -> what stands for its call
        # JSON Lines lines go to the function unread: it runs where the line is read
        # (_replaylines), so this process handles a line and its reply, nothing more
        # a plan's check, or a client given to encode, needs the events themselves here
        hook_mode = "keep" if checker is not None or (mode == "deliver" and not own_client) else mode
        hook_spec = HOOKS[hook_mode]
        encode = ENCODERS[hook_mode]
        unread = stream is None and (isolation == "none" or pool is None or pool.raw == hook_spec)

        def calls() -> Iterator[Request | Call]:
            """The calls to make; ``records`` gets one entry per payload or end of file."""
            nonlocal unit
            index = -1
            items: Iterable[Payload | Line]
            if stream is not None:
                items = stream
            elif unread:
                items = iter_archive(*paths)
            else:
                items = iter_payloads(*paths, bodies=False)
            for index, item in enumerate(items):
                summary.payloads += 1
                if bar is not None:
                    bar.update(1)
                position = 0
                if cp is not None:
                    if unit is None or item.source != unit.source:
                        if unit is not None:
                            records.append(("end", index, *_ended(unit)))
                        unit = _open_unit(cp, item.source, seen, summary)
                    position = unit.count
                    unit.count += 1
                    if position < unit.skip_before and item.payload_id not in unit.skip_except:
                        summary.resumed += 1
                        continue
                if type(item) is Line:
                    records.append(("payload", index, item, unit, position, True))
                    yield ("raw", (item.position, item.data))
                    continue
                assert isinstance(item, Payload)
                if item.error:
                    given[index] = (Invocation(outcome="error", error=item.error), item.error)
                    records.append(("payload", index, item, unit, position, False))
                    continue
                request = item.request()
                # what the deployed handler refuses (413, 415) never reaches the function
                refusal = request_refusal(request.headers.peek("content-type"), len(request.content))
                if refusal is not None:
                    given[index] = (Invocation(outcome="error", error=refusal.row_error()), None)
                    records.append(("payload", index, item, unit, position, False))
                    continue
                records.append(("payload", index, item, unit, position, True))
                yield request
            if unit is not None:
                records.append(("end", index + 1, *_ended(unit)))

        def _ended(ended: _Unit) -> tuple[_Unit, int]:
            # the file ended: a checkpoint that claims more of it than it holds belongs elsewhere
            if ended.skip_before > ended.count:
                raise ReplayError(
                    f"the checkpoint {checkpoint} says {ended.skip_before:,} payloads of {ended.key.location} "
                    f"were settled, but the file holds {ended.count:,}: the checkpoint does not match "
                    "these archives; delete it to start over"
                )
            return ended, ended.count

        def settle(record: tuple[Any, ...], invocation: Invocation | None, reply: Any) -> None:
            """Count, write or chunk (for delivery) one record of the stream, given its call's
            invocation and reply (see ``_replaylines``)."""
            nonlocal chunk
            if record[0] == "end":
                _, index, ended, total = record
                if chunk is None:
                    chunk = _Chunk(index, index, [], [], [])
                chunk.ends.append((ended, total))
                return
            _, index, item, payload_unit, position, _ = record
            payload_id = item.payload_id
            assert invocation is not None
            unloadable = type(reply) is str
            retryable = False
            if unloadable:
                summary.unloadable.append(f"{payload_id}: {reply}")
                outcomes["unloadable"] += 1
                reply = None
            else:
                outcome = invocation.outcome
                outcomes["timeout" if invocation.timed_out else outcome] += 1
                retryable = invocation.retryable
                if outcome != "ok":
                    if outcome == "error":
                        summary.errors.append(f"{payload_id}: {invocation.error}")
                    reply = None
                elif type(item) is not Line:  # a call of a Payload: the reply is made here
                    reply = encode(invocation)
            events: list[dict[str, Any]] = []
            objects: list[dict[str, Any]] = []
            encoded_there: list[Any] | None = None
            if reply is not None:
                emitted, emitted_objects, body = reply
                if type(body) is list:  # a delivery's events, encoded where the function ran
                    encoded_there = body
                    summary.events += emitted
                    summary.objects += emitted_objects
                elif type(body) is not tuple:  # counted (and written) where the function ran
                    summary.events += emitted
                    summary.objects += emitted_objects
                    if body:
                        assert writer is not None
                        writer.write(body)
                    return
                else:
                    events, objects = body
                    if checker is not None and events:
                        events = _hold(checker, plan_mode, payload_id, events, summary)
                    summary.events += len(events)
                    summary.objects += len(objects)
            if mode == "dry-run":
                return
            if mode == "out":
                assert writer is not None
                for event in events:
                    writer.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
                return
            assert sender is not None and client is not None
            try:
                if encoded_there is not None:  # checked and encoded where the function ran
                    encoded, encoded_objects = encoded_there
                else:
                    encoded, encoded_objects = client.check_all(events, objects)
            except UndeliverableEvent as exc:
                # the payload's events and objects go nowhere but the dead-letter file:
                # half of what a payload maps to would be worse than none of it
                outcomes["undeliverable"] += 1
                outcomes["ok"] -= 1
                sender.bury_undeliverable(payload_id, events, exc, objects)
                encoded, encoded_objects = [], []
            size = sum(len(data) + 1 for _, data in encoded) + sum(len(d) + 1 for _, _, d in encoded_objects)
            if chunk is not None and (chunk.events or chunk.objects) and (
                chunk.size + size > limit_bytes or len(chunk.events) + len(encoded) > limit_events
                or len(chunk.objects) + len(encoded_objects) > limit_objects
            ):
                sender.put(chunk)
                chunk = None
            if chunk is None:
                chunk = _Chunk(index, index, [], [], [])
            chunk.last = index
            chunk.owners.extend([len(chunk.payload_ids)] * len(encoded))
            chunk.object_owners.extend([len(chunk.payload_ids)] * len(encoded_objects))
            chunk.objects.extend(encoded_objects)
            chunk.payload_ids.append(payload_id)
            chunk.units.append((payload_unit, position))
            if retryable:
                chunk.retry.append(payload_id)
            if unloadable:
                chunk.unloadable.append(payload_id)
            chunk.events.extend(encoded)
            chunk.size += size

        def settle_until_call(invocation: Invocation | None, reply: Any = None) -> None:
            """Settle the records up to the next call's (given its invocation and reply), or
            all (None)."""
            while records:
                record = records.popleft()
                if record[0] != "payload":
                    settle(record, None, None)
                elif record[5]:
                    assert invocation is not None, "a call's record without its result"
                    settle(record, invocation, reply)
                    return
                else:
                    settle(record, *given.pop(record[1]))

        try:
            if isolation == "none":
                # one timer for the run's calls, each still under its own limit
                stack.enter_context(keep_timer_armed())
                hook = _resolve_hook(hook_spec)

                def run(request: Request) -> Invocation:
                    return fn.on_request(request, fn_settings)

                for call in calls():
                    if type(call) is tuple:
                        settle_until_call(*hook(call[1], run))
                    else:
                        assert isinstance(call, Request)
                        settle_until_call(run(call))
            else:
                # the function's calls overlap with this process's reading and settling
                if pool is None:
                    pool = WorkerPool(fn, dict(values), workers=workers or _default_workers(), raw=hook_spec,
                                      preload=(_HOOKS_MODULE,))
                    stack.callback(pool.close)
                try:
                    for result in pool.map(calls()):
                        if result.logs:
                            sys.stderr.write(result.logs)
                        settle_until_call(result.invocation, result.reply)
                except FunctionLoadError as exc:  # it loads here but not in a worker process
                    raise ReplayError(f"{fn.filename}: the function does not load in a worker process: {exc}; "
                                      "--isolation none runs it in this process") from None
            settle_until_call(None)
            if chunk is not None and sender is not None:
                sender.put(chunk)
                chunk = None
            if sender is not None:
                sender.finish()
        except KeyboardInterrupt:
            summary.interrupted = True
            if sender is not None:
                # what is already handed over is delivered and checkpointed; the rest waits
                sender.finish()
        except CheckpointError as exc:
            raise ReplayError(str(exc)) from None
        summary.outcomes = {k: v for k, v in sorted(outcomes.items()) if v}
    summary.elapsed = time.monotonic() - started
    return summary


def _default_workers() -> int:
    """One worker process per CPU, 1 to 4: this process only reads the lines and settles the
    replies (a few microseconds a payload; the workers read each line into its request, call
    the function and count or encode what it emitted), so it takes little of a CPU from them;
    past a few workers it is the one they wait for."""
    return max(1, min(4, os.cpu_count() or 1))


def _hold(checker: Any, mode: Any, payload_id: str, events: list[dict[str, Any]],
          summary: ReplaySummary) -> list[dict[str, Any]]:
    """The events to send after the plan's check; the summary counts what it found."""
    sent, held, issues = checker.hold(events, mode)
    assert summary.plan is not None
    summary.plan["checked"] += len(events)
    summary.plan["failing"] += len({i["event_index"] for i in issues})
    summary.plan["held"] += len(held)
    summary.plan["issues"] += len(issues)
    for issue in issues:
        if len(summary.plan_examples) >= _LISTED:
            break
        summary.plan_examples.append(f"{payload_id}: events[{issue['event_index']}]: {issue['message']}")
    return list(sent)


def _open_unit(cp: Checkpoint, source: str, seen: set[str], summary: ReplaySummary) -> _Unit:
    """The checkpoint's view of the file a payload comes from (its digest read once per run)."""
    key = _unit_key(source)
    if key.location in seen:
        # named twice (overlapping globs): the second pass runs in full, under the same messageIds
        return _Unit(source, key, None)
    seen.add(key.location)
    old = cp.changed(key)
    if old is not None:
        summary.changed.append(key.location)
        print(f"segfn replay: {key.location} changed since the checkpoint was written ({old.digest[:19]}..., "
              f"now {key.digest[:19]}...): replaying it from its start", file=sys.stderr)
    return _Unit(source, key, cp.get(key))


def _resolve_hook(spec: str) -> Any:
    """The ``_replaylines`` hook a spec names (as a worker process resolves it)."""
    from segfn_kit import _replaylines

    return getattr(_replaylines, spec.partition(":")[2])


class _Sender:
    """Delivers chunks on a background thread, in order, and advances the checkpoint."""

    def __init__(self, client: TrackingClient, cp: Checkpoint | None, summary: ReplaySummary):
        self.client = client
        self.cp = cp
        self.summary = summary
        self._queue: queue.Queue[_Chunk | None] = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        # started with the first chunk: until then this process runs one thread, so the
        # worker processes are forked (from a second thread they would be new interpreters)
        self._thread = threading.Thread(target=self._run, name="segfn-replay-sender", daemon=True)
        self._finished = False

    def put(self, chunk: _Chunk) -> None:
        self._raise()
        if self._thread.ident is None:
            self._thread.start()
        while True:
            try:
                self._queue.put(chunk, timeout=0.5)
                return
            except queue.Full:
                self._raise()

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            if self._thread.ident is not None:
                self._queue.put(None)
                self._thread.join()
        self._raise()

    def close(self) -> None:
        if not self._finished:
            self._finished = True
            if self._thread.ident is not None:
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(None)
                self._thread.join(timeout=5)

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def bury_undeliverable(
        self,
        payload_id: str,
        events: list[dict[str, Any]],
        exc: UndeliverableEvent,
        objects: list[dict[str, Any]] | None = None,
    ) -> None:
        """Write a payload's events and objects to the dead-letter file, each with its reason.

        None of them was sent: the ones Segment could take are written too (held back), so
        the dead-letter file holds everything the payload maps to and nothing is lost.
        """
        bad = {mid: why for mid, why in exc.problems}
        bad_objects = dict(exc.object_problems)
        with self._lock:
            self.summary.undeliverable.extend(bad)
            self.summary.undeliverable.extend(bad_objects)
        print(f"segfn replay: payload {payload_id}: {exc}", file=sys.stderr)
        path = self.client.dead_letter
        if path is None:
            return
        held = "held back, not sent: other events or objects of this payload cannot be delivered"
        lines = []
        for event in events:
            mid = event.get("messageId")
            try:
                text = json.dumps(event, ensure_ascii=False)
            except (TypeError, ValueError):
                text = json.dumps(repr(event))
            lines.append(json.dumps({"reason": bad.get(str(mid), held), "payload_id": payload_id, "messageId": mid})[:-1]
                         + f',"event":{text}}}\n')
        for index, obj in enumerate(objects or []):
            label = _object_label(obj, index)
            try:
                text = json.dumps(obj, ensure_ascii=False)
            except (TypeError, ValueError):
                text = json.dumps(repr(obj))
            head = {"reason": bad_objects.get(label, held), "payload_id": payload_id, "object_label": label}
            lines.append(json.dumps(head)[:-1] + f',"object":{text}}}\n')
        with open(path, "a", encoding="utf-8") as fh:
            fh.writelines(lines)

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self._error is not None:
                continue
            try:
                self._deliver(chunk)
            except BaseException as exc:
                self._error = exc

    def _deliver(self, chunk: _Chunk) -> None:
        # payloads the function asked to retry are tried again on resume, as Segment would
        failed_ids: set[str] = set(chunk.retry)
        if chunk.events or chunk.objects:
            try:
                report = self.client.send_encoded(chunk.events, chunk.objects)
            except DeliveryError as exc:
                report = exc.report
                dead = set(report.dead_letter_ids)
                failed_ids |= {chunk.payload_ids[o] for (mid, _), o in zip(chunk.events, chunk.owners, strict=True)
                               if mid in dead}
                # objects are named <collection>/<id>: every payload that set a dead one is retried
                dead_objects = set(report.dead_letter_objects)
                failed_ids |= {chunk.payload_ids[o] for (c, i, _), o in zip(chunk.objects, chunk.object_owners,
                                                                            strict=True)
                               if f"{c}/{i}" in dead_objects}
            with self._lock:
                self.summary.delivery = self.summary.delivery + report
        with self._lock:
            self.summary.failed_payloads.extend(sorted(failed_ids))
        cp = self.cp
        if cp is None:
            return
        again = failed_ids | set(chunk.unloadable)
        touched: dict[int, _Unit] = {}
        for payload_id, (unit, position) in zip(chunk.payload_ids, chunk.units, strict=True):
            assert unit is not None
            unit.position = max(unit.position, position + 1)
            if payload_id in again:
                unit.retry.add(payload_id)
            else:
                unit.retry.discard(payload_id)
            touched[id(unit)] = unit
        for unit, total in chunk.ends:
            unit.complete = True
            unit.payloads = total
            touched[id(unit)] = unit
        for unit in touched.values():
            info = {"payloads": unit.payloads} if unit.payloads is not None else {}
            cp.mark(unit.key, complete=unit.complete, position=unit.position, retry=unit.retry, save=False, **info)
        cp.save()


def _object_label(obj: Any, index: int) -> str:
    """The label ``encode_object`` gives a ``Segment.set`` record in its problems."""
    from segfn_kit.runtime._delivery import encode_object

    try:
        collection, object_id, _ = encode_object(obj, index=index)
    except UndeliverableEvent as exc:
        return exc.object_problems[0][0]
    return f"{collection}/{object_id}"
