"""Preview refresh: re-running a function over 10,000 payloads and redrawing the workbench.

What an analyst waits for after editing a ``%%segfn`` cell: load the new text, run it over
every payload (with spec validation), diff against the previous run's ids, redraw the
summary, the payload list and the selected payload. Compared with ``run`` alone in the
same process, so the figure says what the widgets add on top of the work itself. Each tab
(Changes, Coverage, Plots) is drawn only when opened: each is timed on its own, opened
right after an edit; the first Coverage of a payload frame, which also reads every body's
fields once, is timed apart, and the Plots tab is timed with its figures drawn (the figures of
unchanged numbers are kept: that case is timed apart too). Targets at 10,000 payloads: edit -> refreshed preview <= 1 s,
each tab <= 1 s.

    .venv/bin/python -m benchmarks bench_preview
    SEGFN_BENCH_PREVIEW_PAYLOADS=1000 .venv/bin/python -m benchmarks bench_preview
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

from benchmarks._util import median_time, report
from segfn_kit._payloads import load_payloads, request_from_row
from segfn_kit._preview import preview
from segfn_kit._preview._plots import forget_charts
from segfn_kit._run import run
from segfn_kit.runtime import Function

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
SAMPLES = ROOT / "sample_payloads" / "stripe"
N = int(os.environ.get("SEGFN_BENCH_PREVIEW_PAYLOADS", "10000"))
ROUNDS = int(os.environ.get("SEGFN_BENCH_PREVIEW_ROUNDS", "3"))


def _payloads() -> list[dict[str, object]]:
    samples = [json.loads(p.read_text()) for p in sorted(SAMPLES.glob("*.json"))]
    out = []
    for i in range(N):
        envelope = dict(samples[i % len(samples)])
        body = envelope["body"]
        if isinstance(body, dict):  # distinct events, as a real capture would hold
            envelope["body"] = {**body, "id": f"{body.get('id')}_{i}"}
        out.append(envelope)
    return out


def main() -> None:
    frame = load_payloads(_payloads())
    source = FUNCTION.read_text()
    # two texts that differ, as after an edit (a comment changes nothing in the results)
    texts = [source, source + "\n# edited\n"]
    function = Function.from_source(source, filename="<bench>")

    requests = [request_from_row(row) for row in frame.to_dict("records")]
    wb = preview(source, frame, name="stripe_source")
    state = {"i": 0}

    def refresh() -> None:
        state["i"] += 1
        assert wb.update(texts[state["i"] % 2])

    # interleaved, so that load from elsewhere on the machine hits all three alike
    timings: dict[str, list[float]] = {"handler": [], "run": [], "refresh": []}
    for _ in range(ROUNDS):
        # the floor: the handler alone on ready-made requests, no frame, no validation
        timings["handler"].append(median_time(lambda: [function.on_request(r) for r in requests], 1))
        timings["run"].append(median_time(lambda: run(function, frame, progress=False), 1))
        timings["refresh"].append(median_time(refresh, 1))
    handler_alone, run_alone, refresh_time = (statistics.median(timings[k]) for k in ("handler", "run", "refresh"))
    redraw = median_time(wb.refresh, repeats=3)

    # the first Coverage of a payload frame also reads every body's fields (once per frame)
    refresh()
    start = time.perf_counter()
    wb._draw_tab(2)
    first_coverage = time.perf_counter() - start

    tabs: dict[str, list[float]] = {"Changes": [], "Coverage": [], "Plots": []}
    for _ in range(ROUNDS):
        for index, name in enumerate(tabs, start=1):
            refresh()  # an edit: every tab is stale again
            forget_charts()  # and the plots are drawn, as after an edit that changes their numbers
            start = time.perf_counter()
            wb._draw_tab(index)
            tabs[name].append(time.perf_counter() - start)

    # an edit that changes no plotted number: the figures kept from the last draw are shown
    kept: list[float] = []
    for _ in range(ROUNDS):
        refresh()
        start = time.perf_counter()
        wb._draw_tab(3)
        kept.append(time.perf_counter() - start)

    print(f"  {N:,} Stripe payloads, function {FUNCTION.name}, {wb.summary!r}")
    report("handler alone (on_request over ready requests), median", handler_alone * 1000, "ms")
    report("run() alone, median", run_alone * 1000, "ms")
    report("edit -> re-run -> preview refreshed, median", refresh_time * 1000, "ms", "<= 1000 ms")
    report("ratio refresh / run alone", refresh_time / run_alone, "x")
    report("ratio refresh / handler alone", refresh_time / handler_alone, "x")
    report("redraw alone (summary, payload list, selected payload)", redraw * 1000, "ms")
    for name, values in tabs.items():
        report(f"{name} tab opened after an edit, median", statistics.median(values) * 1000, "ms", "<= 1000 ms")
    report("Coverage tab, first open for these payloads (fields read)", first_coverage * 1000, "ms")
    report("Plots tab after an edit that changes no plotted number", statistics.median(kept) * 1000, "ms")


if __name__ == "__main__":
    main()
