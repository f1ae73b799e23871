"""The one boundary where a ``payloads`` argument becomes requests.

``run()``, ``coverage()`` and ``payload_fields()`` accept payloads in many forms: file or
folder paths, a payload frame from ``load_payloads``, capture envelopes, bare JSON bodies,
raw bytes or ``Request`` objects. :func:`payload_inputs` turns any of them into
:class:`PayloadInput` records, in order, once; each makes its ``Request`` only when it runs
(:meth:`PayloadInput.request`), so a run never holds every parsed body at once. A payload that
cannot run carries its ``PayloadError`` instead, and becomes that payload's error row.

=========================== ===================================================================
input                       how it becomes requests
=========================== ===================================================================
paths (str / ``PathLike``)  ``load_payloads(..., flatten_body=False)``, then as a frame
payload frame               column by column (:func:`frame_request` per row; ids from the index)
envelopes, bodies (dicts)   ``iter_payloads`` (ids from the loader)
``Request`` / bytes / other ``input1``, ``input2``, ...; others read as the loader reads them
=========================== ===================================================================

Example:
    >>> inputs = payload_inputs([{"type": "seen", "id": "u1"}, b"not json"])
    >>> [(i.payload_id, i.event_type) for i in inputs]
    [('input1', 'seen'), ('input2', None)]
    >>> inputs[0].request().json()
    {'type': 'seen', 'id': 'u1'}
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from segfn_kit._payloads import Payload, iter_payloads, load_payloads, request_from_row
from segfn_kit.runtime import Request
from segfn_kit.runtime._request import text_bytes

__all__ = ["FRAME_FIELDS", "Inputs", "PayloadInput", "PayloadsLike", "frame_request", "frame_wire", "is_missing", "payload_inputs"]

PayloadsLike = Any  # paths, a payload frame, or a list of envelopes / bodies / Requests


@dataclass(slots=True)
class PayloadInput:
    """One payload ready to run, or why it cannot run.

    ``source`` is a ``Request``, a loader ``Payload`` or a payload-frame row; the request is
    made only when the payload runs, so a run never holds every parsed body at once (which
    would also make each garbage collection walk all of them).
    """

    payload_id: str
    source: Any
    error: str | None
    event_type: str | None

    def request(self) -> Request:
        """The payload's ``Request``, made now (a frame row's or a loader payload's).

        Raises:
            Exception: a frame row the loader could not make sense of; ``run()`` makes it
                that payload's ``PayloadError`` row.
        """
        source = self.source
        if type(source) is tuple:  # a payload-frame row's fields (see FRAME_FIELDS)
            return frame_request(*source)
        if isinstance(source, Request):
            return source
        return request_from_row(source)

    def wire(self) -> tuple[Any, ...]:
        """The payload's request as :meth:`Request.to_wire` gives it (for a worker process),
        made without a ``Request`` when it is a frame row's.

        Raises:
            Exception: as :meth:`request`.
        """
        source = self.source
        if type(source) is tuple:
            wire = frame_wire(*source)
            if wire is not None:
                return wire
        return self.request().to_wire()


FRAME_FIELDS = ("raw", "body", "headers", "method", "url", "query", "received_at")
"""The payload-frame columns a request is made of, in ``frame_request``'s order."""


def frame_request(
    raw: Any, body: Any, headers: Any, method: Any, url: Any, query: Any, received_at: Any
) -> Request:
    """The request of one payload-frame row, exactly as ``request_from_row`` makes it, from
    the row's fields (no row dict, no abstract-class checks for the usual types).

    Example:
        >>> r = frame_request('{"a": 1}', None, {"X-Id": "7"}, None, "/hook", None, None)
        >>> r.method, r.url, r.headers["x-id"], r.json()
        ('POST', '/hook', '7', {'a': 1})
    """
    if raw is None and body is not None:  # a hand-made frame with parsed bodies only
        return request_from_row(dict(zip(FRAME_FIELDS, (raw, body, headers, method, url, query, received_at), strict=True)))
    content, headers, method, url, query, received_at = _request_fields(raw, headers, method, url, query, received_at)
    return Request(content, headers, method=method, url=url, query=query, received_at=received_at)


def frame_wire(
    raw: Any, body: Any, headers: Any, method: Any, url: Any, query: Any, received_at: Any
) -> tuple[Any, ...] | None:
    """What :meth:`Request.from_wire` reads as ``frame_request(...)``'s request (for a worker
    process), made without the ``Request``; ``None`` for the rows whose headers or query are
    not plain dicts, or that have parsed bodies only (make their request).

    Example:
        >>> row = ('{"a": 1}', None, {"X-Id": "7"}, None, "/hook", None, None)
        >>> back = Request.from_wire(frame_wire(*row))
        >>> (back.content, back.headers["x-id"], back.url) == (frame_request(*row).content, "7", "/hook")
        True
    """
    if raw is None and body is not None:
        return None
    fields = _request_fields(raw, headers, method, url, query, received_at)
    if type(fields[1]) is not dict or (fields[4] is not None and type(fields[4]) is not dict):
        return None
    return (*fields, None)  # no digest known yet


