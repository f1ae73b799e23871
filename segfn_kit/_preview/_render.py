"""HTML for the preview: pure functions from data to markup, shared by widgets and reprs.

Everything here returns self-contained HTML with inline styles (no scripts, no style
sheets), so the same markup shows in a JupyterLab widget, in nbviewer and on GitHub.
Collapsible parts use ``<details>``, which needs no JavaScript.

Secrets: callers pass the secret values to mask; ``mask`` runs over the final markup, and
headers whose names look like credentials are masked before rendering.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segfn_kit.runtime import MASK, mask_text

__all__ = [
    "Budget",
    "body_tree",
    "error_box",
    "event_card",
    "json_tree",
    "mask",
    "mask_headers",
    "requests_list",
    "table",
]

# how much of a big payload to draw before asking the analyst to expand
NODE_BUDGET = 400
STRING_LIMIT = 300

OUTCOME_COLOURS = {
    "ok": "#1a7f37",
    "EventNotSupported": "#6e7781",
    "InvalidEventPayload": "#bc4c00",
    "ValidationError": "#bc4c00",
    "RetryError": "#9a6700",
    "DropEvent": "#6e7781",
    "error": "#cf222e",
}

_SECRET_HEADER = re.compile(
    r"(authorization|cookie|api[-_]?key|token|secret|passw|signature-secret|write[-_]?key)",
    re.IGNORECASE,
)

MONO = "font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px;"


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def mask(markup: str, secret_values: Iterable[str]) -> str:
    """Replace every secret value in ``markup`` (raw and HTML-escaped) by a mask.

    Example:
        >>> mask("key s3cr3t-value", ["s3cr3t-value"])
        'key ••••••'
    """
    values = [v for v in secret_values if v and len(v) >= 4]
    if not values:
        return markup
    return mask_text(markup, [*values, *(html.escape(v, quote=True) for v in values)])


def mask_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Headers with credential-looking values masked (``Authorization``, ``Cookie``, ...).

    Signature headers are kept: a signature is not a secret, and seeing it helps.

    Example:
        >>> mask_headers({"Authorization": "Basic abc", "Content-Type": "application/json"})
        {'Authorization': '••••••', 'Content-Type': 'application/json'}
    """
    if not headers:
        return {}
    return {k: (MASK if _SECRET_HEADER.search(str(k)) else v) for k, v in headers.items()}


@dataclass
class Budget:
    """How many nodes of a JSON tree may still be drawn (``None``: no limit)."""

    nodes: int | None = NODE_BUDGET
    strings: int | None = STRING_LIMIT
    cut: int = 0  # nodes left out

    def take(self) -> bool:
        if self.nodes is None:
            return True
        if self.nodes <= 0:
            self.cut += 1
            return False
        self.nodes -= 1
        return True


@dataclass
class _Marks:
    """Spec problems by field path (``properties.amount``) for highlighting."""

    by_path: dict[str, list[str]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)


def _scalar(value: Any, budget: Budget) -> str:
    if isinstance(value, str):
        limit = budget.strings
        if limit is not None and len(value) > limit:
            shown = json.dumps(value[:limit], ensure_ascii=False)[:-1]
            return (
                f'<span style="color:#0a3069">{esc(shown)}…"</span>'
                f'<span style="color:#6e7781"> (+{len(value) - limit:,} characters)</span>'
            )
        return f'<span style="color:#0a3069">{esc(json.dumps(value, ensure_ascii=False))}</span>'
    if value is None:
        return '<span style="color:#8250df">null</span>'
    if isinstance(value, bool):
        return f'<span style="color:#8250df">{"true" if value else "false"}</span>'
    if isinstance(value, int | float):
        return f'<span style="color:#0550ae">{esc(value)}</span>'
    return f'<span style="color:#6e7781">{esc(repr(value))}</span>'


def _key_path(parent: str, key: object) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]" if parent else f"[{key}]"
    return f"{parent}.{key}" if parent else str(key)


