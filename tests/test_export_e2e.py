"""End to end: the exported Stripe handler under a real uvicorn, signed webhooks posted with
httpx, events landing in the local Tracking-API-compatible sink, all on 127.0.0.1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segfn_kit._payloads import iter_payloads
from segfn_kit._sink import read_sink, running_sink
from segfn_kit.runtime import sign
from tests.golden import regen

WRITE_KEY = "wk-e2e-0c7d3f"
SIGNING_SECRET = "whsec_e2e_5be1a2"
DROPPED_HEADERS = {"content-length", "host", "stripe-signature"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return regen.export_case("stripe_source", tmp_path_factory.mktemp("e2e") / "stripe_source")


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    store = tmp_path_factory.mktemp("sink") / "sink.sqlite3"
    with running_sink(write_key=WRITE_KEY, store=store) as url:
        yield url, store


@pytest.fixture(scope="module")
def server(package: Path, sink: tuple[str, Path]) -> Iterator[str]:
    """The exported ``handler:app`` under uvicorn, configured from the environment only."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "SEGFN_", "PYTHONPATH"))}
    env.update({
        "SEGMENT_WRITE_KEY": WRITE_KEY,
        "SEGMENT_API_HOST": sink[0],
        "SEGFN_SIGNATURE": "stripe",
        "SEGFN_SIGNING_SECRET": SIGNING_SECRET,
        "SEGFN_DELIVERY_BUDGET": "2",
    })
    log = (package / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "handler:app", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--lifespan", "on"],
        cwd=package, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((package / "server.log").read_text()) from None
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def webhooks(package: Path) -> list[tuple[bytes, dict[str, str], dict[str, Any]]]:
    """(raw body, headers, expected case) for every sample Stripe payload."""
    cases = {
        c["payload_id"]: c
        for c in map(json.loads, (package / "tests" / "cases.jsonl").read_text().splitlines())
    }
    out = []
    for payload in iter_payloads(str(regen.CASES["stripe_source"][1][0])):
        headers = {k: v for k, v in payload.headers.items() if k.lower() not in DROPPED_HEADERS}
        out.append((payload.raw.encode("utf-8"), headers, cases[payload.payload_id]))
    return out


def expected_status(outcome: str) -> int:
    return {"ok": 200, "EventNotSupported": 200, "ValidationError": 400, "InvalidEventPayload": 400}[outcome]


def test_signed_stripe_webhooks_land_in_the_sink(server: str, sink: tuple[str, Path], package: Path) -> None:
    before = len(read_sink(sink[1]))
    expected_ids: list[str] = []
    with httpx.Client(base_url=server, timeout=10) as client:
        for body, headers, case in webhooks(package):
            response = client.post("/webhooks/stripe", content=body,
                                   headers={**headers, **sign("stripe", SIGNING_SECRET, body)})
            assert response.status_code == expected_status(case["outcome"]), (case["payload_id"], response.text)
            if response.status_code == 200:
                expected_ids += [e["messageId"] for e in case["events"]]
    assert len(expected_ids) >= 10
    stored = read_sink(sink[1]).iloc[before:]
    assert list(stored["message_id"]) == expected_ids
    assert not stored["duplicate"].any()
    events = {e["messageId"]: e for _, _, c in webhooks(package) for e in c["events"]}
    for _, row in stored.iterrows():
        sent = {k: v for k, v in row["payload"].items() if k in events[row["message_id"]]}
        assert sent == events[row["message_id"]]


def test_unsigned_badly_signed_and_stale_webhooks_are_refused(server: str, sink: tuple[str, Path],
                                                               package: Path) -> None:
    before = len(read_sink(sink[1]))
    body, headers, _ = webhooks(package)[3]
    stale = sign("stripe", SIGNING_SECRET, body, timestamp=int(time.time()) - 600)
    wrong = sign("stripe", "whsec_someone_else", body)
    with httpx.Client(base_url=server, timeout=10) as client:
        for extra in ({}, wrong, stale):
            assert client.post("/", content=body, headers={**headers, **extra}).status_code == 401
        assert client.get("/").status_code == 405
        assert client.post("/", content=b"{", headers={"Content-Type": "application/json",
                                                       **sign("stripe", SIGNING_SECRET, b"{")}).status_code == 400
        big = b"x" * (600 * 1024)
        assert client.post("/", content=big, headers={"Content-Type": "application/json"}).status_code == 413
    assert len(read_sink(sink[1])) == before


def test_a_failing_tracking_api_is_never_acknowledged_and_the_retry_lands(
    server: str, sink: tuple[str, Path], package: Path
) -> None:
    url, store = sink
    body, headers, case = next(w for w in webhooks(package) if w[2]["outcome"] == "ok" and w[2]["events"])
    ids = [e["messageId"] for e in case["events"]]
    before = len(read_sink(store))
    with httpx.Client(base_url=server, timeout=20) as client:
        httpx.post(f"{url}/__faults", json={"fail_rate": 1.0, "mix": {"500": 1}}).raise_for_status()
        try:
            failed = client.post("/", content=body, headers={**headers, **sign("stripe", SIGNING_SECRET, body)})
        finally:
            httpx.post(f"{url}/__faults", json={"fail_rate": 0.0}).raise_for_status()
        assert failed.status_code == 502
        assert len(read_sink(store)) == before
        # the sender retries, as Stripe does after a non-2xx answer; same payload, same messageIds
        retried = client.post("/", content=body, headers={**headers, **sign("stripe", SIGNING_SECRET, body)})
        assert retried.status_code == 200
    assert list(read_sink(store).iloc[before:]["message_id"]) == ids
    log = (package / "server.log").read_text()
    assert WRITE_KEY not in log and SIGNING_SECRET not in log
    outcomes = [json.loads(line)["outcome"] for line in log.splitlines() if line.startswith('{"logger"')]
    assert "delivery_failed" in outcomes


def test_command_line_delivers_to_the_sink(package: Path, sink: tuple[str, Path], tmp_path: Path) -> None:
    url, store = sink
    before = len(read_sink(store))
    payload = regen.CASES["stripe_source"][1][0] / "invoice.paid.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "SEGFN_", "PYTHONPATH"))}
    env.update({"SEGMENT_WRITE_KEY": WRITE_KEY, "SEGMENT_API_HOST": url})
    result = subprocess.run([sys.executable, "-m", "handler", "--deliver", str(payload)], cwd=package, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["delivered"] == len(record["events"]) >= 1
    assert list(read_sink(store).iloc[before:]["message_id"]) == [e["messageId"] for e in record["events"]]
    assert WRITE_KEY not in result.stdout + result.stderr
