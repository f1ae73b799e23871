"""A destination preview over Segment events, against a bare loop over ``on_event`` under respx.

The Zendesk destination runs over generated support events (identify and track "Order
Failed" / "Support Requested" in turn, every one making one request). In the same process:

- baseline: a bare loop under a plain respx mock (every request answered ``200 {}``) that
  calls ``Function.on_event`` for each event and keeps the invocations;
- preview: ``run_destination`` with the same answers, plus what a preview adds: input spec
  validation, per-event request records with masking, attempt bookkeeping, log capture and
  the result frame; the function runs in a worker process (the default), each request
  forwarded to this process to be answered;
- the same preview with ``isolation="none"`` (the function in this process, for pdb).

Target: preview / baseline <= 2.0. Both sides are dominated by what the function itself
does: a module-level ``httpx.post`` builds a client, and its TLS context, on every call.

    .venv/bin/python -m benchmarks bench_destination        # or: make bench
    SEGFN_BENCH_EVENTS=5000 .venv/bin/python -m benchmarks bench_destination
"""

from __future__ import annotations

import os
from typing import Any

from benchmarks._util import median_time, report

N = int(os.environ.get("SEGFN_BENCH_EVENTS", "300"))
REPEATS = int(os.environ.get("SEGFN_BENCH_REPEATS", "3"))
SETTINGS = {"subdomain": "acme", "email": "agent@acme.example", "apiToken": "bench-token-0123456789"}


def support_events(n: int) -> list[dict[str, Any]]:
    """``n`` events that each make the Zendesk destination send one request."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        email = f"user{i}@example.com"
        if i % 3 == 0:
            out.append({"type": "identify", "userId": f"u{i}", "messageId": f"m{i}",
                        "traits": {"email": email, "name": f"User {i}"}})
        else:
            name = "Order Failed" if i % 3 == 1 else "Support Requested"
            out.append({"type": "track", "userId": f"u{i}", "messageId": f"m{i}", "event": name,
                        "properties": {"order_id": f"ord_{i}", "email": email, "total": 10.5}})
    return out


def main() -> None:
    import respx

    from segfn_kit._destination import RetryPolicy, run_destination
    from segfn_kit._events import sample_events
    from segfn_kit.examples import example_path
    from segfn_kit.runtime import Function

    fn = Function.from_file(example_path("zendesk_destination"))
    events = support_events(N)
    frame = sample_events(events)
    settings = fn.settings(SETTINGS)
    print(f"  {N:,} events, one request each; median of {REPEATS} runs each")

    def bare() -> list[Any]:
        with respx.mock(assert_all_called=False) as router:
            router.route().respond(200, json={})
            return [fn.on_event(e, settings) for e in events]

    def preview() -> object:
        return run_destination(fn, frame, SETTINGS, retry=RetryPolicy(max_attempts=1))

    def in_process() -> object:
        return run_destination(fn, frame, SETTINGS, retry=RetryPolicy(max_attempts=1), isolation="none")

    out = run_destination(fn, frame, SETTINGS, retry=RetryPolicy(max_attempts=1))
    assert (out["outcome"] == "ok").all() and sum(len(r) for r in out["requests"]) == N
    baseline = median_time(bare, REPEATS)
    measured = median_time(preview, REPEATS)
    here = median_time(in_process, REPEATS)
    report("baseline: on_event loop under respx (ms per event)", baseline / N * 1000, "ms")
    report("preview: run_destination, worker process (ms per event)", measured / N * 1000, "ms")
    report("preview: run_destination, isolation=none (ms per event)", here / N * 1000, "ms")
    report("preview / baseline", measured / baseline, "x", "<= 2.0")
    report("preview in a worker / in this process", measured / here, "x")


if __name__ == "__main__":
    main()
