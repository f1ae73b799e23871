"""The reliability suite: an exported handler and a replay against a failing Tracking API sink.

Short form in ``make test``; long form with ``SEGFN_SOAK=1`` (``make soak``). Every figure is
printed (run with ``-s`` to see them). Servers bind 127.0.0.1; every loop is bounded.

(a) fault tolerance: webhooks through the exported ASGI handler under uvicorn while the sink
    fails 30% of requests (500, 429 + Retry-After, dropped connections) and has one full
    outage; a sender re-sends on 5xx as Stripe would; every event lands exactly once by
    messageId.
(b) load: sustained concurrent posting; every request answered; p50 / p99 latency.
(c) replay: generated archive through ``segfn replay`` to the sink, killed mid-run and
    resumed; peak memory and events per second.
(d) bad input: hostile requests against the handler; the right status for each; still serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from segfn_kit._checkpoint import Checkpoint
from segfn_kit._sink import read_sink, running_sink
from segfn_kit.runtime import Function, Request, sign
from tests._archives import expected_events, stripe_event, write_archive
from tests._servers import clean_env, free_port

pytestmark = pytest.mark.reliability

SOAK = os.environ.get("SEGFN_SOAK") == "1"
ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
WRITE_KEY = "wk_reliability_2b9e41"
SIGNING_SECRET = "whsec_reliability_7f00c3"

WEBHOOKS = 5_000 if SOAK else 300
LOAD_SECONDS = 60.0 if SOAK else 10.0
REPLAY_PAYLOADS = 1_000_000 if SOAK else 20_000
CONCURRENCY = 32 if SOAK else 16
# per-test time limits: the soak form runs minutes, not seconds
LIMIT = 3_000 if SOAK else 600
OUTAGE_SECONDS = 12.0  # longer than the handler's 10 s delivery budget: some webhooks get 5xx


def figure(label: str, value: Any) -> None:
    print(f"  {label:<52} {value}", flush=True)


# -- the exported handler under uvicorn --------------------------------------------------------


@dataclass
class Handler:
    url: str
    sink_url: str
    store: Path
    log: Path
    process: subprocess.Popen[bytes]

    def faults(self, **spec: Any) -> None:
        r = httpx.post(self.sink_url + "/__faults", json=spec)
        assert r.status_code == 200, r.text


@contextlib.contextmanager
def _serve_handler(package: Path, sink_url: str, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``uvicorn handler:app`` as a user runs it, on a free loopback port.

    (Not ``--fd``: uvicorn opens a passed descriptor as AF_UNIX, so asyncio never sets
    TCP_NODELAY on its connections and every answer waits ~40 ms for a delayed ACK.)
    """
    env = clean_env()
    env.update(SEGMENT_WRITE_KEY=WRITE_KEY, SEGMENT_API_HOST=sink_url, SEGFN_SIGNATURE="stripe",
               SEGFN_SIGNING_SECRET=SIGNING_SECRET)
    for _ in range(3):  # another process may take the free port first: try another
        port = free_port()
        cmd = [sys.executable, "-m", "uvicorn", "handler:app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "30"]
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=package, env=env, stdout=subprocess.DEVNULL, stderr=err)
        url = f"http://127.0.0.1:{port}"
        for _ in range(400):  # bounded wait for the first answer
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/", timeout=1).status_code == 405:
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            break
    else:
        raise AssertionError(f"the exported handler did not start: {log.read_text()[-2000:]}")
    try:
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segfn_kit._export import export

    out = tmp_path_factory.mktemp("export") / "stripe_handler"
    return export(STRIPE, out, payloads=ROOT / "sample_payloads" / "stripe")


@pytest.fixture(scope="module")
def handler(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Handler]:
    tmp = tmp_path_factory.mktemp("handler")
    store = tmp / "sink.sqlite3"
    with running_sink(write_key=WRITE_KEY, store=store, process=True) as sink_url:
        with _serve_handler(package, sink_url, tmp / "handler.log") as (url, proc):
            yield Handler(url, sink_url, store, tmp / "handler.log", proc)
    text = (tmp / "handler.log").read_text(errors="replace")
    assert WRITE_KEY not in text and SIGNING_SECRET not in text, "a secret reached the handler's log"


def _body(i: int) -> bytes:
    return json.dumps(stripe_event(i), separators=(",", ":")).encode()


