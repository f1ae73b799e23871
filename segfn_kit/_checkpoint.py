"""Checkpoints keyed by content: what a replay (one process or a cluster) already settled.

A unit of work is a file, or a byte range of one, named by a ``CheckpointKey``: its location
(path or URL, and the range) and the sha256 digest of its bytes. A checkpoint remembers, per
location, the digest it saw and how far the work on it got. Asking about a key whose location
is known under another digest says so (``changed``), so an archive rewritten at the same path is
never taken for one already replayed.

Two layouts, the same API:

- a **file** (``Checkpoint("replay.ckpt")``): one JSON object, rewritten atomically (a temporary
  file, fsync, rename) on each ``mark``; for one process (threads may share it);
- a **directory** (``Checkpoint("ckpt/", directory=True)``, or an existing directory): one small
  JSON file per unit, each written atomically, so processes on many machines that share the
  directory can mark their own units without a lock.

Both hold a ``run`` key (a digest of what makes results comparable: the function's text and its
settings); opening a checkpoint with another run key is a ``CheckpointError``.

Example:
    >>> import tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (tmp / "a.jsonl").write_text('{"x": 1}\\n')
    >>> cp = Checkpoint(tmp / "replay.ckpt", run="r1")
    >>> key = CheckpointKey.of_file(tmp / "a.jsonl")
    >>> cp.done(key)
    False
    >>> cp.mark(key, payloads=1)
    >>> Checkpoint(tmp / "replay.ckpt", run="r1").done(key)
    True
    >>> _ = (tmp / "a.jsonl").write_text('{"x": 2}\\n')
    >>> changed = CheckpointKey.of_file(tmp / "a.jsonl")
    >>> cp.done(changed), cp.changed(changed) is not None
    (False, True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from segfn_kit._errors import CheckpointError

__all__ = ["Checkpoint", "CheckpointEntry", "CheckpointError", "CheckpointKey"]

CHECKPOINT_VERSION = 2
_READ_BLOCK = 1 << 20


@dataclasses.dataclass(frozen=True)
class CheckpointKey:
    """One unit of work: a file (or a byte range of it) and the digest of its bytes.

    Attributes:
        path: where the unit lives: an absolute local path, or a URL (``s3://...``).
        digest: ``sha256:<hex>`` of the unit's bytes.
        start: the first byte of the range (0 for a whole file).
        end: the byte after the range's last, or None for "to the end of the file".

    Example:
        >>> key = CheckpointKey.of_bytes("s3://bucket/a.jsonl", b'{"x": 1}\\n')
        >>> key.location, key.digest[:15]
        ('s3://bucket/a.jsonl', 'sha256:93635396')
    """

    path: str
    digest: str
    start: int = 0
    end: int | None = None

    @property
    def location(self) -> str:
        """The path, with the byte range when the unit is not a whole file: ``a.jsonl@0-1048576``."""
        if self.start == 0 and self.end is None:
            return self.path
        return f"{self.path}@{self.start}-{'' if self.end is None else self.end}"

    def __str__(self) -> str:
        return f"{self.location} ({self.digest[:19]})"

    @classmethod
    def of_bytes(cls, path: str | os.PathLike[str], data: bytes, start: int = 0,
                 end: int | None = None) -> CheckpointKey:
        """The key of bytes already in memory (``start``/``end`` say where they sit in ``path``).

        Example:
            >>> CheckpointKey.of_bytes("s3://b/a.jsonl", b"abc", 3, 6).location
            's3://b/a.jsonl@3-6'
        """
        return cls(_name(path), "sha256:" + hashlib.sha256(data).hexdigest(), start, end)

    @classmethod
    def of_stream(cls, path: str | os.PathLike[str], stream: IO[bytes], start: int = 0,
                  end: int | None = None) -> CheckpointKey:
        """The key of bytes ``[start, end)`` read from an open binary file (``open(.., "rb")``,
        ``fsspec.open(url, "rb")``), in blocks: memory stays flat for any size.

        Example:
            >>> import io
            >>> CheckpointKey.of_stream("a.jsonl", io.BytesIO(b"abcdef"), 1, 3) == CheckpointKey.of_bytes(
            ...     "a.jsonl", b"bc", 1, 3)
            True
        """
        h = hashlib.sha256()
        if start:
            stream.seek(start)
        remaining = None if end is None else max(0, end - start)
        while remaining is None or remaining > 0:
            block = stream.read(_READ_BLOCK if remaining is None else min(_READ_BLOCK, remaining))
            if not block:
                break
            h.update(block)
            if remaining is not None:
                remaining -= len(block)
        return cls(_name(path), "sha256:" + h.hexdigest(), start, end)

    @classmethod
    def of_file(cls, path: str | os.PathLike[str], start: int = 0, end: int | None = None) -> CheckpointKey:
        """The key of a local file (or of its bytes ``[start, end)``); the path is made absolute.

        Raises:
            CheckpointError: the file cannot be read.

        Example:
            >>> import tempfile, pathlib
            >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.jsonl"
            >>> _ = f.write_bytes(b"abc")
            >>> CheckpointKey.of_file(f).digest == CheckpointKey.of_bytes(f, b"abc").digest
            True
        """
        try:
            with open(path, "rb") as fh:
                return cls.of_stream(Path(path).resolve(), fh, start, end)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read it to key the checkpoint ({exc.strerror or exc})") from None


@dataclasses.dataclass
class CheckpointEntry:
    """What a checkpoint knows of one unit.

    Attributes:
        location: the unit's ``CheckpointKey.location``.
        digest: the digest of the unit's bytes when it was recorded.
        complete: every record of the unit was reached (those in ``retry`` still wait).
        position: how many records from the unit's start are settled (except ``retry``).
        retry: ids of records to run again (their results were not accepted).
        info: whatever the caller recorded with it (counts; never secrets).
    """

    location: str
    digest: str
    complete: bool = False
    position: int = 0
    retry: list[str] = dataclasses.field(default_factory=list)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Complete with nothing left to retry."""
        return self.complete and not self.retry

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location, "digest": self.digest, "complete": self.complete,
                "position": self.position, "retry": sorted(self.retry), "info": self.info}

    @classmethod
    def from_json(cls, data: Any, where: str) -> CheckpointEntry:
        if not isinstance(data, dict):
            raise CheckpointError(f"{where}: an entry is {_kind(data)}, expected an object; delete it to start over")
        try:
            entry = cls(location=data["location"], digest=data["digest"], complete=data["complete"],
                        position=data["position"], retry=data["retry"], info=data.get("info", {}))
        except KeyError as exc:
            raise CheckpointError(f"{where}: an entry has no {exc.args[0]!r}; delete it to start over") from None
        if not (isinstance(entry.location, str) and isinstance(entry.digest, str)
                and isinstance(entry.complete, bool) and type(entry.position) is int and entry.position >= 0
                and isinstance(entry.retry, list) and all(isinstance(r, str) for r in entry.retry)
                and isinstance(entry.info, dict)):
            raise CheckpointError(f"{where}: the entry for {data.get('location')!r} has fields of the wrong "
                                  "type; delete it to start over")
        return entry


