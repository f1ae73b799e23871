"""Group commit: the events of concurrent ``TrackingClient.asend`` calls (the webhooks an ASGI
handler answers at once) share ``/v1/batch`` bodies, against the real sink with real httpx,
and the exported handler under a real uvicorn doing the same."""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segfn_kit._export import export
from segfn_kit._sink import read_sink, running_sink
from segfn_kit.runtime import DeliveryError, DeliveryReport, TrackingClient
from segfn_kit.runtime._delivery import _GROUP_STALL, _PREFIX, _SUFFIX_LEN, MAX_EVENT_BYTES
from tests._servers import clean_env, serving

KEY = "wk_group_3c1f9a0b"
CALLERS = 24


class Sink:
    def __init__(self, url: str, store: Path):
        self.url = url
        self.store = store

    def faults(self, **spec: Any) -> None:
        answer = httpx.post(self.url + "/__faults", json=spec)
        assert answer.status_code == 200, answer.text

    def batch_requests(self) -> list[int]:
        frame = read_sink(self.store, requests=True)
        return [int(s) for s in frame[frame["endpoint"] == "batch"]["status"]]

    def stored(self, ids: list[str]) -> int:
        with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True) as db:
            marks = ",".join("?" * len(ids))
            (count,) = db.execute(f"SELECT count(*) FROM events WHERE message_id IN ({marks})", ids).fetchone()
        return int(count)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    store = tmp_path / "sink.sqlite3"
    with running_sink(write_key=KEY, store=store) as url:
        yield Sink(url, store)


def events_of(caller: int, n: int = 2) -> list[dict[str, Any]]:
    return [{"type": "track", "userId": f"u{caller}", "event": "Paid", "messageId": f"c{caller:03d}-{i}",
             "properties": {"i": i}} for i in range(n)]


def run_callers(client: TrackingClient, sink: Sink | None = None,
                count: int = CALLERS) -> list[DeliveryReport | BaseException]:
    """``count`` concurrent asend calls; each checks, as it returns, that its events are stored."""

    async def caller(n: int) -> DeliveryReport:
        report = await client.asend(events_of(n))
        if sink is not None:  # answered only once its own events are in the sink
            assert sink.stored([e["messageId"] for e in events_of(n)]) == 2
        return report

    async def main() -> list[DeliveryReport | BaseException]:
        async with client:
            return await asyncio.gather(*(caller(n) for n in range(count)), return_exceptions=True)

    return asyncio.run(main())


def all_ids(count: int = CALLERS) -> list[str]:
    return [e["messageId"] for n in range(count) for e in events_of(n)]


def test_concurrent_calls_share_batches_and_each_is_answered_after_its_events_landed(sink: Sink) -> None:
    results = run_callers(TrackingClient(KEY, host=sink.url, budget=10), sink)
    assert all(isinstance(r, DeliveryReport) and r.ok and r.accepted == 2 for r in results), results
    batches = sink.batch_requests()
    assert 1 <= len(batches) < CALLERS // 2  # coalesced: far fewer bodies than callers
    stored = read_sink(sink.store)
    assert sorted(stored["message_id"]) == sorted(all_ids())  # nothing lost, nothing twice
    assert not stored["duplicate"].any()


def test_a_batch_answered_500_then_429_is_retried_for_every_caller_in_it(sink: Sink) -> None:
    sink.faults(script=["500", "429"])
    results = run_callers(TrackingClient(KEY, host=sink.url, budget=10, backoff=0.01), sink)
    assert all(isinstance(r, DeliveryReport) and r.ok for r in results), results
    assert sink.batch_requests()[:2] == [500, 429]
    stored = read_sink(sink.store)
    assert sorted(stored["message_id"]) == sorted(all_ids()) and not stored["duplicate"].any()


