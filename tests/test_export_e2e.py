"""End to end: the exported Stripe handler under a real uvicorn, signed webhooks posted with
httpx, events landing in the local Tracking-API-compatible sink, all on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
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
from tests._servers import clean_env, free_port, serving
from tests.golden import regen

WRITE_KEY = "wk-e2e-0c7d3f"
SIGNING_SECRET = "whsec_e2e_5be1a2"
DROPPED_HEADERS = {"content-length", "host", "stripe-signature"}


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
    env = clean_env()
    env.update({
        "SEGMENT_WRITE_KEY": WRITE_KEY,
        "SEGMENT_API_HOST": sink[0],
        "SEGFN_SIGNATURE": "stripe",
        "SEGFN_SIGNING_SECRET": SIGNING_SECRET,
        "SEGFN_DELIVERY_BUDGET": "2",
    })
    with serving(package, env, log_path=package / "server.log", args=["--lifespan", "on"]) as (url, _):
        yield url


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
    env = clean_env()
    env.update({"SEGMENT_WRITE_KEY": WRITE_KEY, "SEGMENT_API_HOST": url})
    result = subprocess.run([sys.executable, "-m", "handler", "--deliver", str(payload)], cwd=package, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["delivered"] == len(record["events"]) >= 1
    assert list(read_sink(store).iloc[before:]["message_id"]) == [e["messageId"] for e in record["events"]]
    assert WRITE_KEY not in result.stdout + result.stderr


# -- Segment.set objects: delivered to the Objects API (here the same sink) before the answer ---

OBJECTS_FUNCTION = '''\
from segfn_kit.runtime import Segment


def on_request(request, settings):
    body = request.json()
    Segment.track(user_id=body["user"], event="Room Booked", properties={"room": body["room"]})
    for room in body["rooms"]:
        Segment.set(collection="rooms", id=room["id"], properties={"beds": room["beds"]})
    Segment.set(collection="hotels", id=body["hotel"], properties={"rooms": len(body["rooms"])})
'''


def booking(n: int) -> bytes:
    rooms = [{"id": f"r{n}-{i}", "beds": i % 3 + 1} for i in range(n)]
    return json.dumps({"user": f"u{n}", "room": rooms[0]["id"], "rooms": rooms, "hotel": f"h{n}"}).encode()


@pytest.fixture(scope="module")
def objects_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segfn_kit._export import export

    tmp = tmp_path_factory.mktemp("objects")
    (tmp / "booking.py").write_text(OBJECTS_FUNCTION)
    (tmp / "payload.json").write_bytes(booking(2))
    return export(tmp / "booking.py", tmp / "booking", payloads=[tmp / "payload.json"])


@pytest.fixture(scope="module")
def objects_sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    store = tmp_path_factory.mktemp("objects_sink") / "sink.sqlite3"
    with running_sink(write_key=WRITE_KEY, store=store) as url:
        yield url, store


def package_env(sink_url: str, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update({"SEGMENT_WRITE_KEY": WRITE_KEY, "SEGMENT_API_HOST": sink_url, "SEGMENT_OBJECTS_HOST": sink_url,
                "SEGFN_DELIVERY_BUDGET": "1.5", **extra})
    return env


@pytest.fixture(scope="module")
def objects_server(objects_package: Path, objects_sink: tuple[str, Path]) -> Iterator[str]:
    with serving(objects_package, package_env(objects_sink[0]), log_path=objects_package / "server.log") as (url, _):
        yield url


def faults(sink_url: str, **spec: Any) -> None:
    httpx.post(f"{sink_url}/__faults", json={"fail_rate": 0.0, "script": [], **spec}).raise_for_status()


def test_webhook_with_objects_is_acknowledged_once_the_objects_landed(
    objects_server: str, objects_sink: tuple[str, Path]
) -> None:
    store = objects_sink[1]
    before = len(read_sink(store, objects=True))
    response = httpx.post(objects_server, content=booking(3), headers={"Content-Type": "application/json"},
                          timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "outcome": "ok", "events": 1, "objects": 4}
    stored = read_sink(store, objects=True).iloc[before:]
    assert stored[["collection", "id", "properties"]].values.tolist() == [
        ["rooms", "r3-0", {"beds": 1}], ["rooms", "r3-1", {"beds": 2}], ["rooms", "r3-2", {"beds": 3}],
        ["hotels", "h3", {"rooms": 3}],
    ]
    assert read_sink(store).iloc[-1]["event"] == "Room Booked"


def test_a_failing_objects_api_is_never_acknowledged_and_the_retry_lands(
    objects_server: str, objects_sink: tuple[str, Path], objects_package: Path
) -> None:
    url, store = objects_sink
    before = len(read_sink(store, objects=True))
    # the events' /v1/batch is accepted; every /v1/set answers 500 until the budget is spent
    faults(url, script=["ok"], fail_rate=1.0, mix={"500": 1})
    try:
        failed = httpx.post(objects_server, content=booking(4), headers={"Content-Type": "application/json"},
                            timeout=20)
    finally:
        faults(url)
    assert failed.status_code == 502, failed.text
    assert failed.json()["outcome"] == "delivery_failed" and "object(s) were not accepted" in failed.json()["error"]
    assert len(read_sink(store, objects=True)) == before
    requests = read_sink(store, requests=True)
    assert {"set"} <= set(requests[requests["status"] == 500]["endpoint"])
    # the sender retries the same payload: the events come again under the same messageIds
    retried = httpx.post(objects_server, content=booking(4), headers={"Content-Type": "application/json"},
                         timeout=20)
    assert retried.status_code == 200, retried.text
    assert read_sink(store, objects=True).iloc[before:]["id"].tolist() == ["r4-0", "r4-1", "r4-2", "r4-3", "h4"]
    log = (objects_package / "server.log").read_text()
    assert WRITE_KEY not in log


def test_invalid_object_is_answered_422_and_nothing_is_sent(
    objects_package: Path, objects_sink: tuple[str, Path], tmp_path: Path
) -> None:
    url, store = objects_sink
    before = (len(read_sink(store)), len(read_sink(store, requests=True)))
    bad = Path(shutil.copytree(objects_package, tmp_path / "bad"))
    (bad / "function.py").write_text(OBJECTS_FUNCTION.replace('collection="hotels"', 'collection="Hotels"'))
    script = (
        "import json, sys, handler\n"
        "event = {'version': '2.0', 'requestContext': {'http': {'method': 'POST'}}, 'rawPath': '/',\n"
        "         'headers': {'content-type': 'application/json'}, 'body': sys.argv[1], 'isBase64Encoded': False}\n"
        "print(json.dumps(handler.lambda_handler(event, None)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, booking(2).decode()], cwd=bad, env=package_env(url),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["statusCode"] == 422, answer
    assert "'Hotels' is not lower case" in json.loads(answer["body"])["error"]
    assert (len(read_sink(store)), len(read_sink(store, requests=True))) == before


def test_lambda_with_objects_delivers_to_the_sink(objects_package: Path, objects_sink: tuple[str, Path]) -> None:
    url, store = objects_sink
    before = len(read_sink(store, objects=True))
    script = (
        "import json, sys, handler\n"
        "event = {'version': '2.0', 'requestContext': {'http': {'method': 'POST'}}, 'rawPath': '/',\n"
        "         'headers': {'content-type': 'application/json'}, 'body': sys.argv[1], 'isBase64Encoded': False}\n"
        "print(json.dumps(handler.lambda_handler(event, None)))\n"
    )
    faults(url, script=["ok", "429"], retry_after=0)
    result = subprocess.run([sys.executable, "-c", script, booking(1).decode()], cwd=objects_package,
                            env=package_env(url), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["statusCode"] == 200
    assert read_sink(store, objects=True).iloc[before:]["id"].tolist() == ["r1-0", "h1"]


def test_command_line_delivers_objects(objects_package: Path, objects_sink: tuple[str, Path], tmp_path: Path) -> None:
    url, store = objects_sink
    before = len(read_sink(store, objects=True))
    payload = tmp_path / "booking.json"
    payload.write_bytes(booking(2))
    result = subprocess.run([sys.executable, "-m", "handler", "--deliver", str(payload)], cwd=objects_package,
                            env=package_env(url), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["delivered"], record["delivered_objects"]) == (1, 3)
    assert read_sink(store, objects=True).iloc[before:]["id"].tolist() == ["r2-0", "r2-1", "h2"]
    # the objects API down: the command says so and fails
    dead = subprocess.run([sys.executable, "-m", "handler", "--deliver", str(payload)], cwd=objects_package,
                          env=package_env(url, SEGMENT_OBJECTS_HOST=f"http://127.0.0.1:{free_port()}",
                                          SEGFN_DELIVERY_BUDGET="0.5"),
                          capture_output=True, text=True, timeout=60)
    assert dead.returncode == 1
    record = json.loads(dead.stdout)
    assert record["delivered_objects"] == 0 and "object(s) were not accepted" in record["error"]


def test_a_call_analytics_python_refuses_is_not_sent_and_the_answer_says_so(
    objects_package: Path, objects_sink: tuple[str, Path], tmp_path: Path
) -> None:
    url, store = objects_sink
    before = len(read_sink(store))
    refusing = Path(shutil.copytree(objects_package, tmp_path / "refusing"))
    (refusing / "function.py").write_text(
        "from segfn_kit.runtime import Segment\n\n\n"
        "def on_request(request, settings):\n"
        "    body = request.json()\n"
        "    Segment.track(user_id=body['user'], event='Room Booked')\n"
        "    Segment.track(user_id='', event='Nobody Booked')\n"
    )
    script = (
        "import json, sys, handler\n"
        "event = {'version': '2.0', 'requestContext': {'http': {'method': 'POST'}}, 'rawPath': '/',\n"
        "         'headers': {'content-type': 'application/json'}, 'body': sys.argv[1], 'isBase64Encoded': False}\n"
        "print(json.dumps(handler.lambda_handler(event, None)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, booking(5).decode()], cwd=refusing,
                            env=package_env(url), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 200 and body["events"] == 1, answer
    assert "call 2 was not sent" in body["error"] and "user_id" in body["error"]
    assert read_sink(store).iloc[before:]["event"].tolist() == ["Room Booked"]
