"""Summaries and single-item views of a result frame, with rich reprs.

These objects render as HTML anywhere a notebook is shown (JupyterLab, nbviewer, GitHub,
VS Code) and as readable text in a terminal; the workbench widgets reuse their markup.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import _render as r

__all__ = ["CATEGORIES", "EventView", "ResultView", "RunSummary", "category", "event_label", "summarize"]

# outcome -> the summary's category (Segment's own wording in the comments)
CATEGORIES = {
    "ok": "mapped",
    "EventNotSupported": "unsupported",  # Unsupported Event Type
    "InvalidEventPayload": "invalid",  # Message Rejected
    "ValidationError": "invalid",  # Message Rejected
    "RetryError": "errored",  # Retry
    "error": "errored",  # Bad Request
    "DropEvent": "dropped",  # Filtered
}
_ORDER = ("mapped", "unsupported", "invalid", "errored", "dropped")


def category(outcome: str) -> str:
    """The summary category of an outcome.

    Example:
        >>> category("ValidationError"), category("ok"), category("KeyError")
        ('invalid', 'mapped', 'errored')
    """
    return CATEGORIES.get(outcome, "errored")


def event_label(event: Mapping[str, Any]) -> str:
    """How an emitted Segment event is named in summaries: its type, and its name if any.

    Example:
        >>> event_label({"type": "track", "event": "Order Completed"})
        'track · Order Completed'
        >>> event_label({"type": "identify"})
        'identify'
    """
    kind = str(event.get("type") or "?")
    name = event.get("event") if kind == "track" else event.get("name")
    return f"{kind} · {name}" if name else kind


def request_label(request: Mapping[str, Any]) -> str:
    """How an HTTP request a destination made is named in summaries: method, host and path.

    Example:
        >>> request_label({"method": "POST", "url": "https://acme.zendesk.com/api/v2/tickets.json?x=1"})
        'POST acme.zendesk.com/api/v2/tickets.json'
    """
    from urllib.parse import urlsplit

    url = urlsplit(str(request.get("url") or ""))
    return f"{request.get('method') or '?'} {url.netloc}{url.path}"


def _items(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return list(value)


def _incoming(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return "(no event type)"
    return str(value)


@dataclass
class RunSummary:
    """What a run did, at a glance.

    Attributes:
        total: payloads (or events) run.
        counts: category -> payloads (``mapped``, ``unsupported``, ``invalid``, ``errored``,
            ``dropped``).
        outcomes: exact outcome -> payloads.
        with_issues: payloads whose events have spec problems.
        events: Segment events produced in all.
        mapping: incoming event type -> {produced event label -> count}.
        by_type: incoming event type -> {outcome -> payloads}.
        kind: ``source`` or ``destination``.
        requests: HTTP requests made (destination runs).

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"outcome": ["ok", "EventNotSupported"],
        ...     "events": [[{"type": "identify"}], []], "issues": [[], []],
        ...     "event_type": ["customer.created", "invoice.voided"]})
        >>> s = summarize(frame)
        >>> s.counts["mapped"], s.counts["unsupported"], s.mapping["customer.created"]
        (1, 1, {'identify': 1})
    """

    total: int
    counts: dict[str, int]
    outcomes: dict[str, int]
    with_issues: int
    events: int
    mapping: dict[str, dict[str, int]]
    by_type: dict[str, dict[str, int]]
    kind: str = "source"
    requests: int = 0
    notes: list[str] = field(default_factory=list)

    # -- reprs -------------------------------------------------------------------------
    def __repr__(self) -> str:
        if not self.total:
            return "RunSummary(no payloads: the frame is empty)"
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"RunSummary({self.total} payloads: {counts}; {self.events} events; {self.with_issues} with spec problems)"

    def _repr_html_(self) -> str:
        return self.html()

    def html(self) -> str:
        """The summary as HTML: outcome counts, then incoming types and what they produced."""
        noun = "events" if self.kind == "destination" else "payloads"
        if not self.total:
            return (
                '<div style="padding:6px;color:#6e7781"><b>No payloads.</b> The frame is empty: '
                "load some with <code>segfn_kit.load_payloads(...)</code> and run again.</div>"
            )
        colours = {"mapped": "#1a7f37", "unsupported": "#6e7781", "invalid": "#bc4c00",
                   "errored": "#cf222e", "dropped": "#6e7781"}
        tiles = "".join(
            f'<div style="display:inline-block;margin:0 14px 4px 0"><div style="font-size:20px;'
            f'font-weight:bold;color:{colours[k]}">{v:,}</div><div style="font-size:12px">{k}</div></div>'
            for k, v in self.counts.items() if v or k != "dropped"
        )
        extra = (
            f'<div style="display:inline-block;margin:0 14px 4px 0"><div style="font-size:20px;'
            f'font-weight:bold;color:{"#cf222e" if self.with_issues else "#1a7f37"}">{self.with_issues:,}</div>'
            f'<div style="font-size:12px">with spec problems</div></div>'
            f'<div style="display:inline-block;margin:0 14px 4px 0"><div style="font-size:20px;'
            f'font-weight:bold">{self.events:,}</div><div style="font-size:12px">Segment events</div></div>'
        )
        if self.kind == "destination":
            extra += (
                f'<div style="display:inline-block;margin:0 14px 4px 0"><div style="font-size:20px;'
                f'font-weight:bold">{self.requests:,}</div><div style="font-size:12px">HTTP requests</div></div>'
            )
        rows = []
        for incoming in sorted(self.by_type):
            outs = self.by_type[incoming]
            produced = self.mapping.get(incoming, {})
            produced_html = ", ".join(
                f"{r.esc(label)} x{n}" for label, n in sorted(produced.items())
            ) or '<span style="color:#6e7781">nothing</span>'
            outcome_html = " ".join(f"{r.outcome_badge(o)} {n}" for o, n in sorted(outs.items()))
            rows.append([r.esc(incoming), str(sum(outs.values())), outcome_html, produced_html])
        heading = "incoming event type" if self.kind == "source" else "event type"
        produced_heading = "Segment events produced" if self.kind == "source" else "HTTP requests (and events returned)"
        notes = "".join(f'<div style="color:#9a6700">{r.esc(n)}</div>' for n in self.notes)
        return (
            f'<div><div style="font-size:12px;color:#6e7781">{self.total:,} {noun}</div>{tiles}{extra}'
            f"{notes}{r.table([heading, noun, 'outcomes', produced_heading], rows, raw_html=True)}</div>"
        )


def summarize(results: pd.DataFrame) -> RunSummary:
    """Summarise a result frame: counts by outcome and what each incoming type produced.

    Example:
        >>> import pandas as pd
        >>> summarize(pd.DataFrame({"outcome": []})).total
        0
    """
    outcomes: Counter[str] = Counter()
    mapping: dict[str, Counter[str]] = defaultdict(Counter)
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    with_issues = events_total = requests = 0
    columns = results.columns
    outcome_col = results["outcome"].tolist() if "outcome" in columns else []
    events_col = results["events"].tolist() if "events" in columns else [None] * len(outcome_col)
    issues_col = results["issues"].tolist() if "issues" in columns else [None] * len(outcome_col)
    types_col = results["event_type"].tolist() if "event_type" in columns else [None] * len(outcome_col)
    requests_col = results["requests"].tolist() if "requests" in columns else [None] * len(outcome_col)
    for outcome, events, issues, incoming, reqs in zip(
        outcome_col, events_col, issues_col, types_col, requests_col, strict=True
    ):
        outcome = str(outcome)
        outcomes[outcome] += 1
        key = _incoming(incoming)
        by_type[key][outcome] += 1
        emitted = _items(events)
        events_total += len(emitted)
        for event in emitted:
            if isinstance(event, Mapping):
                mapping[key][event_label(event)] += 1
        if _items(issues):
            with_issues += 1
        made = _items(reqs)
        requests += len(made)
        for request in made:
            if isinstance(request, Mapping):
                mapping[key][request_label(request)] += 1
    counts = {k: 0 for k in _ORDER}
    for outcome, n in outcomes.items():
        counts[category(outcome)] += n
    return RunSummary(
        total=len(outcome_col),
        counts=counts,
        outcomes=dict(outcomes),
        with_issues=with_issues,
        events=events_total,
        mapping={k: dict(v) for k, v in mapping.items()},
        by_type={k: dict(v) for k, v in by_type.items()},
        kind=str(results.attrs.get("kind", "source")),
        requests=requests,
    )


@dataclass
class EventView:
    """One Segment event with its spec problems, shown as a tree with problems marked.

    Example:
        >>> v = EventView({"type": "track", "event": "Pinged"}, [{"event_index": 0, "field": "userId",
        ...     "code": "missing", "message": "userId or anonymousId is required"}])
        >>> "userId or anonymousId is required" in v._repr_html_()
        True
    """

    event: Mapping[str, Any]
    issues: list[Mapping[str, Any]] = field(default_factory=list)
    index: int = 0
    secret_values: list[str] = field(default_factory=list, repr=False)

    def _repr_html_(self) -> str:
        return r.mask(r.event_card(self.event, self.issues, self.index), self.secret_values)

    def _repr_mimebundle_(self, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None) -> dict[str, Any]:
        import json

        return {
            "text/html": self._repr_html_(),
            "application/json": json.loads(r.mask(json.dumps(dict(self.event), default=str), self.secret_values)),
            "text/plain": r.mask(repr(dict(self.event)), self.secret_values),
        }


@dataclass
class ResultView:
    """One row of a result frame: the payload's body beside what the function did with it.

    Example:
        >>> import pandas as pd
        >>> row = pd.Series({"outcome": "EventNotSupported", "events": [], "issues": [],
        ...                  "error": "EventNotSupported: invoice.voided is not mapped"})
        >>> "is not mapped" in ResultView("p/1.json", row)._repr_html_()
        True
    """

    payload_id: str
    result: pd.Series | Mapping[str, Any]
    payload: pd.Series | Mapping[str, Any] | None = None
    full_body: bool = False
    secret_values: list[str] = field(default_factory=list, repr=False)
    source: str | None = None
    line_offset: int = 0

    def _repr_html_(self) -> str:
        left, right = self.columns()
        return r.mask(
            f'<div style="font-weight:bold;margin:4px 0">{r.esc(self.payload_id)} '
            f'{r.outcome_badge(str(self.result.get("outcome")))}</div>'
            '<div style="display:flex;gap:12px;align-items:flex-start">'
            f'<div style="flex:1;min-width:0;overflow:auto">{left}</div>'
            f'<div style="flex:1;min-width:0;overflow:auto">{right}</div></div>',
            self.secret_values,
        )

    def __repr__(self) -> str:
        events = _items(self.result.get("events"))
        return f"ResultView({self.payload_id!r}, outcome={self.result.get('outcome')!r}, events={len(events)})"

    def columns(self) -> tuple[str, str]:
        """(input markup, output markup), unmasked: callers mask the final page."""
        return self.input_html(), self.output_html()

    def input_html(self) -> str:
        result = self.result
        payload = self.payload
        incoming = payload.get("event") if payload is not None else None
        if isinstance(incoming, Mapping):
            # in a destination run the issues are the incoming event's own spec problems
            issues = [i for i in _items(result.get("issues")) if isinstance(i, Mapping)]
            return "<div><b>incoming event</b></div>" + r.event_card(incoming, issues, 0)
        if payload is None:
            return '<div style="color:#6e7781">payload not available</div>'
        parts = ["<div><b>payload body</b></div>"]
        error = payload.get("error")
        if isinstance(error, str) and error:
            parts.append(r.error_box(error, title="this payload could not be loaded"))
        raw = payload.get("raw")
        parts.append(r.body_tree(payload.get("body"), raw if isinstance(raw, str) else None, full=self.full_body))
        headers = payload.get("headers")
        if isinstance(headers, Mapping) and headers:
            parts.append(
                f"<details><summary>headers ({len(headers)})</summary>"
                f"{r.json_tree(r.mask_headers(headers), open_depth=1)}</details>"
            )
        return "".join(parts)

    def output_html(self) -> str:
        result = self.result
        outcome = str(result.get("outcome"))
        parts: list[str] = []
        error = result.get("error")
        if isinstance(error, str) and error:
            line = result.get("error_line")
            line_no = int(line) if isinstance(line, int | float) and not (isinstance(line, float) and math.isnan(line)) else None
            title = {"EventNotSupported": "not supported", "DropEvent": "dropped"}.get(outcome, outcome)
            parts.append(r.error_box(error, source=self.source, line=line_no, title=title, line_offset=self.line_offset))
        events = _items(result.get("events"))
        destination = "requests" in _keys(result)
        issues = [i for i in _items(result.get("issues")) if isinstance(i, Mapping)]
        if destination:
            final = result.get("final")
            if isinstance(final, str):
                parts.append(f"<div>in Segment: <b>{r.esc(final)}</b></div>")
            requests = _items(result.get("requests"))
            parts.append(f"<div><b>HTTP requests ({len(requests)})</b> (recorded, answered by the script)</div>")
            parts.append(r.requests_list(requests))
            attempts = [a for a in _items(result.get("attempts")) if isinstance(a, Mapping)]
            if len(attempts) > 1 or any(a.get("outcome") != "ok" for a in attempts):
                parts.append("<div><b>attempts</b></div>" + r.table(
                    ["attempt", "after (s)", "outcome", "error"],
                    [[a.get("attempt"), a.get("delay_s"), a.get("outcome"), a.get("error") or ""] for a in attempts],
                ))
        if events or not destination:
            parts.append(f"<div><b>Segment events ({len(events)})</b></div>")
            if not events:
                parts.append('<div style="color:#6e7781">no events</div>')
            for index, event in enumerate(events):
                parts.append(r.event_card(event, [] if destination else issues, index))
        if not destination:
            loose = [i for i in issues if i.get("event_index") is None]
            for issue in loose:
                parts.append(f'<div style="color:#cf222e">⚠ {r.esc(issue.get("message"))}</div>')
        objects = _items(result.get("objects"))
        if objects:
            parts.append(f"<div><b>Objects ({len(objects)})</b></div>")
            parts.extend(r.json_tree(o, open_depth=1) for o in objects)
        discarded = _items(result.get("discarded_events"))
        if discarded:
            parts.append(
                f"<details><summary>{len(discarded)} event(s) emitted before the error (not sent)"
                f"</summary>{''.join(r.event_card(e, (), -1) for e in discarded)}</details>"
            )
        if destination:
            returned = result.get("returned")
            if returned is not None and not (isinstance(returned, float) and math.isnan(returned)):
                parts.append("<div><b>returned</b></div>" + r.json_tree(returned, open_depth=1))
        logs = result.get("logs")
        if isinstance(logs, str) and logs:
            parts.append(
                f"<details><summary>printed output</summary><pre style='{r.MONO}white-space:pre-wrap'>"
                f"{r.esc(logs[:4000])}</pre></details>"
            )
        return "".join(parts)


def _keys(value: pd.Series | Mapping[str, Any]) -> Iterable[str]:
    return value.index if isinstance(value, pd.Series) else value.keys()