def test_a_batch_that_keeps_failing_fails_every_caller_in_it(sink: Sink) -> None:
    sink.faults(fail_rate=1.0, mix={"500": 1})
    results = run_callers(TrackingClient(KEY, host=sink.url, budget=0.6, backoff=0.05))
    assert all(isinstance(r, DeliveryError) for r in results), results
    for n, error in enumerate(results):
        assert isinstance(error, DeliveryError)
        assert "2 of 2 event(s) were not accepted" in str(error) and "HTTP 500" in str(error)
        assert sorted(error.report.dead_letter_ids) == [f"c{n:03d}-0", f"c{n:03d}-1"]
    assert read_sink(sink.store).empty


def test_a_refused_batch_is_sent_again_caller_by_caller(sink: Sink) -> None:
    # the shared batch is refused (400), then each caller's events go on their own: the
    # second caller's are refused again, which fails that caller only
    sink.faults(script=["400", "ok", "400"])
    results = run_callers(TrackingClient(KEY, host=sink.url, budget=10), count=6)
    statuses = sink.batch_requests()
    assert statuses[:3] == [400, 200, 400] and len(statuses) == 7, statuses
    assert isinstance(results[1], DeliveryError) and "HTTP 400" in str(results[1])
    assert all(isinstance(r, DeliveryReport) and r.ok for i, r in enumerate(results) if i != 1), results
    stored = read_sink(sink.store)
    assert sorted(stored["message_id"]) == sorted(i for i in all_ids(6) if not i.startswith("c001"))
    assert not stored["duplicate"].any()


def test_a_lost_answer_is_retried_and_the_sink_sees_the_duplicates(sink: Sink) -> None:
    # stored, then the connection dropped: the retry carries the same messageIds (deduplicated)
    sink.faults(script=["lost"])
    results = run_callers(TrackingClient(KEY, host=sink.url, budget=10, backoff=0.01))
    assert all(isinstance(r, DeliveryReport) and r.ok for r in results), results
    assert sorted(read_sink(sink.store, unique=True)["message_id"]) == sorted(all_ids())


def test_a_single_call_is_what_it_was(sink: Sink) -> None:
    report = run_callers(TrackingClient(KEY, host=sink.url), count=1)[0]
    assert isinstance(report, DeliveryReport)
    assert (report.events, report.accepted, report.batches, report.requests) == (2, 2, 1, 1)


class HeldApi:
    """A Tracking API (an httpx transport) that holds its first answer until ``release()``,
    recording the messageIds of each body as it arrives."""

    def __init__(self) -> None:
        self.bodies: list[list[str]] = []
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        content = request.content
        if request.headers.get("content-encoding") == "gzip":
            content = gzip.decompress(content)
        self.bodies.append([e["messageId"] for e in json.loads(content)["batch"]])
        self.arrived.set()
        if len(self.bodies) == 1:
            await self.released.wait()
        return httpx.Response(200, json={"success": True})

    def release(self) -> None:
        self.released.set()


def one_event(caller: int, size: int = 0) -> list[dict[str, Any]]:
    return [{"type": "track", "userId": "u", "event": "Paid", "messageId": f"m{caller}",
             "properties": {"blob": "x" * size}}]


