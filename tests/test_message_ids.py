"""Contract 1: derived messageIds never change. These ids were recorded before the engine
was restructured; every path that runs a function (``run``, the runtime itself) must keep them."""

from __future__ import annotations

from pathlib import Path

import pytest

from segfn_kit import run
from segfn_kit.examples import example_path
from segfn_kit.runtime import Function, Request

ROOT = Path(__file__).resolve().parents[1]

STRIPE_IDS = {
    "stripe/charge.succeeded.json": ["ef753202-36a9-547a-b793-5364fa596306"],
    "stripe/checkout.session.completed.json": [
        "4c425c4b-c25d-5606-a3bb-c0b6c639b45e", "77825e72-7d9c-5c27-8839-f32f02c29a24"],
    "stripe/customer.created.json": [
        "f5ce1379-1dd6-552f-8761-bf40ba673c33", "01c7252f-482e-5735-ba6a-9f30644f40ca"],
    "stripe/customer.subscription.created.json": ["cdc1d147-f459-569f-bb16-fe6f589388fc"],
    "stripe/customer.subscription.trial_will_end.json": ["6549184b-7abf-5000-a87d-dd5ac87f27d0"],
    "stripe/customer.updated.json": [
        "7673f39c-ef59-54a9-8a01-57d0ed8a57be", "8ebf3da8-eedd-5b44-aed9-619e0e782bef"],
    "stripe/invoice.paid.json": ["1da34638-5bc4-52ca-b0ce-f3ee325ddc8f"],
    "stripe/invoice.payment_failed.json": ["4e49006a-671a-5909-b227-911dbe6feddb"],
}

TWO_CALLS = '''
from segfn_kit.runtime import Segment
def on_request(request, settings):
    Segment.track(user_id="u1", event="E")
    Segment.identify(user_id="u1")
'''

# body -> the two ids: JSON (with a float, non-ASCII and an int above 2**64), text, pretty JSON
SMALL: list[tuple[object, list[str]]] = [
    ({"b": 1, "a": [1.5, "é", 12345678901234567890]},
     ["6af740c6-e330-5ee7-b174-94ee48b5baac", "a78aba7b-956c-5027-bc29-207a87fdf6a5"]),
    ({"headers": {"Content-Type": "text/plain"}, "body": "not json"},
     ["65c5a3cf-f707-5bec-b11d-ac2a8eea5c42", "1ec55dfa-53b5-5fbf-be15-5cb2b83ce448"]),
    ({"headers": {}, "body": '{\n "a" : 1 }'},
     ["b1178901-7634-56a2-ad8e-d9e6d3c9e512", "ef67d6d3-c9a5-5358-a924-58af2de1020f"]),
]


def test_stripe_example_ids_are_pinned() -> None:
    results = run(example_path("stripe_source"), [ROOT / "sample_payloads" / "stripe"])
    got = {pid: [e["messageId"] for e in events] for pid, events in results["events"].items() if events}
    for pid, ids in STRIPE_IDS.items():
        assert got[pid] == ids, pid


def test_small_payload_ids_are_pinned_through_run() -> None:
    results = run(TWO_CALLS, [body for body, _ in SMALL])
    assert [[e["messageId"] for e in events] for events in results["events"]] == [ids for _, ids in SMALL]


@pytest.mark.parametrize(("body", "ids"), [*SMALL[:1], (b'{"a":1}', None)])
def test_runtime_gives_the_same_ids_as_run(body: object, ids: list[str] | None) -> None:
    fn = Function.from_source(TWO_CALLS)
    direct = [e["messageId"] for e in fn.on_request(Request(body)).events]
    through_run = [e["messageId"] for e in run(fn, [Request(body)])["events"].iloc[0]]
    assert direct == through_run
    if ids is not None:
        assert direct == ids


def test_pretty_and_compact_json_give_the_same_ids() -> None:
    fn = Function.from_source(TWO_CALLS)
    pretty = fn.on_request(Request(b'{\n "a" : 1 }')).events
    compact = fn.on_request(Request(b'{"a":1}')).events
    assert [e["messageId"] for e in pretty] == [e["messageId"] for e in compact] == SMALL[2][1]