def _node(key: str | None, value: Any, path: str, depth: int, open_depth: int, budget: Budget, marks: _Marks) -> str:
    problems = marks.by_path.get(path, []) if path else []
    if problems:
        marks.used.add(path)
    style = "background:#ffebe9;border-left:3px solid #cf222e;padding-left:3px;" if problems else ""
    title = f' title="{esc("; ".join(problems))}"' if problems else ""
    note = "".join(
        f'<div style="color:#cf222e;margin-left:1.2em">⚠ {esc(p)}</div>' for p in problems
    )
    label = f'<span style="color:#953800">{esc(key)}</span>: ' if key is not None else ""
    if isinstance(value, Mapping | list | tuple):
        items: Sequence[tuple[Any, Any]] = (
            list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
        )
        bracket = ("{", "}") if isinstance(value, Mapping) else ("[", "]")
        if not items:
            return f'<div style="{style}"{title}>{label}{bracket[0]}{bracket[1]}{note}</div>'
        kids: list[str] = []
        for k, v in items:
            if not budget.take():
                continue
            kids.append(_node(str(k) if isinstance(value, Mapping) else f"[{k}]", v,
                              _key_path(path, k), depth + 1, open_depth, budget, marks))
        skipped = len(items) - len(kids)
        if skipped:
            kids.append(
                f'<div style="color:#6e7781">… {skipped:,} more (truncated: expand the body to see all)</div>'
            )
        count = f"{len(items)} {'key' if isinstance(value, Mapping) else 'item'}{'s' if len(items) != 1 else ''}"
        is_open = " open" if depth < open_depth or problems else ""
        return (
            f'<details{is_open} style="{style}"{title}><summary>{label}'
            f'<span style="color:#6e7781">{bracket[0]} {count} {bracket[1]}</span></summary>'
            f'<div style="margin-left:1.2em">{"".join(kids)}</div>{note}</details>'
        )
    return f'<div style="{style}"{title}>{label}{_scalar(value, budget)}{note}</div>'


def json_tree(
    value: Any,
    *,
    budget: Budget | None = None,
    open_depth: int = 2,
    highlights: Mapping[str, list[str]] | None = None,
) -> str:
    """A collapsible tree of a JSON value.

    Args:
        value: the JSON value.
        budget: how many nodes and characters to draw; the rest is summarised.
        open_depth: levels shown open at first.
        highlights: field path (``properties.amount``, ``items[0].id``) -> messages; those
            nodes are marked red, with the messages beside them.

    Example:
        >>> "userId" in json_tree({"userId": "u1"})
        True
    """
    budget = budget or Budget()
    marks = _Marks(dict(highlights or {}))
    inner = _node(None, value, "", 0, open_depth, budget, marks)
    missing = [p for p in marks.by_path if p not in marks.used]
    extra = "".join(
        f'<div style="background:#ffebe9;border-left:3px solid #cf222e;padding-left:3px">'
        f'<span style="color:#953800">{esc(p)}</span>: <i>missing</i> '
        f'<span style="color:#cf222e">⚠ {esc("; ".join(marks.by_path[p]))}</span></div>'
        for p in missing if p
    )
    general = marks.by_path.get("", [])
    top = "".join(f'<div style="color:#cf222e">⚠ {esc(m)}</div>' for m in general)
    return f'<div style="{MONO}line-height:1.45">{top}{inner}{extra}</div>'


