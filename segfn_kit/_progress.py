"""The one progress helper of the workbench: a tqdm bar on standard error, or nothing.

``show=None`` shows the bar from ``PROGRESS_FROM`` items on, when the count is known.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["PROGRESS_FROM", "Bar", "progress"]

PROGRESS_FROM = 1000
"""A progress bar appears by itself from this many items on."""

T = TypeVar("T")


class Bar(Generic[T]):
    """Items with an optional bar: iterate it, or ``update(n)`` by hand; ``close()`` at the end
    (or use it as a context manager)."""

    def __init__(self, items: Iterable[T] | None, bar: Any):
        self._items = items
        self._bar = bar

    def __iter__(self) -> Iterator[T]:
        assert self._items is not None
        if self._bar is None:
            yield from self._items
            return
        for item in self._items:
            yield item
            self._bar.update(1)
        self._bar.close()

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Bar[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    items: Iterable[T] | None = None, *, total: int | None = None, show: bool | None = None,
    desc: str = "", unit: str = "item",
) -> Bar[T]:
    """Wrap ``items`` (or count by hand with ``total``) in a progress bar when asked for.

    Example:
        >>> list(progress([1, 2, 3], show=False))
        [1, 2, 3]
    """
    if total is None and isinstance(items, list | tuple):
        total = len(items)
    if show is None:
        show = total is not None and total >= PROGRESS_FROM
    if not show:
        return Bar(items, None)
    from tqdm.auto import tqdm

    # bound to the stream of the moment, before a run captures the function's output; redrawn
    # at most twice a second, so a bar costs next to nothing per item
    return Bar(items, tqdm(total=total, desc=desc, unit=f" {unit}", file=sys.stderr, dynamic_ncols=True,
                           mininterval=0.5))
