"""The command line of a deployed function: ``python -m handler [FILE ...] [--deliver]``.

Reads capture envelopes (``{"headers", "body"}``, contract 2), bare JSON bodies, or JSON
Lines of either (Segment events for a destination function) from files or standard input,
runs each through the engine and prints one JSON line per payload (per event for a
destination): ``payload``, ``outcome``, ``status``, ``events``, ``error``, plus ``objects``
when there are any, and for destinations the changed ``event`` of an insert function.
Exit status: 0 when every line answered 2xx, 1 otherwise, 2 on a usage or configuration error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._config import ConfigError
from ._request import Request
from ._rules import status_of

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["main", "read_inputs"]


def read_inputs(paths: list[str]) -> list[tuple[str, Any]]:
    """(name, JSON document) pairs from files, JSON Lines files, or standard input."""
    items: list[tuple[str, Any]] = []
    sources = [(p, Path(p).read_text(encoding="utf-8")) for p in paths] if paths else [("<stdin>", sys.stdin.read())]
    for name, text in sources:
        try:
            items.append((name, json.loads(text)))
            continue
        except ValueError:
            pass
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                items.append((f"{name}#{number}", json.loads(line)))
    return items


def main(engine: Engine, argv: list[str] | None = None) -> int:
    """Run the function over payload files and print one JSON line per payload."""
    import argparse

    from ._engine import Answer, Outbox, invoke_events, invoke_source

    fn = engine.function
    parser = argparse.ArgumentParser(
        prog="python -m handler",
        description=(
            "Run " + engine.name + " over payload files (capture envelopes with headers and body, bare JSON "
            "bodies, or JSON Lines of either; Segment events for a destination function), or over "
            "standard input when no file is given, and print one JSON line per payload. "
            "Settings come from SEGFN_SETTINGS / SEGFN_SETTING_<name>."
        ),
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="payload files (default: standard input)")
    parser.add_argument(
        "--deliver",
        action="store_true",
        help=(
            "send the events to the Tracking API and the Segment.set objects to the Objects API "
            "(SEGMENT_WRITE_KEY, SEGMENT_API_HOST, SEGMENT_OBJECTS_HOST) instead of only printing them"
        ),
    )
    args = parser.parse_args(argv)
    try:
        config = engine.config()
        inputs = read_inputs(args.files)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    fn = engine.runner(config)  # in worker processes unless SEGFN_ISOLATION=none
    for name, doc in inputs:
        if fn.kind == "destination":
            events = doc["batch"] if isinstance(doc, dict) and isinstance(doc.get("batch"), list) else doc
            events = events if isinstance(events, list) else [events]
            results = invoke_events(fn, events, config.settings, timeout=config.timeout)
            for n, one in enumerate(results, 1):
                line: dict[str, Any] = {"payload": name if len(events) == 1 else f"{name}:{n}",
                                        "outcome": "timeout" if one.timed_out else one.outcome,
                                        "status": one.status, "events": [] if one.event is None else [one.event],
                                        "error": one.error}
                failures += one.status >= 300
                print(json.dumps(line, ensure_ascii=False))
            continue
        inv = invoke_source(fn, Request.from_envelope(doc), config.settings, timeout=config.timeout)
        status = status_of(inv.outcome, inv.timed_out)
        ok = inv.outcome == "ok" and not inv.timed_out
        record: dict[str, Any] = {"payload": name, "outcome": "timeout" if inv.timed_out else inv.outcome,
                                  "status": status, "events": inv.events if ok else [], "error": inv.error}
        if ok and inv.objects:
            record["objects"] = inv.objects
        events = inv.events
        if ok and config.plan is not None and events:
            # the tracking plan (SEGFN_PLAN): its issues, and in block mode what is held back
            events, held, record["issues"] = config.plan.hold(events, config.plan_mode)  # type: ignore[arg-type]
            if held:
                record["held"] = len(held)
        if args.deliver and ok and (events or inv.objects):
            try:
                pending = Answer(200, "ok", len(events), objects=len(inv.objects))
                answer = engine.deliver(pending, Outbox(events, inv.objects), config)
            except ConfigError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            record["delivered"] = len(events) if answer.status == 200 else 0
            if inv.objects:
                record["delivered_objects"] = len(inv.objects) if answer.status == 200 else 0
            if answer.status != 200:
                record["error"] = answer.error
                record["status"] = answer.status
                failures += 1
        failures += status >= 300
        print(json.dumps(record, ensure_ascii=False))
    return 1 if failures else 0
