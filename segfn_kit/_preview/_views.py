"""HTML for what ``segfn_kit._run.diff`` and ``segfn_kit._run.coverage`` return.

``diff(before, after)`` is a frame indexed by ``payload_id`` with ``change``,
``outcome_before``/``outcome_after``, ``events_before``/``events_after`` and a unified
``diff``; ``coverage(results, payloads)`` is ``{"event_types", "unmapped_types",
"unused_fields"}``, three frames. These functions only draw them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from . import _render as r

__all__ = ["changed_ids", "changes_html", "coverage_html", "unused_field_counts"]

_MAX_DIFFS = 50
_MAX_FIELDS = 200


def changed_ids(changes: pd.DataFrame | None) -> list[str]:
    """The payload ids a diff frame lists.

    Example:
        >>> changed_ids(pd.DataFrame({"change": ["events"]}, index=["p1"]))
        ['p1']
    """
    if changes is None:
        return []
    return [str(i) for i in changes.index]


def _diff_lines(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            style = "color:#6e7781"
        elif line.startswith("+"):
            style = "background:#dafbe1"
        elif line.startswith("-"):
            style = "background:#ffebe9"
        elif line.startswith("@@"):
            style = "color:#8250df"
        else:
            style = ""
        out.append(f'<div style="{style}">{r.esc(line) or "&nbsp;"}</div>')
    return f'<div style="{r.MONO}white-space:pre;overflow-x:auto">{"".join(out)}</div>'


def changes_html(changes: pd.DataFrame | None, ids: list[str] | None = None) -> str:
    """What changed between two runs: a count by kind of change, then each payload's diff.

    Example:
        >>> frame = pd.DataFrame({"change": ["outcome"], "outcome_before": ["error"],
        ...     "outcome_after": ["ok"], "events_before": [0], "events_after": [1],
        ...     "diff": ["-a\\n+b"]}, index=pd.Index(["p1"], name="payload_id"))
        >>> "1 payload changed" in changes_html(frame)
        True
    """
    if changes is None or not len(changes):
        return '<div style="color:#1a7f37;padding:6px">✓ No output changed since the previous run.</div>'
    counts = changes["change"].value_counts()
    n = len(changes)
    head = (
        f'<div style="margin:4px 0"><b>{n:,} payload{"s" if n != 1 else ""} changed</b> since the previous run: '
        + ", ".join(f"{r.esc(kind)} {count}" for kind, count in counts.items())
        + "</div>"
    )
    rows = []
    for pid, row in changes.head(_MAX_DIFFS).iterrows():
        summary = (
            f"<b>{r.esc(pid)}</b> · {r.esc(row['change'])}: "
            f"{r.esc(row.get('outcome_before'))} → {r.esc(row.get('outcome_after'))}, "
            f"events {r.esc(row.get('events_before'))} → {r.esc(row.get('events_after'))}"
        )
        rows.append(f"<details><summary>{summary}</summary>{_diff_lines(str(row.get('diff') or ''))}</details>")
    more = (
        f'<div style="color:#6e7781">… and {n - _MAX_DIFFS:,} more (tick “changed only” on the Payloads tab to browse them)</div>'
        if n > _MAX_DIFFS else ""
    )
    return head + "".join(rows) + more


def coverage_html(coverage: Mapping[str, pd.DataFrame] | None) -> str:
    """Coverage as HTML: incoming types no branch maps, and payload fields never used.

    Example:
        >>> cov = {"event_types": pd.DataFrame({"payloads": [2], "ok": [0]}, index=["invoice.voided"]),
        ...        "unmapped_types": pd.DataFrame({"payloads": [2], "ok": [0]}, index=["invoice.voided"]),
        ...        "unused_fields": pd.DataFrame({"payloads": [1], "example": ["x"]}, index=["color"])}
        >>> "invoice.voided" in coverage_html(cov)
        True
    """
    if not coverage:
        return '<div style="color:#6e7781">no coverage</div>'
    unmapped = coverage.get("unmapped_types")
    unused = coverage.get("unused_fields")
    types = coverage.get("event_types")
    parts = []
    if unmapped is not None and len(unmapped):
        rows = [[t, int(row.get("payloads", 0)), ", ".join(
            f"{c} {int(v)}" for c, v in row.items() if c not in ("payloads", "ok") and v)]
            for t, row in unmapped.iterrows()]
        parts.append(
            f"<div><b>{len(unmapped)} incoming event type(s) that no branch maps</b> "
            "(no payload of the type produced an event)</div>" + r.table(["event type", "payloads", "outcomes"], rows)
        )
    else:
        parts.append('<div style="color:#1a7f37">✓ every incoming event type is mapped by some branch</div>')
    if unused is not None and len(unused):
        rows = [[f, int(row.get("payloads", 0)), _short(row.get("example"))] for f, row in unused.head(_MAX_FIELDS).iterrows()]
        more = f'<div style="color:#6e7781">… and {len(unused) - _MAX_FIELDS:,} more</div>' if len(unused) > _MAX_FIELDS else ""
        parts.append(
            f'<div style="margin-top:8px"><b>{len(unused)} payload field(s) that never reach an event</b> '
            "(in mapped payloads; the count is how many carried the field)</div>"
            + r.table(["field", "payloads", "example"], rows) + more
        )
    else:
        parts.append('<div style="color:#1a7f37;margin-top:8px">✓ every payload field reaches some event</div>')
    if types is not None and len(types):
        rows = [[t, *[int(v) for v in row.tolist()]] for t, row in types.iterrows()]
        parts.append(
            '<details style="margin-top:8px"><summary>outcomes per incoming event type</summary>'
            + r.table(["event type", *map(str, types.columns)], rows) + "</details>"
        )
    return "".join(parts)


def unused_field_counts(coverage: Mapping[str, pd.DataFrame] | None) -> dict[str, int]:
    """Unused payload field -> how many mapped payloads carried it (for the coverage plot).

    Example:
        >>> unused_field_counts({"unused_fields": pd.DataFrame({"payloads": [3]}, index=["a.b"])})
        {'a.b': 3}
    """
    if not coverage:
        return {}
    unused = coverage.get("unused_fields")
    if unused is None or not len(unused):
        return {}
    return {str(k): int(v) for k, v in unused["payloads"].items()}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"