def body_tree(body: Any, raw: str | None = None, *, full: bool = False) -> str:
    """The payload body as a tree (or its raw text when it is not JSON), truncated unless ``full``.

    Example:
        >>> "truncated" in body_tree({"k": list(range(1000))})
        True
    """
    budget = Budget(None, None) if full else Budget()
    if body is None and raw is not None:
        text = raw if full or len(raw) <= 4 * STRING_LIMIT else raw[: 4 * STRING_LIMIT]
        more = "" if text is raw else (
            f'<div style="color:#6e7781">… {len(raw) - len(text):,} more characters '
            "(truncated: expand the body to see all)</div>"
        )
        return (
            '<div style="color:#6e7781">the body is not JSON; raw text:</div>'
            f'<pre style="{MONO}white-space:pre-wrap;margin:0">{esc(text)}</pre>{more}'
        )
    tree = json_tree(body, budget=budget)
    if budget.cut or _strings_cut(body, budget):
        tree += (
            '<div style="color:#6e7781;font-style:italic">this body is large: parts are '
            "truncated (tick “show the whole body” to see everything)</div>"
        )
    return tree


def _strings_cut(value: Any, budget: Budget) -> bool:
    if budget.strings is None:
        return False
    stack = [value]
    seen = 0
    while stack and seen < 5000:
        item = stack.pop()
        seen += 1
        if isinstance(item, str) and len(item) > budget.strings:
            return True
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def issue_paths(issues: Iterable[Mapping[str, Any]], event_index: int) -> dict[str, list[str]]:
    """Spec problems of one event keyed by field path, for ``json_tree(highlights=...)``.

    Example:
        >>> issue_paths([{"event_index": 0, "field": "userId", "message": "missing"}], 0)
        {'userId': ['missing']}
    """
    out: dict[str, list[str]] = {}
    for issue in issues:
        if issue.get("event_index") not in (event_index, None):
            continue
        raw_field = issue.get("field")
        path = _normalise_field(raw_field)
        message = str(issue.get("message") or issue.get("code") or "problem")
        out.setdefault(path, []).append(message)
    return out


def _normalise_field(raw: Any) -> str:
    """``("properties", "items", 0)`` or ``"properties.items.0"`` -> ``properties.items[0]``."""
    if raw is None:
        return ""
    parts: list[Any] = list(raw) if isinstance(raw, list | tuple) else re.split(r"\.(?![^\[]*\])", str(raw))
    path = ""
    for part in parts:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            path = _key_path(path, int(part))
        elif isinstance(part, str) and part.startswith("["):
            path += part
        elif part not in ("", "__root__"):
            path = _key_path(path, part)
    return path


_PLAN_CODES = frozenset({"plan_violation", "unplanned_event"})


def event_card(event: Mapping[str, Any], issues: Iterable[Mapping[str, Any]] = (), index: int = 0) -> str:
    """One spec event: its type and name as a heading, the event as a tree, problems marked.

    Example:
        >>> card = event_card({"type": "track", "event": "Order Completed"})
        >>> "Order Completed" in card
        True
    """
    issues = list(issues)
    marks = issue_paths(issues, index)
    # tracking-plan issues are listed under the heading too: a missing field has no node to mark
    planned = [i for i in issues if i.get("code") in _PLAN_CODES and i.get("event_index") == index]
    kind = event.get("type", "?")
    name = event.get("event") or event.get("name") or ""
    border = "#cf222e" if marks else "#d0d7de"
    n_spec = sum(len(v) for v in marks.values()) - len(planned)
    badges = []
    if n_spec:
        badges.append(f'<span style="color:#cf222e;margin-left:.5em">{n_spec} spec problem(s)</span>')
    if planned:
        badges.append(f'<span style="color:#bc4c00;margin-left:.5em">{len(planned)} plan issue(s)</span>')
    badge = "".join(badges) or '<span style="color:#1a7f37;margin-left:.5em">✓ valid</span>'
    heading = f"<b>{esc(kind)}</b>" + (f" · {esc(name)}" if name else "")
    plan_lines = "".join(
        f'<div style="color:#bc4c00;font-size:12px">⚑ {esc(i.get("code"))}: {esc(i.get("message"))}</div>'
        for i in planned
    )
    return (
        f'<div style="border:1px solid {border};border-radius:6px;padding:4px 8px;margin:4px 0">'
        f"<div>{heading}{badge}</div>{plan_lines}"
        f"{json_tree(dict(event), highlights=marks, open_depth=2)}</div>"
    )


