"""Scripted HTTP answers: interception of every httpx path, scripts, strictness, masking, live mode."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.request
from typing import Any

import httpx
import pytest

from segfn_kit import Responses
from segfn_kit._http import Call, NetworkBlocked, ScriptError, UnscriptedRequest, mask_request
from segfn_kit.runtime import MASK
from tests._servers import free_port


# -- interception ----------------------------------------------------------------------------
def test_default_answer_is_200_empty_json_for_every_httpx_path() -> None:
    async def with_async_client() -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.put("https://api.example.com/async", json={"a": 1})

    with Responses().intercept() as http, http.record("e1") as rec:
        module_level = httpx.post("https://api.example.com/module", json={"x": 1})
        with httpx.Client(base_url="https://api.example.com") as client:
            from_client = client.get("/client", params={"q": "1"})
        from_async = asyncio.run(with_async_client())
    for response in (module_level, from_client, from_async):
        assert response.status_code == 200
        assert response.json() == {}
    assert [(r["method"], r["url"]) for r in rec.requests] == [
        ("POST", "https://api.example.com/module"),
        ("GET", "https://api.example.com/client?q=1"),
        ("PUT", "https://api.example.com/async"),
    ]
    assert rec.requests[0]["body"] == {"x": 1}
    assert rec.requests[2]["body"] == {"a": 1}
    assert all(r["answered_by"] == "default" for r in rec.requests)


def test_preview_attempts_no_network_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A port nothing listens on: the scripted answer comes back, and no socket connects."""
    port = free_port()
    connects: list[Any] = []
    original = socket.socket.connect

    def spy(self: socket.socket, address: Any) -> None:
        connects.append(address)
        original(self, address)

    script = Responses().add(f"http://127.0.0.1:{port}/tickets", method="POST",
                             respond={"status": 201, "json": {"ticket": {"id": 7}}})
    with script.intercept() as http, http.record("e1") as rec:
        monkeypatch.setattr(socket.socket, "connect", spy)
        response = httpx.post(f"http://127.0.0.1:{port}/tickets", json={"subject": "hi"})
        async_response = asyncio.run(_async_post(f"http://127.0.0.1:{port}/tickets"))
    monkeypatch.undo()
    assert response.status_code == 201 and response.json() == {"ticket": {"id": 7}}
    assert async_response == 201
    assert connects == []
    assert [r["response"]["status"] for r in rec.requests] == [201, 201]
    # and without the interception the same call really fails: nothing listens there
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{port}/tickets", json={})


async def _async_post(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.post(url, json={})).status_code