def _request_fields(
    raw: Any, headers: Any, method: Any, url: Any, query: Any, received_at: Any
) -> tuple[bytes, Any, str, str, Any, str | None]:
    # a frame row's fields as Request() takes them: body bytes, headers, method, url, query, received_at
    if not headers:
        headers = {}
    elif type(headers) is not dict and not isinstance(headers, Mapping):
        headers = {}
    return (
        text_bytes(raw if isinstance(raw, str) else ""),
        headers,
        str(method) if isinstance(method, str) and method else "POST",
        url if isinstance(url, str) else "",
        query if isinstance(query, Mapping) and query else None,
        received_at if isinstance(received_at, str) else None,
    )


def _event_type_of(body: Any) -> str | None:
    if isinstance(body, dict):
        for key in ("type", "topic", "event_type", "event"):
            value = body.get(key)
            if isinstance(value, str):
                return value
    return None


def is_missing(value: Any) -> bool:
    """A frame cell with no value: ``None`` or a float NaN (pandas' missing value).

    Example:
        >>> is_missing(float("nan")), is_missing(None), is_missing("")
        (True, True, False)
    """
    return value is None or (isinstance(value, float) and math.isnan(value))


def _item_of(payload: Payload) -> PayloadInput:
    if payload.error:
        return PayloadInput(payload.payload_id, None, f"PayloadError: {payload.error}", payload.event_type)
    return PayloadInput(payload.payload_id, payload, None, payload.event_type)


def _items_from_list(payloads: Sequence[Any]) -> Iterator[PayloadInput]:
    if all(isinstance(p, Mapping) for p in payloads):
        yield from map(_item_of, iter_payloads(*payloads))
        return
    for n, payload in enumerate(payloads, start=1):
        pid = f"input{n}"
        if isinstance(payload, Request):
            yield PayloadInput(pid, payload, None, _event_type_of(payload.parsed_so_far()))
        elif isinstance(payload, bytes | bytearray):
            yield PayloadInput(pid, Request(bytes(payload)), None, None)
        else:  # an envelope or a bare JSON body, read as the loader reads it
            for loaded in iter_payloads(payload if isinstance(payload, Mapping | list) else [payload]):
                item = _item_of(loaded)
                item.payload_id = pid
                yield item
                break


def _column(frame: pd.DataFrame, name: str, n: int) -> list[Any]:
    # column by column: far cheaper than to_dict("records"), which boxes every cell
    return frame[name].tolist() if name in frame.columns else [None] * n


def _items_from_frame(frame: pd.DataFrame) -> Iterator[PayloadInput]:
    ids = [str(i) for i in frame.index]
    n = len(ids)
    fields = zip(*(_column(frame, c, n) for c in FRAME_FIELDS), strict=True) if n else iter(())
    for pid, row, event_type, error in zip(
        ids, fields, _column(frame, "event_type", n), _column(frame, "error", n), strict=True
    ):
        event_type = None if is_missing(event_type) else str(event_type)
        if not is_missing(error) and error:
            yield PayloadInput(pid, None, f"PayloadError: {error}", event_type)
            continue
        if event_type is None:
            event_type = _event_type_of(row[1])
        yield PayloadInput(pid, row, None, event_type)


def _is_pathish(value: Any) -> bool:
    return isinstance(value, str | os.PathLike)


class Inputs(list[PayloadInput]):
    """Payload items, and the inputs that held no payload (``{"source", "reason"}``)."""

    skipped: list[dict[str, str]]


def payload_inputs(payloads: PayloadsLike) -> Inputs:
    """Turn any accepted ``payloads`` argument into inputs, in order (see the module).

    Raises:
        TypeError: ``payloads`` is none of the accepted forms.

    Example:
        >>> [i.payload_id for i in payload_inputs([{"a": 1}, {"a": 2}])]
        ['input1', 'input2']
    """
    if isinstance(payloads, pd.DataFrame):
        items = Inputs(_items_from_frame(payloads))
        items.skipped = list(payloads.attrs.get("skipped") or [])
        return items
    if _is_pathish(payloads):
        payloads = [payloads]
    if isinstance(payloads, Mapping):
        payloads = [payloads]
    if isinstance(payloads, Iterable):
        payloads = list(payloads)
        if payloads and all(_is_pathish(p) for p in payloads):
            return payload_inputs(_load_paths(payloads))
        items = Inputs(_items_from_list(payloads))
        items.skipped = []
        return items
    raise TypeError(
        "payloads must be file or folder paths, a payload frame from load_payloads(), "
        f"or a list of capture envelopes or JSON bodies, not {type(payloads).__name__}"
    )


def _load_paths(paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    # the body fields are not needed to run, and flattening them is most of a load's cost
    return load_payloads(*paths, flatten_body=False)