async def settle() -> None:
    """Let every task that can run, run (a flusher started now would have sent by then)."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_calls_that_arrive_while_a_batch_is_on_its_way_leave_together_in_the_next() -> None:
    api = HeldApi()

    async def main() -> list[DeliveryReport]:
        client = TrackingClient(KEY, host="https://api.example.test", transport=httpx.MockTransport(api))
        first = asyncio.ensure_future(client.asend(one_event(0)))
        await api.arrived.wait()
        later = []
        for n in range(1, 6):  # one at a time, each while the first batch is held
            later.append(asyncio.ensure_future(client.asend(one_event(n))))
            await settle()
        assert api.bodies == [["m0"]]  # none of them went alone
        api.release()
        return await asyncio.gather(first, *later)

    reports = asyncio.run(main())
    assert all(r.ok for r in reports)
    assert api.bodies == [["m0"], ["m1", "m2", "m3", "m4", "m5"]]


def test_a_stalled_batch_does_not_hold_the_calls_behind_it() -> None:
    api = HeldApi()

    async def main() -> None:
        client = TrackingClient(KEY, host="https://api.example.test", transport=httpx.MockTransport(api))
        first = asyncio.ensure_future(client.asend(one_event(0)))
        await api.arrived.wait()
        await asyncio.sleep(_GROUP_STALL + 0.05)  # the first batch is stalled now
        report = await client.asend(one_event(1))  # answered while the first is still held
        assert report.ok and not first.done()
        api.release()
        assert (await first).ok

    asyncio.run(main())
    assert api.bodies == [["m0"], ["m1"]]


def test_a_queue_that_fills_a_batch_goes_out_beside_the_batch_on_its_way() -> None:
    api = HeldApi()
    limit = len(_PREFIX) + _SUFFIX_LEN + MAX_EVENT_BYTES + 200  # the smallest batch: 32 KB

    async def main() -> list[DeliveryReport]:
        client = TrackingClient(KEY, host="https://api.example.test", max_batch_bytes=limit,
                                transport=httpx.MockTransport(api))
        first = asyncio.ensure_future(client.asend(one_event(0)))
        await api.arrived.wait()
        later = []
        for n in range(1, 9):  # 8 KB events: the fifth fills a batch
            later.append(asyncio.ensure_future(client.asend(one_event(n, 8_000))))
            await settle()
        answered = [task.done() for task in later]
        api.release()
        assert answered == [True] * 4 + [False] * 4  # sent (and answered) while the first was held
        return await asyncio.gather(first, *later)

    reports = asyncio.run(main())
    assert all(r.ok for r in reports)
    assert api.bodies[:2] == [["m0"], ["m1", "m2", "m3", "m4"]]
    assert sorted(m for body in api.bodies for m in body) == sorted(f"m{n}" for n in range(9))


FUNCTION = '''\
from segfn_kit.runtime import Segment


def on_request(request, settings):
    body = request.json()
    Segment.track(user_id=body["user"], event="Order Completed", properties={"order_id": body["id"]})
'''


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("group")
    (root / "orders.py").write_text(FUNCTION)
    (root / "order.json").write_text(json.dumps({"id": "o1", "user": "u1"}))
    return export(root / "orders.py", root / "orders", payloads=[root / "order.json"])


async def post_all(url: str, count: int, in_flight: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        return await asyncio.gather(*(
            client.post(url, json={"id": f"o{i}", "user": f"u{i % 7}"}) for i in range(count)
        ))


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_exported_handler_coalesces_concurrent_webhooks(orders: Path, tmp_path: Path, isolation: str) -> None:
    store = tmp_path / "sink.sqlite3"
    with running_sink(write_key=KEY, store=store, process=True) as sink_url:
        env = clean_env(SEGMENT_WRITE_KEY=KEY, SEGMENT_API_HOST=sink_url, SEGFN_ISOLATION=isolation)
        with serving(orders, env, log_path=tmp_path / "server.log") as (url, _):
            answers = asyncio.run(post_all(url + "/", 80, 16))
            assert [a.status_code for a in answers] == [200] * 80, [a.text for a in answers if a.status_code != 200]
            assert all(a.json()["events"] == 1 for a in answers)
            stored = read_sink(store)
            assert sorted(p["properties"]["order_id"] for p in stored["payload"]) == sorted(f"o{i}" for i in range(80))
            assert not stored["duplicate"].any()
            batches = read_sink(store, requests=True)
            assert len(batches) < 80  # shared bodies
    # a Tracking API that keeps failing: every webhook of the batch is answered 502
    store2 = tmp_path / "failing.sqlite3"
    with running_sink(write_key=KEY, store=store2) as sink_url:
        httpx.post(sink_url + "/__faults", json={"fail_rate": 1.0, "mix": {"500": 1}})
        env = clean_env(SEGMENT_WRITE_KEY=KEY, SEGMENT_API_HOST=sink_url, SEGFN_ISOLATION=isolation,
                        SEGFN_DELIVERY_BUDGET="0.5")
        with serving(orders, env, log_path=tmp_path / "server2.log") as (url, _):
            answers = asyncio.run(post_all(url + "/", 12, 12))
    assert [a.status_code for a in answers] == [502] * 12
    assert all(a.json()["outcome"] == "delivery_failed" for a in answers)
    assert read_sink(store2).empty
