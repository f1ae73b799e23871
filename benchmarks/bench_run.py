"""``Function.on_request`` and ``run()`` against a plain-Python floor, on two functions.

The payloads are generated from ``sample_payloads/stripe`` (each sample many times over, with
its ids changed so that every payload is distinct), written as JSON Lines and loaded with
``load_payloads`` before any timing. Two functions:

- simple: one ``Segment.track`` per payload, from three fields of the body;
- stripe: the bundled ``segfn_kit/examples/stripe_source.py``.

The floor, per function, is plain Python doing the same work without the runtime:
``json.loads`` of each body and building the same event dicts (for Stripe: the example's
own code with ``Segment`` replaced by a stand-in that appends camelCase dicts, and
``request.json()`` by ``json.loads``). Then, in the same process, with the cyclic GC on
(the default) for all three:

- ``on_request``: a loop that builds each ``Request`` from the raw body and headers and
  calls ``Function.on_request`` (messageIds, value checks, timeout and all);
- ``run()``: ``segfn_kit.run`` over the payload frame, with spec validation, log capture
  and the result frame: in its worker processes (the default, ``isolation="process"``: one
  per 4,000 payloads up to the CPUs but one; validation in the workers when there are
  several, else in this process) and in this process
  (``isolation="none"``). ``run()`` turns the collector off while it gathers results (its
  own choice, see ``segfn_kit._run``); the floor and the ``on_request`` loop run with it on.

Each of the three is timed right after a run of the floor, in turns, and its ratio is the
median over the rounds of these pairs (``benchmarks._util.paired_ratios``: a pair shares its
minute of a noisy machine). Targets: on_request / floor <= 1.5, run() / floor <= 2.0. Also printed: the cost of
``spec.validate`` per event, against ``json.dumps`` of the same events.

    .venv/bin/python -m benchmarks bench_run        # or: make bench
    SEGFN_BENCH_PAYLOADS=20000 .venv/bin/python -m benchmarks bench_run
"""

from __future__ import annotations

import json
import os
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._util import median_time, paired_ratios, report

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_payloads" / "stripe"
N = int(os.environ.get("SEGFN_BENCH_PAYLOADS", "20000"))
REPEATS = int(os.environ.get("SEGFN_BENCH_REPEATS", "5"))

SIMPLE = '''
from segfn_kit.runtime import Segment

def on_request(request, settings):
    body = request.json()
    Segment.track(
        user_id=body["id"],
        event="Stripe " + body["type"],
        properties={"livemode": body["livemode"], "created": body["created"]},
    )
'''


def simple_floor(raw: str) -> list[dict[str, Any]]:
    """What the simple function does, in plain Python."""
    body = json.loads(raw)
    return [{
        "type": "track",
        "userId": str(body["id"]),
        "event": "Stripe " + body["type"],
        "properties": {"livemode": body["livemode"], "created": body["created"]},
    }]


_CAMEL = {
    "user_id": "userId", "anonymous_id": "anonymousId", "group_id": "groupId",
    "previous_id": "previousId", "message_id": "messageId",
}


class _PlainSegment:
    """A stand-in for ``Segment``: each call appends the camelCase dict, nothing more."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def _call(self, kind: str, kwargs: dict[str, Any]) -> None:
        event = {"type": kind}
        for key, value in kwargs.items():
            event[_CAMEL.get(key, key)] = value
        self.events.append(event)

    def track(self, **kw: Any) -> None:
        self._call("track", kw)

    def identify(self, **kw: Any) -> None:
        self._call("identify", kw)

    def group(self, **kw: Any) -> None:
        self._call("group", kw)

    def page(self, **kw: Any) -> None:
        self._call("page", kw)


class _PlainRequest:
    """A stand-in for ``Request``: ``json()`` is ``json.loads`` of the body."""

    __slots__ = ("content", "headers")

    def __init__(self, raw: str, headers: dict[str, str]) -> None:
        self.content = raw
        self.headers = headers

    def json(self) -> Any:
        return json.loads(self.content)


def stripe_floor() -> tuple[Callable[[str, dict[str, str]], list[dict[str, Any]]], Any]:
    """The Stripe example's own code, run on plain stand-ins (no runtime in the loop)."""
    from segfn_kit.examples import example_path

    source = Path(example_path("stripe_source")).read_text(encoding="utf-8")
    module = types.ModuleType("stripe_floor")
    exec(compile(source, "stripe_floor", "exec"), module.__dict__)
    plain = _PlainSegment()
    module.__dict__["Segment"] = plain
    on_request = module.__dict__["on_request"]
    settings: dict[str, Any] = {}
    errors = tuple(module.__dict__[n] for n in ("EventNotSupported", "ValidationError", "InvalidEventPayload"))

    def call(raw: str, headers: dict[str, str]) -> list[dict[str, Any]]:
        plain.events = []
        try:
            on_request(_PlainRequest(raw, headers), settings)
        except errors:
            return []
        return plain.events

    return call, plain


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
            # pretty-printed, as Stripe sends it
            envelope["body"] = json.dumps(body, ensure_ascii=False, indent=2)
            fh.write(json.dumps(envelope, ensure_ascii=False) + "\n")
    return path


