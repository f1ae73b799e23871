"""Shared fixtures: project paths and the shared real-payload corpora."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._servers import free_port

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_payloads"
CORPORA = ROOT.parent / "shared" / "corpora"
UV = ROOT / ".tools" / "bin" / "uv"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    """../shared/corpora; tests that use it skip cleanly when it is absent."""
    if not CORPORA.is_dir():
        pytest.skip("../shared/corpora is absent: real-payload conformance tests skipped")
    return CORPORA


@pytest.fixture
def local_api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP API on loopback (uvicorn): answers 202 ``{"accepted": true}``, records requests."""
    import threading
    import time

    import uvicorn

    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append({"path": scope["path"], "body": body.decode()})
        await send({"type": "http.response.start", "status": 202,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"accepted": true}'})

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the local API did not start"
    yield f"http://127.0.0.1:{port}", received
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment holding only the packages' requirements and pytest."""
    if not UV.is_file():
        pytest.fail(f"{UV} is missing: run `make install` first")
    venv = tmp_path_factory.mktemp("clean") / "venv"
    subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    requirements = (ROOT / "tests" / "golden" / "stripe_source" / "requirements.txt").read_text().split("\n")
    wanted = [r for r in requirements if r and not r.startswith("#")] + ["pytest"]
    subprocess.run([str(UV), "pip", "install", "--quiet", "--python", str(python), *wanted], check=True)
    return python