def _signed(body: bytes, timestamp: int | None = None) -> dict[str, str]:
    return {"Content-Type": "application/json", **sign("stripe", SIGNING_SECRET, body, timestamp=timestamp)}


# -- (a) fault tolerance -----------------------------------------------------------------------


async def _send_like_stripe(url: str, bodies: dict[int, bytes], statuses: dict[int, list[int]]) -> None:
    """Post each webhook until it is acknowledged (2xx), re-signing and re-sending on 5xx or a
    lost connection, as Stripe does (with shorter waits); at most 40 attempts each."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in bodies:
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            for attempt in range(40):
                try:
                    r = await client.post(url + "/", content=bodies[i], headers=_signed(bodies[i]))
                    status = r.status_code
                except httpx.TransportError:
                    status = 0
                statuses[i].append(status)
                if 200 <= status < 300 or 400 <= status < 500:
                    break
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))


@pytest.mark.timeout(LIMIT)
def test_a_fault_tolerance_every_event_lands_once(handler: Handler) -> None:
    start_index = 10_000_000  # ids of their own, apart from the load test's
    bodies = {i: _body(i) for i in range(start_index, start_index + WEBHOOKS)}
    fn = Function.from_file(STRIPE)
    expected: dict[str, dict[str, Any]] = {}
    for body in bodies.values():
        for event in fn.on_request(Request(body, {"Content-Type": "application/json"})).events:
            expected[event["messageId"]] = event
    handler.faults(fail_rate=0.3, mix={"500": 1, "429": 1, "drop": 1}, retry_after=1, seed=2026)
    statuses: dict[int, list[int]] = {i: [] for i in bodies}

    async def scenario() -> None:
        sending = asyncio.create_task(_send_like_stripe(handler.url, bodies, statuses))
        # an outage of the Tracking API longer than the handler's delivery budget, mid-run
        await asyncio.sleep(2.0)
        await asyncio.to_thread(handler.faults, fail_rate=1.0)
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(handler.faults, fail_rate=0.3)
        await sending

    started = time.monotonic()
    asyncio.run(scenario())
    elapsed = time.monotonic() - started
    handler.faults(fail_rate=0.0)

    stats = httpx.get(handler.sink_url + "/__stats").json()
    stored = read_sink(handler.store)
    stored = stored[stored["message_id"].isin(expected)]
    first = Counter(s[0] for s in statuses.values())
    resent = sum(1 for s in statuses.values() if len(s) > 1)
    final = Counter(s[-1] for s in statuses.values())
    unique = set(stored["message_id"])
    missing = set(expected) - unique
    print()
    figure("(a) webhooks sent", f"{WEBHOOKS:,} in {elapsed:.1f} s, {CONCURRENCY} concurrent")
    figure("(a) first answers", dict(sorted(first.items())))
    figure("(a) webhooks re-sent after 5xx or a lost connection", resent)
    figure("(a) final answers", dict(sorted(final.items())))
    figure("(a) sink faults injected", {k: v for k, v in stats.items() if k.startswith("fault_")})
    figure("(a) events expected / unique in sink", f"{len(expected):,} / {len(unique):,}")
    figure("(a) missing / extra messageIds", f"{len(missing)} / {len(unique - set(expected))}")
    figure("(a) redelivered copies (same messageId, deduplicated)", int(stored["duplicate"].sum()))

    assert all(200 <= s[-1] < 300 for s in statuses.values()), final
    assert resent > 0  # the outage made the handler answer 5xx, and the sender re-sent
    assert not missing
    assert unique == set(expected)
    volatile = {"receivedAt", "sentAt"}
    for row in stored.itertuples():
        payload = {k: v for k, v in row.payload.items() if k not in volatile}
        assert payload == expected[row.message_id], row.message_id  # an id never carries other content


# -- (b) load ----------------------------------------------------------------------------------


def test_b_load_every_request_answered(handler: Handler) -> None:
    handler.faults(fail_rate=0.0)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + LOAD_SECONDS

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        i = n
        while time.monotonic() < deadline:
            body = _body(i)
            i += CONCURRENCY
            t0 = time.perf_counter()
            try:
                r = await client.post(handler.url + "/", content=body, headers=_signed(body))
                statuses[r.status_code] += 1
            except httpx.TransportError as exc:
                errors[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)

    async def main() -> None:
        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            await asyncio.gather(*(worker(n, client) for n in range(CONCURRENCY)))

    started = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - started
    total = sum(statuses.values()) + sum(errors.values())
    cuts = statistics.quantiles(latencies, n=100)
    print()
    figure("(b) requests", f"{total:,} in {elapsed:.1f} s ({total / elapsed:,.0f}/s), {CONCURRENCY} concurrent")
    figure("(b) answers", dict(sorted(statuses.items())))
    figure("(b) unanswered (transport errors)", dict(errors) or 0)
    figure("(b) latency p50 / p99", f"{cuts[49] * 1000:.1f} ms / {cuts[98] * 1000:.1f} ms")
    assert total > 0 and not errors
    assert set(statuses) == {200}
    assert handler.process.poll() is None


# -- (c) replay --------------------------------------------------------------------------------


def _peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)\n"
    "sys.exit(code)\n"
)


@pytest.mark.timeout(LIMIT)
def test_c_replay_killed_and_resumed_without_loss(tmp_path: Path) -> None:
    started = time.monotonic()
    archive = write_archive(tmp_path / "archive.jsonl.gz", REPLAY_PAYLOADS)
    figure("(c) archive written", f"{REPLAY_PAYLOADS:,} payloads, {archive.stat().st_size / 1e6:.1f} MB gzip, "
                                   f"{time.monotonic() - started:.1f} s")
    store = tmp_path / "sink.sqlite3"
    ckpt = tmp_path / "replay.ckpt"
    total_events = expected_events(REPLAY_PAYLOADS)
    env = {**os.environ, "SEGMENT_WRITE_KEY": WRITE_KEY}
    with running_sink(write_key=WRITE_KEY, store=store, process=True) as url:
        cmd = [sys.executable, "-m", "segfn_kit", "replay", str(STRIPE), str(archive), "--to", url,
               "--checkpoint", str(ckpt), "--no-progress"]
        # first run: killed (SIGKILL, no chance to tidy up) once a third is checkpointed
        first = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        peak_first = 0.0
        killed_at = 0
        while first.poll() is None and time.monotonic() - t0 < LIMIT / 3:
            peak_first = max(peak_first, _peak_rss_mb(first.pid))
            with contextlib.suppress(OSError, ValueError, KeyError):
                killed_at = sum(entry.position for entry in Checkpoint(ckpt).entries())
                if killed_at >= REPLAY_PAYLOADS // 3:
                    first.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.05)
        first.wait(30)
        first_time = time.monotonic() - t0
        assert first.stdout is not None and first.stderr is not None
        first.stdout.close()
        first.stderr.close()
        assert first.returncode == -signal.SIGKILL, "the replay ended before it could be killed"
        # second run: the same command resumes
        t1 = time.monotonic()
        second = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=LIMIT / 2)
        second_time = time.monotonic() - t1
    assert second.returncode == 0, second.stdout + second.stderr
    peak_second = int(second.stdout.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) / 1024
    summary = second.stdout.rsplit("PEAK_RSS_KB", 1)[0]
    resumed = int(summary.split("read, ")[1].split(" skipped")[0].replace(",", ""))

    stats = read_sink(store, requests=True)
    frame = read_sink(store)
    unique = frame["message_id"].nunique()
    redelivered = int(frame["duplicate"].sum())
    # the ids of a sample of payloads, computed independently, are all there
    fn = Function.from_file(STRIPE)
    sample = range(0, REPLAY_PAYLOADS, max(1, REPLAY_PAYLOADS // 2_000))
    wanted = {e["messageId"] for i in sample for e in fn.on_request(Request(_body(i))).events}
    present = wanted & set(frame["message_id"])
    print()
    figure("(c) first run killed after", f"{first_time:.1f} s, checkpoint at {killed_at:,} payloads")
    figure("(c) second run resumed", f"{resumed:,} payloads skipped, {second_time:.1f} s")
    figure("(c) events expected / unique in sink", f"{total_events:,} / {unique:,}")
    figure("(c) redelivered copies (chunk in flight at the kill)", f"{redelivered:,}")
    figure("(c) sampled messageIds present", f"{len(present):,} / {len(wanted):,}")
    figure("(c) requests to the sink", f"{len(stats):,} ({stats['events'].sum():,} events stored)")
    rate = (total_events - expected_events(killed_at)) / second_time
    figure("(c) events/s (resumed run, end to end)", f"{rate:,.0f}")
    figure("(c) peak memory of segfn replay", f"{max(peak_first, peak_second):.0f} MB (target < 200 MB)")
    print("\n".join("      " + line for line in summary.strip().splitlines()), flush=True)

    assert resumed >= killed_at > 0
    assert unique == total_events
    assert present == wanted
    assert redelivered <= 4 * 2_500  # at most the one checkpoint chunk that was in flight
    assert max(peak_first, peak_second) < 200


# -- (d) bad input -----------------------------------------------------------------------------


def _raw_http(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 else 0


def test_d_hostile_requests_get_the_right_status(handler: Handler) -> None:
    url = handler.url + "/"
    good = _body(1)
    now = int(time.time())
    deep = b"[" * 100_000 + b"]" * 100_000
    huge_size = 100 * 1024 * 1024

    def huge() -> Iterator[bytes]:
        block = b" " * (1024 * 1024)
        for _ in range(huge_size // len(block)):
            yield block

    cases: list[tuple[str, int, dict[str, Any]]] = [
        ("malformed JSON", 400, {"content": b'{"type": "customer.created",', "sign": True}),
        ("invalid UTF-8", 400, {"content": b'{"type": "\xff\xfe"}', "sign": True}),
        ("deep nesting", 400, {"content": deep, "sign": True}),
        ("wrong signature", 401, {"content": good, "headers": _signed(good.replace(b"evt_", b"evx_"))}),
        ("no signature", 401, {"content": good, "headers": {"Content-Type": "application/json"}}),
        ("stale signature, replayed", 401, {"content": good, "headers": _signed(good, timestamp=now - 3_600)}),
        ("signature from the future", 401, {"content": good, "headers": _signed(good, timestamp=now + 3_600)}),
        ("signature with the wrong secret", 401, {"content": good, "headers": {
            "Content-Type": "application/json", **sign("stripe", "whsec_guess", good)}}),
        ("GET instead of POST", 405, {"method": "GET"}),
        ("XML body", 415, {"content": b"<xml/>", "headers": {"Content-Type": "application/xml"}}),
        ("100 MB body", 413, {"content": "huge", "sign": False}),
    ]
    results: list[tuple[str, int, int]] = []
    with httpx.Client(timeout=60) as client:
        for name, want, spec in cases:
            content = spec.get("content", b"")
            headers = spec.get("headers")
            if spec.get("sign"):
                headers = _signed(content)
            try:
                if content == "huge":
                    r = client.post(url, content=huge(), headers={"Content-Type": "application/json",
                                                                  "Content-Length": str(huge_size)})
                else:
                    r = client.request(spec.get("method", "POST"), url, content=content, headers=headers)
                got = r.status_code
                assert SIGNING_SECRET not in r.text and WRITE_KEY not in r.text
            except httpx.TransportError:
                got = 0  # the server closed the connection mid-upload
            results.append((name, want, got))

    injected = b"X-Injected: yes"
    raw_cases = [
        # a bare LF ends a header line (RFC 9112 lets servers accept it): two headers, no signature
        ("header line split by a bare LF", 401,
         b"POST / HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1\nX-Injected: yes\r\nContent-Length: 2\r\n\r\n{}"),
        ("NUL in a header value", 400,
         b"POST / HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1\x00v1=0\r\nContent-Length: 2\r\n\r\n{}"),
        ("space in a header name", 400,
         b"POST / HTTP/1.1\r\nHost: x\r\nStripe Signature: x\r\nContent-Length: 2\r\n\r\n{}"),
        ("CRLF injected through the query string", 401,
         b"POST /?next=%0d%0aX-Injected:%20yes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Connection: close\r\nContent-Length: 2\r\n\r\n{}"),
        ("duplicate signature headers, one forged", 401,
         b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nStripe-Signature: t=1,v1=00\r\n"
         b"Stripe-Signature: t=2,v1=11\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"),
    ]
    for name, want, raw in raw_cases:
        response = _raw_http(handler.url, raw)
        head = response.split(b"\r\n\r\n", 1)[0]
        assert injected not in head, name
        results.append((name, want, _status_of(response)))

    print()
    for name, want, got in results:
        figure(f"(d) {name}", f"{got} (expected {want})")
    still = httpx.post(url, content=good, headers=_signed(good), timeout=30)
    figure("(d) a good webhook afterwards", still.status_code)
    assert [(n, got) for n, _, got in results] == [(n, want) for n, want, _ in results]
    assert still.status_code == 200
    assert handler.process.poll() is None