class Checkpoint:
    """A content-keyed record of settled units, in a file or a directory.

    Args:
        location: the checkpoint file, or directory.
        run: a digest of what makes this work comparable (the function, its settings); a
            checkpoint written under another run key is refused. None accepts any.
        directory: True for the directory layout, False for the one-file layout; None
            chooses: an existing directory, or a path ending in ``/``, is a directory.

    Raises:
        CheckpointError: the checkpoint exists but is unreadable, malformed, of another
            version or of another run. The message says to delete it to start over.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp()) / "ckpt"
        >>> cp = Checkpoint(d, run="r1", directory=True)
        >>> key = CheckpointKey.of_bytes("s3://b/a.jsonl", b"abc", 0, 3)
        >>> cp.mark(key, complete=False, position=2, retry=["a.jsonl#1"])
        >>> entry = Checkpoint(d, run="r1").get(key)
        >>> entry.position, entry.retry, entry.done
        (2, ['a.jsonl#1'], False)
    """

    def __init__(self, location: str | os.PathLike[str], *, run: str | None = None,
                 directory: bool | None = None):
        self.path = Path(location)
        if directory is None:
            directory = self.path.is_dir() or os.fspath(location).endswith(("/", os.sep))
        self.directory = directory
        self.run = run
        self._lock = threading.Lock()
        self._entries: dict[str, CheckpointEntry] = {}
        if directory:
            self._open_directory()
        else:
            self._open_file()

    # ------------------------------------------------------------------ queries

    def get(self, key: CheckpointKey) -> CheckpointEntry | None:
        """The entry of this unit, if recorded under the same digest (else None)."""
        entry = self._entry(key.location)
        return entry if entry is not None and entry.digest == key.digest else None

    def done(self, key: CheckpointKey) -> bool:
        """Whether this unit, with these very bytes, was finished with nothing left to retry."""
        entry = self.get(key)
        return entry is not None and entry.done

    def changed(self, key: CheckpointKey) -> CheckpointEntry | None:
        """The entry recorded at this unit's location under another digest: the bytes there
        changed since (the caller runs the unit again, or refuses). None otherwise."""
        entry = self._entry(key.location)
        return entry if entry is not None and entry.digest != key.digest else None

    def entries(self) -> list[CheckpointEntry]:
        """Every entry, sorted by location."""
        if self.directory:
            found = [self._read_unit(p) for p in sorted(self.path.glob("unit-*.json"))]
            return sorted((e for e in found if e is not None), key=lambda e: e.location)
        with self._lock:
            return [self._entries[k] for k in sorted(self._entries)]

    # ------------------------------------------------------------------ updates

    def mark(self, key: CheckpointKey, *, complete: bool = True, position: int | None = None,
             retry: Iterable[str] = (), save: bool = True, **info: Any) -> None:
        """Record how far the work on a unit got (by default: finished).

        Args:
            key: the unit.
            complete: every record of the unit was reached.
            position: records settled from the unit's start (default: unchanged, or
                ``info["payloads"]`` when complete).
            retry: ids of records whose results were not accepted (run again next time).
            save: write now (False batches several marks of a file checkpoint; call ``save()``).
            **info: JSON values to keep with the entry (counts; never secrets).
        """
        old_unit = self._entry(key.location) if self.directory else None
        with self._lock:
            old = old_unit if self.directory else self._entries.get(key.location)
            if position is None:
                position = old.position if old is not None and old.digest == key.digest else 0
                if complete and isinstance(info.get("payloads"), int):
                    position = max(position, info["payloads"])
            entry = CheckpointEntry(key.location, key.digest, complete, position, sorted(set(retry)), dict(info))
            if self.directory:
                self._write_json(self._unit_path(key.location), entry.to_json())
                return
            self._entries[key.location] = entry
            if save:
                self._save_locked()

    def forget(self, key: CheckpointKey, *, save: bool = True) -> None:
        """Drop what is recorded at this unit's location (whatever its digest)."""
        with self._lock:
            if self.directory:
                self._unit_path(key.location).unlink(missing_ok=True)
                return
            self._entries.pop(key.location, None)
            if save:
                self._save_locked()

    def save(self) -> None:
        """Write a file checkpoint now, atomically (marks with ``save=False`` wait for this)."""
        if self.directory:
            return
        with self._lock:
            self._save_locked()

    # ------------------------------------------------------------------ storage

    def _entry(self, location: str) -> CheckpointEntry | None:
        if self.directory:
            return self._read_unit(self._unit_path(location))
        with self._lock:
            return self._entries.get(location)

    def _unit_path(self, location: str) -> Path:
        return self.path / f"unit-{hashlib.sha256(location.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}.json"

    def _read_unit(self, path: Path) -> CheckpointEntry | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read this checkpoint entry ({exc.strerror or exc})") from None
        return CheckpointEntry.from_json(self._parse(text, path), str(path))

    def _open_directory(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path}: exists and is not a directory; name a directory for the checkpoint")
        self.path.mkdir(parents=True, exist_ok=True)
        head = self.path / "checkpoint.json"
        if not head.exists():
            # written whole to a temporary file, then linked into place: link() fails if the head
            # exists, so of processes opening a new directory at once one wins and none reads a
            # half-written head
            record = {"version": CHECKPOINT_VERSION, "run": self.run, "layout": "directory"}
            fd, tmp = tempfile.mkstemp(prefix="checkpoint.", suffix=".tmp", dir=self.path)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(record, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, head)
            finally:
                Path(tmp).unlink(missing_ok=True)
        self._check_head(self._parse(_read(head), head), head)

    def _open_file(self) -> None:
        if self.path.is_dir():
            raise CheckpointError(f"{self.path}: is a directory; pass directory=True or name a file")
        if not self.path.exists():
            return
        data = self._parse(_read(self.path), self.path)
        self._check_head(data, self.path)
        entries = data.get("entries")
        if not isinstance(entries, dict):
            raise CheckpointError(f"{self.path}: 'entries' is {_kind(entries)}, expected an object; "
                                  "delete it to start over")
        for location, value in entries.items():
            entry = CheckpointEntry.from_json(value, str(self.path))
            if entry.location != location:
                raise CheckpointError(f"{self.path}: the entry under {location!r} names {entry.location!r}; "
                                      "delete it to start over")
            self._entries[location] = entry

    def _parse(self, text: str, where: Path) -> Any:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise CheckpointError(f"{where}: not a readable checkpoint (not JSON: {exc}); "
                                  "delete it to start over") from None

    def _check_head(self, data: Any, where: Path) -> None:
        if not isinstance(data, dict):
            raise CheckpointError(f"{where}: not a checkpoint (a JSON {_kind(data)}, expected an object with "
                                  "'version', 'run' and 'entries'); delete it to start over")
        version = data.get("version")
        if version != CHECKPOINT_VERSION:
            older = " (written by an older segfn_kit, keyed by position only)" if version == 1 else ""
            raise CheckpointError(f"{where}: checkpoint version {version!r}{older}, this segfn_kit reads version "
                                  f"{CHECKPOINT_VERSION}; delete it to start over (events keep their "
                                  "messageIds, so Segment deduplicates what is sent again)")
        if self.run is not None and data.get("run") is not None and data.get("run") != self.run:
            raise CheckpointError(f"{where} is the checkpoint of another replay (a different function or "
                                  "settings); delete it or name another checkpoint")
        if self.run is None:
            self.run = data.get("run")

    def _save_locked(self) -> None:
        data = {"version": CHECKPOINT_VERSION, "run": self.run, "layout": "file",
                "entries": {k: e.to_json() for k, e in sorted(self._entries.items())}}
        self._write_json(self.path, data)

    @staticmethod
    def _write_json(path: Path, data: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({exc}); delete it to start over") from None


def _name(path: str | os.PathLike[str]) -> str:
    text = os.fspath(path)
    return text if "://" in text else str(Path(text).absolute())


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__)
