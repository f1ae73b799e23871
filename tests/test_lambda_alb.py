"""Application Load Balancer events in the exported Lambda entry point.

The events are the shapes ``sam local generate-event alb request`` writes (aws-sam-cli is a
dev dependency; it needs no Docker), in single-value mode as generated and in multi-value
headers mode as the load balancer sends when that target-group attribute is on (every
header and query parameter a list, under ``multiValueHeaders`` and
``multiValueQueryStringParameters``). The load balancer passes query strings as sent,
percent-encoded, and expects ``multiValueHeaders`` in the answer in multi-value mode.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import types
from pathlib import Path
from typing import Any

import pytest

from segfn_kit._export import export
from segfn_kit.runtime._lambda import http_request, http_response
from tests.test_export import FakeClient, load_handler

ROOT = Path(__file__).resolve().parents[1]
SAM = ROOT / ".venv" / "bin" / "sam"

ECHO = """\
from segfn_kit.runtime import Segment


def on_request(request, settings):
    body = request.json()
    Segment.track(user_id=body["user"], event="Echoed",
                  properties={"query": dict(request.query), "url": request.url,
                              "agent": request.headers.get("user-agent")})
"""


def _generate(**options: str) -> dict[str, Any]:
    if not SAM.is_file():
        pytest.fail(f"{SAM} is missing: run `make install` (aws-sam-cli is a dev dependency)")
    args = [str(SAM), "local", "generate-event", "alb", "request"]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", value]
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, check=True)
    event: dict[str, Any] = json.loads(out.stdout)
    return event


@pytest.fixture(scope="module")
def sam_event() -> dict[str, Any]:
    """One ALB event written by SAM: POST, a base64 body, one query parameter."""
    return _generate(body='{"user":"u1"}', path="hook")


def single_value(generated: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    event = json.loads(json.dumps(generated))
    event["queryStringParameters"] = query
    event["headers"]["content-type"] = "application/json"
    return event


def multi_value(generated: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
    """The same request as the load balancer sends it with multi-value headers on."""
    event = json.loads(json.dumps(generated))
    headers = event.pop("headers")
    event.pop("queryStringParameters")
    event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    event["multiValueHeaders"]["content-type"] = ["application/json"]
    event["multiValueHeaders"]["x-forwarded-for"] = ["72.12.164.125", "10.0.0.1"]
    event["multiValueQueryStringParameters"] = query
    return event


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> types.ModuleType:
    root = tmp_path_factory.mktemp("echo")
    (root / "echo.py").write_text(ECHO, encoding="utf-8")
    (root / "p.json").write_text(json.dumps({"headers": {"Content-Type": "application/json"},
                                             "body": {"user": "u0"}}), encoding="utf-8")
    return load_handler(export(root / "echo.py", root / "out", payloads=[root / "p.json"]))


@pytest.fixture
def sent(echo: types.ModuleType, monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    for name in list(os.environ):
        if name.startswith(("SEGMENT_", "SEGFN_")):
            monkeypatch.delenv(name)
    client = FakeClient()
    monkeypatch.setattr(echo.ENGINE, "get_client", lambda config: client)
    monkeypatch.setenv("SEGMENT_WRITE_KEY", "wk-alb-test")
    return client


def test_sam_writes_the_alb_shape_the_handler_reads(sam_event: dict[str, Any]) -> None:
    assert "elb" in sam_event["requestContext"] and sam_event["isBase64Encoded"] is True
    request = http_request(sam_event)
    assert request.alb and not request.multi_value
    assert request.method == "POST" and json.loads(request.body) == {"user": "u1"}
    assert request.query == {"query": "1234ABCD"}


def test_single_value_alb_event_decodes_query_values_once(
    echo: types.ModuleType, sent: FakeClient, sam_event: dict[str, Any]
) -> None:
    event = single_value(sam_event, {"email": "a%40b.com", "name": "J%C3%B6+Doe"})
    response = echo.lambda_handler(event, None)
    assert response["statusCode"] == 200, response["body"]
    assert response["statusDescription"] == "200 OK"
    assert response["headers"]["content-type"] == "application/json"
    assert "multiValueHeaders" not in response
    properties = sent.sent[0]["properties"]
    assert properties["query"] == {"email": "a@b.com", "name": "Jö Doe"}
    # encoded once in the URL the function sees: never a%2540b.com
    assert properties["url"] == "/hook?email=a%40b.com&name=J%C3%B6+Doe"
    assert properties["agent"].startswith("Mozilla/5.0")


def test_multi_value_alb_event_answers_with_multi_value_headers(
    echo: types.ModuleType, sent: FakeClient, sam_event: dict[str, Any]
) -> None:
    event = multi_value(sam_event, {"tag": ["a%2Cb", "c"], "email": ["x%40y.org"]})
    response = echo.lambda_handler(event, None)
    assert response["statusCode"] == 200, response["body"]
    assert "headers" not in response
    assert response["multiValueHeaders"]["content-type"] == ["application/json"]
    assert json.loads(response["body"]) == {"ok": True, "outcome": "ok", "events": 1}
    assert sent.sent[0]["properties"]["query"] == {"tag": ["a,b", "c"], "email": "x@y.org"}
    assert sent.sent[0]["properties"]["url"] == "/hook?tag=a%2Cb&tag=c&email=x%40y.org"


def test_alb_refusals_keep_the_alb_answer_shape(
    echo: types.ModuleType, sent: FakeClient, sam_event: dict[str, Any]
) -> None:
    get = multi_value(sam_event, {})
    get["httpMethod"] = "GET"
    response = echo.lambda_handler(get, None)
    assert response["statusCode"] == 405 and response["statusDescription"] == "405 Method Not Allowed"
    assert response["multiValueHeaders"]["Allow"] == ["POST"]
    broken = single_value(sam_event, {})
    broken["body"] = base64.b64encode(b"{not json").decode()
    answer = echo.lambda_handler(broken, None)
    assert answer["statusCode"] == 400 and json.loads(answer["body"])["outcome"] == "InvalidEventPayload"
    assert sent.sent == []


def test_api_gateway_shapes_are_unchanged_by_alb_support() -> None:
    rest = {"httpMethod": "POST", "path": "/p", "headers": {"a": "1"}, "queryStringParameters": {"e": "a@b.com"},
            "requestContext": {"stage": "prod"}, "body": "{}"}
    request = http_request(rest)
    assert not request.alb and request.query == {"e": "a@b.com"} and request.url == "/p?e=a%40b.com"
    v2 = {"version": "2.0", "rawPath": "/p", "rawQueryString": "e=a%40b.com&e=c",
          "requestContext": {"http": {"method": "POST"}}, "headers": {}, "body": "{}"}
    request = http_request(v2)
    assert request.query == {"e": ["a@b.com", "c"]} and request.url == "/p?e=a%40b.com&e=c"
    assert http_response(200, {"x": "1"}, "{}") == {"statusCode": 200, "body": "{}", "isBase64Encoded": False,
                                                   "headers": {"x": "1"}}
