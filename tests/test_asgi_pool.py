"""The exported ASGI app awaits its worker processes on the event loop: no thread per request,
runaway calls killed at their limit while good requests in flight beside them are answered,
against a real uvicorn, real httpx clients and the real sink."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from segfn_kit._export import export
from segfn_kit._sink import read_sink, running_sink
from tests._servers import clean_env, serving

WRITE_KEY = "wk-asgi-pool-61d0"

FUNCTION = '''\
from segfn_kit.runtime import Segment


def on_request(request, settings):
    body = request.json()
    if body["k"] == "loop":
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    print("seen", body["k"])
    Segment.track(user_id="u1", event="Seen", properties={"k": body["k"]})
'''


def _threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    tmp = tmp_path_factory.mktemp("asgi_pool")
    (tmp / "fn.py").write_text(FUNCTION, encoding="utf-8")
    (tmp / "payload.json").write_text(json.dumps({"k": "fine"}), encoding="utf-8")
    package = export(tmp / "fn.py", tmp / "package", payloads=[tmp / "payload.json"])
    store = tmp / "sink.sqlite3"
    with running_sink(write_key=WRITE_KEY, store=store, process=True) as sink_url:
        env = clean_env(SEGMENT_WRITE_KEY=WRITE_KEY, SEGMENT_API_HOST=sink_url, SEGFN_TIMEOUT="1",
                        SEGFN_WORKERS="2")
        with serving(package, env, log_path=tmp / "server.log", timeout=30) as (url, proc):
            yield url, proc.pid, store


async def _post(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post("/", json={"k": key})


def test_runaways_beside_good_requests_in_flight(server: tuple[str, int, Path]) -> None:
    url, pid, store = server

    async def main() -> tuple[list[httpx.Response], list[httpx.Response], int]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            assert (await _post(client, "warm-up")).status_code == 200
            threads = _threads(pid)
            runaway = [asyncio.ensure_future(_post(client, "loop")) for _ in range(2)]
            good = await asyncio.gather(*(_post(client, f"good{n}") for n in range(40)))
            return await asyncio.gather(*runaway), list(good), threads

    runaways, good, threads_before = asyncio.run(main())
    assert [r.status_code for r in runaways] == [504, 504]
    assert all(r.json()["outcome"] == "timeout" for r in runaways)
    assert [r.status_code for r in good] == [200] * 40, [r.text for r in good if r.status_code != 200]
    assert all(r.json()["events"] == 1 for r in good)
    # no thread per request in flight (40 at once); the workers that were killed are replaced
    assert _threads(pid) <= threads_before + 1
    stored = read_sink(store)
    keys = sorted(p["properties"]["k"] for p in stored["payload"])
    assert keys == sorted(["warm-up", *(f"good{n}" for n in range(40))])
    assert not stored["duplicate"].any()


def test_answers_after_the_runaways_are_as_before(server: tuple[str, int, Path]) -> None:
    url = server[0]
    with httpx.Client(base_url=url, timeout=30) as client:
        answers = [client.post("/", json={"k": f"after{n}"}) for n in range(5)]
        assert [a.status_code for a in answers] == [200] * 5
        assert client.get("/").status_code == 405
        assert client.post("/", content=b"{", headers={"content-type": "application/json"}).status_code == 400


def test_a_freed_worker_goes_to_the_call_that_waited_longest() -> None:
    # one worker; a caller that calls again as soon as it is answered must not take the
    # worker back ahead of a call that was already waiting for it
    from segfn_kit.runtime import Function, Request
    from segfn_kit.runtime._isolation import WorkerPool

    fn = Function.from_source("def on_request(request, settings):\n    request.json()\n")
    done: list[str] = []

    async def main(pool: WorkerPool) -> None:
        await pool.acall(Request(b"{}"))  # the worker is started and idle

        async def eager() -> None:
            for n in range(5):
                await pool.acall(Request(b"{}"))
                done.append(f"eager{n}")

        async def waiting() -> None:
            await pool.acall(Request(b"{}"))
            done.append("waiting")

        first = asyncio.ensure_future(eager())
        await asyncio.sleep(0)  # eager's first call holds the worker
        await asyncio.gather(first, waiting())

    with WorkerPool(fn, workers=1) as pool:
        asyncio.run(main(pool))
    assert done[:2] == ["eager0", "waiting"], done


def test_an_async_call_cancelled_while_waiting_leaves_the_pool_whole() -> None:
    from segfn_kit.runtime import Function, Request
    from segfn_kit.runtime._isolation import WorkerPool

    fn = Function.from_source("def on_request(request, settings):\n    request.json()\n")

    async def main(pool: WorkerPool) -> list[str]:
        await pool.acall(Request(b"{}"))
        running = asyncio.ensure_future(pool.acall(Request(b"{}")))
        await asyncio.sleep(0)
        waiting = [asyncio.ensure_future(pool.acall(Request(b"{}"))) for _ in range(3)]
        await asyncio.sleep(0)
        waiting[0].cancel()  # while it waits: the worker goes to the next one
        await running
        results = await asyncio.gather(*waiting, return_exceptions=True)
        # the worker still serves calls: none was lost with a cancelled caller
        after = await asyncio.wait_for(pool.acall(Request(b"{}")), 30)
        return [type(r).__name__ for r in results] + [after.invocation.outcome]

    with WorkerPool(fn, workers=1) as pool:
        outcomes = asyncio.run(main(pool))
        assert pool.replaced == 0
    assert outcomes == ["CancelledError", "CallResult", "CallResult", "ok"], outcomes
