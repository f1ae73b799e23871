"""Plots for the preview, drawn offline with matplotlib and returned as PNG bytes.

Every plot is a horizontal bar chart drawn by :func:`bar_chart_png`. Figures are built with
``matplotlib.figure.Figure`` and the Agg canvas, never ``pyplot``, so drawing one neither
touches global state nor pops a second copy into the notebook. The layout is computed from
the measured width of the bar labels, so a figure is drawn once (no "tight" bounding box,
which draws it twice).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from typing import TypeVar

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import MaxNLocator

from ._summary import CATEGORIES, RunSummary

__all__ = ["MAX_BARS", "bar_chart_png", "coverage_png", "forget_charts", "outcomes_png", "top_bars", "top_title"]

_COLOURS = {
    "mapped": "#2da44e",
    "unsupported": "#8c959f",
    "invalid": "#fb8f44",
    "errored": "#cf222e",
    "dropped": "#d0d7de",
}
MAX_BARS = 30
"""The most bars a plot shows (the largest ones; its title says how many there were)."""

K = TypeVar("K", str, tuple[str, str])

_DPI = 90
_PLOT_WIDTH = 5.2  # inches of bars, whatever the labels' width
_MARGIN = 0.15  # inches around the figure
_TITLE = 0.35  # inches above the bars for the title
_AXIS = 0.5  # inches below the bars for the ticks and the axis label


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # metadata without the software version or date keeps the bytes repeatable
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def bar_chart_png(
    labels: Sequence[str],
    series: Sequence[tuple[str | None, Sequence[float], str | Sequence[str]]],
    *,
    title: str,
    xlabel: str,
    empty: str,
    label_size: float = 7,
    row_height: float = 0.26,
    xmax: float | None = None,
) -> bytes:
    """A horizontal bar chart as PNG: one bar per label, top to bottom in the order given.

    Args:
        labels: the bars' labels, the first drawn at the top.
        series: ``(name, values, colour)`` per stacked part of the bars (one for plain bars);
            ``colour`` is one colour or one per bar; named series get a legend.
        title: the title above the bars.
        xlabel: what the bars count.
        empty: the text drawn instead when there are no labels.
        label_size: the labels' font size (points).
        row_height: inches per bar.
        xmax: the right end of the scale (default: the longest bar).

    The last few charts are kept by their data: an edit that changes no plotted number
    redraws nothing (:func:`forget_charts` forgets them).

    Example:
        >>> png = bar_chart_png(["a", "b"], [(None, [3, 1], "#cf222e")], title="t", xlabel="n", empty="none")
        >>> png[:4] == b"\\x89PNG"
        True
    """
    frozen = tuple((name, tuple(values), colour if isinstance(colour, str) else tuple(colour))
                   for name, values, colour in series)
    return _chart(tuple(labels), frozen, title, xlabel, empty, label_size, row_height, xmax)


@functools.lru_cache(maxsize=16)
def _chart(
    labels: tuple[str, ...],
    series: tuple[tuple[str | None, tuple[float, ...], str | tuple[str, ...]], ...],
    title: str,
    xlabel: str,
    empty: str,
    label_size: float,
    row_height: float,
    xmax: float | None,
) -> bytes:
    if not labels:
        fig = Figure(figsize=(4, 0.5), dpi=_DPI)
        FigureCanvasAgg(fig)
        fig.text(0.5, 0.5, empty, ha="center", va="center")
        return _png(fig)
    rows = list(reversed(labels))  # barh draws the first row at the bottom
    fig = Figure(dpi=_DPI)
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
    font = FontProperties(size=label_size)
    widest = max(renderer.get_text_width_height_descent(text, font, ismath=False)[0] for text in rows) / _DPI
    left = _MARGIN + widest + 0.1  # the tick marks and their padding
    width = left + _PLOT_WIDTH + _MARGIN + 0.2  # room for the last tick label
    height = _TITLE + _AXIS + row_height * len(rows) + 0.1
    fig.set_size_inches(width, height)
    fig.subplots_adjust(left=left / width, right=1 - (_MARGIN + 0.2) / width,
                        bottom=_AXIS / height, top=1 - _TITLE / height)
    ax = fig.add_subplot()
    # bars at numeric positions, labelled by ticks (a categorical axis costs more to draw and
    # would merge two bars of the same label)
    positions = list(range(len(rows)))
    start = [0.0] * len(rows)
    named = False
    for name, values, colour in series:
        bars = list(reversed(values))
        if not any(bars):
            continue
        colours = colour if isinstance(colour, str) else list(reversed(colour))
        ax.barh(positions, bars, left=start, color=colours, label=name)
        start = [a + b for a, b in zip(start, bars, strict=True)]
        named = named or name is not None
    if xmax is not None:
        ax.set_xlim(0, max(xmax, *start))
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=10, y=1.0, pad=6)  # a fixed position: no layout pass for it
    if named:
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_yticks(positions, rows)
    ax.set_ylim(-0.6, len(rows) - 0.4)  # the bars fill the height given to them
    ax.tick_params(axis="y", labelsize=label_size)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    return _png(fig)


def forget_charts() -> None:
    """Forget the charts :func:`bar_chart_png` kept: the next call draws again.

    Example:
        >>> forget_charts()
    """
    _chart.cache_clear()


def top_bars(counts: Mapping[K, int]) -> list[tuple[K, int]]:
    """The largest counts first (ties by key), at most ``MAX_BARS`` of them.

    Example:
        >>> top_bars({"b": 1, "a": 1, "c": 5})
        [('c', 5), ('a', 1), ('b', 1)]
    """
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_BARS]


def top_title(title: str, shown: int, total: int) -> str:
    """``title``, with ``(top N of M)`` when bars were left out.

    Example:
        >>> top_title("fields", 30, 40)
        'fields (top 30 of 40)'
    """
    return f"{title} (top {shown} of {total})" if total > shown else title


def outcomes_png(summary: RunSummary) -> bytes:
    """Outcome counts per incoming event type, as a stacked horizontal bar chart (PNG).

    Example:
        >>> from segfn_kit._preview._summary import summarize
        >>> import pandas as pd
        >>> png = outcomes_png(summarize(pd.DataFrame({"outcome": ["ok"], "event_type": ["a"]})))
        >>> png[:4] == b"\\x89PNG"
        True
    """
    types = sorted(summary.by_type, key=lambda t: -sum(summary.by_type[t].values()))[:MAX_BARS]
    series = [
        (cat, [sum(n for o, n in summary.by_type[t].items() if CATEGORIES.get(o, "errored") == cat) for t in types],
         colour)
        for cat, colour in _COLOURS.items()
    ]
    return bar_chart_png(types, series, title="outcome per incoming event type", xlabel="payloads",
                         empty="no payloads", label_size=8, row_height=0.32)


def coverage_png(fields: Mapping[str, int], *, mapped: int = 0) -> bytes:
    """Payload fields that never reach an event, by how many mapped payloads carry them (PNG).

    Args:
        fields: unused field path -> payloads carrying it.
        mapped: how many payloads were mapped (the scale of the bars).

    Example:
        >>> coverage_png({"data.object.email": 3}, mapped=4)[:4] == b"\\x89PNG"
        True
    """
    items = top_bars(fields)
    return bar_chart_png(
        [k for k, _ in items], [(None, [v for _, v in items], "#cf222e")],
        title=top_title("payload fields that never reach an event", len(items), len(fields)),
        xlabel="mapped payloads carrying the field", empty="every payload field reaches an event",
        xmax=mapped or None,
    )
