"""run() over many payloads: worker processes fed ahead, validation beside the caller.

The pipelined path must give exactly what the in-process path gives (outcomes, events,
issues, order), whatever the number of workers, and a call that hangs while the next chunk
waits in its worker's pipe is still killed at its limit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segfn_kit import load_payloads, run
from segfn_kit.runtime import Function, Request
from segfn_kit.runtime._isolation import WorkerPool
from segfn_kit.spec import invocation_issues

FUNCTION = '''
from segfn_kit.runtime import Segment, EventNotSupported

def on_request(request, settings):
    body = request.json()
    n = body["n"]
    if n % 7 == 3:
        raise EventNotSupported(f"n={n}")
    if n % 11 == 5:
        Segment.track(user_id="", event="No User", properties={"n": n})  # a refused call
        return
    if n % 13 == 2:
        Segment.track(user_id=f"u{n}", event="Late", timestamp=1706702400)  # refused: Unix time
    Segment.identify(user_id=f"u{n}", traits={"n": n, "ratio": n / 3})
    Segment.track(user_id=f"u{n}", event="Seen", properties={"n": n, "tag": body.get("tag")},
                  context={"bad": float("nan")} if n % 5 == 1 else None)
'''

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
SAMPLES = ROOT / "sample_payloads" / "stripe"


def _payloads(n: int) -> list[dict[str, object]]:
    return [
        {"headers": {"Content-Type": "application/json"}, "body": json.dumps({"n": i, "tag": "x" * (i % 50)})}
        for i in range(n)
    ]


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    assert list(a.index) == list(b.index)
    for column in ("outcome", "events", "objects", "error", "issues", "discarded_events", "event_type"):
        assert a[column].tolist() == b[column].tolist(), column


def test_worker_runs_match_the_in_process_run_for_any_number_of_workers() -> None:
    frame = load_payloads(_payloads(900), flatten_body=False)
    here = run(FUNCTION, frame, progress=False, isolation="none")
    assert set(here["outcome"]) == {"ok", "EventNotSupported"}
    assert any(i["code"] == "refused_call" for issues in here["issues"] for i in issues)
    assert any(i["code"] == "not_finite" for issues in here["issues"] for i in issues)
    for workers in (1, 2):
        _same(here, run(FUNCTION, frame, progress=False, workers=workers))


def test_validation_off_still_reports_the_emitters_problems() -> None:
    frame = load_payloads(_payloads(60), flatten_body=False)
    for isolation in ("none", "process"):
        results = run(FUNCTION, frame, progress=False, validate=False, isolation=isolation)
        codes = {i["code"] for issues in results["issues"] for i in issues}
        assert "refused_call" in codes
        assert "missing_id" not in codes  # spec checks are off


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="no Stripe samples")
def test_bundled_stripe_function_gives_the_same_rows_through_workers() -> None:
    samples = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(SAMPLES.glob("*.json"))]
    frame = load_payloads(samples * 20, flatten_body=False)
    here = run(STRIPE, frame, progress=False, isolation="none")
    assert (here["outcome"] == "ok").any()
    _same(here, run(STRIPE, frame, progress=False, workers=2))


def test_workers_must_be_a_positive_whole_number() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="workers must be a whole number"):
            run(FUNCTION, _payloads(2), progress=False, workers=bad)  # type: ignore[arg-type]


def test_a_hang_is_killed_while_the_next_chunk_waits_in_the_pipe() -> None:
    fn = Function.from_source(
        "def on_request(r, s):\n"
        "    if r.json()['n'] == 5:\n"
        "        sum(range(10**12))\n"
    )
    # one long C call: the timeout signal cannot interrupt it, only the kill stops it
    calls = [Request(json.dumps({"n": i}).encode()) for i in range(40)]
    with WorkerPool(fn, timeout=0.3, grace=0.2, chunk_size=4) as pool:
        results = list(pool.map(calls))
    outcomes = [r.invocation.outcome for r in results]
    assert outcomes.count("error") == 1 and outcomes[5] == "error"
    assert results[5].invocation.error is not None
    assert results[5].invocation.error.startswith("FunctionTimeout")
    assert pool.replaced == 1


def test_the_worker_check_hook_gives_the_issues_the_caller_would() -> None:
    fn = Function.from_source(FUNCTION)
    calls = [Request(json.dumps({"n": i}).encode()) for i in range(30)]
    with WorkerPool(fn, check="segfn_kit.spec:invocation_issues") as pool:
        results = list(pool.map(calls))
    for result in results:
        inv = result.invocation
        if inv.outcome == "ok":
            assert result.issues == invocation_issues(inv.events, inv.objects, inv.problems)
        else:
            assert result.issues is None


def test_request_wire_form_keeps_what_the_function_reads() -> None:
    request = Request(b'{"a": 1}', [("X-A", "1"), ("x-a", "2")], method="put", url="/h?q=1&q=2",
                      received_at="2024-01-31T12:00:00Z")
    request.json()
    back = Request.from_wire(request.to_wire())
    assert back.content == request.content and back.method == "PUT"
    assert back.headers["x-a"] == "1, 2" and back.query == {"q": ["1", "2"]}
    assert back.received_at == "2024-01-31T12:00:00Z"
    assert back.known_digest == request.digest()


def test_the_garbage_collector_is_as_it_was_after_a_run_even_one_that_fails() -> None:
    import gc

    payloads = _payloads(20)
    assert gc.isenabled()
    run(FUNCTION, payloads, progress=False)
    assert gc.isenabled()
    gc.disable()
    try:
        run(FUNCTION, payloads, progress=False, isolation="none")
        assert not gc.isenabled()  # a caller that turned it off keeps it off
    finally:
        gc.enable()

    def stop(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(FUNCTION, payloads, progress=False, on_progress=stop)
    assert gc.isenabled()


def test_a_rerun_over_the_same_frame_takes_every_digest_from_the_cache() -> None:
    from segfn_kit._run import _DIGESTS

    frame = load_payloads(_payloads(300), flatten_body=False)
    as_requests = [Request(raw.encode(), headers) for raw, headers in zip(frame["raw"], frame["headers"], strict=True)]
    fresh = run(FUNCTION, as_requests, progress=False, isolation="none")  # digests of the bytes
    first = run(FUNCTION, frame, progress=False)
    hits = _DIGESTS.hits
    second = run(FUNCTION, frame, progress=False)
    assert _DIGESTS.hits - hits == len(frame)
    assert _DIGESTS.get(frame["raw"].iloc[-1]) is not None  # known by the frame's text: no body hashed again
    assert first["events"].tolist() == second["events"].tolist() == fresh["events"].tolist()  # same messageIds
