"""Plots for the preview, drawn offline with matplotlib and returned as PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, never ``pyplot``,
so drawing one neither touches global state nor pops a second copy into the notebook.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ._summary import CATEGORIES, RunSummary

__all__ = ["coverage_png", "outcomes_png"]

_COLOURS = {
    "mapped": "#2da44e",
    "unsupported": "#8c959f",
    "invalid": "#fb8f44",
    "errored": "#cf222e",
    "dropped": "#d0d7de",
}
_MAX_BARS = 30


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # metadata without the software version or date keeps the bytes repeatable
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def outcomes_png(summary: RunSummary) -> bytes:
    """Outcome counts per incoming event type, as a stacked horizontal bar chart (PNG).

    Example:
        >>> from segfn_kit._preview._summary import summarize
        >>> import pandas as pd
        >>> png = outcomes_png(summarize(pd.DataFrame({"outcome": ["ok"], "event_type": ["a"]})))
        >>> png[:4] == b"\\x89PNG"
        True
    """
    types = sorted(summary.by_type, key=lambda t: -sum(summary.by_type[t].values()))[:_MAX_BARS]
    fig = Figure(figsize=(7, 0.6 + 0.32 * max(1, len(types))))
    ax = fig.add_subplot()
    if not types:
        ax.text(0.5, 0.5, "no payloads", ha="center", va="center")
        ax.set_axis_off()
        return _png(fig)
    labels = list(reversed(types))
    left = [0] * len(labels)
    for cat, colour in _COLOURS.items():
        values = [
            sum(n for o, n in summary.by_type[t].items() if CATEGORIES.get(o, "errored") == cat)
            for t in labels
        ]
        if not any(values):
            continue
        ax.barh(labels, values, left=left, color=colour, label=cat)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_xlabel("payloads")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("outcome per incoming event type", fontsize=10)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.tick_params(axis="y", labelsize=8)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    return _png(fig)


def coverage_png(fields: Mapping[str, int], *, mapped: int = 0) -> bytes:
    """Payload fields that never reach an event, by how many mapped payloads carry them (PNG).

    Args:
        fields: unused field path -> payloads carrying it.
        mapped: how many payloads were mapped (the scale of the bars).

    Example:
        >>> coverage_png({"data.object.email": 3}, mapped=4)[:4] == b"\\x89PNG"
        True
    """
    items = sorted(fields.items(), key=lambda kv: (-kv[1], kv[0]))[:_MAX_BARS]
    fig = Figure(figsize=(7, 0.6 + 0.26 * max(1, len(items))))
    ax = fig.add_subplot()
    if not items:
        ax.text(0.5, 0.5, "every payload field reaches an event", ha="center", va="center")
        ax.set_axis_off()
        return _png(fig)
    labels = [k for k, _ in reversed(items)]
    values = [v for _, v in reversed(items)]
    ax.barh(labels, values, color="#cf222e")
    if mapped:
        ax.set_xlim(0, max(mapped, *values))
    ax.set_xlabel("mapped payloads carrying the field")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = "payload fields that never reach an event"
    if len(fields) > len(items):
        title += f" (top {len(items)} of {len(fields)})"
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="y", labelsize=7)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    return _png(fig)
