"""The Mapping Kit: ``transform`` over 100,000 Stripe-shaped payloads.

Baseline, run in the same process on the same payloads: a hand-written Python function doing
the same mapping (dictionary look-ups, the same missing-key rule: a missing value drops its key).
The figure is the compiled mapping's time (``compile_mapping`` once, then one call per payload)
against that floor; ``transform(mapping, payload)`` (which finds the compiled mapping in a cache
by the mapping's JSON) is shown too. Target: at most 3x the hand-written function.
"""

from __future__ import annotations

import gc
from typing import Any

from benchmarks._util import median_time, report
from segfn_kit.mapping import compile_mapping, transform

PAYLOADS = 100_000

MAPPING: dict[str, Any] = {
    "userId": {"@path": "$.body.data.object.customer"},
    "event": {"@template": "Stripe {{body.type}}"},
    "properties": {
        "id": {"@path": "$.body.id"},
        "amount": {"@path": "$.body.data.object.amount"},
        "currency": {"@case": {"operator": "upper", "value": {"@path": "$.body.data.object.currency"}}},
        "email": {"@if": {"exists": {"@path": "$.body.data.object.receipt_email"},
                          "then": {"@path": "$.body.data.object.receipt_email"}, "else": "unknown"}},
        "livemode": {"@path": "$.body.livemode"},
        "source": "stripe",
    },
    "timestamp": {"@path": "$.body.created"},
}

_MISSING = object()


def hand_written(payload: dict[str, Any]) -> dict[str, Any]:
    """The same mapping in plain Python: the floor."""
    body = payload.get("body", _MISSING)
    obj = body.get("data", {}).get("object", {}) if isinstance(body, dict) else {}
    out: dict[str, Any] = {}
    customer = obj.get("customer", _MISSING)
    if customer is not _MISSING:
        out["userId"] = customer
    kind = body.get("type") if isinstance(body, dict) else None
    out["event"] = f"Stripe {'' if kind is None else kind}"
    props: dict[str, Any] = {}
    for key, value in (("id", body.get("id", _MISSING)), ("amount", obj.get("amount", _MISSING))):
        if value is not _MISSING:
            props[key] = value
    currency = obj.get("currency", _MISSING)
    if currency is not _MISSING:
        props["currency"] = currency.upper() if isinstance(currency, str) else currency
    email = obj.get("receipt_email")
    props["email"] = email if email is not None else "unknown"
    livemode = body.get("livemode", _MISSING)
    if livemode is not _MISSING:
        props["livemode"] = livemode
    props["source"] = "stripe"
    out["properties"] = props
    created = body.get("created", _MISSING)
    if created is not _MISSING:
        out["timestamp"] = created
    return out


def payloads(count: int = PAYLOADS) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        obj: dict[str, Any] = {"id": f"ch_{i}", "amount": 100 + i % 900, "currency": "usd",
                               "customer": f"cus_{i % 5000}"}
        if i % 3:
            obj["receipt_email"] = f"user{i}@example.com"
        out.append({"headers": {"stripe-signature": "t=1,v1=x"},
                    "body": {"id": f"evt_{i}", "type": "charge.succeeded", "created": 1_700_000_000 + i,
                             "livemode": False, "data": {"object": obj}}})
    return out


def main() -> None:
    data = payloads()
    compiled = compile_mapping(MAPPING)
    assert all(compiled(p) == hand_written(p) for p in data[:1000])
    gc.disable()
    try:
        floor = median_time(lambda: [hand_written(p) for p in data])
        fast = median_time(lambda: [compiled(p) for p in data])
        cached = median_time(lambda: [transform(MAPPING, p) for p in data], repeats=3)
    finally:
        gc.enable()
    report(f"hand-written Python, {PAYLOADS:,} payloads", floor, "s")
    report("compiled mapping (compile_mapping once)", fast, "s")
    report("compiled mapping / hand-written", fast / floor, "x", "<= 3x")
    report("transform(mapping, payload) / hand-written", cached / floor, "x")


if __name__ == "__main__":
    main()
