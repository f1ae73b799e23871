"""The capture server: a real uvicorn server on loopback, real HTTP requests with httpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from segfn_kit import load_payloads
from segfn_kit._capture import serving, write_atomic
from segfn_kit._payloads import request_from_row
from segfn_kit.runtime import sign, verify_signature
from tests._servers import free_port

SECRET = "whsec_capture_test_secret"


def saved(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".json")


def test_records_a_request_as_an_envelope(tmp_path: Path) -> None:
    body = b'{"id": "evt_1", "type": "customer.created",  "amount": 18446744073709551616}'
    with serving(tmp_path) as url:
        assert url.startswith("http://127.0.0.1:")
        response = httpx.post(
            f"{url}/stripe/hook?x=1&x=2&y=3",
            content=body,
            headers={"Content-Type": "application/json", "X-Custom": "a"},
        )
    assert response.status_code == 200
    files = saved(tmp_path)
    assert [p.name for p in files] == [response.json()["saved"]]
    envelope = json.loads(files[0].read_text())
    assert envelope["method"] == "POST"
    assert envelope["path"] == "/stripe/hook"
    assert envelope["query"] == {"x": ["1", "2"], "y": "3"}
    assert envelope["body"] == body.decode()
    assert envelope["headers"]["x-custom"] == "a"
    assert envelope["received_at"].endswith("Z")
    assert "signature" not in envelope
    # what was saved loads back with the exact bytes
    frame = load_payloads(tmp_path)
    row = frame.iloc[0]
    assert row["format"] == "envelope" and row["event_type"] == "customer.created"
    assert request_from_row(row).content == body
    assert row["body.amount"] == 2**64
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_non_utf8_body_is_saved_as_base64(tmp_path: Path) -> None:
    body = b"\x89PNG\r\n\x1a\n\xff\x00"
    with serving(tmp_path) as url:
        assert httpx.put(f"{url}/upload", content=body).status_code == 200
    envelope = json.loads(saved(tmp_path)[0].read_text())
    assert envelope["method"] == "PUT"
    assert "body" not in envelope
    row = load_payloads(tmp_path).iloc[0]
    assert request_from_row(row).content == body


def test_body_over_the_cap_gets_413_and_is_not_saved(tmp_path: Path) -> None:
    with serving(tmp_path, max_body=1000) as url:
        big = httpx.post(f"{url}/x", content=b"x" * 1001)
        ok = httpx.post(f"{url}/x", content=b"x" * 1000)

        def chunks():  # no Content-Length: the cap holds while streaming too
            for _ in range(5):
                yield b"y" * 400

        streamed = httpx.post(f"{url}/x", content=chunks())
    assert big.status_code == 413 and "1000 bytes" in big.json()["error"]
    assert streamed.status_code == 413
    assert ok.status_code == 200
    assert len(saved(tmp_path)) == 1


def test_signature_checked_and_recorded_without_the_secret(tmp_path: Path) -> None:
    body = b'{"id": "evt_2", "type": "invoice.paid"}'
    with serving(tmp_path, signature="stripe", secret=SECRET) as url:
        good = httpx.post(f"{url}/s", content=body, headers=sign("stripe", SECRET, body))
        bad = httpx.post(f"{url}/s", content=body, headers=sign("stripe", "wrong", body))
        missing = httpx.post(f"{url}/s", content=body)
    assert good.status_code == bad.status_code == missing.status_code == 200
    names = [good.json()["saved"], bad.json()["saved"], missing.json()["saved"]]
    envelopes = [json.loads((tmp_path / n).read_text()) for n in names]
    assert [e["signature"]["valid"] for e in envelopes] == [True, False, False]
    assert envelopes[1]["signature"]["reason"] == "signature mismatch"
    assert "missing header" in envelopes[2]["signature"]["reason"]
    for path in saved(tmp_path):
        assert SECRET not in path.read_text()
    # the saved raw body still verifies later (the signature is over the bytes as received)
    row = load_payloads(tmp_path / names[0]).iloc[0]
    request = request_from_row(row)
    assert verify_signature("stripe", SECRET, request.headers, request.content, tolerance=0)


def test_many_requests_give_unique_files(tmp_path: Path) -> None:
    with serving(tmp_path) as url, httpx.Client() as client:
        for i in range(20):
            assert client.post(f"{url}/hook", json={"n": i}).status_code == 200
    frame = load_payloads(tmp_path)
    assert sorted(b["n"] for b in frame["body"]) == list(range(20))


def test_write_atomic_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_atomic(target, b"{}")
    assert target.read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_unknown_scheme_or_missing_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown signature scheme"), serving(tmp_path, signature="nope", secret="s"):
        pass
    with pytest.raises(ValueError, match="needs a secret"), serving(tmp_path, signature="github"):
        pass


def test_cli_capture_serves_until_stopped(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CAPTURE_TEST_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "segfn_kit", "capture", "--out", str(tmp_path), "--port", str(port),
         "--signature", "github", "--secret-env", "CAPTURE_TEST_SECRET"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        body = b'{"zen": "Keep it logically awesome."}'
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/gh", content=body,
                                      headers={**sign("github", SECRET, body), "X-GitHub-Event": "ping"})
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "signature ok" in out
    assert SECRET not in out + err
    row = load_payloads(tmp_path).iloc[0]
    assert row["event_type"] == "ping"


def test_cli_capture_refuses_a_missing_secret(tmp_path: Path) -> None:
    from segfn_kit._cli import main

    assert main(["capture", "--out", str(tmp_path), "--signature", "stripe"]) == 2
    assert main(["capture", "--out", str(tmp_path), "--signature", "stripe", "--secret-env", "UNSET_VAR_X"]) == 2
