"""The exported handler under uvicorn against a hand-written proxy, 32 requests in flight.

Both servers run under uvicorn (one worker process each, on 127.0.0.1) and deliver to the
same sink (``segfn_kit._sink.running_sink`` in a child process). The floor is the 30-line
ASGI app below: it reads the body, ``json.loads`` it, builds the event the one-track
function builds and posts it to ``/v1/batch`` with one shared ``httpx.AsyncClient``, and
answers 200 once the sink accepted it. The exported handler runs the same one-track
function through the runtime (messageIds, checks, delivery with retries, the log line).

The load keeps 32 requests in flight on 32 kept-alive connections until ``REQUESTS`` are
answered. It writes prepared HTTP/1.1 requests and reads the answers on asyncio streams
(about 0.1 ms of CPU per request), so that the servers, not the load, are what is
measured: an ``httpx.AsyncClient`` spends about 2.4 ms of CPU per request, more than
either server, and on a 2-core machine it held both servers to the same rate
(``SEGFN_BENCH_CLIENT=httpx`` uses it again). The two servers are timed in turns,
``ROUNDS`` times, and the medians compared.

Besides the rates (wall time: noisy on a shared machine), the CPU time each server (its
worker processes included) and the sink spent per webhook, read from ``/proc`` (Linux),
medians too: what a webhook costs, whatever else the machine runs.

Target: handler req/s / proxy req/s >= 1.0. The handler's group commit (events of the
webhooks in flight share ``/v1/batch`` bodies) shows in "Tracking API requests per webhook".

    .venv/bin/python -m benchmarks bench_handler
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks._util import report
from tests._servers import clean_env, start_uvicorn

REQUESTS = int(os.environ.get("SEGFN_BENCH_REQUESTS", "2000"))
ROUNDS = int(os.environ.get("SEGFN_BENCH_ROUNDS", "5"))
CLIENT = os.environ.get("SEGFN_BENCH_CLIENT", "streams")  # or "httpx"
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


def _bodies(n: int, tag: str) -> list[bytes]:
    """The warm-up's body, then ``n`` more: all different, and different for each ``tag``, so no
    two webhooks share a messageId (the one-track function derives it from the body)."""
    return [json.dumps({"id": f"{tag}-o{i}", "user": f"u{i % 97}", "total": i * 1.5}).encode() for i in range(n + 1)]


async def _load(url: str, n: int, tag: str) -> tuple[float, int]:
    """Post ``n`` webhooks, ``CONCURRENCY`` in flight; (requests per second, not answered 200)."""
    if CLIENT == "httpx":
        return await _load_httpx(url, n, tag)
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
    wire = [f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in _bodies(n, tag)]
    queue = iter(wire[1:])
    failures = 0

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, port)
        for request in queue:
            try:
                status, close = await _exchange(reader, writer, request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                failures += 1  # reported beside the rate, never hidden
                status, close = 0, True
            failures += status != 200
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
        writer.close()

    reader, writer = await asyncio.open_connection(host, port)
    await _exchange(reader, writer, wire[0])  # warm
    writer.close()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - start
    return n / elapsed, failures


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bool]:
    """Send one request and read its answer (Content-Length or chunked); (status, connection closed)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    fields = {k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(b":") for line in lines[1:] if line)}
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(fields.get(b"content-length", b"0")))
    return status, fields.get(b"connection") == b"close"


async def _load_httpx(url: str, n: int, tag: str) -> tuple[float, int]:
    import httpx

    bodies = _bodies(n, tag)
    queue = iter(bodies[1:])
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


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants; 0.0 where ``/proc``
    cannot tell (not Linux)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for task in os.listdir(f"/proc/{current}/task"):
                todo += map(int, Path(f"/proc/{current}/task/{task}/children").read_text().split())
        except (OSError, IndexError, ValueError):  # it ended meanwhile, or no /proc
            continue
    return total / tick


