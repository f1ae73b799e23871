"""The preview workbench: widgets, the ``%%segfn`` cell magic, rich reprs and plots.

``preview(function, payloads, settings)`` returns a ``Workbench`` (an ipywidgets widget)
that runs the function over every payload with ``segfn_kit.run`` and shows the results;
``%load_ext segfn_kit`` registers the ``%%segfn`` magic that does the same for the text of
a cell. ``RunSummary``, ``EventView`` and ``ResultView`` render as HTML without widgets.

Example:
    >>> from segfn_kit._preview import summarize
    >>> import pandas as pd
    >>> summarize(pd.DataFrame({"outcome": ["ok", "error"]})).counts["errored"]
    1
"""

from __future__ import annotations

from typing import Any

from ._summary import EventView, ResultView, RunSummary, summarize
from ._workbench import Workbench, filter_ids, preview

__all__ = [
    "EventView",
    "ResultView",
    "RunSummary",
    "Workbench",
    "filter_ids",
    "load_ipython_extension",
    "preview",
    "summarize",
]


def load_ipython_extension(ipython: Any) -> None:
    """Register the ``%%segfn`` cell magic (what ``%load_ext segfn_kit`` calls)."""
    from ._magic import load_ipython_extension as load

    load(ipython)