def test_connections_outside_httpx_are_blocked_and_recorded() -> None:
    port = free_port()
    # urllib wraps the refusal in its own URLError (an OSError), as it does any connect failure
    with Responses().intercept() as http, http.record("e1") as rec, pytest.raises(OSError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
    assert "outside httpx" in str(info.value) and f"127.0.0.1:{port}" in str(info.value)
    assert rec.violations and rec.violations[0].startswith("NetworkBlocked:")
    with Responses().intercept() as http, http.record("e2"), pytest.raises(NetworkBlocked), socket.socket() as raw:
        raw.connect(("127.0.0.1", port))


def test_sockets_of_other_threads_are_not_blocked() -> None:
    """Only the handler's context is guarded: a server thread of the notebook keeps working."""
    results: list[str] = []

    def other_thread() -> None:
        with socket.socket() as s:
            try:
                s.connect(("127.0.0.1", free_port()))
            except NetworkBlocked:
                results.append("blocked")
            except OSError:
                results.append("refused")

    with Responses().intercept() as http, http.record("e1"):
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
    assert results == ["refused"]


# -- scripts ---------------------------------------------------------------------------------
def test_status_sequence_runs_per_event_and_repeats_its_last_answer() -> None:
    with Responses([429, 500, 201]).intercept() as http:
        with http.record("e1"):
            first = [httpx.get("https://x.example/").status_code for _ in range(4)]
        with http.record("e2"):
            second = [httpx.get("https://x.example/").status_code for _ in range(2)]
    assert first == [429, 500, 201, 201]
    assert second == [429, 500]


def test_rules_match_by_url_glob_method_and_respx_lookups() -> None:
    script = (
        Responses(404)
        .add("https://*.zendesk.com/api/v2/tickets.json", method="POST", json__ticket__priority="urgent",
             respond=503)
        .add("https://*.zendesk.com/api/v2/tickets.json", method="POST", respond=201)
        .add("https://*.zendesk.com/api/v2/users/*", respond={"status": 200, "json": {"user": {"id": 1}}})
    )
    with script.intercept() as http, http.record("e1") as rec:
        urgent = httpx.post("https://acme.zendesk.com/api/v2/tickets.json", json={"ticket": {"priority": "urgent"}})
        normal = httpx.post("https://acme.zendesk.com/api/v2/tickets.json", json={"ticket": {"priority": "low"}})
        wrong_method = httpx.get("https://acme.zendesk.com/api/v2/tickets.json")
        user = httpx.post("https://acme.zendesk.com/api/v2/users/create_or_update.json?x=1", json={})
    assert (urgent.status_code, normal.status_code, wrong_method.status_code) == (503, 201, 404)
    assert user.json() == {"user": {"id": 1}}
    assert [r["answered_by"].split(":")[0] for r in rec.requests] == ["rule1", "rule2", "default", "rule3"]


def test_callable_sees_the_request_and_the_call() -> None:
    seen: list[Call] = []

    def answer(request: httpx.Request, call: Call) -> Any:
        seen.append(call)
        if request.url.path == "/boom":
            return "connect_error"
        return {"status": 200 + call.index, "headers": {"X-Echo": request.headers["X-Id"]}}

    with Responses(answer).intercept() as http:
        with http.record("e1", {"type": "track"}) as rec:
            rec.attempt = 3
            a = httpx.get("https://x.example/a", headers={"X-Id": "1"})
            b = httpx.get("https://x.example/b", headers={"X-Id": "2"})
            with pytest.raises(httpx.ConnectError):
                httpx.get("https://x.example/boom", headers={"X-Id": "3"})
    assert (a.status_code, b.status_code, b.headers["X-Echo"]) == (200, 201, "2")
    assert [(c.event_id, c.attempt, c.index) for c in seen] == [("e1", 3, 0), ("e1", 3, 1), ("e1", 3, 2)]
    assert seen[0].event == {"type": "track"}
    assert rec.requests[2]["error"].startswith("ConnectError: scripted connect error")
    assert Responses(lambda request: None).default  # a callable of one argument is accepted


def test_timeouts_connection_errors_and_retry_after() -> None:
    script = Responses(["timeout", "connect_timeout", "connection_error",
                        {"status": 429, "retry_after": 30, "json": {"error": "slow down"}}])
    with script.intercept() as http, http.record("e1") as rec:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get("https://x.example/")
        with pytest.raises(httpx.ConnectTimeout):
            httpx.get("https://x.example/")
        with pytest.raises(httpx.ConnectError):
            httpx.get("https://x.example/")
        limited = httpx.get("https://x.example/")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "30"
    assert limited.json() == {"error": "slow down"}
    assert rec.requests[3]["response"]["headers"]["retry-after"] == "30"
    assert [("error" in r) for r in rec.requests] == [True, True, True, False]


def test_strict_mode_refuses_unmatched_requests_with_a_hint() -> None:
    script = Responses(strict=True).add("https://api.example.com/ok", respond=204)
    with script.intercept() as http, http.record("e1") as rec:
        assert httpx.get("https://api.example.com/ok").status_code == 204
        with pytest.raises(UnscriptedRequest) as info:
            httpx.post("https://api.example.com/other?page=2", json={})
    message = str(info.value)
    assert "POST https://api.example.com/other?page=2" in message
    assert "add('https://api.example.com/other', method='POST'" in message
    assert '{"method": "POST", "url": "https://api.example.com/other", "respond": 200}' in message
    assert rec.violations == [f"UnscriptedRequest: {message}"]


@pytest.mark.parametrize(
    ("script", "fragment"),
    [
        (700, "not an HTTP status"),
        ("teapot", "unknown answer 'teapot'"),
        ({"code": 200}, "unknown key(s) ['code']"),
        ([], "empty list"),
        (True, "is not an answer"),
        (object(), "is not an answer"),
    ],
)
def test_bad_scripts_are_refused_up_front(script: Any, fragment: str) -> None:
    with pytest.raises(ScriptError) as info:
        Responses(script)
    assert fragment in str(info.value)


def test_bad_rules_and_script_files(tmp_path: Any) -> None:
    with pytest.raises(ScriptError, match="rule 1: cannot match"):
        Responses().add("https://x.example/", colour="blue")
    with pytest.raises(ScriptError, match="unknown key"):
        Responses.from_json({"rules": [], "defaults": 200})
    with pytest.raises(ScriptError, match="rule 2 must be an object"):
        Responses.from_json({"rules": [{"url": "https://x.example/"}, 5]})
    bad = tmp_path / "script.json"
    bad.write_text("{not json")
    with pytest.raises(ScriptError, match=r"script\.json: the response script is not JSON"):
        Responses.load(bad)
    with pytest.raises(ScriptError, match="cannot read"):
        Responses.load(tmp_path / "missing.json")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"strict": True, "default": [500, 200],
                                "rules": [{"method": "GET", "url": "https://x.example/*", "respond": 202}]}))
    loaded = Responses.load(good)
    assert loaded.strict and loaded.default == [500, 200] and loaded.rules[0].steps == [202]


