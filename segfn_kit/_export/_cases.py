"""The test cases of an exported package: previewed inputs and the outputs expected of them.

Approved outputs (``<stem>.approved.jsonl``, written by ``approve``) are taken as they are.
Without them, the function is run over the given payloads (sources) or events
(destinations) at export time, and what it does now becomes the expectation.
"""

from __future__ import annotations

import importlib.util
import json
import os
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from segfn_kit.runtime import Function, Request, Settings, invoke_events, invoke_source, mask_text

from ._imports import ExportError

__all__ = ["approved_cases", "destination_cases", "source_cases"]

TEMPLATES = Path(__file__).with_name("templates")


def _recorder() -> types.ModuleType:
    """The request recorder that ships in the package's tests, loaded from its template."""
    spec = importlib.util.spec_from_file_location("segfn_export_recorder", TEMPLATES / "tests" / "recorder.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def approved_cases(path: Path, kind: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Cases from an approved-outputs file (read by ``load_approved``), in file order.

    Returns:
        The cases, and ``{"input", "reason"}`` for each approved line left out.
    """
    from segfn_kit._approve import ApprovedOutputError, load_approved

    try:
        records = load_approved(path)
    except ApprovedOutputError as exc:
        raise ExportError(str(exc)) from None
    key = "payload" if kind == "source" else "event"
    cases: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for number, record in enumerate(records, 1):
        if key not in record:
            raise ExportError(
                f"{path.name}, entry {number}: no {key!r}; approve the {kind} function's run again"
            )
        case = {
            "payload_id": str(record["payload_id"]),
            key: record[key],
            "outcome": record["outcome"],
            "events": record.get("events") or [],
            "objects": record.get("objects") or [],
        }
        if kind == "destination" and isinstance(record.get("requests"), list):
            requests = [r for r in record["requests"] if isinstance(r, dict)]
            statuses = [(r.get("response") or {}).get("status", 200) for r in requests]
            if any(not (isinstance(s, int) and 200 <= s < 300) for s in statuses):
                # approved under scripted failures (429, 500...): the package's tests answer
                # every request 200, so they could not replay this case
                skipped.append({"input": case["payload_id"],
                                "reason": "approved under scripted HTTP failures, which the package's tests do not replay"})
                continue
            case["requests"] = [
                {"method": r.get("method"), "url": r.get("url"), "body": r.get("body", r.get("json"))}
                for r in requests
            ]
        cases.append(case)
    return cases, skipped


def _progress(items: Iterable[Any], show: bool, unit: str) -> Iterable[Any]:
    if not show:
        return items
    from tqdm.auto import tqdm

    bar: Iterable[Any] = tqdm(items, desc="running the function for the tests", unit=f" {unit}")
    return bar


def source_cases(
    function: Function, paths: Iterable[str | os.PathLike[str]], settings: Settings, *, progress: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Run a source function over payload files; each payload and its output is a case.

    Returns:
        The cases, and ``{"input", "reason"}`` for each input that is not a payload.
    """
    from segfn_kit._payloads import iter_payloads

    cases: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    stream = iter_payloads(*[str(p) for p in paths], on_skip=lambda s: skipped.append(
        {"input": Path(s.source).name, "reason": s.reason}
    ))
    for payload in _progress(stream, progress, "payloads"):
        if payload.error is not None:  # not a payload (the loader says why): nothing to test
            skipped.append({"input": payload.payload_id, "reason": payload.error})
            continue
        envelope = payload.to_envelope()
        envelope.pop("received_at", None)
        inv = invoke_source(function, Request.from_envelope(envelope), settings)
        ok = inv.outcome == "ok" and not inv.timed_out
        cases.append({
            "payload_id": payload.payload_id,
            "payload": envelope,
            "outcome": "timeout" if inv.timed_out else inv.outcome,
            "events": inv.events if ok else [],
            "objects": inv.objects if ok else [],
        })
    return cases, skipped


def destination_cases(
    function: Function, paths: Iterable[str | os.PathLike[str]], settings: Settings, *, progress: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Run a destination function over Segment event files, recording its HTTP requests.

    Events are read by ``sample_events`` (JSON, JSON Lines, arrays, ``{"batch": [...]}``,
    folders). Entries that are not events are reported, not tested.
    """
    from segfn_kit._events import sample_events

    recorder = _recorder()
    frame = sample_events(*[Path(p) for p in paths])
    cases: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for event_id, row in _progress(frame.iterrows(), progress, "events"):
        event = row["event"]
        if row.get("error") or not isinstance(event, dict):
            skipped.append({"input": str(event_id), "reason": str(row.get("error") or "not a JSON object")})
            continue
        with recorder.record_http() as calls:
            result = invoke_events(function, [event], settings)[0]
        masked = json.loads(mask_text(json.dumps(calls), settings.secret_values()))
        cases.append({
            "payload_id": str(event_id),
            "event": event,
            "outcome": "timeout" if result.timed_out else result.outcome,
            "events": [] if result.event is None else [result.event],
            "objects": [],
            "requests": masked,
        })
    return cases, skipped
