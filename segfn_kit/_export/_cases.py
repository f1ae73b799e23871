"""The test cases of an exported package: previewed inputs and the outputs expected of them.

Approved outputs (``<stem>.approved.jsonl``, written by ``approve``) are taken as they are.
Without them, the function is run over the given payloads (sources) or events
(destinations) at export time, and what it does now becomes the expectation. A payload the
handler refuses before the function runs (over 512 KiB: 413; a content type it does not take:
415; ``runtime._rules.request_refusal``) becomes a case expecting that refusal, so the
package's tests prove the handler refuses it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from segfn_kit._progress import progress as progress_bar
from segfn_kit.runtime import Function, Request, Settings, invoke_events, invoke_source
from segfn_kit.runtime._rules import Refusal, request_refusal
from segfn_kit.runtime._settings import mask_values

from ._imports import ExportError

__all__ = ["approved_cases", "destination_cases", "placeholder_failure", "source_cases"]

# outcomes that show a mapping at work, or a payload the function meant to leave out
_PASSING = ("ok", "EventNotSupported", "DropEvent")

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
    for payload in progress_bar(stream, show=progress, desc="running the function for the tests", unit="payloads"):
        if payload.error is not None:  # not a payload (the loader says why): nothing to test
            skipped.append({"input": payload.payload_id, "reason": payload.error})
            continue
        envelope = payload.to_envelope()
        envelope.pop("received_at", None)
        request = Request.from_envelope(envelope)
        refusal = request_refusal(request.headers.get("content-type"), len(request.content), kind=function.kind)
        if refusal is not None:
            cases.append(_refused_case(payload.payload_id, "payload", envelope, refusal))
            continue
        inv = invoke_source(function, request, settings)
        ok = inv.outcome == "ok" and not inv.timed_out
        cases.append({
            "payload_id": payload.payload_id,
            "payload": envelope,
            "outcome": "timeout" if inv.timed_out else inv.outcome,
            "events": inv.events if ok else [],
            "objects": inv.objects if ok else [],
            "_error": inv.error,  # for placeholder_failure; not written into the package
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
    for event_id, row in progress_bar(frame.iterrows(), show=progress, desc="running the function for the tests", unit="events"):
        event = row["event"]
        if row.get("error") or not isinstance(event, dict):
            skipped.append({"input": str(event_id), "reason": str(row.get("error") or "not a JSON object")})
            continue
        size = len(json.dumps(event, separators=(",", ":")).encode())  # as the package's tests post it
        refusal = request_refusal("application/json", size, kind=function.kind)
        if refusal is not None:
            cases.append(_refused_case(str(event_id), "event", event, refusal))
            continue
        with recorder.record_http() as calls:
            result = invoke_events(function, [event], settings)[0]
        cases.append({
            "payload_id": str(event_id),
            "event": event,
            "outcome": "timeout" if result.timed_out else result.outcome,
            "events": [] if result.event is None else [result.event],
            "objects": [],
            "requests": mask_values(calls, settings.secret_values()),
            "_error": getattr(result, "error", None),
        })
    return cases, skipped


def _refused_case(payload_id: str, key: str, value: Any, refusal: Refusal) -> dict[str, Any]:
    """A case the handler answers with ``refusal`` before the function runs; its outcome is
    the ``error`` of the payload's row in ``run()``, with the same text."""
    return {
        "payload_id": payload_id,
        key: value,
        "outcome": "error",
        "events": [],
        "objects": [],
        "refused": {"status": refusal.status, "outcome": refusal.code, "error": refusal.message},
        "_error": refusal.row_error(),
    }


def placeholder_failure(
    cases: list[dict[str, Any]], placeholders: dict[str, str], rerun: Any = None
) -> str | None:
    """Why the recorded cases cannot go into the package: every one failed while secret
    settings held placeholders (so its tests would check no mapping), or None.

    Args:
        cases: the cases recorded with the placeholders.
        placeholders: secret setting name -> the placeholder the cases ran with.
        rerun: when the real secrets were given, a callable that records the cases again with
            them; its outcomes tell a placeholder's fault from a function that fails anyway.
    """
    if not placeholders or not cases or any(c["outcome"] in _PASSING for c in cases):
        return None
    confirmed = ""
    if rerun is not None:
        again = rerun()
        if not any(c["outcome"] in _PASSING for c in again):
            return None  # it fails with the real secrets too: not the placeholder's doing
        passing = sum(c["outcome"] in _PASSING for c in again)
        confirmed = f"; with the real value{'s' if len(placeholders) > 1 else ''} {passing} of them pass"
    outcomes: dict[str, int] = {}
    for case in cases:
        outcomes[case["outcome"]] = outcomes.get(case["outcome"], 0) + 1
    first = next((str(c.get("_error")) for c in cases if c.get("_error")), "")
    names = ", ".join(repr(n) for n in sorted(placeholders))
    example = sorted(placeholders)[0]
    return (
        f"every one of the {len(cases)} cases recorded for the package's tests failed ("
        + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
        + (f"; first: {first[:200]}" if first else "")
        + f") while the secret setting{'s' if len(placeholders) > 1 else ''} {names} held "
        f"{'placeholders' if len(placeholders) > 1 else 'a placeholder'} ({placeholders[example]!r}){confirmed}: "
        "such tests would check no mapping, so none were written. Real secrets never enter the "
        "package; give it a test secret instead, with payloads signed with it: "
        f"export(..., test_secrets={{{example!r}: '<test secret>'}}) or "
        f"segfn export --test-secret {example}=VALUE (written into tests/settings.json). The bundled "
        "samples, and payloads re-signed by 'segfn redact --resign', are signed with the documented "
        "test secret whsec_test_segfn_kit_documented_secret (zendesk_test_segfn_kit_documented_secret "
        "for the Zendesk samples)"
    )
