"""Loading 100,000 Stripe events from JSON Lines into a flattened payload frame.

Baselines, run in the same process on the same file:

- parse only: ``orjson.loads`` on every line (the least any loader must do), as written
  (Python's cyclic GC on, the default) and with the GC off (the loader turns it off while
  it builds the frame, so this is the stricter comparison);
- ``pandas.json_normalize`` on the parsed records (the usual flattening), compared with
  ``frame_from_payloads`` on the same parsed records (the loader's flatten-and-frame
  stage), and with the whole load (which also reads and parses the file).

Peak memory is measured in a fresh subprocess (``resource.getrusage(...).ru_maxrss``), so it
is the loader's own peak, not this process's history.

Targets: at most 2.5x the parse-only time, at least 2.5x faster than json_normalize, peak
memory under 1.5 GB.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from benchmarks._util import median_time, report
from segfn_kit._payloads import frame_from_payloads, iter_payloads, load_payloads

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_payloads" / "stripe"
# used only when the samples folder holds no Stripe event (a partial checkout)
FALLBACK = ROOT.parent / "shared" / "corpora" / "stripe-ruby-mock"
EVENTS = 100_000


def stripe_templates() -> list[dict[str, Any]]:
    """The Stripe event bodies among the samples (bare bodies or inside envelopes)."""
    for folder in (SAMPLES, FALLBACK):
        if folder.is_dir() and any(folder.rglob("*.json")):
            frame = load_payloads(folder)
            bodies = [b for b in frame["body"] if isinstance(b, dict) and "type" in b]
            if bodies:
                return bodies
    raise SystemExit(f"no Stripe event samples under {SAMPLES}")


def write_jsonl(path: Path, templates: list[dict[str, Any]], count: int = EVENTS) -> int:
    """``count`` events cycled from the templates, each with its own id and time."""
    with path.open("wb") as fh:
        for i in range(count):
            event = dict(templates[i % len(templates)])
            event["id"] = f"evt_1Bench{i:018d}"
            event["created"] = 1_700_000_000 + i
            # compact, as JSON Lines exports are written
            fh.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
    return path.stat().st_size


def parse_only(path: Path) -> list[Any]:
    with path.open("rb") as fh:
        return [orjson.loads(line) for line in fh]


def parse_only_without_gc(path: Path) -> list[Any]:
    """The stricter baseline: parsing with Python's cyclic GC off, as the loader runs."""
    gc.disable()
    try:
        return parse_only(path)
    finally:
        gc.enable()


def peak_memory_mb(path: Path) -> float:
    """Peak resident memory of a fresh interpreter loading the file, in MB."""
    code = (
        "import resource, sys\n"
        "from segfn_kit._payloads import frame_from_payloads, iter_payloads, load_payloads\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"frame = load_payloads({str(path)!r})\n"
        "assert len(frame) > 0\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # Linux reports KiB


def main() -> None:
    templates = stripe_templates()
    with tempfile.TemporaryDirectory(prefix="segfn-bench-") as tmp:
        path = Path(tmp) / "stripe-events.jsonl"
        size = write_jsonl(path, templates)
        print(f"  {EVENTS:,} Stripe events from {len(templates)} samples: {size / 1e6:.0f} MB of JSON Lines")

        # first, while this process is small: a forked child's ru_maxrss starts at its
        # parent's size on Linux, so measuring later would report this process's history
        peak = peak_memory_mb(path)

        frame = load_payloads(path)
        assert len(frame) == EVENTS and frame["error"].isna().all()
        columns = sum(1 for c in frame.columns if c.startswith("body."))
        del frame
        gc.collect()

        t_load = median_time(lambda: load_payloads(path), repeats=3)
        t_parse = median_time(lambda: parse_only(path), repeats=3)
        t_parse_nogc = median_time(lambda: parse_only_without_gc(path), repeats=3)
        payloads = list(iter_payloads(path))
        records = [p.body for p in payloads]
        t_normalize = median_time(lambda r=records: pd.json_normalize(r), repeats=3)
        # the same work as json_normalize, on the same parsed records: flatten into a frame
        t_frame = median_time(lambda p=payloads: frame_from_payloads(p), repeats=3)
        del records, payloads
        gc.collect()

        report("load_payloads: JSON Lines -> flattened frame", t_load, "s")
        print(f"  ({len(templates)} event shapes, {columns} body.* columns)", flush=True)
        report("baseline: orjson parse only", t_parse, "s")
        report("baseline: pandas.json_normalize on the parsed records", t_normalize, "s")
        report("baseline: orjson parse only, cyclic GC off", t_parse_nogc, "s")
        report("load time / parse-only time", t_load / t_parse, "x", "<= 2.5")
        report("load time / parse-only time (GC off)", t_load / t_parse_nogc, "x")
        report("frame_from_payloads on the parsed records (flatten + frame)", t_frame, "s")
        report("json_normalize time / flatten-and-frame time (same records)", t_normalize / t_frame, "x", ">= 2.5")
        report("json_normalize time / whole load time (incl. reading, parsing)", t_normalize / t_load, "x")
        report("peak memory of a fresh process loading the file", peak, "MB", "< 1500")


if __name__ == "__main__":
    main()
