"""The bundled Zendesk destination over the sample events, with every failure scripted."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from segfn_kit import Responses, run, sample_events
from segfn_kit._destination import RetryPolicy, run_destination
from segfn_kit.examples import example_path
from segfn_kit.runtime import Function

SETTINGS = {"subdomain": "acme", "email": "agent@acme.example", "apiToken": "zdTok3n-9f8e7d6c5b4a"}
TICKETS = "https://acme.zendesk.com/api/v2/tickets.json"
USERS = "https://acme.zendesk.com/api/v2/users/create_or_update.json"
ORDER_FAILED = {
    "type": "track", "userId": "cus_1", "messageId": "m-1", "event": "Order Failed",
    "properties": {"order_id": "ord_1", "total": 84.5, "email": "jenny@example.com", "name": "Jenny Rosen"},
}
ONCE = RetryPolicy(max_attempts=1)


@pytest.fixture(scope="module")
def zendesk() -> Function:
    return Function.from_file(example_path("zendesk_destination"))


@pytest.fixture(scope="module")
def samples(samples_dir: Path) -> Path:
    return samples_dir / "segment_events" / "support_events.jsonl"


def test_api_token_is_declared_secret(zendesk: Function) -> None:
    assert zendesk.kind == "destination"
    assert zendesk.declared_settings["apiToken"]["secret"] is True
    assert zendesk.settings(SETTINGS).secrets >= {"apiToken"}


def test_sample_events_outcomes(zendesk: Function, samples: Path) -> None:
    out = run_destination(zendesk, [samples], SETTINGS)
    by_event = [
        (e["type"], e.get("event"), o)
        for e, o in zip(sample_events(samples)["event"], out["outcome"], strict=True)
    ]
    assert by_event == [
        ("identify", None, "ok"),
        ("track", "Order Failed", "ok"),
        ("track", "Support Requested", "ok"),
        ("track", "Product Viewed", "EventNotSupported"),
        ("track", "Support Requested", "ValidationError"),
        ("page", None, "EventNotSupported"),
        ("identify", None, "ok"),
        ("track", "Refund Requested", "ok"),
    ]
    assert "no email" in out["error"].iloc[4]
    assert [len(r) for r in out["requests"]] == [1, 1, 1, 0, 0, 0, 1, 1]


def test_ticket_request_carries_requester_subject_body_priority_tags(zendesk: Function) -> None:
    row = run_destination(zendesk, [ORDER_FAILED], SETTINGS).iloc[0]
    (request,) = row["requests"]
    assert (request["method"], request["url"]) == ("POST", TICKETS)
    ticket = request["body"]["ticket"]
    assert ticket["requester"] == {"name": "Jenny Rosen", "email": "jenny@example.com"}
    assert ticket["subject"] == "Order Failed: ord_1"
    assert ticket["comment"]["body"].startswith("Order Failed for jenny@example.com.")
    assert "order_id: ord_1" in ticket["comment"]["body"]
    assert ticket["priority"] == "high"
    assert ticket["tags"] == ["segment", "order_failed"]
    assert request["headers"]["Authorization"] == "Basic ••••••"


def test_identify_creates_or_updates_the_user(zendesk: Function) -> None:
    identify = {"type": "identify", "userId": "cus_9", "traits": {"email": "li@example.com", "name": "Li Wei",
                                                                 "company": "Wei Ltd"}}
    (request,) = run_destination(zendesk, [identify], SETTINGS)["requests"].iloc[0]
    assert (request["method"], request["url"]) == ("POST", USERS)
    assert request["body"] == {"user": {"email": "li@example.com", "name": "Li Wei", "external_id": "cus_9",
                                        "organization": {"name": "Wei Ltd"}}}
    missing = run_destination(zendesk, [{"type": "identify", "userId": "cus_9", "traits": {}}], SETTINGS)
    assert missing["outcome"].iloc[0] == "ValidationError"
    assert "traits.email" in missing["error"].iloc[0]


def test_basic_auth_is_email_token_and_api_token_on_the_wire(zendesk: Function) -> None:
    seen: list[str] = []

    def capture(request: httpx.Request) -> int:
        seen.append(request.headers["Authorization"])
        return 201

    run_destination(zendesk, [ORDER_FAILED], SETTINGS, responses=Responses(capture))
    scheme, token = seen[0].split(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == "agent@acme.example/token:zdTok3n-9f8e7d6c5b4a"


@pytest.mark.parametrize(
    ("answer", "outcome", "fragment"),
    [
        ({"status": 429, "retry_after": 60}, "RetryError", "rate limit (429), Retry-After 60 s"),
        (500, "RetryError", "server error 500"),
        (503, "RetryError", "server error 503"),
        ("timeout", "RetryError", "did not answer in time"),
        ("connect_error", "RetryError", "cannot reach Zendesk"),
        ({"status": 422, "json": {"error": "RecordInvalid"}}, "ValidationError", "refused the request: 422"),
    ],
)
def test_failures_map_to_segment_errors(zendesk: Function, answer: Any, outcome: str, fragment: str) -> None:
    row = run_destination(zendesk, [ORDER_FAILED], SETTINGS, responses=Responses(answer), retry=ONCE).iloc[0]
    assert row["outcome"] == outcome
    assert fragment in row["error"]


def test_rate_limit_then_success_is_delivered_after_the_retry_after_wait(zendesk: Function) -> None:
    script = Responses().add(TICKETS, method="POST", respond=[{"status": 429, "retry_after": 1800}, 201])
    row = run_destination(zendesk, [ORDER_FAILED], SETTINGS, responses=script, strict=True).iloc[0]
    assert row["final"] == "delivered"
    assert [(a["outcome"], a["delay_s"]) for a in row["attempts"]] == [("RetryError", 0.0), ("ok", 1800.0)]


def test_no_secret_anywhere_in_the_results_or_their_json_lines(zendesk: Function, samples: Path) -> None:
    from segfn_kit import to_jsonl

    out = run(zendesk, [samples], SETTINGS, responses=Responses(["timeout", 201]))
    encoded = base64.b64encode(f"{SETTINGS['email']}/token:{SETTINGS['apiToken']}".encode()).decode()
    text = json.dumps(out.drop(columns=["returned"]).to_dict("records"), default=str) + (to_jsonl(out) or "")
    assert SETTINGS["apiToken"] not in text
    assert encoded not in text
    assert '"requests"' in (to_jsonl(out) or "")


def test_the_notebook_saved_outputs_hold_no_secret(project_root: Path) -> None:
    path = project_root / "notebooks" / "03_zendesk_destination_function.ipynb"
    notebook = json.loads(path.read_text(encoding="utf-8"))
    sources = "".join("".join(c["source"]) for c in notebook["cells"])
    token = "zd-demo-4f9c2b7e1a6d"
    assert f'"apiToken": "{token}"' in sources  # the token this check looks for is the notebook's
    credential = base64.b64encode(f"agent@acme.example/token:{token}".encode()).decode()
    outputs = json.dumps([c.get("outputs", []) for c in notebook["cells"] if c["cell_type"] == "code"],
                         ensure_ascii=False)
    assert outputs.count("Basic ••••••") >= 1  # the requests are shown, masked
    assert token not in outputs and credential not in outputs
    # nor in the saved widget state or anywhere else but the cell that sets it
    whole = path.read_text(encoding="utf-8")
    assert whole.count(token) == sources.count(token) == 1
    assert credential not in whole


def test_segfn_run_with_the_sample_response_script(samples: Path, samples_dir: Path, tmp_path: Path) -> None:
    """The real command, in a subprocess: retries play out, requests are masked."""
    import subprocess
    import sys

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(SETTINGS))
    done = subprocess.run(
        [sys.executable, "-m", "segfn_kit", "run", str(example_path("zendesk_destination")), str(samples),
         "--settings", str(settings), "--responses", str(samples_dir / "responses" / "zendesk_rate_limited.json"),
         "--jsonl"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {r["payload_id"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert len(rows) == 8
    ticket = rows["support_events.jsonl#2"]
    assert ticket["outcome"] == "ok"
    assert [r["response"]["status"] for r in ticket["requests"]] == [429, 201]
    user = rows["support_events.jsonl#1"]
    assert user["outcome"] == "ok" and "error" in user["requests"][0]
    assert SETTINGS["apiToken"] not in done.stdout + done.stderr