def outcome_badge(outcome: str) -> str:
    colour = OUTCOME_COLOURS.get(outcome, "#cf222e")
    return (
        f'<span style="background:{colour};color:white;border-radius:10px;padding:1px 8px;'
        f'font-size:12px">{esc(outcome)}</span>'
    )


def error_box(
    message: str, *, source: str | None = None, line: int | None = None, title: str = "Error", line_offset: int = 0
) -> str:
    """An error message, with the offending line of ``source`` shown in context.

    Example:
        >>> "line 2" in error_box("boom", source="a = 1\\nb = (\\n", line=2)
        True
    """
    context = ""
    # a cell magic's first line is not part of the function: say where it is in the cell too
    cell_note = f" (line {line + line_offset} of the cell)" if line and line_offset else ""
    if source is not None and line:
        lines = source.splitlines()
        lo, hi = max(1, line - 2), min(len(lines), line + 2)
        rows = []
        for n in range(lo, hi + 1):
            mark = "background:#ffebe9;font-weight:bold" if n == line else ""
            rows.append(
                f'<div style="{mark}"><span style="color:#6e7781;display:inline-block;width:3em">'
                f"{n}</span>{esc(lines[n - 1]) if n - 1 < len(lines) else ''}</div>"
            )
        context = (
            f'<div style="color:#6e7781;margin-top:4px">line {line}{cell_note}:</div>'
            f'<pre style="{MONO}margin:0;white-space:pre">{"".join(rows)}</pre>'
        )
    return (
        '<div style="border:1px solid #cf222e;background:#fff8f8;border-radius:6px;padding:6px 10px;'
        f'margin:4px 0"><b style="color:#cf222e">{esc(title)}</b>'
        f'<div style="{MONO}white-space:pre-wrap">{esc(message)}</div>{context}</div>'
    )


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, raw_html: bool = False) -> str:
    """A small HTML table; cells are escaped unless ``raw_html``.

    Example:
        >>> ">1</td>" in table(["a"], [[1]])
        True
    """
    head = "".join(
        f'<th style="text-align:left;padding:2px 10px;border-bottom:1px solid #d0d7de">{esc(h)}</th>'
        for h in header
    )
    body = "".join(
        "<tr>" + "".join(
            f'<td style="padding:2px 10px;vertical-align:top">{cell if raw_html else esc(cell)}</td>'
            for cell in row
        ) + "</tr>"
        for row in rows
    )
    return f'<table style="border-collapse:collapse;font-size:13px"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def requests_list(requests: Iterable[Mapping[str, Any]]) -> str:
    """The HTTP requests a destination function made: method, URL, masked headers, body, response.

    Example:
        >>> "POST" in requests_list([{"method": "POST", "url": "https://x.test/", "headers": {}}])
        True
    """
    parts: list[str] = []
    for n, request in enumerate(requests, 1):
        method = request.get("method", "?")
        url = request.get("url", "?")
        headers = mask_headers(request.get("headers") or {})
        body = request.get("json", request.get("body"))
        response = request.get("response")
        status = request.get("status") or (response.get("status") if isinstance(response, Mapping) else None)
        status_html = f' → <b>{esc(status)}</b>' if status is not None else ""
        parts.append(
            '<div style="border:1px solid #d0d7de;border-radius:6px;padding:4px 8px;margin:4px 0">'
            f'<div style="{MONO}"><b>{n}. {esc(method)}</b> {esc(url)}{status_html}</div>'
            f"<details><summary>headers ({len(headers)})</summary>{json_tree(headers, open_depth=1)}</details>"
            + (f"<div>body:</div>{json_tree(body, open_depth=2)}" if body is not None else "")
            + (f"<details><summary>response</summary>{json_tree(response, open_depth=2)}</details>"
               if isinstance(response, Mapping) else "")
            + "</div>"
        )
    if not parts:
        return '<div style="color:#6e7781">no HTTP requests</div>'
    return "".join(parts)
