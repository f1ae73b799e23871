"""Approved outputs: what ``approve`` writes and ``load_approved`` reads back."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd
import pytest

from segfn_kit._approve import ApprovedOutputError, approve, approved_path, envelope, load_approved
from segfn_kit._payloads import load_payloads
from segfn_kit._run import run
from segfn_kit.runtime import sign, verify_signature

FUNCTION = """from segfn_kit.runtime import Segment, EventNotSupported

def on_request(request, settings):
    body = request.json()
    if body["type"] != "customer.created":
        raise EventNotSupported(body["type"])
    Segment.identify(user_id=body["data"]["object"]["id"])
    Segment.set(collection="customers", id=body["data"]["object"]["id"], properties={"plan": "pro"})
"""


@pytest.fixture()
def function_file(tmp_path: Path) -> Path:
    path = tmp_path / "stripe_source.py"
    path.write_text(FUNCTION)
    return path


def _frame(tmp_path: Path) -> pd.DataFrame:
    raw = '{"type": "customer.created",  "data": {"object": {"id": "cus_9"}}}'  # odd spacing kept
    secret = "whsec_test_approve"
    headers = {"Content-Type": "application/json", **sign("stripe", secret, raw.encode(), timestamp=1700000000)}
    folder = tmp_path / "payloads"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps({
        "method": "POST", "url": "http://127.0.0.1:8787/stripe?src=test", "path": "/stripe",
        "query": {"src": "test"}, "headers": headers,
        "body": raw, "received_at": "2026-11-26T13:40:00.123Z",
    }))
    (folder / "b.json").write_text(json.dumps({"headers": {}, "body": {"type": "invoice.voided"}}))
    return load_payloads(folder)


def test_default_path_is_beside_the_function_file(function_file: Path, tmp_path: Path) -> None:
    payloads = _frame(tmp_path)
    results = run(function_file, payloads)
    written = approve(results, payloads)
    assert written == tmp_path / "stripe_source.approved.jsonl" == approved_path(function_file)
    records = load_approved(written)
    assert [r["payload_id"] for r in records] == [str(i) for i in payloads.index]
    first, second = records
    assert set(first) == {"payload_id", "payload", "outcome", "events", "objects"}
    assert first["outcome"] == "ok" and first["events"][0]["userId"] == "cus_9"
    assert first["objects"] == [{"collection": "customers", "id": "cus_9", "properties": {"plan": "pro"}}]
    assert second["outcome"] == "EventNotSupported" and second["events"] == []


def test_payload_is_a_capture_envelope_with_the_raw_body(function_file: Path, tmp_path: Path) -> None:
    payloads = _frame(tmp_path)
    written = approve(run(function_file, payloads), payloads)
    env = load_approved(written)[0]["payload"]
    row = payloads.iloc[0]
    assert env["body"] == row["raw"]  # the bytes as received, so signatures still verify
    assert env["method"] == "POST" and env["path"] == "/stripe" and env["query"] == {"src": "test"}
    assert env["received_at"] == "2026-11-26T13:40:00.123Z"
    check = verify_signature("stripe", "whsec_test_approve", env["headers"], env["body"].encode(), now=1700000000)
    assert check


def test_non_utf8_body_is_written_as_base64() -> None:
    raw = b'{"type":"x","name":"caf\xe9"}'.decode("utf-8", "surrogateescape")
    env = envelope({"headers": {}, "raw": raw})
    assert "body" not in env
    assert base64.b64decode(env["body_base64"]) == b'{"type":"x","name":"caf\xe9"}'


def test_approving_again_replaces_only_the_chosen_ids(function_file: Path, tmp_path: Path) -> None:
    payloads = _frame(tmp_path)
    results = run(function_file, payloads)
    target = approve(results, payloads)
    first_id, second_id = (str(i) for i in payloads.index)
    edited = tmp_path / "edited.py"
    edited.write_text(FUNCTION.replace('raise EventNotSupported(body["type"])', "return"))
    changed = run(edited, payloads)
    approve(changed, payloads, target, ids=[second_id])
    records = {r["payload_id"]: r for r in load_approved(target)}
    assert records[second_id]["outcome"] == "ok"  # replaced
    assert records[first_id]["events"][0]["userId"] == "cus_9"  # kept
    assert len(records) == 2


def test_a_cell_function_needs_a_path(tmp_path: Path) -> None:
    payloads = _frame(tmp_path)
    results = run(FUNCTION, payloads)
    with pytest.raises(ApprovedOutputError, match="pass path="):
        approve(results, payloads)
    with pytest.raises(ApprovedOutputError, match="payload frame"):
        approve(results, None, tmp_path / "x.approved.jsonl")
    with pytest.raises(ApprovedOutputError, match="no result for payload id"):
        approve(results, payloads, tmp_path / "x.approved.jsonl", ids=["nope"])


def test_secret_settings_are_masked(tmp_path: Path) -> None:
    text = FUNCTION.replace('properties={"plan": "pro"}', 'properties={"key": settings["apiKey"]}')
    payloads = _frame(tmp_path)
    results = run(text, payloads, {"apiKey": "sk_test_abcdef123"})
    target = approve(results, payloads, tmp_path / "f.approved.jsonl", settings={"apiKey": "sk_test_abcdef123"})
    assert "sk_test_abcdef123" not in target.read_text()


def test_damaged_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "f.approved.jsonl"
    path.write_text('{"payload_id": "a", "outcome": "ok"}\n{"payload_id": \n')
    with pytest.raises(ApprovedOutputError, match="line 2"):
        load_approved(path)
    path.write_text('["not", "an", "object"]\n')
    with pytest.raises(ApprovedOutputError, match="line 1: expected an object"):
        load_approved(path)
    with pytest.raises(ApprovedOutputError, match="no approved outputs yet"):
        load_approved(tmp_path / "missing.approved.jsonl")


def test_destination_records_carry_the_event_and_requests(tmp_path: Path) -> None:
    event = {"type": "track", "event": "Order Failed", "userId": "u1"}
    results = pd.DataFrame(
        {"outcome": ["ok"], "events": [[]], "objects": [[]],
         "requests": [[{"method": "POST", "url": "https://acme.zendesk.com/api/v2/tickets.json"}]]},
        index=pd.Index(["events.jsonl#1"], name="payload_id"),
    )
    results.attrs["kind"] = "destination"
    events = pd.DataFrame({"event": [event]}, index=pd.Index(["events.jsonl#1"], name="payload_id"))
    target = approve(results, events, tmp_path / "z.approved.jsonl")
    record = load_approved(target)[0]
    assert record["event"] == event and "payload" not in record
    assert record["requests"][0]["url"].endswith("tickets.json")


def test_credential_headers_of_captures_are_masked_but_signatures_kept() -> None:
    row = {
        "headers": {"Authorization": "Basic dXNlcjpwYXNz", "Cookie": "session=abc123", "Stripe-Signature": "t=1,v1=ab"},
        "raw": "{}",
    }
    headers = envelope(row)["headers"]
    assert "dXNlcjpwYXNz" not in json.dumps(headers) and "abc123" not in json.dumps(headers)
    assert headers["Stripe-Signature"] == "t=1,v1=ab"