def main() -> None:
    from segfn_kit import load_payloads, run
    from segfn_kit.examples import example_path
    from segfn_kit.runtime import Function, Request
    from segfn_kit.runtime._json import orjson
    from segfn_kit.spec import validate

    with tempfile.TemporaryDirectory() as tmp:
        frame = load_payloads(write_payloads(Path(tmp), N), flatten_body=False)
    rows = frame[["raw", "headers", "method", "url"]].to_dict("records")
    from segfn_kit._run import _workers_for  # the default run() picks for this many payloads

    print(f"  {len(frame):,} payloads from {len(list(SAMPLES.glob('*.json')))} Stripe samples; "
          f"median of {REPEATS} rounds of pairs (each timed right after a floor run); cyclic GC on in this process; "
          f"runtime JSON: {'orjson' if orjson else 'standard library'}; run() uses "
          f"{_workers_for(len(frame), None)} worker process(es) on {os.cpu_count()} CPUs")

    floor_stripe, _ = stripe_floor()
    cases: list[tuple[str, Function, Callable[[], object]]] = [
        ("simple", Function.from_source(SIMPLE), lambda: [simple_floor(r["raw"]) for r in rows]),
        ("stripe", Function.from_file(example_path("stripe_source")),
         lambda: [floor_stripe(r["raw"], r["headers"]) for r in rows]),
    ]
    for label, fn, floor in cases:

        def bare(fn: Function = fn) -> list[list[dict[str, Any]]]:
            on_request = fn.on_request
            out = []
            for row in rows:
                request = Request(row["raw"], row["headers"], method=row["method"], url=row["url"] or "")
                out.append(on_request(request).events)
            return out

        def through_run(fn: Function = fn) -> object:
            return run(fn, frame, progress=False)

        def through_run_here(fn: Function = fn) -> object:
            return run(fn, frame, progress=False, isolation="none")

        results = run(fn, frame, progress=False)
        assert (results["outcome"] == "error").sum() == 0, results["error"].dropna().head()
        n_events = int(results["events"].map(len).sum())
        floor_events = sum(len(e) for e in floor())  # type: ignore[arg-type]
        assert floor_events == n_events, (label, floor_events, n_events)
        print(f"  {label}: {n_events:,} events, {int(results['issues'].map(len).sum()):,} spec issues")

        ratios, medians = paired_ratios(floor, {"bare": bare, "run": through_run, "here": through_run_here}, REPEATS)
        t_floor, t_bare, t_run = medians["floor"], medians["bare"], medians["run"]
        report(f"{label}: floor (json.loads + same dicts): payloads/s", len(rows) / t_floor, "/s")
        report(f"{label}: Function.on_request loop: payloads/s", len(rows) / t_bare, "/s")
        report(f"{label}: run() with validation: payloads/s", len(rows) / t_run, "/s")
        report(f"{label}: on_request / floor (time ratio)", ratios["bare"], "x", target="<= 1.5")
        report(f"{label}: run() / floor (time ratio)", ratios["run"], "x", target="<= 2.0")
        report(f"{label}: run(isolation='none') / floor (time ratio)", ratios["here"], "x", target="<= 2.0")

    results = run(cases[1][1], frame, progress=False)
    events = [e for evs in results["events"] for e in evs]

    def check_events() -> object:
        return [validate(e) for e in events]

    def serialise_events() -> object:
        return [json.dumps(e) for e in events]

    per_event = median_time(check_events, REPEATS) / len(events)
    dumps = median_time(serialise_events, REPEATS) / len(events)
    report("spec.validate per event", per_event * 1e6, "µs")
    report("spec.validate / json.dumps of the same event (time ratio)", per_event / dumps, "x")


if __name__ == "__main__":
    main()
