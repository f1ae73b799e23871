"""``run`` over 100,000 Stripe payloads, against a bare loop over ``on_request``.

The payloads are generated from ``sample_payloads/stripe`` (each sample many times over, with
its ids changed so that every payload is distinct), written as JSON Lines and loaded with
``load_payloads`` before any timing. Then, in the same process:

- baseline: a bare loop that builds each ``Request`` from the raw body and headers, calls
  ``Function.on_request`` and collects the raw event dicts;
- run: ``segfn_kit.run`` over the payload frame, with spec validation, log capture and the
  result frame.

It also prints the cost of ``spec.validate`` per event, against ``json.dumps`` of the same
events (the least any check of an event's serialised size must do).

Target: run / baseline <= 2.0.

    .venv/bin/python -m benchmarks bench_run        # or: make bench
    SEGFN_BENCH_PAYLOADS=20000 .venv/bin/python -m benchmarks bench_run
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._util import median_time, report

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_payloads" / "stripe"
N = int(os.environ.get("SEGFN_BENCH_PAYLOADS", "100000"))
REPEATS = int(os.environ.get("SEGFN_BENCH_REPEATS", "3"))


def _vary(value: Any, n: int) -> Any:
    """The same payload with every Stripe id made unique to copy ``n``."""
    if isinstance(value, dict):
        return {k: _vary(v, n) for k, v in value.items()}
    if isinstance(value, list):
        return [_vary(v, n) for v in value]
    if isinstance(value, str) and value[:4] in ("cus_", "sub_", "evt_", "in_1", "ch_3", "cs_t"):
        return f"{value}{n:06d}"
    return value


def write_payloads(folder: Path, n: int) -> Path:
    """``n`` capture envelopes generated from the Stripe samples, as one JSON Lines file."""
    samples = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(SAMPLES.glob("*.json"))]
    path = folder / "stripe.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            envelope = dict(samples[i % len(samples)])
            body = _vary(envelope["body"], i)
            envelope["body"] = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            fh.write(json.dumps(envelope, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    from segfn_kit import load_payloads, run
    from segfn_kit.examples import example_path
    from segfn_kit.runtime import Function, Request
    from segfn_kit.spec import validate

    fn = Function.from_file(example_path("stripe_source"))
    with tempfile.TemporaryDirectory() as tmp:
        frame = load_payloads(write_payloads(Path(tmp), N), flatten_body=False)
    rows = frame[["raw", "headers", "method", "url"]].to_dict("records")
    print(f"  {len(frame):,} payloads from {len(list(SAMPLES.glob('*.json')))} Stripe samples; "
          f"median of {REPEATS} runs each")

    def bare() -> list[list[dict[str, Any]]]:
        out = []
        for row in rows:
            request = Request(row["raw"], row["headers"], method=row["method"], url=row["url"] or "")
            out.append(fn.on_request(request).events)
        return out

    def through_run() -> object:
        return run(fn, frame, progress=False)

    results = run(fn, frame, progress=False)
    assert (results["outcome"] == "error").sum() == 0, results["error"].dropna().head()
    n_events = int(results["events"].map(len).sum())
    n_issues = int(results["issues"].map(len).sum())
    print(f"  {n_events:,} events, {n_issues:,} spec issues")

    events = [e for evs in results["events"] for e in evs]

    def check_events() -> object:
        return [validate(e) for e in events]

    def serialise_events() -> object:
        return [json.dumps(e) for e in events]

    per_event = median_time(check_events, REPEATS) / len(events)
    dumps = median_time(serialise_events, REPEATS) / len(events)
    report("spec.validate per event", per_event * 1e6, "µs")
    report("spec.validate / json.dumps of the same event (time ratio)", per_event / dumps, "x")

    base = median_time(bare, REPEATS)
    timed = median_time(through_run, REPEATS)
    report("bare loop over on_request: payloads/s", len(rows) / base, "/s")
    report("run() with validation: payloads/s", len(rows) / timed, "/s")
    report("run() / bare loop (time ratio)", timed / base, "x", target="<= 2.0")


if __name__ == "__main__":
    main()
