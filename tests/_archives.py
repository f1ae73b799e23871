"""Generated Stripe-shaped webhook archives for replay and reliability tests.

Shapes follow Stripe's documented event objects (``evt_...`` with ``data.object``); the
mix exercises every outcome of the bundled Stripe function: identify + track, track only,
and an unmapped type (``EventNotSupported``).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# event type -> events the bundled Stripe function emits for it
EMITS = {"customer.created": 2, "invoice.paid": 1, "charge.succeeded": 1, "payout.paid": 0}
TYPES = list(EMITS)


def stripe_event(i: int) -> dict[str, Any]:
    """The i-th generated Stripe event (deterministic)."""
    kind = TYPES[i % len(TYPES)]
    customer = f"cus_{i // 4:08d}"
    created = 1_700_000_000 + i
    if kind == "customer.created":
        obj: dict[str, Any] = {"id": customer, "object": "customer", "email": f"user{i}@example.com",
                               "name": f"User {i}", "created": created, "currency": "usd"}
    elif kind == "invoice.paid":
        obj = {"id": f"in_{i:09d}", "object": "invoice", "customer": customer, "amount_paid": 1000 + i % 5000,
               "currency": "usd", "number": f"INV-{i}", "billing_reason": "subscription_cycle"}
    elif kind == "charge.succeeded":
        obj = {"id": f"ch_{i:09d}", "object": "charge", "customer": customer, "amount": 500 + i % 900,
               "currency": "eur", "description": "Subscription update"}
    else:
        obj = {"id": f"po_{i:09d}", "object": "payout", "amount": 100000, "currency": "usd"}
    return {"id": f"evt_{i:012d}", "object": "event", "api_version": "2024-06-20", "created": created,
            "livemode": False, "type": kind, "data": {"object": obj}}


def expected_events(n: int, start: int = 0) -> int:
    """How many events the bundled Stripe function emits for payloads start..start+n-1."""
    return sum(EMITS[TYPES[i % len(TYPES)]] for i in range(start, start + n))


def iter_lines(n: int, start: int = 0) -> Iterator[str]:
    for i in range(start, start + n):
        yield json.dumps(stripe_event(i), separators=(",", ":")) + "\n"


def write_archive(path: Path, n: int, start: int = 0) -> Path:
    """Write n generated events as JSON Lines (gzip when the name ends in .gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.writelines(iter_lines(n, start))
    return path
