"""Isolation: what worker processes cost ``run()``, and what runaway functions cost a run.

1. ``run()`` of a one-``track`` function over generated Stripe payloads, three ways timed in
   turns in this process (cyclic GC on for all): the plain-Python floor (``json.loads`` and
   the same event dict), ``run(..., isolation="none")`` (in-process) and ``run()`` (the
   default: a worker process fed in chunks). Printed as ratios to the floor and to in-process.
2. Runaway functions through ``run()`` with Segment's 5 s limit, each over three payloads
   (good, runaway, good): a Python loop, a bare ``except:`` that swallows the timeout, one
   long C call (``sum(range(10**11))``) and a 6 GB allocation. Printed: the wall time of the
   run, its rows' outcomes, the peak RSS (``VmHWM``) of a worker that was refused a 6 GB
   allocation, and this process's peak RSS.

    .venv/bin/python -m benchmarks bench_isolation        # or: make bench
    SEGFN_BENCH_PAYLOADS=20000 .venv/bin/python -m benchmarks bench_isolation
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

from benchmarks._util import interleaved_medians, report
from benchmarks.bench_run import SIMPLE, simple_floor, write_payloads

N = int(os.environ.get("SEGFN_BENCH_PAYLOADS", "20000"))
REPEATS = int(os.environ.get("SEGFN_BENCH_REPEATS", "5"))

RUNAWAY = '''
from segfn_kit.runtime import Segment

def on_request(request, settings):
    kind = request.json()["kind"]
    if kind == "loop":
        while True:
            pass
    if kind == "swallow":
        while True:
            try:
                while True:
                    pass
            except:
                pass
    if kind == "c_call":
        sum(range(10**11))
    if kind == "alloc":
        blob = bytearray(6 * 2**30)
    if kind == "probe":  # the worker's own peak RSS once a 6 GB allocation was refused
        try:
            blob = bytearray(6 * 2**30)
        except MemoryError:
            pass
        with open("/proc/self/status") as fh:
            peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
        Segment.track(user_id="u1", event="Probe", properties={"peak_kib": peak})
        return
    Segment.track(user_id="u1", event="Fine")
'''


def _mib(kib: int) -> float:
    return kib / 1024


def main() -> None:
    from segfn_kit import load_payloads, run

    with tempfile.TemporaryDirectory() as tmp:
        frame = load_payloads(write_payloads(Path(tmp), N), flatten_body=False)
    raws = frame["raw"].tolist()
    run(SIMPLE, frame.head(10), progress=False)  # a spare worker is ready, as in a preview loop
    medians = interleaved_medians(
        {
            "floor": lambda: [simple_floor(r) for r in raws],
            "none": lambda: run(SIMPLE, frame, progress=False, isolation="none"),
            "process": lambda: run(SIMPLE, frame, progress=False),
        },
        REPEATS,
    )
    print(f"  {len(frame):,} payloads, one track each; median of {REPEATS} rounds in turns")
    report("floor: json.loads + the event dict", medians["floor"], "s")
    report("run(isolation='none')", medians["none"], "s")
    report("run() (worker process)", medians["process"], "s")
    report("run(isolation='none') / floor", medians["none"] / medians["floor"], "x")
    report("run() / floor", medians["process"] / medians["floor"], "x", "<= 2.0 with the engine's work")
    report("run() / run(isolation='none')", medians["process"] / medians["none"], "x")

    print("  runaway functions, Segment's 5 s limit, payloads good / runaway / good:")
    for kind in ("loop", "swallow", "c_call", "alloc"):
        payloads = [{"kind": "fine"}, {"kind": kind}, {"kind": "fine"}]
        start = time.perf_counter()
        results = run(RUNAWAY, payloads, progress=False)
        elapsed = time.perf_counter() - start
        outcomes = "/".join(results["outcome"])
        reason = str(results["error"].iloc[1]).split(":")[0]
        report(f"{kind}: wall s ({outcomes}, {reason})", elapsed, "s")
    probe = run(RUNAWAY, [{"kind": "probe"}], progress=False)
    peak = probe["events"].iloc[0][0]["properties"]["peak_kib"]
    report("worker's peak RSS after a refused 6 GB allocation", _mib(peak), "MiB", "< 512 MiB limit")
    report("peak RSS of this process (the caller)", _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), "MiB")

if __name__ == "__main__":
    main()
