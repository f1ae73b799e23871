"""The bundled Stripe function over real Stripe payloads from three public archives.

stripe-ruby-mock (88 events, API versions 2013 to 2020), Segment's functions-library
Stripe examples (2015 API, in its ``{"payload": ...}`` wrapper) and Hookdeck's captured
Stripe requests (2022-11-15, ``{topic, headers, body}``). Every payload must run without
an exception, give the outcome the mapping table promises, and only spec-valid events.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from segfn_kit import load_payloads, run
from segfn_kit.examples import example_path
from segfn_kit.spec import validate

pytestmark = pytest.mark.corpora

# what the mapping promises per Stripe type: the Segment calls, in order
MAPPED = {
    "customer.created": ["identify", "Customer Created"],
    "customer.updated": ["identify", "Customer Updated"],
    "customer.deleted": ["Customer Deleted"],
    "customer.subscription.created": ["Subscription Created"],
    "customer.subscription.updated": ["Subscription Updated"],
    "customer.subscription.deleted": ["Subscription Canceled"],
    "customer.subscription.trial_will_end": ["Trial Ending Soon"],
    "invoice.paid": ["Invoice Paid"],
    "invoice.payment_failed": ["Invoice Payment Failed"],
    "charge.succeeded": ["Charge Succeeded"],
    "checkout.session.completed": ["Checkout Completed"],
}

ARCHIVES = {
    "stripe-ruby-mock": ("stripe-ruby-mock",),
    "functions-library": ("segment-functions-library", "stripe-events"),
    "hookdeck": ("hookdeck-webhook-samples", "stripe", "2022-11-15"),
}


def expected(body: dict[str, Any]) -> tuple[str, list[str]]:
    """The outcome and calls the mapping table gives for one Stripe event."""
    kind = body["type"]
    obj = body["data"]["object"]
    if kind not in MAPPED:
        return "EventNotSupported", []
    if kind == "charge.succeeded" and not obj.get("customer"):
        return "EventNotSupported", []
    if kind == "checkout.session.completed":
        if not (obj.get("customer") or obj.get("client_reference_id")):
            return "ValidationError", []
        email = (obj.get("customer_details") or {}).get("email") or obj.get("customer_email")
        return "ok", (["identify"] if email else []) + MAPPED[kind]
    return "ok", MAPPED[kind]


def calls(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] if e["type"] == "track" else e["type"] for e in events]


@pytest.fixture(scope="module", params=list(ARCHIVES))
def archive(request: pytest.FixtureRequest, corpora_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = corpora_dir.joinpath(*ARCHIVES[request.param])
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    payloads = load_payloads(folder)
    return payloads, run(example_path("stripe_source"), payloads)


def test_every_payload_loads_and_runs_without_an_exception(archive: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    payloads, results = archive
    assert len(payloads) > 0
    assert payloads["error"].isna().all(), payloads["error"].dropna().to_dict()
    assert (results["outcome"] != "error").all(), results.loc[results["outcome"] == "error", "error"].to_dict()


def test_outcomes_and_calls_are_what_the_mapping_promises(archive: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    payloads, results = archive
    for pid, body in payloads["body"].items():
        outcome, names = expected(body)
        row = results.loc[pid]
        assert row["outcome"] == outcome, (pid, row["error"])
        assert calls(row["events"]) == names, pid


def test_events_are_valid_and_timed_by_the_stripe_event(archive: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    payloads, results = archive
    assert results["issues"].map(len).sum() == 0, results["issues"][results["issues"].map(len) > 0].to_dict()
    for pid, events in results["events"].items():
        created = payloads.loc[pid, "body"]["created"]
        for event in events:
            assert validate(event) == []
            assert event["userId"]
            assert dt.datetime.fromisoformat(event["timestamp"]).timestamp() == created


def test_mapped_types_are_covered(corpora_dir: Path) -> None:
    folder = corpora_dir / "stripe-ruby-mock"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    results = run(example_path("stripe_source"), [folder])
    ok_types = set(results.loc[results["outcome"] == "ok", "event_type"])
    # every mapped type but charge.succeeded (whose sample has no customer) appears as ok
    assert set(MAPPED) - {"charge.succeeded"} <= ok_types
    assert len(results) == 88
