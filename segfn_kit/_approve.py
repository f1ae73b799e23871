"""Approved (golden) outputs: the expected result of a function on each payload.

``approve(results, payloads)`` writes ``<function stem>.approved.jsonl`` next to the function
file, one JSON object per payload::

    {"payload_id": ..., "payload": <capture envelope>, "outcome": ..., "events": [...], "objects": [...]}

Destination runs write ``"event"`` (the spec event the function received) instead of
``"payload"``, plus the ``"requests"`` it made. The export turns each line into a test case,
so the payload is written as a complete capture envelope whose ``body`` is the raw text as
received (signatures still verify), and a body that is not UTF-8 as ``body_base64``.

Approving again replaces the lines of the payloads approved now and keeps the others, so
an analyst can approve a few payloads at a time.
"""

from __future__ import annotations

import base64
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import pandas as pd

from segfn_kit._errors import ApprovedOutputError
from segfn_kit.runtime import MASK, Settings, mask_text

# request headers that carry the sender's credentials: masked in approved files, which are
# committed and turned into tests (signature headers are HMACs, not secrets, and stay)
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token"}
)

__all__ = ["ApprovedOutputError", "approve", "approved_path", "load_approved"]

_SUFFIX = ".approved.jsonl"


def approved_path(function_file: str | os.PathLike[str]) -> Path:
    """Where the approved outputs of a function file live: ``<stem>.approved.jsonl`` beside it.

    Example:
        >>> approved_path("functions/stripe_source.py").as_posix()
        'functions/stripe_source.approved.jsonl'
    """
    path = Path(function_file)
    return path.with_name(path.stem + _SUFFIX)


