"""The tracking plan in the preview: a summary per rule, and a plot of violations.

Both read a result frame that ``run(..., plan=)`` checked (``attrs["plan"]``); the counts
come from ``segfn_kit._plan.plan_summary``, the same table ``segfn run --plan`` prints.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from . import _render as r

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["plan_html", "plan_png", "violations_by_rule_and_field"]

def plan_html(results: pd.DataFrame) -> str:
    """The plan summary as HTML: per rule, events checked, failing, unplanned.

    Example:
        >>> import pandas as pd
        >>> from segfn_kit._plan import check_results, load_plan
        >>> plan = load_plan([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {}}])
        >>> frame = check_results(pd.DataFrame({"events": [[{"type": "track", "event": "A"}]],
        ...                                     "issues": [[]]}), plan)
        >>> "TRACK &#x27;A&#x27; v1" in plan_html(frame)
        True
    """
    from segfn_kit._plan import plan_summary

    plan = results.attrs.get("plan")
    if plan is None:
        return ""
    summary = plan_summary(results)
    failing = int(summary["failing"].sum()) if len(summary) else 0
    unplanned = int(summary["unplanned"].sum()) if len(summary) else 0
    colour = "#cf222e" if failing or unplanned else "#1a7f37"
    name = f" {r.esc(plan.name)}" if plan.name else ""
    head = (
        f'<div style="margin:6px 0 2px 0"><b>tracking plan{name}</b> ({len(plan)} rules): '
        f'<span style="color:{colour}">{failing:,} failing event(s), {unplanned:,} unplanned</span></div>'
    )
    rows = [(row.rule, f"{row.checked:,}", f"{row.failing:,}", f"{row.unplanned:,}")
            for row in summary.itertuples(index=False)]
    return head + r.table(("rule", "events checked", "failing", "unplanned"), rows)


def violations_by_rule_and_field(results: pd.DataFrame) -> Counter[tuple[str, str]]:
    """How many plan issues each (rule, field) has in a result frame.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"issues": [[{"code": "plan_violation", "rule": "TRACK 'A' v1",
        ...                                     "field": "properties.x", "event_index": 0}]]})
        >>> violations_by_rule_and_field(frame)
        Counter({("TRACK 'A' v1", 'properties.x'): 1})
    """
    counts: Counter[tuple[str, str]] = Counter()
    for issues in results["issues"]:
        for issue in issues or []:
            if issue.get("code") in ("plan_violation", "unplanned_event"):
                counts[(str(issue.get("rule", "")), str(issue.get("field") or "(the event)"))] += 1
    return counts


def plan_png(results: pd.DataFrame) -> bytes:
    """Plan issues per rule and field, as a horizontal bar chart (PNG).

    Example:
        >>> import pandas as pd
        >>> plan_png(pd.DataFrame({"issues": [[]]}))[:4] == b"\\x89PNG"
        True
    """
    from ._plots import bar_chart_png, top_bars, top_title

    counts = violations_by_rule_and_field(results)
    items = top_bars(counts)
    labels = [f"{rule} · {field}" for (rule, field), _ in items]
    return bar_chart_png(
        labels,
        [(None, [n for _, n in items], ["#8250df" if "(unplanned)" in label else "#bc4c00" for label in labels])],
        title=top_title("tracking plan issues per rule and field", len(items), len(counts)),
        xlabel="plan issues (orange: violations, purple: unplanned events)",
        empty="every event passes the tracking plan", row_height=0.28,
    )