# -- masking ---------------------------------------------------------------------------------
def test_secrets_are_masked_everywhere_in_the_record() -> None:
    secret = "zd-T0ken-9f8e7d"
    with Responses({"status": 200, "json": {"echo": secret}}).intercept([secret]) as http, http.record("e1") as rec:
        httpx.post(
            f"https://x.example/hook?token={secret}",
            headers={"Authorization": "Bearer abc.def", "X-Api-Key": "short", "X-Trace": f"t-{secret}"},
            json={"nested": {"value": secret}, "list": [secret]},
        )
        httpx.post("https://x.example/form", data={"key": secret, "a": "b c"})
        httpx.get("https://x.example/", auth=("agent@example.com/token", secret))
    text = json.dumps(rec.requests)
    assert secret not in text
    first = rec.requests[0]
    assert first["headers"]["Authorization"] == f"Bearer {MASK}"
    assert first["headers"]["X-Api-Key"] == MASK
    assert first["headers"]["X-Trace"] == f"t-{MASK}"
    assert first["url"] == f"https://x.example/hook?token={MASK}"
    assert first["body"] == {"nested": {"value": MASK}, "list": [MASK]}
    assert first["response"]["body"] == {"echo": MASK}
    assert rec.requests[1]["body"] == f"key={MASK}&a=b+c"
    assert rec.requests[2]["headers"]["Authorization"] == f"Basic {MASK}"


def test_mask_request_of_a_non_json_body() -> None:
    request = httpx.Request("POST", "https://x.example/", content=b"plain s3cr3t-value text")
    assert mask_request(request, ["s3cr3t-value"])["body"] == f"plain {MASK} text"
    binary = httpx.Request("POST", "https://x.example/", content=b"\x89PNG\r\n\x1a\n\xff\xfe")
    assert mask_request(binary)["body"] == "<10 bytes of binary data>"


# -- live mode -------------------------------------------------------------------------------
def test_live_mode_sends_for_real_records_and_says_so(
    local_api: tuple[str, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    url, received = local_api
    script = Responses(500)  # ignored: live mode answers with the real API
    with script.intercept(["s3cret-key"], live=True) as http, http.record("e1") as rec:
        response = httpx.post(f"{url}/tickets", json={"key": "s3cret-key"})
    assert "LIVE MODE" in capsys.readouterr().err
    assert response.status_code == 202 and response.json() == {"accepted": True}
    assert received == [{"path": "/tickets", "body": '{"key":"s3cret-key"}'}]
    assert rec.requests[0]["answered_by"] == "live"
    assert rec.requests[0]["response"]["status"] == 202
    assert rec.requests[0]["body"] == {"key": MASK}


def test_preview_never_reaches_a_listening_server(local_api: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = local_api
    with Responses(201).intercept() as http, http.record("e1"):
        assert httpx.post(f"{url}/tickets", json={}).status_code == 201
    assert received == []
