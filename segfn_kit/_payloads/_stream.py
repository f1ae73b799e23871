"""``iter_payloads``: payload records streamed from files, folders, globs and values."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ._files import _files_of, max_bytes_default
from ._formats import _Reader
from ._record import Line, Payload, PayloadError, Skip

PathArg = str | os.PathLike[str]


def iter_payloads(
    *paths: PathArg | Mapping[str, Any] | list[Any],
    split_arrays: bool = False,
    check_duplicates: bool = True,
    strict: bool = False,
    on_skip: Callable[[Skip], None] | None = None,
    max_bytes: int | None = None,
    bodies: bool = True,
) -> Iterator[Payload]:
    """Stream ``Payload`` records from files, folders (recursive), globs or values.

    Reads one file at a time and JSON Lines one line at a time, so memory stays flat
    whatever the size of the input.

    Args:
        *paths: files, folders, glob patterns (``captures/**/*.json``), or payloads given
            as dicts (an envelope or a bare body) or a list of them.
        split_arrays: read a ``.json`` file whose top level is an array as one payload per
            item (by default the array is one body, as SendGrid and HubSpot send it).
        check_duplicates: look for repeated keys in JSON objects (a warning on the row).
        strict: raise ``PayloadError`` on the first input that cannot be loaded or is skipped.
        on_skip: called with a ``Skip`` for each input that holds no payload.
        max_bytes: the size cap: the most bytes of one ``.json``/``.har`` file (after
            decompression) or of one JSON Lines line read into memory; input over it is one
            error row. Default ``$SEGFN_MAX_BYTES`` (e.g. ``1G``), else 256 MiB.
        bodies: parse bodies given as text. ``False`` is for readers that hand the raw bytes
            to a function and nothing else (``replay``): such rows keep ``body`` None for
            JSON Lines lines and text bodies, and skip the duplicate-key and exactness checks
            (what a function receives, ``raw`` and ``request()``, is the same).

    Raises:
        FileNotFoundError: a named file or folder does not exist.
        ValueError: ``max_bytes`` is not positive, or ``$SEGFN_MAX_BYTES`` is not a size.
        PayloadError: only with ``strict=True``.

    Example:
        >>> rows = list(iter_payloads({"headers": {}, "body": {"type": "ping"}}))
        >>> rows[0].event_type, rows[0].raw
        ('ping', '{"type":"ping"}')
    """

    def skip(item: Skip) -> None:
        if strict:
            raise PayloadError(item.source, item.reason)
        if on_skip is not None:
            on_skip(item)

    if max_bytes is None:
        max_bytes = max_bytes_default()
    elif max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
    reader = _Reader(
        split_arrays=split_arrays,
        check_duplicates=check_duplicates,
        on_skip=skip,
        max_bytes=max_bytes,
        bodies=bodies,
    )
    for index, arg in enumerate(paths, 1):
        if isinstance(arg, Mapping | list):
            stream: Iterable[Payload] = reader.read_value(arg, f"input{index}")
        else:
            stream = _stream_files(arg, reader)
        for payload in stream:
            if strict and payload.error:
                raise PayloadError(payload.source, payload.error)
            yield payload


def iter_archive(*paths: PathArg, max_bytes: int | None = None) -> Iterator[Payload | Line]:
    """What a replay reads of files, folders and globs: ``iter_payloads(*paths, bodies=False)``
    with each JSON Lines line that fits the size cap left unread, as a ``Line`` (the same
    ``payload_id``, ``source`` and ``position``); ``_Reader.read_line`` makes it its ``Payload``.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.jsonl"
        >>> _ = f.write_text('{"id": 1}\\n\\n{"id": 2}\\n')
        >>> [(row.payload_id[-2:], row.data) for row in iter_archive(f)]
        [('#1', b'{"id": 1}'), ('#3', b'{"id": 2}')]
    """
    if max_bytes is None:
        max_bytes = max_bytes_default()
    elif max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
    reader = _Reader(split_arrays=False, check_duplicates=True, on_skip=None, max_bytes=max_bytes,
                     bodies=False, lines=True)
    for arg in paths:
        for path, base_id in _files_of(arg, reader):
            yield from reader.read_any(path, base_id)


def _stream_files(arg: PathArg, reader: _Reader) -> Iterator[Payload]:
    for path, base_id in _files_of(arg, reader):
        yield from reader.read_file(path, base_id)
