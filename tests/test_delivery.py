"""TrackingClient against the real sink under uvicorn, with real httpx."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segfn_kit._sink import read_sink, running_sink
from segfn_kit.runtime import DeliveryError, DeliveryReport, TrackingClient, UndeliverableEvent
from segfn_kit.runtime._delivery import (
    _PREFIX,
    _SUFFIX_LEN,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    encode_event,
)
from segfn_kit.runtime._delivery import (
    retry_after as _retry_after,
)

KEY = "wk_test_5f3a9c1e77b24d0e"


class Sink:
    def __init__(self, url: str, store: Path):
        self.url = url
        self.store = store
        self.clients: list[TrackingClient] = []

    def faults(self, **spec: Any) -> None:
        r = httpx.post(self.url + "/__faults", json=spec)
        assert r.status_code == 200, r.text

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(self.url + "/__stats").json())


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    store = tmp_path / "sink.sqlite3"
    with running_sink(write_key=KEY, store=store) as url:
        handle = Sink(url, store)
        yield handle
        for client in handle.clients:
            client.close()


def client_for(sink: Sink, key: str = KEY, **options: Any) -> TrackingClient:
    options.setdefault("rng", random.Random(7))
    options.setdefault("backoff", 0.01)
    client = TrackingClient(key, host=sink.url, **options)
    sink.clients.append(client)
    return client


def track(i: int, size: int = 0) -> dict[str, Any]:
    return {"type": "track", "userId": f"u{i}", "event": "Order Completed",
            "messageId": f"msg-{i:06d}", "properties": {"n": i, "pad": "x" * size}}


def test_small_events_pack_into_batches_of_2500(sink: Sink) -> None:
    events = [track(i) for i in range(6_000)]
    report = client_for(sink).send(events)
    assert (report.events, report.accepted, report.batches, report.requests) == (6_000, 6_000, 3, 3)
    requests = read_sink(sink.store, requests=True)
    assert requests["events"].tolist() == [2_500, 2_500, 1_000]
    stored = read_sink(sink.store)
    assert stored["message_id"].tolist() == [e["messageId"] for e in events]  # order kept


def test_large_events_fill_batches_up_to_500_kb(sink: Sink) -> None:
    events = [track(i, size=20_000) for i in range(100)]
    sizes = [len(encode_event(e)[1]) for e in events]
    report = client_for(sink, gzip=False).send(events)
    assert report.accepted == 100
    requests = read_sink(sink.store, requests=True)
    assert (requests["body_bytes"] <= MAX_BATCH_BYTES).all()
    # greedy packing: no batch could have taken the next event
    room = MAX_BATCH_BYTES - len(_PREFIX) - _SUFFIX_LEN
    per_batch = 1 + (room - sizes[0]) // (sizes[0] + 1)
    assert requests["events"].tolist()[:-1] == [per_batch] * (len(requests) - 1)
    assert report.batches == -(-100 // per_batch)


def test_packing_respects_both_limits_for_random_sizes() -> None:
    rng = random.Random(3)
    client = TrackingClient(KEY)
    encoded = [encode_event(track(i, size=rng.choice([0, 10, 900, 5_000, 30_000]))) for i in range(8_000)]
    batches = client._pack(encoded)
    assert [mid for b in batches for mid in b.ids] == [mid for mid, _ in encoded]
    for batch, following in itertools.pairwise(batches):
        body = batch.body()
        assert len(body) <= MAX_BATCH_BYTES and len(batch.ids) <= MAX_BATCH_EVENTS
        json.loads(body)
        # the first event of the next batch would not have fitted
        nxt = len(following.parts[0]) + 1
        assert len(body) + nxt > MAX_BATCH_BYTES or len(batch.ids) == MAX_BATCH_EVENTS


def test_oversize_event_is_an_error_naming_it_and_nothing_is_sent(sink: Sink) -> None:
    events = [track(1), track(2, size=MAX_EVENT_BYTES), track(3)]
    with pytest.raises(UndeliverableEvent) as info:
        client_for(sink).send(events)
    assert info.value.problems[0][0] == "msg-000002"
    assert "msg-000002" in str(info.value) and "32,768" in str(info.value)
    assert sink.stats().get("requests", 0) == 0
    assert read_sink(sink.store, requests=True).empty


def test_event_json_cannot_carry_is_an_error() -> None:
    with pytest.raises(UndeliverableEvent, match="msg-nan"):
        TrackingClient(KEY).check([{"type": "track", "messageId": "msg-nan", "properties": {"x": float("nan")}}])


def test_events_without_message_id_get_the_same_id_each_time() -> None:
    event = {"type": "track", "userId": "u1", "event": "Paid"}
    first, second = encode_event(event), encode_event(dict(event))
    assert first == second and "messageId" not in event
    assert encode_event({**event, "userId": "u2"})[0] != first[0]


def test_retries_500_429_and_dropped_connections_then_delivers(sink: Sink) -> None:
    sink.faults(script=["500", "429", "drop", "ok"], retry_after=0.05)
    report = client_for(sink).send([track(i) for i in range(10)])
    assert report.accepted == 10 and report.retries == 3 and report.requests == 4
    assert report.statuses == {"500": 1, "429": 1, "connection": 1, "200": 1}
    assert read_sink(sink.store)["message_id"].nunique() == 10


def test_retry_after_is_honoured(sink: Sink) -> None:
    sink.faults(script=["429"], retry_after=1)
    start = time.monotonic()
    report = client_for(sink).send([track(1)])
    assert report.accepted == 1 and report.retries == 1
    assert time.monotonic() - start >= 1.0


def test_retry_after_header_forms() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert _retry_after("soon") is None and _retry_after(None) is None


def test_backoff_grows_with_full_jitter() -> None:
    client = TrackingClient(KEY, backoff=0.5, max_backoff=4.0, rng=random.Random(1))
    delays = [[client._delay(n, None) for _ in range(200)] for n in range(6)]
    for n, sample in enumerate(delays):
        assert 0 <= min(sample) and max(sample) <= min(4.0, 0.5 * 2**n)
    assert max(delays[3]) > max(delays[0]) * 4
    assert client._delay(0, 2.5) == 2.5  # Retry-After wins over a shorter jitter


def test_other_4xx_is_not_retried(sink: Sink) -> None:
    sink.faults(script=["400"])
    with pytest.raises(DeliveryError) as info:
        client_for(sink).send([track(1)])
    report = info.value.report
    assert (report.requests, report.retries, report.dead_letter_ids) == (1, 0, ["msg-000001"])
    assert "HTTP 400" in str(info.value) or "400" in str(report.statuses)


def test_wrong_write_key_stops_after_one_request(sink: Sink, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wk_wrong_0123456789abcdef"
    client = client_for(sink, wrong)
    with pytest.raises(DeliveryError) as info:
        client.send([track(i) for i in range(3_000)])  # two batches
    report = info.value.report
    assert report.requests == 1 and report.dead_letters == 3_000
    assert "write key was refused" in caplog.text
    for text in (str(info.value), caplog.text, repr(client)):
        assert wrong not in text


def test_budget_spent_goes_to_dead_letters(sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sink.faults(fail_rate=1.0, mix={"500": 1, "drop": 1}, seed=5)
    dead = tmp_path / "dead.jsonl"
    client = client_for(sink, budget=1.0, dead_letter=dead)
    events = [track(i) for i in range(5)]
    with pytest.raises(DeliveryError) as info:
        client.send(events)
    report = info.value.report
    assert report.accepted == 0 and report.requests >= 2 and report.dead_letters == 5
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [line["messageId"] for line in lines] == [e["messageId"] for e in events]
    assert [line["event"] for line in lines] == events
    assert all("budget" in line["reason"] and line["attempts"] == report.requests for line in lines)
    secrets = (KEY, base64.b64encode(f"{KEY}:".encode()).decode())
    for text in (dead.read_text(), caplog.text, str(info.value), repr(info.value.report), repr(client)):
        for secret in secrets:
            assert secret not in text
    assert read_sink(sink.store).empty


def test_gzip_when_it_helps(sink: Sink) -> None:
    client = client_for(sink)
    client.send([track(1)])  # a few hundred bytes: not worth compressing
    client.send([track(i, size=500) for i in range(100, 300)])
    requests = read_sink(sink.store, requests=True)
    assert requests["content_encoding"].isna().tolist() == [True, False]
    assert requests["content_encoding"].iloc[1] == "gzip"
    big = requests.iloc[1]
    assert big["wire_bytes"] * 5 < big["body_bytes"]
    assert read_sink(sink.store)["message_id"].nunique() == 201


def test_lost_answer_is_retried_under_the_same_message_ids(sink: Sink) -> None:
    sink.faults(script=["lost"])
    report = client_for(sink).send([track(1), track(2)])
    assert report.accepted == 2 and report.retries == 1
    stored = read_sink(sink.store)
    assert stored["message_id"].tolist() == ["msg-000001", "msg-000002"] * 2
    assert stored["duplicate"].tolist() == [False, False, True, True]
    assert len(read_sink(sink.store, unique=True)) == 2


def test_asend_retries_and_delivers(sink: Sink) -> None:
    sink.faults(script=["drop", "500"])
    client = client_for(sink)

    async def main() -> DeliveryReport:
        async with client:
            first = await client.asend([track(i) for i in range(3)])
            second = await client.asend([track(i) for i in range(3, 6)])
        return first + second

    report = asyncio.run(main())
    assert (report.accepted, report.retries, report.batches) == (6, 2, 2)
    assert read_sink(sink.store, unique=True)["message_id"].tolist() == [f"msg-{i:06d}" for i in range(6)]


def test_unreachable_host_spends_the_budget() -> None:
    with TrackingClient(KEY, host="http://127.0.0.1:9", budget=0.5, backoff=0.05) as client:
        with pytest.raises(DeliveryError, match="not accepted") as info:
            client.send([track(1)])
    assert info.value.report.statuses.get("connection", 0) >= 2


def test_configuration_mistakes_are_clear() -> None:
    with pytest.raises(ValueError, match="SEGMENT_WRITE_KEY"):
        TrackingClient("")
    with pytest.raises(ValueError, match="max_batch_events"):
        TrackingClient(KEY, max_batch_events=3_000)


# -- objects (Segment.set -> the Objects API's /v1/set) ---------------------------------------


def room(collection: str, i: int, size: int = 0) -> dict[str, Any]:
    return {"collection": collection, "id": f"{collection[:1]}{i}", "properties": {"n": i, "pad": "x" * size}}


def objects_client(sink: Sink, **options: Any) -> TrackingClient:
    return client_for(sink, objects_host=sink.url, **options)


def test_objects_are_sent_per_collection_in_batches_of_100(sink: Sink) -> None:
    rooms = [room("rooms", i) for i in range(150)]
    hotels = [room("hotels", i) for i in range(3)]
    mixed = [*rooms[:50], *hotels, *rooms[50:]]
    report = objects_client(sink).send([track(1)], objects=mixed)
    assert (report.events, report.accepted, report.objects, report.objects_accepted) == (1, 1, 153, 153)
    assert report.ok and report.batches == 4  # one /v1/batch; rooms 100 + 50; hotels 3
    requests = read_sink(sink.store, requests=True)
    assert requests[["endpoint", "events"]].values.tolist() == [["batch", 1], ["set", 100], ["set", 50], ["set", 3]]
    stored = read_sink(sink.store, objects=True)
    assert stored["collection"].tolist() == ["rooms"] * 150 + ["hotels"] * 3
    assert stored["id"].tolist() == [o["id"] for o in rooms + hotels]
    assert stored["properties"].tolist() == [o["properties"] for o in rooms + hotels]
    assert read_sink(sink.store)["message_id"].tolist() == ["msg-000001"]


def test_object_batches_stay_under_500_kb(sink: Sink) -> None:
    objects = [room("rooms", i, size=30_000) for i in range(40)]
    report = objects_client(sink).send_objects(objects)
    assert report.objects_accepted == 40 and report.batches == 3
    sizes = read_sink(sink.store, requests=True)["body_bytes"].tolist()
    assert all(size <= MAX_BATCH_BYTES for size in sizes) and sum(sizes) > 2 * MAX_BATCH_BYTES * 0.9


def test_objects_go_to_the_objects_host_with_basic_auth() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True})

    client = TrackingClient(KEY, host="https://api.example.test", transport=httpx.MockTransport(answer))
    with client:
        client.send_objects([{"collection": "rooms", "id": "r1", "properties": {"beds": 2}}])
    assert [str(r.url) for r in seen] == ["https://objects.segment.com/v1/set"]
    assert seen[0].headers["authorization"] == "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert json.loads(seen[0].content) == {"collection": "rooms", "objects": [{"id": "r1", "properties": {"beds": 2}}]}


def test_object_retries_go_through_the_same_loop(sink: Sink) -> None:
    sink.faults(script=["ok", "500", "drop", "429"], retry_after=0)
    report = objects_client(sink).send([track(1)], objects=[room("rooms", 1), room("rooms", 2)])
    assert report.ok and report.retries == 3 and report.statuses == {"200": 2, "500": 1, "connection": 1, "429": 1}
    assert read_sink(sink.store, objects=True)["id"].tolist() == ["r1", "r2"]


def test_objects_not_accepted_raise_and_go_to_the_dead_letter_file(sink: Sink, tmp_path: Path) -> None:
    sink.faults(script=["ok", "400"])
    dead = tmp_path / "dead.jsonl"
    objects = [room("rooms", 1), room("rooms", 2)]
    with pytest.raises(DeliveryError, match="2 of 2 object") as info:
        objects_client(sink, dead_letter=dead).send([track(1)], objects=objects)
    report = info.value.report
    assert report.accepted == 1 and report.objects_accepted == 0 and not report.ok
    assert report.dead_letter_objects == ["rooms/r1", "rooms/r2"] and report.dead_letters == 0
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(line["collection"], line["object"]) for line in lines] == [
        ("rooms", {"id": o["id"], "properties": o["properties"]}) for o in objects
    ]
    assert KEY not in dead.read_text() and KEY not in str(info.value)


def test_invalid_objects_are_one_error_and_nothing_is_sent(sink: Sink) -> None:
    bad = [
        {"collection": "Rooms", "id": "r1", "properties": {}},
        {"collection": "rooms", "id": "", "properties": {}},
        {"collection": "rooms", "id": "r3", "properties": [1]},
        {"collection": "", "id": "r4", "properties": {}},
        {"collection": "rooms", "id": "r5", "properties": {"x": float("nan")}},
        {"collection": "rooms", "id": "r6", "properties": {"blob": "a" * MAX_EVENT_BYTES}},
        "rooms/r7",
        room("rooms", 8),
    ]
    with pytest.raises(UndeliverableEvent) as info:
        objects_client(sink).send([track(1)], objects=bad)
    labels = [label for label, _ in info.value.object_problems]
    assert labels == ["objects[0]", "rooms/objects[1]", "rooms/r3", "objects[3]", "rooms/r5", "rooms/r6", "objects[6]"]
    reasons = dict(info.value.object_problems)
    assert "'rooms'" in reasons["objects[0]"] and "lower case" in reasons["objects[0]"]
    assert "32,768" in reasons["rooms/r6"] and "JSON" in reasons["rooms/r5"]
    assert info.value.problems == [] and str(info.value).startswith("7 object(s) cannot be delivered")
    assert sink.stats().get("requests", 0) == 0


def test_asend_objects(sink: Sink) -> None:
    sink.faults(script=["500"])
    client = objects_client(sink)

    async def main() -> DeliveryReport:
        async with client:
            return await client.asend_objects([room("rooms", 1)])

    report = asyncio.run(main())
    assert report.objects_accepted == 1 and report.retries == 1
    assert read_sink(sink.store, objects=True)["id"].tolist() == ["r1"]
