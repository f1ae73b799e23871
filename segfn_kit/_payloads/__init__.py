"""Captured webhook payloads: the capture envelope, a loader for every input format, the frame.

Formats read (one ``format`` value each, detected from the file's extension and shape):

=================== ===================================================================
``envelope``        the capture envelope ``{"headers", "body" | "body_base64", ...}``
``bare``            a bare JSON body (a ``.json`` file that is the body itself)
``jsonl``           JSON Lines: one bare body per line (lines may also hold envelopes,
                    wrappers or ``{topic, headers, body}`` records, read as those)
``har``             HAR archives from browser devtools or mitmproxy: each POST entry
``functions-library`` Segment's ``{"payload": {"body", "headers", "queryParameters"}}``
``topic``           ``{topic, headers, body}`` captures (Hookdeck's samples)
``array-item``      one item of a top-level JSON array read with ``split_arrays=True``
``form``            a bare ``application/x-www-form-urlencoded`` body
=================== ===================================================================

A url-encoded body, in any of these, is decoded into ``body`` as a dict (as
``Request.form()`` would) and its text kept in ``raw``. Files may be gzip-compressed
(``.gz``).

Bad input never raises (unless ``strict=True``): a file that cannot be read as a payload
gives a row whose ``error`` says why, and a file that holds no payload at all (a README in a
folder, a HAR without POST entries) is reported in ``frame.attrs["skipped"]``.

The modules, one idea each:

================ ==========================================================================
``_record``      the ``Payload`` record, ``Line`` (one left unread), ``Skip``, ``PayloadError``,
                 ``request_from_row``
``_jsonparse``   exact JSON (long integers, NaN/Infinity, duplicate keys)
``_body``        a body as JSON, url-encoded form or text
``_eventtype``   the incoming event type (headers, topic, body keys)
``_formats``     the capture formats and the reader that turns files into records
``_files``       files, folders and globs an argument names
``_stream``      ``iter_payloads``
``_frame``       ``load_payloads``, ``frame_from_payloads``, ``flatten``
================ ==========================================================================
"""

from __future__ import annotations

from ._body import SEGMENT_BODY_LIMIT, _body_from_value
from ._eventtype import EVENT_HEADERS, EVENT_KEYS, detect_event_type
from ._files import (
    DEFAULT_MAX_BYTES,
    JSONL_SUFFIXES,
    MAX_BYTES_ENV,
    PAYLOAD_SUFFIXES,
    TooLarge,
    _files_of,
    max_bytes_default,
    parse_size,
    read_capped,
)
from ._formats import ENVELOPE_KEYS, _Reader
from ._frame import FRAME_COLUMNS, flatten, frame_from_payloads, load_payloads
from ._jsonparse import _may_hold_long_int, parse_json
from ._record import Line, Payload, PayloadError, Skip, request_from_row
from ._stream import PathArg, iter_archive, iter_payloads

__all__ = [
    "DEFAULT_MAX_BYTES",
    "ENVELOPE_KEYS",
    "EVENT_HEADERS",
    "EVENT_KEYS",
    "FRAME_COLUMNS",
    "JSONL_SUFFIXES",
    "MAX_BYTES_ENV",
    "PAYLOAD_SUFFIXES",
    "SEGMENT_BODY_LIMIT",
    "Line",
    "PathArg",
    "Payload",
    "PayloadError",
    "Skip",
    "TooLarge",
    "_Reader",
    "_body_from_value",
    "_files_of",
    "_may_hold_long_int",
    "detect_event_type",
    "flatten",
    "frame_from_payloads",
    "iter_archive",
    "iter_payloads",
    "load_payloads",
    "max_bytes_default",
    "parse_json",
    "parse_size",
    "read_capped",
    "request_from_row",
]
