"""Delivery efficiency and replay throughput.

1. HTTP requests sent for 100,000 events (the bundled Stripe function's events over generated
   Stripe webhooks), delivered for real to the local sink, against:
   - the minimum possible under the limits (500,000 bytes and 2,500 events per batch);
   - analytics-python's defaults on the same events (100 messages per upload, 475,000 bytes).
The sink runs in its own process, as a remote Tracking API would.

2. Replay throughput (payloads per second) of ``replay`` against parse-and-serialise alone
   (``json.loads`` of each archive line and ``json.dumps`` of the result: the least any replay
   does), for a dry run and for delivery to the sink.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from benchmarks._util import median_time, report
from segfn_kit._replay import replay
from segfn_kit._sink import running_sink
from segfn_kit.runtime import Function, Request, TrackingClient
from segfn_kit.runtime._delivery import (
    _PREFIX,
    _SUFFIX_LEN,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    encode_event,
)
from tests._archives import iter_lines, write_archive

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
EVENTS = 100_000
REPLAY_PAYLOADS = 20_000
KEY = "bench-key"


def stripe_events(count: int) -> list[dict[str, Any]]:
    """``count`` events of the bundled Stripe function over generated webhooks."""
    fn = Function.from_file(STRIPE)
    events: list[dict[str, Any]] = []
    for line in iter_lines(10 * count):
        events.extend(fn.on_request(Request(line.encode()), timeout=None).events)
        if len(events) >= count:
            return events[:count]
    raise AssertionError("not enough events")


def analytics_python_requests(sizes: list[int], upload_size: int = 100, limit: int = 475_000) -> int:
    """Uploads analytics-python's consumer makes: up to ``upload_size`` messages, and it stops
    adding once the batch reaches ``limit`` bytes (consumer.py ``next()``)."""
    uploads = 0
    i = 0
    while i < len(sizes):
        total = 0
        taken = 0
        while i < len(sizes) and taken < upload_size:
            total += sizes[i]
            taken += 1
            i += 1
            if total >= limit:
                break
        uploads += 1
    return uploads


def main() -> None:
    events = stripe_events(EVENTS)
    sizes = [len(encode_event(e)[1]) for e in events]
    room = MAX_BATCH_BYTES - len(_PREFIX) - _SUFFIX_LEN
    minimum = max(math.ceil(len(events) / MAX_BATCH_EVENTS), math.ceil(sum(s + 1 for s in sizes) / room))
    baseline = analytics_python_requests(sizes)
    with tempfile.TemporaryDirectory() as tmp, running_sink(write_key=KEY, store=Path(tmp) / "s.db", process=True) as url:
        with TrackingClient(KEY, host=url) as client:
            sent = client.send(events)
    print(f"  {EVENTS:,} events, {sum(sizes) / EVENTS:.0f} bytes each on average")
    report("requests sent by TrackingClient", sent.requests)
    report("minimum possible under 500,000 bytes / 2,500 events", minimum)
    report("analytics-python defaults (100 per upload)", baseline)
    report("ratio: TrackingClient / minimum", sent.requests / minimum, "x", "<= 1.02")
    report("ratio: analytics-python / TrackingClient", baseline / sent.requests, "x", ">= 5")
    report("bytes on the wire per event (gzip)", sent.bytes / EVENTS, "B")

    with tempfile.TemporaryDirectory() as tmp:
        archive = write_archive(Path(tmp) / "archive.jsonl.gz", REPLAY_PAYLOADS)
        lines = list(iter_lines(REPLAY_PAYLOADS))

        def parse_and_serialise() -> None:
            for line in lines:
                json.dumps(json.loads(line), separators=(",", ":"))

        base = median_time(parse_and_serialise, repeats=3)
        dry = median_time(lambda: replay(STRIPE, archive, dry_run=True), repeats=3)
        counter = iter(range(100))

        def deliver() -> None:
            store = Path(tmp) / f"sink{next(counter)}.db"
            with running_sink(write_key=KEY, store=store, process=True) as url:
                replay(STRIPE, archive, to=url, write_key=KEY, dead_letter=Path(tmp) / "dead.jsonl")

        full = median_time(deliver, repeats=3)
    report("parse-and-serialise alone", REPLAY_PAYLOADS / base, "payloads/s")
    report("replay --dry-run (read, run the function)", REPLAY_PAYLOADS / dry, "payloads/s")
    report("replay to the sink (read, run, deliver)", REPLAY_PAYLOADS / full, "payloads/s")
    report("ratio: dry run / parse-and-serialise time", dry / base, "x")
    report("ratio: delivery / parse-and-serialise time", full / base, "x")


if __name__ == "__main__":
    main()
