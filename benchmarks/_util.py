"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable


def _timed(fn: Callable[[], object]) -> float:
    """Wall time of one ``fn()``, in seconds, from a full collection (see
    :func:`interleaved_medians`)."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs, in seconds. Each run starts from a
    full collection (see :func:`interleaved_medians`)."""
    return statistics.median(_timed(fn) for _ in range(repeats))


def report(label: str, value: float, unit: str = "", target: str = "") -> None:
    """Print one figure in a fixed format: ``label: value unit  (target ...)``."""
    suffix = f"  (target {target})" if target else ""
    print(f"  {label:<58} {value:>12.3f} {unit}{suffix}", flush=True)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 5) -> dict[str, float]:
    """Median wall time of each function, timed in turns (one of each per round), so that a
    busy machine slows every side of a ratio alike rather than the one that ran last.

    Each call starts from a full collection, so that none pays for the garbage of the one
    before it: ``run()`` turns the collector off while it gathers, and the full collection that
    follows would otherwise land in whichever call is timed next.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    return {name: statistics.median(values) for name, values in times.items()}


def paired_ratios(
    floor: Callable[[], object], fns: dict[str, Callable[[], object]], repeats: int = 5
) -> tuple[dict[str, float], dict[str, float]]:
    """Each function's time against the floor timed just before it, per round: returns the
    median of each function's per-round ratios (its time / that floor's) and the median
    times (the floor's under ``"floor"``).

    On a noisy machine a ratio of medians mixes a slow minute of one side with a quick one
    of the other; a pair timed back to back shares its minute, and the median of the pairs
    is what the code costs. Each call starts from a full collection, as in
    :func:`interleaved_medians`.

    Example:
        >>> ratios, times = paired_ratios(lambda: sum(range(1000)), {"twice": lambda: sum(range(2000))}, 3)
        >>> sorted(times), 1.0 < ratios["twice"] < 4.0
        (['floor', 'twice'], True)
    """
    ratios: dict[str, list[float]] = {name: [] for name in fns}
    times: dict[str, list[float]] = {name: [] for name in ("floor", *fns)}

    for _ in range(repeats):
        for name, fn in fns.items():
            base = _timed(floor)
            measured = _timed(fn)
            times["floor"].append(base)
            times[name].append(measured)
            ratios[name].append(measured / base)
    return (
        {name: statistics.median(values) for name, values in ratios.items()},
        {name: statistics.median(values) for name, values in times.items()},
    )