def _sink_counts(sink: str) -> tuple[int, int, int]:
    """Requests the sink got, events it stored, and how many of those repeated a messageId."""
    import httpx

    stats = httpx.get(sink + "/__stats", timeout=10).json()
    return int(stats.get("requests", 0)), int(stats.get("stored", 0)), int(stats.get("duplicates", 0))


def _sink_pid() -> int:
    """The sink's process: the child of this one running ``segfn_kit sink`` (0: not found)."""
    for task in Path(f"/proc/{os.getpid()}/task").glob("*/children") if Path("/proc").is_dir() else ():
        for child in task.read_text().split():
            with contextlib.suppress(OSError):
                if b"segfn_kit\0sink" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
    return 0


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
            sink_pid = _sink_pid()
            env = clean_env()
            env.update({"SEGMENT_WRITE_KEY": WRITE_KEY, "SEGMENT_API_HOST": sink, "SEGMENT_OBJECTS_HOST": sink})
            servers = {
                "proxy": _serve(root / "proxy", "proxy:app", env),
                "handler": _serve(package, "handler:app", env),
            }
            try:
                rates: dict[str, list[float]] = {name: [] for name in servers}
                cpu: dict[str, list[float]] = {name: [] for name in servers}  # ms per webhook, server
                sink_cpu: dict[str, list[float]] = {name: [] for name in servers}  # ms per webhook, sink
                failed: dict[str, int] = dict.fromkeys(servers, 0)
                posts: dict[str, int] = dict.fromkeys(servers, 0)  # requests the sink got
                lost: dict[str, int] = dict.fromkeys(servers, 0)  # answered 200, event not stored
                repeated: dict[str, int] = dict.fromkeys(servers, 0)  # messageIds stored twice
                for turn in range(ROUNDS):
                    for name, (proc, url) in servers.items():
                        before = _sink_counts(sink)
                        server_before, sink_before = _cpu_seconds(proc.pid), _cpu_seconds(sink_pid)
                        rate, failures = asyncio.run(_load(url, REQUESTS, f"{name}{turn}"))
                        cpu[name].append((_cpu_seconds(proc.pid) - server_before) * 1000 / (REQUESTS + 1))
                        sink_cpu[name].append((_cpu_seconds(sink_pid) - sink_before) * 1000 / (REQUESTS + 1))
                        after = _sink_counts(sink)
                        posts[name] += after[0] - before[0]
                        # every webhook answered 200 stored its one event, once (the warm-up's too)
                        lost[name] += REQUESTS + 1 - failures - (after[1] - before[1])
                        repeated[name] += after[2] - before[2]
                        rates[name].append(rate)
                        failed[name] += failures
            finally:
                for proc, _ in servers.values():
                    proc.terminate()
                    proc.wait(timeout=10)
    proxy = statistics.median(rates["proxy"])
    handler = statistics.median(rates["handler"])
    print(f"  {REQUESTS:,} requests, {CONCURRENCY} in flight ({CLIENT} client), medians of {ROUNDS} rounds "
          "timed in turns")
    report("proxy (30-line ASGI app, shared AsyncClient): req/s", proxy, "/s")
    report("exported handler under uvicorn: req/s", handler, "/s")
    report("handler req/s / proxy req/s", handler / proxy, "x", target=">= 1.0")
    print(f"  req/s by round: proxy {_listed(rates['proxy'])}; handler {_listed(rates['handler'])}")
    for name in servers:
        report(f"{name}: CPU ms per webhook (server and its workers)", statistics.median(cpu[name]), "ms")
        report(f"{name}: CPU ms per webhook (sink)", statistics.median(sink_cpu[name]), "ms")
    for name, count in failed.items():
        report(f"{name}: requests not answered 200 (all rounds)", count, "")
        report(f"{name}: answered 200, event not stored exactly once", lost[name] + repeated[name], "")
    for name, count in posts.items():  # the group commit: webhooks in flight share /v1/batch bodies
        report(f"{name}: Tracking API requests per webhook", count / (ROUNDS * (REQUESTS + 1)), "")


def _listed(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    main()
