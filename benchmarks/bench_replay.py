"""``segfn replay --dry-run`` against its floor, in the same process.

Two floors, each the least a replay could do for each payload of a ``.jsonl.gz`` archive:

- parse and serialise (the target's floor): read and decompress the line, ``json.loads`` it and
  ``json.dumps`` the result;
- the function's floor, as ``bench_run`` has it: read the line and run the bundled Stripe
  function's own code on plain stand-ins (``json.loads`` of the body, the same event dicts, no
  runtime), then ``json.dumps`` what it emitted; a replay cannot beat this one in one process.

Measured against them, with the garbage collector off everywhere (the loader turns it off for
its frames; the floors get the same), medians of 5 runs over the same 20,000 generated Stripe
webhooks:

1. the reading process's part of a replay: ``iter_archive`` (each JSON Lines line left
   unread, for the worker to read); the loader that turns each into its request,
   ``iter_payloads(..., bodies=False)`` and ``request()``, and the full loader (bodies parsed
   and checked) for comparison;
2. ``replay(..., dry_run=True)`` of the bundled Stripe function: loader, function and all,
   with the calls in worker processes (the default number, one per CPU, 1 to 4, and one),
   and in this process (``isolation="none"``).

Each variant is timed right after a run of the floor, in turns (one of each per round), and
its ratio is the median over the rounds of these pairs (``benchmarks._util.paired_ratios``):
a pair shares its minute of a noisy machine. Printed as throughput ratios (floor time /
measured time: 100% is the floor's speed; the target for the dry run is at least 50%); the
ratios against the function's floor are of the median times. Also: whether importing the
replay pulls in pandas.
"""

from __future__ import annotations

import gc
import gzip
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks._util import paired_ratios, report
from benchmarks.bench_run import stripe_floor
from segfn_kit._payloads import iter_archive, iter_payloads
from segfn_kit._replay import _default_workers, replay
from tests._archives import write_archive

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
PAYLOADS = 20_000


def _gc_off(fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn()
        finally:
            if enabled:
                gc.enable()

    return run


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = write_archive(Path(tmp) / "archive.jsonl.gz", PAYLOADS)

        def floor() -> None:
            with gzip.open(archive, "rb") as fh:
                for line in fh:
                    json.dumps(json.loads(line), separators=(",", ":"))

        plain_stripe, _ = stripe_floor()

        def function_floor() -> None:
            with gzip.open(archive, "rb") as fh:
                for line in fh:
                    json.dumps(plain_stripe(line.decode(), {}), separators=(",", ":"))

        def reading() -> None:
            for _ in iter_archive(archive):
                pass

        def loader_lazy() -> None:
            for payload in iter_payloads(archive, bodies=False):
                payload.request()

        def loader_full() -> None:
            for payload in iter_payloads(archive):
                payload.request()

        def dry_run() -> None:
            summary = replay(STRIPE, archive, dry_run=True)
            assert summary.payloads == PAYLOADS, summary

        def dry_run_one_worker() -> None:
            summary = replay(STRIPE, archive, dry_run=True, workers=1)
            assert summary.payloads == PAYLOADS, summary

        def dry_run_in_process() -> None:
            summary = replay(STRIPE, archive, dry_run=True, isolation="none")
            assert summary.payloads == PAYLOADS, summary

        ratios, times = paired_ratios(_gc_off(floor), {
            name: _gc_off(fn) for name, fn in (
                ("fn_floor", function_floor), ("read", reading), ("lazy", loader_lazy), ("full", loader_full),
                ("dry", dry_run), ("dry_one", dry_run_one_worker), ("dry_none", dry_run_in_process),
            )
        })
        base, fn_base, read, lazy, full, dry, dry_one, dry_none = (
            times[k] for k in ("floor", "fn_floor", "read", "lazy", "full", "dry", "dry_one", "dry_none")
        )
    imports = subprocess.run(
        [sys.executable, "-c", "import sys, segfn_kit._replay; print('pandas' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    ).stdout.strip()
    print(f"  {PAYLOADS:,} Stripe webhooks in one .jsonl.gz archive; importing the replay loads pandas: {imports}")
    report("floor: read + json.loads + json.dumps", PAYLOADS / base, "payloads/s")
    report("function floor: read + Stripe code in plain Python + dumps", PAYLOADS / fn_base, "payloads/s")
    report("replay's reading process: iter_archive (lines unread)", PAYLOADS / read, "payloads/s")
    report("loader for replay (bodies=False) + request()", PAYLOADS / lazy, "payloads/s")
    report("loader, bodies parsed and checked + request()", PAYLOADS / full, "payloads/s")
    report(f"replay --dry-run (bundled Stripe function, default --workers {_default_workers()})", PAYLOADS / dry, "payloads/s")
    report("replay --dry-run --workers 1", PAYLOADS / dry_one, "payloads/s")
    report("replay --dry-run --isolation none (in this process)", PAYLOADS / dry_none, "payloads/s")
    report("ratio: replay's reading / floor (throughput)", 100 / ratios["read"], "%")
    report("ratio: loader for replay / floor (throughput)", 100 / ratios["lazy"], "%")
    report("ratio: replay --dry-run / floor (throughput)", 100 / ratios["dry"], "%", ">= 50%")
    report("ratio: replay --dry-run --workers 1 / floor (throughput)", 100 / ratios["dry_one"], "%")
    report("ratio: replay --dry-run --isolation none / floor (throughput)", 100 / ratios["dry_none"], "%")
    report("ratio: replay --dry-run / function floor (throughput)", 100 * fn_base / dry, "%")
    report("ratio: replay --dry-run --workers 1 / function floor (throughput)", 100 * fn_base / dry_one, "%")
    report("ratio: replay --dry-run --isolation none / function floor (throughput)", 100 * fn_base / dry_none, "%")
    report("ratio: replay --dry-run, worker processes / in this process (throughput)", 100 * dry_none / dry, "%")


if __name__ == "__main__":
    main()
