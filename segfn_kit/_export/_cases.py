"""The test cases of an exported package: previewed inputs and the outputs expected of them.

Approved outputs (``<stem>.approved.jsonl``, written by ``approve``) are taken as they are.
Without them, the function is run over the given payloads (sources) or events
(destinations) at export time, and what it does now becomes the expectation.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from segfn_kit.runtime import Function, Request, Settings

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


def approved_cases(path: Path, kind: str) -> list[dict[str, Any]]:
    """Cases from an approved-outputs file, one per line, in file order."""
    cases: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ExportError(f"cannot read the approved outputs {path.name}: {exc.strerror}") from None
    key = "payload" if kind == "source" else "event"
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ExportError(f"{path.name}, line {number}: not JSON ({exc})") from None
        if not isinstance(record, dict) or key not in record or "outcome" not in record:
            raise ExportError(f"{path.name}, line {number}: expected an object with {key!r} and 'outcome'")
        case = {
            "payload_id": str(record.get("payload_id", f"{path.name}#{number}")),
            key: record[key],
            "outcome": record["outcome"],
            "events": record.get("events") or [],
            "objects": record.get("objects") or [],
        }
        if kind == "destination" and isinstance(record.get("requests"), list):
            case["requests"] = [
                {"method": r.get("method"), "url": r.get("url"), "body": r.get("body", r.get("json"))}
                for r in record["requests"]
                if isinstance(r, dict)
            ]
        cases.append(case)
    return cases


def _envelopes(paths: Iterable[str | Path]) -> list[tuple[str, dict[str, Any]]]:
    """(payload_id, capture envelope) of each payload the payload loader reads."""
    from segfn_kit._payloads import iter_payloads

    out: list[tuple[str, dict[str, Any]]] = []
    for payload in iter_payloads(*[str(p) for p in paths]):
        if payload.error is not None:  # not a payload (the loader says why); nothing to test
            continue
        envelope = payload.to_envelope()
        envelope.pop("received_at", None)
        out.append((payload.payload_id, envelope))
    return out


def request_of(envelope: Mapping[str, Any]) -> Request:
    """A runtime request from a capture envelope (the same rule as the generated tests)."""
    body: Any = base64.b64decode(envelope["body_base64"]) if "body_base64" in envelope else envelope.get("body")
    return Request(
        body,
        envelope.get("headers") or {},
        method=str(envelope.get("method") or "POST"),
        url=str(envelope.get("url") or envelope.get("path") or ""),
        query=envelope.get("query"),
    )


def source_cases(function: Function, paths: Iterable[str | Path], settings: Settings) -> list[dict[str, Any]]:
    """Run a source function over payload files; each payload and its output is a case."""
    cases = []
    for payload_id, envelope in _envelopes(paths):
        inv = function.on_request(request_of(envelope), settings)
        cases.append({
            "payload_id": payload_id,
            "payload": envelope,
            "outcome": "timeout" if inv.timed_out else inv.outcome,
            "events": inv.events,
            "objects": inv.objects,
        })
    return cases


def _read_events(path: Path, arg: Path) -> list[tuple[str, Any]]:
    text = path.read_text(encoding="utf-8")
    name = arg.name if path == arg else f"{arg.name}/{path.relative_to(arg).as_posix()}"
    try:
        doc = json.loads(text)
    except ValueError:
        return [(f"{name}#{n}", json.loads(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
        doc = doc["batch"]
    if isinstance(doc, list):
        return [(f"{name}#{n}", item) for n, item in enumerate(doc, 1)]
    return [(name, doc)]


def destination_cases(function: Function, paths: Iterable[str | Path], settings: Settings) -> list[dict[str, Any]]:
    """Run a destination function over event files, recording the HTTP requests it makes.

    Event files hold one spec event, a JSON array or ``{"batch": [...]}`` of them, or
    JSON Lines; folders are read recursively (``*.json``, ``*.jsonl``), in name order.
    """
    recorder = _recorder()
    cases = []
    for arg in (Path(p) for p in paths):
        files = sorted(p for p in arg.rglob("*") if p.suffix in (".json", ".jsonl")) if arg.is_dir() else [arg]
        for path in files:
            try:
                events = _read_events(path, arg)
            except (OSError, ValueError) as exc:
                raise ExportError(f"{path.name}: cannot read Segment events ({exc})") from None
            for event_id, event in events:
                if not isinstance(event, dict):
                    raise ExportError(f"{event_id}: not a JSON object, so not a Segment event")
                with recorder.record_http() as calls:
                    inv = function.on_event(event, settings)
                cases.append({
                    "payload_id": event_id,
                    "event": event,
                    "outcome": "timeout" if inv.timed_out else inv.outcome,
                    "events": inv.events,
                    "objects": inv.objects,
                    "requests": list(calls),
                })
    return cases
