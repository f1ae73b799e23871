"""The payload frame: ``load_payloads`` and the flattened ``body.<path>`` columns."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from itertools import chain
from typing import TYPE_CHECKING, Any

from ._record import Payload
from ._stream import PathArg, iter_payloads

if TYPE_CHECKING:
    import pandas as pd

# the fixed columns of the payload frame, in order (index: payload_id)
FRAME_COLUMNS = (
    "source",
    "position",
    "format",
    "method",
    "url",
    "path",
    "query",
    "headers",
    "received_at",
    "content_type",
    "event_type",
    "raw",
    "body",
    "error",
    "warning",
)


def flatten(value: Any, prefix: str = "body", max_depth: int = 32) -> dict[str, Any]:
    """A JSON object's fields as ``{"prefix.a.b": value}``; lists and deeper levels kept whole.

    Example:
        >>> flatten({"data": {"object": {"id": "cus_1", "tags": ["a"]}}})
        {'body.data.object.id': 'cus_1', 'body.data.object.tags': ['a']}
    """
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        _flatten_into(out, value, prefix + ".", max_depth)
    return out


def _flatten_into(out: dict[str, Any], obj: dict[str, Any], prefix: str, depth: int) -> None:
    for key, value in obj.items():
        if type(value) is dict and value and depth > 1:
            _flatten_into(out, value, f"{prefix}{key}.", depth - 1)
        else:
            out[prefix + key] = value


# a tree of path names: key -> (path, path + ".", child tree); shared by the rows of one
# load, so equal paths are the same string objects and shape tuples hash and compare fast
_PathTree = dict[str, tuple[str, str, "_PathTree"]]


def load_payloads(
    *paths: PathArg | Mapping[str, Any] | list[Any],
    split_arrays: bool = False,
    check_duplicates: bool = True,
    strict: bool = False,
    flatten_body: bool = True,
    max_depth: int = 32,
    progress: bool = False,
    max_bytes: int | None = None,
) -> pd.DataFrame:
    """Load captured payloads from files, folders and globs into one DataFrame.

    One row per payload, indexed by a stable ``payload_id``; columns as described in
    ``docs/ARCHITECTURE.md`` ("The payload frame"), then the body's fields flattened to
    ``body.<dot.path>`` columns (object dtype, so integers above 2^53 stay exact).

    Args:
        *paths: files, folders (recursive), glob patterns, or payload dicts.
        split_arrays: read a top-level JSON array as one payload per item.
        check_duplicates: warn on repeated keys in JSON objects.
        strict: raise ``PayloadError`` instead of reporting a bad input in its row.
        flatten_body: add the ``body.<dot.path>`` columns.
        max_depth: the deepest level flattened; deeper objects stay whole in one column.
        progress: show a progress bar (tqdm) while loading.
        max_bytes: the size cap of one file after decompression (or one JSON Lines line);
            default ``$SEGFN_MAX_BYTES``, else 256 MiB. Input over it is one error row.

    Returns:
        The payload frame. ``frame.attrs["skipped"]`` lists ``{"source", "reason"}`` for
        inputs that hold no payload.

    Example:
        >>> frame = load_payloads({"headers": {}, "body": {"type": "customer.created", "data": {"id": 1}}})
        >>> frame[["event_type", "body.data.id"]].to_dict("records")
        [{'event_type': 'customer.created', 'body.data.id': 1}]
    """

    skipped: list[dict[str, str]] = []
    stream: Iterable[Payload] = iter_payloads(
        *paths,
        split_arrays=split_arrays,
        check_duplicates=check_duplicates,
        strict=strict,
        on_skip=lambda s: skipped.append({"source": s.source, "reason": s.reason}),
        max_bytes=max_bytes,
    )
    if progress:
        from segfn_kit._progress import progress as progress_bar

        stream = progress_bar(stream, show=True, desc="loading payloads", unit="payloads")
    frame = frame_from_payloads(stream, flatten_body=flatten_body, max_depth=max_depth)
    frame.attrs["skipped"] = skipped
    return frame


def frame_from_payloads(
    payloads: Iterable[Payload], *, flatten_body: bool = True, max_depth: int = 32
) -> pd.DataFrame:
    """The payload frame of ``Payload`` records (what ``load_payloads`` returns).

    Example:
        >>> p = next(iter_payloads({"headers": {}, "body": {"a": {"b": 1}}}))
        >>> frame_from_payloads([p])["body.a.b"].tolist()
        [1]
    """
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the loader makes no reference cycles; collections only cost time here
    try:
        rows = list(payloads)
        frame = _build_frame(rows, flatten_body, max_depth)
    finally:
        if gc_was_enabled:
            gc.enable()
    frame.attrs["skipped"] = []
    return frame


def _flatten_pairs(
    keys: list[str],
    values: list[Any],
    obj: dict[str, Any],
    prefix: str,
    tree: _PathTree,
    depth: int,
) -> None:
    # the loader's hot path: two flat lists, so rows of one shape share one key tuple
    for key, value in obj.items():
        entry = tree.get(key)
        if entry is None:
            path = prefix + key
            entry = tree[key] = (path, path + ".", {})
        if type(value) is dict and value and depth > 1:
            _flatten_pairs(keys, values, value, entry[1], entry[2], depth - 1)
        else:
            keys.append(entry[0])
            values.append(value)


_CHUNK = 4096  # rows flattened at a time: bounds the temporary value lists
_BLOCK_WIDTH = 64  # body columns per 2D block (the first 32 blocks; then wider)


class _Columns:
    """Body columns as a few 2D object blocks of ``_BLOCK_WIDTH`` columns each.

    The number of rows is known, the number of columns is not (new paths appear as rows
    are read), so columns go into fixed-size blocks allocated as needed: nothing is copied
    to grow, and pandas receives a handful of blocks (never the hundreds that make a frame
    "fragmented").
    """

    def __init__(self, n: int):
        self.n = n
        self.blocks: list[Any] = []
        self.block_names: list[list[str]] = []
        self.where: dict[str, tuple[int, int]] = {}
        # shape -> per block: (block index, rows in the block, positions in the shape)
        self.placements: dict[tuple[str, ...], list[tuple[int, Any, Any]]] = {}

    def place(self, shape: tuple[str, ...]) -> list[tuple[int, Any, Any]]:
        import numpy as np

        by_block: dict[int, tuple[list[int], list[int]]] = {}
        for position, key in enumerate(shape):
            spot = self.where.get(key)
            if spot is None:
                if not self.blocks or len(self.block_names[-1]) == len(self.blocks[-1]):
                    # wider blocks after every 32, so even thousands of columns make few
                    # blocks; np.empty fills object arrays with None: absent fields are None
                    width = _BLOCK_WIDTH << (len(self.blocks) // 32)
                    self.blocks.append(np.empty((width, self.n), dtype=object))
                    self.block_names.append([])
                spot = (len(self.blocks) - 1, len(self.block_names[-1]))
                self.where[key] = spot
                self.block_names[-1].append(key)
            block_rows, positions = by_block.setdefault(spot[0], ([], []))
            block_rows.append(spot[1])
            positions.append(position)
        placement = [
            (b, np.asarray(block_rows, dtype=np.intp), np.asarray(positions, dtype=np.intp))
            for b, (block_rows, positions) in by_block.items()
        ]
        self.placements[shape] = placement
        return placement

    def fill(self, shape: tuple[str, ...], rows: list[int], value_rows: list[list[Any]]) -> None:
        import numpy as np

        placement = self.placements.get(shape) or self.place(shape)
        width = len(shape)
        # one C-level pass over the values (fromiter never unpacks list values, as building
        # an array from nested lists would), then one fancy assignment per block
        values = np.fromiter(
            chain.from_iterable(value_rows), dtype=object, count=width * len(rows)
        ).reshape(len(rows), width)
        where = np.asarray(rows, dtype=np.intp)
        for b, block_rows, positions in placement:
            self.blocks[b][np.ix_(block_rows, where)] = values[:, positions].T

    def frames(self, index: pd.Index) -> list[pd.DataFrame]:
        import pandas as pd

        out = []
        for b, names in enumerate(self.block_names):
            if len(names) < len(self.blocks[b]):  # the last block: keep the columns in use
                self.blocks[b] = self.blocks[b][: len(names)].copy()
            block = self.blocks[b]
            out.append(pd.DataFrame(block.T, index=index, columns=names, dtype=object, copy=False))
        return out


def _build_frame(payloads: list[Payload], flatten_body: bool, max_depth: int) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    n = len(payloads)
    names = [c for c in FRAME_COLUMNS if c != "position"]
    # object dtype throughout: None stays None and big ints stay exact Python ints
    # (pandas would otherwise infer str columns with NaN, or float columns); the 2D
    # blocks are handed to pandas without a copy
    fixed = np.empty((len(names), n), dtype=object)
    for i, name in enumerate(names):
        fixed[i] = np.fromiter([getattr(p, name) for p in payloads], dtype=object, count=n)
    index = pd.Index([p.payload_id for p in payloads], name="payload_id", dtype=object)
    frame = pd.DataFrame(fixed.T, index=index, columns=names, dtype=object, copy=False)
    positions = np.fromiter((p.position for p in payloads), dtype=np.int64, count=n)
    frame.insert(1, "position", positions)
    if not flatten_body:
        return frame
    columns = _Columns(n)
    tree: _PathTree = {}
    for start in range(0, n, _CHUNK):
        # rows grouped by the tuple of their flattened paths: payloads of one event type
        # mostly share a shape, so each group fills its columns in one assignment
        groups: dict[tuple[str, ...], tuple[list[int], list[list[Any]]]] = {}
        for row in range(start, min(n, start + _CHUNK)):
            body = payloads[row].body
            if type(body) is dict and body:
                keys: list[str] = []
                values: list[Any] = []
                _flatten_pairs(keys, values, body, "body.", tree, max_depth)
                shape = tuple(keys)
                group = groups.get(shape)
                if group is None:
                    groups[shape] = ([row], [values])
                else:
                    group[0].append(row)
                    group[1].append(values)
        for shape, (rows, value_rows) in groups.items():
            columns.fill(shape, rows, value_rows)
    parts = columns.frames(index)
    if not parts:
        return frame
    return pd.concat([frame, *parts], axis=1)
