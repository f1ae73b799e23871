"""The exported handler under uvicorn against a hand-written proxy, 32 requests in flight.

Both servers run under uvicorn (one worker process each, on 127.0.0.1) and deliver to the
same sink (``segfn_kit._sink.running_sink`` in a child process). The floor is the 30-line
ASGI app below: it reads the body, ``json.loads`` it, builds the event the one-track
function builds and posts it to ``/v1/batch`` with one shared ``httpx.AsyncClient``, and
answers 200 once the sink accepted it. The exported handler runs the same one-track
function through the runtime (messageIds, checks, delivery with retries, the log line).

A client keeps 32 requests in flight (httpx.AsyncClient) until ``REQUESTS`` are answered;
the two servers are timed in turns, ``ROUNDS`` times, and the medians compared.

Target: handler req/s / proxy req/s >= 1.0. The handler's group commit (events of the
webhooks in flight share ``/v1/batch`` bodies) shows in "Tracking API requests per webhook".

    .venv/bin/python -m benchmarks bench_handler
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks._util import report
from tests._servers import clean_env, start_uvicorn

REQUESTS = int(os.environ.get("SEGFN_BENCH_REQUESTS", "1500"))
ROUNDS = int(os.environ.get("SEGFN_BENCH_ROUNDS", "3"))
CONCURRENCY = 32
WRITE_KEY = "bench-handler-key"

FUNCTION = '''\
from segfn_kit.runtime import Segment


def on_request(request, settings):
    body = request.json()
    Segment.track(user_id=body["user"], event="Order Completed",
                  properties={"order_id": body["id"], "total": body["total"]})
'''

PROXY = '''\
import base64, json, os
import httpx

URL = os.environ["SEGMENT_API_HOST"] + "/v1/batch"
AUTH = {"Authorization": "Basic " + base64.b64encode((os.environ["SEGMENT_WRITE_KEY"] + ":").encode()).decode()}
client = None


async def app(scope, receive, send):
    global client
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    order = json.loads(body)
    event = {"type": "track", "userId": str(order["user"]), "event": "Order Completed",
             "properties": {"order_id": order["id"], "total": order["total"]}}
    if client is None:
        client = httpx.AsyncClient()
    answer = await client.post(URL, json={"batch": [event]}, headers=AUTH)
    status = 200 if answer.status_code == 200 else 502
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})
'''


def _serve(cwd: Path, target: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    # keep-alive longer than any pause on a busy machine, so a reused connection is never closed
    # by the server while the client sends on it (the same for the proxy and the handler)
    proc, url = start_uvicorn(cwd, env, target=target, args=["--log-level", "warning", "--timeout-keep-alive", "60"],
                              timeout=30)
    return proc, url + "/"


async def _load(url: str, n: int) -> tuple[float, int]:
    import httpx

    bodies = [json.dumps({"id": f"o{i}", "user": f"u{i % 97}", "total": i * 1.5}).encode() for i in range(n)]
    queue = iter(bodies)
    failures = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        for body in queue:
            try:
                answer = await client.post(url, content=body, headers={"Content-Type": "application/json"})
            except httpx.TransportError:
                failures += 1  # reported beside the rate, never hidden
                continue
            failures += answer.status_code != 200

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        await client.post(url, content=bodies[0], headers={"Content-Type": "application/json"})  # warm
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - start
    return n / elapsed, failures


def _sink_requests(sink: str) -> int:
    import httpx

    return int(httpx.get(sink + "/__stats", timeout=10).json().get("requests", 0))


def main() -> None:
    from segfn_kit._export import export
    from segfn_kit._sink import running_sink

    with tempfile.TemporaryDirectory(prefix="segfn-bench-handler-") as tmp:
        root = Path(tmp)
        (root / "orders.py").write_text(FUNCTION)
        (root / "order.json").write_text(json.dumps({"id": "o1", "user": "u1", "total": 9.5}))
        package = export(root / "orders.py", root / "orders", payloads=[root / "order.json"])
        (root / "proxy").mkdir()
        (root / "proxy" / "proxy.py").write_text(PROXY)
        with running_sink(write_key=WRITE_KEY, process=True) as sink:
            env = clean_env()
            env.update({"SEGMENT_WRITE_KEY": WRITE_KEY, "SEGMENT_API_HOST": sink, "SEGMENT_OBJECTS_HOST": sink})
            servers = {
                "proxy": _serve(root / "proxy", "proxy:app", env),
                "handler": _serve(package, "handler:app", env),
            }
            try:
                rates: dict[str, list[float]] = {name: [] for name in servers}
                failed: dict[str, int] = dict.fromkeys(servers, 0)
                posts: dict[str, int] = dict.fromkeys(servers, 0)  # requests the sink got
                for _ in range(ROUNDS):
                    for name, (_, url) in servers.items():
                        before = _sink_requests(sink)
                        rate, failures = asyncio.run(_load(url, REQUESTS))
                        posts[name] += _sink_requests(sink) - before
                        rates[name].append(rate)
                        failed[name] += failures
            finally:
                for proc, _ in servers.values():
                    proc.terminate()
                    proc.wait(timeout=10)
    proxy = statistics.median(rates["proxy"])
    handler = statistics.median(rates["handler"])
    print(f"  {REQUESTS:,} requests, {CONCURRENCY} in flight, medians of {ROUNDS} rounds timed in turns")
    report("proxy (30-line ASGI app, shared AsyncClient): req/s", proxy, "/s")
    report("exported handler under uvicorn: req/s", handler, "/s")
    report("handler req/s / proxy req/s", handler / proxy, "x", target=">= 1.0")
    for name, count in failed.items():
        report(f"{name}: requests not answered 200 (all rounds)", count, "")
    for name, count in posts.items():  # the group commit: webhooks in flight share /v1/batch bodies
        report(f"{name}: Tracking API requests per webhook", count / (ROUNDS * (REQUESTS + 1)), "")


if __name__ == "__main__":
    main()
