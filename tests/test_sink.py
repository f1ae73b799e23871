"""The local Tracking API sink: auth, Segment's limits, storage, faults, command line."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segfn_kit._sink import FAULT_KINDS, Faults, read_sink, running_sink

KEY = "wk_sink_test_8d2f"
AUTH = (KEY, "")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "sink.sqlite3"


@pytest.fixture
def url(store: Path) -> Iterator[str]:
    with running_sink(write_key=KEY, store=store) as address:
        yield address


def event(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "userId": f"u{i}", "event": "Signed Up", "messageId": f"m{i}", **extra}


def test_basic_auth_or_write_key_in_body(url: str, store: Path) -> None:
    assert httpx.post(url + "/v1/track", json=event(1)).status_code == 401
    assert httpx.post(url + "/v1/track", json=event(1), auth=("nope", "")).status_code == 401
    assert httpx.post(url + "/v1/track", json={**event(2), "writeKey": "nope"}).status_code == 401
    ok = httpx.post(url + "/v1/track", json=event(3), auth=AUTH)
    assert ok.status_code == 200 and ok.json() == {"success": True}
    assert httpx.post(url + "/v1/track", json={**event(4), "writeKey": KEY}).status_code == 200
    stored = read_sink(store)
    assert stored["message_id"].tolist() == ["m3", "m4"]
    assert all("writeKey" not in p for p in stored["payload"])  # the key is never stored


@pytest.mark.parametrize("kind", ["track", "identify", "page", "screen", "group", "alias"])
def test_single_call_endpoints_set_the_type(url: str, store: Path, kind: str) -> None:
    needs = {"track": {"event": "Paid"}, "group": {"groupId": "g1"}, "alias": {"previousId": "a1"}}
    body = {"userId": "u1", "messageId": f"m-{kind}", **needs.get(kind, {})}
    r = httpx.post(f"{url}/v1/{kind}", json=body, auth=AUTH)
    assert r.status_code == 200
    stored = read_sink(store)
    assert stored[["type", "endpoint", "message_id"]].values.tolist() == [[kind, kind, f"m-{kind}"]]
    assert stored["payload"][0]["receivedAt"].endswith("Z")


@pytest.mark.parametrize("endpoint", ["batch", "import"])
def test_batch_and_import_store_every_event_with_sent_at(url: str, store: Path, endpoint: str) -> None:
    body = {"batch": [event(i) for i in range(3)], "sentAt": "2026-11-26T13:40:00.000Z"}
    assert httpx.post(f"{url}/v1/{endpoint}", json=body, auth=AUTH).status_code == 200
    stored = read_sink(store)
    assert stored["message_id"].tolist() == ["m0", "m1", "m2"]
    assert {p["sentAt"] for p in stored["payload"]} == {"2026-11-26T13:40:00.000Z"}


def test_batch_context_applies_to_every_message(url: str, store: Path) -> None:
    body = {"batch": [event(1), event(2, context={"ip": "10.0.0.2", "locale": "fr-FR"})],
            "context": {"library": {"name": "segfn"}, "locale": "en-GB"}}
    assert httpx.post(url + "/v1/batch", json=body, auth=AUTH).status_code == 200
    first, second = read_sink(store)["payload"]
    assert first["context"] == {"library": {"name": "segfn"}, "locale": "en-GB"}
    assert second["context"] == {"library": {"name": "segfn"}, "locale": "fr-FR", "ip": "10.0.0.2"}


def test_invalid_json_and_bodies_are_400(url: str, store: Path) -> None:
    headers = {"Content-Type": "application/json"}
    cases = [
        (b'{"batch": [', {}),
        (b"\xff\xfe not utf-8", {}),
        (b"[1, 2]", {}),
        (b'{"batch": {"not": "a list"}}', {}),
        (b'{"batch": [1]}', {}),
        (b"this is not gzip", {"Content-Encoding": "gzip"}),
        (gzip.compress(b'{"batch": []}')[:-6], {"Content-Encoding": "gzip"}),
        (b"{}", {"Content-Encoding": "br"}),
    ]
    for body, extra in cases:
        r = httpx.post(url + "/v1/batch", content=body, headers={**headers, **extra}, auth=AUTH)
        assert r.status_code == 400, body
        assert r.json()["success"] is False and r.json()["message"]
    assert read_sink(store).empty


def test_gzip_bodies_are_accepted(url: str, store: Path) -> None:
    body = gzip.compress(json.dumps({"batch": [event(i) for i in range(50)]}).encode())
    r = httpx.post(url + "/v1/batch", content=body, auth=AUTH,
                   headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 200
    assert len(read_sink(store)) == 50
    requests = read_sink(store, requests=True)
    assert requests["wire_bytes"][0] == len(body) and requests["body_bytes"][0] > len(body)


def test_event_over_32_kb_is_400_naming_it(url: str, store: Path) -> None:
    big = event(1, properties={"blob": "x" * 33_000})
    r = httpx.post(url + "/v1/batch", json={"batch": [event(0), big]}, auth=AUTH)
    assert r.status_code == 400 and "'m1'" in r.json()["message"]
    assert httpx.post(url + "/v1/track", json=big, auth=AUTH).status_code == 400
    assert read_sink(store).empty  # the batch is refused whole


def test_batch_over_500_kb_is_400(url: str, store: Path) -> None:
    events = [event(i, properties={"pad": "y" * 20_000}) for i in range(26)]
    r = httpx.post(url + "/v1/batch", json={"batch": events}, auth=AUTH)
    assert r.status_code == 400 and "500,000" in r.json()["message"]
    assert read_sink(store).empty


def test_over_2500_events_answers_200_but_drops_the_rest(url: str, store: Path) -> None:
    r = httpx.post(url + "/v1/batch", json={"batch": [event(i) for i in range(2_600)]}, auth=AUTH)
    assert r.status_code == 200
    assert len(read_sink(store)) == 2_500
    dropped = read_sink(store, dropped=True)
    assert dropped["message_id"].tolist() == [f"m{i}" for i in range(2_500, 2_600)]
    assert httpx.get(url + "/__stats").json()["dropped"] == 100


def test_duplicates_are_kept_and_marked(url: str, store: Path) -> None:
    for _ in range(2):
        assert httpx.post(url + "/v1/batch", json={"batch": [event(1), event(2)]}, auth=AUTH).status_code == 200
    stored = read_sink(store)
    assert stored["duplicate"].tolist() == [False, False, True, True]
    assert read_sink(store, unique=True)["message_id"].tolist() == ["m1", "m2"]
    stats = httpx.get(url + "/__stats").json()
    assert (stats["stored"], stats["unique"], stats["duplicates"]) == (4, 2, 2)


def test_faults_on_command(url: str, store: Path) -> None:
    r = httpx.post(url + "/__faults", json={"script": ["500", "429", "drop", "slow"], "retry_after": 7, "delay": 0.2})
    assert r.status_code == 200 and r.json()["script"] == ["500", "429", "drop", "slow"]
    body = {"batch": [event(1)]}
    assert httpx.post(url + "/v1/batch", json=body, auth=AUTH).status_code == 500
    limited = httpx.post(url + "/v1/batch", json=body, auth=AUTH)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(url + "/v1/batch", json=body, auth=AUTH)
    assert httpx.post(url + "/v1/batch", json=body, auth=AUTH).status_code == 200  # slow, then answered
    assert read_sink(store)["message_id"].tolist() == ["m1"]
    requests = read_sink(store, requests=True)
    assert requests["fault"].tolist() == ["500", "429", "drop", "slow"]
    assert requests["status"].tolist() == [500, 429, 0, 200]
    stats = httpx.get(url + "/__stats").json()
    assert {k: stats[k] for k in ("fault_500", "fault_429", "fault_drop", "fault_slow")} == dict.fromkeys(
        ("fault_500", "fault_429", "fault_drop", "fault_slow"), 1)


def test_fail_rate_is_seeded_and_close_to_the_share() -> None:
    a = Faults(fail_rate=0.3, seed=11)
    b = Faults(fail_rate=0.3, seed=11)
    first = [a.choose() for _ in range(2_000)]
    assert first == [b.choose() for _ in range(2_000)]
    failed = [f for f in first if f is not None]
    assert 500 < len(failed) < 700
    assert set(failed) == {"500", "429", "drop"}


def test_bad_fault_settings_are_refused(url: str) -> None:
    r = httpx.post(url + "/__faults", json={"fail_rate": 2})
    assert r.status_code == 400 and "fail_rate" in r.json()["error"]
    r = httpx.post(url + "/__faults", json={"mix": {"teapot": 1}})
    assert r.status_code == 400 and "teapot" in r.json()["error"]
    assert httpx.get(url + "/__faults").json()["fail_rate"] == 0.0
    with pytest.raises(ValueError, match="KIND=NUMBER"):
        Faults.parse_mix("500=lots")
    assert set(FAULT_KINDS) >= {"500", "429", "drop", "slow"}


def test_read_sink_names_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="segfn sink --store"):
        read_sink(tmp_path / "absent.sqlite3")


def test_command_line_sink_in_a_process(store: Path) -> None:
    faults = Faults(script=["429"], retry_after=0.1)
    with running_sink(write_key=KEY, store=store, faults=faults, process=True) as address:
        assert httpx.post(address + "/v1/track", json=event(1), auth=AUTH).status_code == 429
        assert httpx.post(address + "/v1/track", json=event(1), auth=AUTH).status_code == 200
        assert httpx.post(address + "/v1/track", json=event(2), auth=("other", "")).status_code == 401
    assert read_sink(store)["message_id"].tolist() == ["m1"]


def test_command_line_help_and_bad_mix() -> None:
    env = {**os.environ, "SEGMENT_WRITE_KEY": KEY}
    out = subprocess.run([sys.executable, "-m", "segfn_kit", "sink", "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "--fail-rate" in out.stdout and "/__faults" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "segfn_kit", "sink", "--port", "0", "--fail-rate", "0.5",
                          "--fail-mix", "500=1,teapot=2"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "teapot" in bad.stderr and KEY not in bad.stderr


def test_set_stores_objects_per_collection(url: str, store: Path) -> None:
    body = {"collection": "rooms", "objects": [{"id": "r1", "properties": {"beds": 2}},
                                               {"id": "r2", "properties": {"beds": 1, "name": "Élan"}}]}
    assert httpx.post(url + "/v1/set", json=body).status_code == 401
    assert httpx.post(url + "/v1/set", json=body, auth=("nope", "")).status_code == 401
    r = httpx.post(url + "/v1/set", json=body, auth=AUTH)
    assert (r.status_code, r.json()) == (200, {"success": True})
    packed = gzip.compress(json.dumps({"collection": "rooms", "objects": [{"id": "r1", "properties": {}}]}).encode())
    r = httpx.post(url + "/v1/set", content=packed, auth=AUTH, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200
    objects = read_sink(store, objects=True)
    assert objects[["collection", "id", "properties"]].values.tolist() == [
        ["rooms", "r1", {"beds": 2}], ["rooms", "r2", {"beds": 1, "name": "Élan"}], ["rooms", "r1", {}]]
    assert objects["received_at"].str.endswith("Z").all()
    assert read_sink(store).empty  # objects are not events
    assert httpx.get(url + "/__stats").json()["objects"] == 3
    assert read_sink(store, requests=True)[["endpoint", "status"]].values.tolist() == [
        ["set", 401], ["set", 401], ["set", 200], ["set", 200]]


@pytest.mark.parametrize(("body", "message"), [
    ({"collection": "Rooms", "objects": [{"id": "r1", "properties": {}}]}, "lower case"),
    ({"collection": "", "objects": [{"id": "r1", "properties": {}}]}, "collection"),
    ({"collection": "rooms", "objects": []}, "objects"),
    ({"collection": "rooms", "objects": [{"id": "", "properties": {}}]}, "objects[0]"),
    ({"collection": "rooms", "objects": [{"id": "r1", "properties": "x"}]}, "properties"),
    ({"collection": "rooms", "objects": [{"id": f"r{i}", "properties": {}} for i in range(101)]}, "over 100"),
])
def test_set_refuses_bad_bodies_naming_the_fault(url: str, store: Path, body: dict[str, Any], message: str) -> None:
    r = httpx.post(url + "/v1/set", json=body, auth=AUTH)
    assert r.status_code == 400 and message in r.json()["message"]
    assert read_sink(store, objects=True).empty


def test_faults_apply_to_set(url: str, store: Path) -> None:
    httpx.post(url + "/__faults", json={"script": ["500", "lost"]})
    body = {"collection": "rooms", "objects": [{"id": "r1", "properties": {}}]}
    assert httpx.post(url + "/v1/set", json=body, auth=AUTH).status_code == 500
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(url + "/v1/set", json=body, auth=AUTH)
    assert read_sink(store, objects=True)["id"].tolist() == ["r1"]  # lost: stored, answer never sent
    assert read_sink(store, requests=True)[["status", "fault"]].values.tolist() == [[500, "500"], [0, "lost"]]


# -- as Segment behaves: surrogates, rejected events, every request on record, SDK-readable errors ---


def test_a_lone_surrogate_escape_keeps_the_batch_as_segment_does(url: str, store: Path) -> None:
    from segment.analytics import request as segment_request

    # analytics-python writes a lone surrogate as the escape "\ud83d" (json.dumps, ensure_ascii)
    batch = [event(1), event(2, properties={"note": "half an emoji \ud83d", "\udc00key": 1}),
             event(3, properties={"emoji": "\U0001f600"})]
    answer = segment_request.post(KEY, host=url, batch=batch)
    assert answer.status_code == 200
    stored = read_sink(store)
    assert stored["message_id"].tolist() == ["m1", "m2", "m3"]
    assert stored["payload"][1]["properties"] == {"note": "half an emoji \ufffd", "\ufffdkey": 1}
    assert stored["payload"][2]["properties"] == {"emoji": "\U0001f600"}  # a real pair is kept
    (row,) = read_sink(store, requests=True).to_dict("records")
    assert (row["status"], row["events"]) == (200, 3) and "2 lone UTF-16 surrogate" in row["note"]
    stats = httpx.get(url + "/__stats").json()
    assert stats["requests"] == 1 and stats["status_200"] == 1 and stats["stored"] == 3


def test_events_segment_drops_are_stored_as_rejected_with_the_reason(url: str, store: Path) -> None:
    no_id = {"type": "track", "event": "Paid", "messageId": "m-noid"}
    no_name = {"type": "track", "userId": "u1", "messageId": "m-noname"}
    unknown = {"type": "purchase", "userId": "u1", "messageId": "m-unknown"}
    r = httpx.post(url + "/v1/batch", json={"batch": [event(1), no_id, no_name, unknown, event(2)]}, auth=AUTH)
    assert r.status_code == 200 and r.json() == {"success": True}  # Segment answers 200 and drops them
    assert read_sink(store)["message_id"].tolist() == ["m1", "m2"]
    rejected = read_sink(store, rejected=True)
    assert rejected["message_id"].tolist() == ["m-noid", "m-noname", "m-unknown"]
    reasons = rejected["reason"].tolist()
    assert "neither userId nor anonymousId" in reasons[0]
    assert "track event has no event" in reasons[1]
    assert "'purchase' is not a Segment event type" in reasons[2]
    assert rejected["payload"][1] == {**no_name, "receivedAt": rejected["received_at"][1]}
    single = httpx.post(url + "/v1/track", json={"anonymousId": "a1", "messageId": "m-single"}, auth=AUTH)
    assert single.status_code == 200 and read_sink(store, rejected=True)["endpoint"].tolist()[-1] == "track"
    requests = read_sink(store, requests=True)
    assert requests[["status", "events", "rejected"]].values.tolist() == [[200, 2, 3], [200, 0, 1]]
    assert httpx.get(url + "/__stats").json()["rejected"] == 4


def test_every_request_is_on_record_with_its_status(url: str, store: Path) -> None:
    httpx.post(url + "/v1/batch", json={"batch": [event(1)]})  # no key
    httpx.post(url + "/v1/batch", content=b"{nope", auth=AUTH)
    httpx.post(url + "/v1/batch", json={"batch": [event(2)]}, auth=AUTH)
    httpx.post(url + "/__faults", json={"script": ["429"]})
    httpx.post(url + "/v1/batch", json={"batch": [event(3)]}, auth=AUTH)
    missing = httpx.post(url + "/v1/purchase", json={"batch": []}, auth=AUTH)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    wrong = httpx.get(url + "/v1/batch", auth=AUTH)
    assert wrong.status_code == 405 and wrong.json()["code"] == "method_not_allowed"
    requests = read_sink(store, requests=True)
    assert requests["status"].tolist() == [401, 400, 200, 429, 404, 405]
    assert requests["endpoint"].tolist()[-2:] == ["purchase", "batch"]
    stats = httpx.get(url + "/__stats").json()
    assert stats["requests"] == 6 and (stats["status_401"], stats["status_400"], stats["status_429"]) == (1, 1, 1)


def test_error_answers_carry_the_fields_sdks_read(url: str, store: Path) -> None:
    from segment.analytics import request as segment_request
    from segment.analytics.request import APIError

    with pytest.raises(APIError) as info:
        segment_request.post("wrong-key", host=url, batch=[event(1)])
    assert (info.value.status, info.value.code) == (401, "unauthorized") and "write key" in info.value.message
    big = event(2, properties={"blob": "x" * 33_000})
    with pytest.raises(APIError) as too_big:
        segment_request.post(KEY, host=url, batch=[big])
    assert (too_big.value.status, too_big.value.code) == (400, "message_too_large")
    bad = httpx.post(url + "/v1/batch", content=b"[", auth=AUTH).json()
    assert bad == {"success": False, "code": "invalid_request", "message": "invalid JSON"}
    httpx.post(url + "/__faults", json={"script": ["500"]})
    assert httpx.post(url + "/v1/batch", json={"batch": []}, auth=AUTH).json()["code"] == "server_error"


@pytest.mark.parametrize("process", [False, True])
def test_segment_auth_answers_a_bad_write_key_with_200_and_records_it_rejected(
    tmp_path: Path, process: bool
) -> None:
    from segment.analytics import request as segment_request

    store = tmp_path / "sink.sqlite3"
    with running_sink(write_key=KEY, store=store, segment_auth=True, process=process) as url:
        assert segment_request.post("wrong-key", host=url, batch=[event(1), event(2)]).status_code == 200
        assert httpx.post(url + "/v1/track", json=event(3)).status_code == 200  # no key at all
        assert httpx.post(url + "/v1/track", json=event(4), auth=AUTH).status_code == 200
        assert httpx.post(url + "/v1/set", auth=("nope", ""), json={
            "collection": "rooms", "objects": [{"id": "r1", "properties": {}}]}).status_code == 200
    assert read_sink(store)["message_id"].tolist() == ["m4"]
    assert read_sink(store, objects=True).empty
    rejected = read_sink(store, rejected=True)
    assert rejected["message_id"].tolist() == ["m1", "m2", "m3"]
    assert all("write key" in r and "answered 200" in r for r in rejected["reason"])
    assert all("writeKey" not in p for p in rejected["payload"])  # keys are never stored
    requests = read_sink(store, requests=True)
    assert requests["status"].tolist() == [200, 200, 200, 200]
    assert requests["rejected"].tolist() == [2, 1, 0, 0]
    notes = requests["note"].tolist()
    assert "rejected: invalid write key" in notes[0] and "missing or invalid write key" in notes[1]
    assert notes[2] is None and "rejected" in notes[3]
    assert "wrong-key" not in " ".join(n for n in notes if n)