def approve(
    results: pd.DataFrame,
    payloads: pd.DataFrame | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    ids: Iterable[str] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write the outputs of a run as the approved ones.

    Args:
        results: a result frame from ``segfn_kit.run`` (index ``payload_id``).
        payloads: the payload frame the run read (source functions), or the events frame
            (destination functions: a column ``event``, or a ``requests``-free frame of spec
            events). Needed to write what each test case feeds the function.
        path: the ``.approved.jsonl`` file; by default ``<function stem>.approved.jsonl``
            beside the function file the results came from.
        ids: approve only these payload ids (lines of other payloads already in the file stay).
        settings: setting values; secret ones are masked in what is written.

    Returns:
        The path written.

    Raises:
        ApprovedOutputError: no path could be chosen, a payload id has no payload, or the
            existing file is damaged.

    Example:
        >>> import pandas as pd, tempfile, pathlib
        >>> results = pd.DataFrame(
        ...     {"outcome": ["ok"], "events": [[{"type": "track", "event": "Pinged", "userId": "u1"}]],
        ...      "objects": [[]]},
        ...     index=pd.Index(["s/1.json"], name="payload_id"))
        >>> payloads = pd.DataFrame({"headers": [{}], "raw": ['{"a":1}']},
        ...     index=pd.Index(["s/1.json"], name="payload_id"))
        >>> out = approve(results, payloads, pathlib.Path(tempfile.mkdtemp()) / "f.approved.jsonl")
        >>> load_approved(out)[0]["events"][0]["event"]
        'Pinged'
    """
    target = _target_path(results, path)
    kind = str(results.attrs.get("kind", "source"))
    chosen = list(results.index) if ids is None else [str(i) for i in ids]
    missing = [i for i in chosen if i not in results.index]
    if missing:
        raise ApprovedOutputError(f"no result for payload id(s) {', '.join(map(repr, missing[:5]))}")
    secret_values = _secret_values(results, settings)

    lines: dict[str, dict[str, Any]] = {}
    for payload_id in chosen:
        row = cast(pd.Series, results.loc[payload_id])
        record: dict[str, Any] = {"payload_id": str(payload_id)}
        if kind == "destination":
            record["event"] = _event_for(payload_id, row, payloads)
        else:
            record["payload"] = _envelope_for(payload_id, payloads)
        record["outcome"] = str(row["outcome"])
        record["events"] = _listish(row.get("events"))
        record["objects"] = _listish(row.get("objects"))
        if kind == "destination":
            record["requests"] = _listish(row.get("requests"))
        lines[str(payload_id)] = record

    existing = load_approved(target) if target.exists() else []
    merged = [r for r in existing if r["payload_id"] not in lines]
    # the order of the run first, then lines kept from earlier approvals
    ordered = [lines[i] for i in map(str, chosen)] + merged
    text = "".join(_dump(r, secret_values) + "\n" for r in ordered)
    _write_atomic(target, text)
    return target


def load_approved(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an approved-outputs file: one dict per payload, in file order.

    Raises:
        ApprovedOutputError: the file is missing, or a line is not a JSON object with a
            ``payload_id`` and an ``outcome`` (the message names the line).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "f.approved.jsonl"
        >>> _ = p.write_text('{"payload_id": "a", "outcome": "ok", "events": [], "objects": []}\\n')
        >>> [r["payload_id"] for r in load_approved(p)]
        ['a']
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ApprovedOutputError(f"{path}: no approved outputs yet (approve a run first)") from None
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ApprovedOutputError(
                f"{path}, line {number}: not JSON ({exc.msg}); fix the line or approve again"
            ) from None
        if not isinstance(record, dict) or "payload_id" not in record or "outcome" not in record:
            raise ApprovedOutputError(
                f"{path}, line {number}: expected an object with payload_id and outcome"
            )
        records.append(record)
    return records


# -- helpers ---------------------------------------------------------------------------


def _target_path(results: pd.DataFrame, path: str | os.PathLike[str] | None) -> Path:
    if path is not None:
        return Path(path)
    function = results.attrs.get("function")
    filename = getattr(function, "filename", None)
    if not filename or str(filename).startswith("<"):
        raise ApprovedOutputError(
            "these results come from a function with no file: pass path=... "
            "(for example path='stripe_source.approved.jsonl')"
        )
    return approved_path(filename)


def _secret_values(results: pd.DataFrame, settings: Mapping[str, Any] | None) -> list[str]:
    if settings is None:
        return []
    if isinstance(settings, Settings):
        return settings.secret_values()
    function = results.attrs.get("function")
    if function is not None and hasattr(function, "settings"):
        wrapped: Settings = function.settings(settings)
        return wrapped.secret_values()
    return Settings(settings).secret_values()


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _listish(value: Any) -> list[Any]:
    if _is_missing(value):
        return []
    return list(value)


def _envelope_for(payload_id: str, payloads: pd.DataFrame | None) -> dict[str, Any]:
    if payloads is None:
        raise ApprovedOutputError("approve(results, payloads): pass the payload frame the run read")
    if payload_id not in payloads.index:
        raise ApprovedOutputError(
            f"payload {payload_id!r} is in the results but not in the payload frame: "
            "pass the frame the run read"
        )
    return envelope(cast(pd.Series, payloads.loc[payload_id]))


def envelope(row: Mapping[str, Any] | pd.Series) -> dict[str, Any]:
    """The capture envelope of one payload-frame row, body as the raw text received.

    Example:
        >>> envelope({"headers": {"A": "1"}, "raw": '{"x":1}', "method": "POST"})
        {'method': 'POST', 'headers': {'A': '1'}, 'body': '{"x":1}'}
        >>> envelope({"headers": {"Authorization": "Bearer abc"}, "raw": "{}"})["headers"]
        {'Authorization': '••••••'}
    """
    get = row.get
    out: dict[str, Any] = {}
    for key in ("method", "url", "path"):
        value = get(key)
        if not _is_missing(value):
            out[key] = str(value)
    query = get("query")
    if isinstance(query, Mapping) and query:
        out["query"] = dict(query)
    headers = get("headers")
    out["headers"] = (
        {k: (MASK if str(k).lower() in _CREDENTIAL_HEADERS else v) for k, v in headers.items()}
        if isinstance(headers, Mapping)
        else {}
    )
    raw = get("raw")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "surrogateescape")
    if _is_missing(raw):
        body = get("body")
        out["body"] = None if _is_missing(body) else body
    else:
        try:
            str(raw).encode("utf-8")
            out["body"] = str(raw)
        except UnicodeEncodeError:  # invalid UTF-8 kept by the loader via surrogateescape
            data = str(raw).encode("utf-8", "surrogateescape")
            out["body_base64"] = base64.b64encode(data).decode("ascii")
    received = get("received_at")
    if not _is_missing(received):
        out["received_at"] = str(received)
    return out


def _event_for(payload_id: str, row: pd.Series, payloads: pd.DataFrame | list[Any] | None) -> Any:
    """The spec event a destination run fed the function for this row."""
    if "event" in row.index and isinstance(row["event"], Mapping):
        return dict(row["event"])
    if isinstance(payloads, pd.DataFrame) and payload_id in payloads.index:
        source = payloads.loc[payload_id]
        if "event" in source.index and isinstance(source["event"], Mapping):
            return dict(source["event"])
        if "body" in source.index and isinstance(source["body"], Mapping):
            return dict(source["body"])
    raise ApprovedOutputError(
        f"no event found for {payload_id!r}: pass the events frame the destination run read"
    )


def _dump(record: Mapping[str, Any], secret_values: list[str]) -> str:
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
    return mask_text(text, secret_values) if secret_values else text


def _write_atomic(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
