"""Tracking plans in exported handlers: plan.json shipped, SEGFN_PLAN / SEGFN_PLAN_MODE, under a real
uvicorn posting to the local sink, and through the Lambda and command-line entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segfn_kit._export import ExportError, export
from segfn_kit._payloads import iter_payloads
from segfn_kit._sink import read_sink, running_sink
from segfn_kit.examples import example_path
from tests._servers import clean_env, serving
from tests.test_plan_replay import expected as preview_ids

ROOT = Path(__file__).resolve().parents[1]
STRIPE = example_path("stripe_source")
SAMPLES = ROOT / "sample_payloads" / "stripe"
PLAN = ROOT / "sample_payloads" / "plans" / "stripe_plan.json"
WRITE_KEY = "wk-plan-export-6a1f"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(STRIPE, tmp_path_factory.mktemp("plan") / "stripe", payloads=[SAMPLES], plan=PLAN)


@pytest.fixture(scope="module")
def expected() -> tuple[list[str], set[str]]:
    """messageIds of the samples' events in order, and those with a plan issue (the preview's)."""
    return preview_ids(SAMPLES)


def env_for(sink_url: str, **extra: str) -> dict[str, str]:
    env = clean_env()
    env.update({"SEGMENT_WRITE_KEY": WRITE_KEY, "SEGMENT_API_HOST": sink_url, "SEGFN_DELIVERY_BUDGET": "5", **extra})
    return env


def test_package_ships_canonical_rules_and_jsonschema(package: Path) -> None:
    shipped = json.loads((package / "plan.json").read_text(encoding="utf-8"))
    assert [r["type"] for r in shipped["rules"]][:2] == ["COMMON", "IDENTIFY"] and len(shipped["rules"]) == 6
    assert "jsonschema>=4.18" in (package / "requirements.txt").read_text().splitlines()
    manifest = json.loads((package / "export.json").read_text())
    assert manifest["plan"] == {"file": "plan.json", "rules": 6}
    assert "SEGFN_PLAN_MODE" in (package / "README.md").read_text()
    # the package's own tests still pass with the plan on (report mode sends everything)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package,
                         capture_output=True, text=True, timeout=300, env=env_for("http://127.0.0.1:9"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_export_refuses_a_bad_plan(tmp_path: Path) -> None:
    bad = [{"type": "TRACK", "key": "A", "version": 1}, {"type": "TRACK", "key": "A", "version": 1}]
    with pytest.raises(ExportError, match="tracking plan cannot be shipped: rules 1 and 2 are both TRACK 'A' v1"):
        export(STRIPE, tmp_path / "out", payloads=[SAMPLES], plan=bad)
    assert not (tmp_path / "out").exists()


@pytest.fixture(params=["report", "block"])
def served(request: pytest.FixtureRequest, package: Path, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    mode = str(request.param)
    store = tmp_path / "sink.sqlite3"
    with running_sink(write_key=WRITE_KEY, store=store) as sink_url:
        with serving(package, env_for(sink_url, SEGFN_PLAN_MODE=mode), log_path=tmp_path / "server.log") as (url, _):
            yield url, store, mode


def test_uvicorn_handler_reports_or_blocks(served: tuple[str, Path, str], expected: tuple[list[str], set[str]]) -> None:
    url, store, mode = served
    every, bad = expected
    answers: list[dict[str, Any]] = []
    with httpx.Client(base_url=url, timeout=20) as client:
        for payload in iter_payloads(str(SAMPLES)):
            headers = {k: v for k, v in payload.headers.items() if k.lower() not in ("content-length", "host")}
            response = client.post("/", content=payload.raw.encode("utf-8"), headers=headers)
            assert response.status_code == 200, response.text
            answers.append(response.json())
    issues = [i for a in answers for i in a.get("plan_issues", [])]
    assert {(i["rule"], i["field"]) for i in issues} >= {("TRACK 'Invoice Paid' v1", "properties.currency")}
    assert all("value" not in json.dumps(i) and "usd" not in json.dumps(i) for i in issues)  # no payload content
    assert sum(a.get("held", 0) for a in answers) == (len(bad) if mode == "block" else 0)
    sent = list(read_sink(store)["message_id"])
    assert sent == ([m for m in every if m not in bad] if mode == "block" else every)


def test_lambda_and_command_line_with_the_shipped_plan(package: Path) -> None:
    body = (SAMPLES / "invoice.paid.json").read_text(encoding="utf-8")
    script = (
        "import json, sys, handler\n"
        "event = {'version': '2.0', 'requestContext': {'http': {'method': 'POST'}}, 'rawPath': '/',\n"
        "         'headers': {'content-type': 'application/json'}, 'body': sys.argv[1], 'isBase64Encoded': False}\n"
        "print(json.dumps(handler.lambda_handler(event, None)))\n"
    )
    envelope_body = json.dumps(json.loads(body)["body"])
    with running_sink(write_key=WRITE_KEY) as sink_url:
        out = subprocess.run([sys.executable, "-c", script, envelope_body], cwd=package, capture_output=True,
                             text=True, timeout=60, env=env_for(sink_url, SEGFN_PLAN_MODE="block"))
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["statusCode"] == 200
    doc = json.loads(answer["body"])
    assert doc["held"] == 1 and doc["events"] == 0 and doc["plan_issues"][0]["field"] == "properties.currency"
    log = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert log[-1]["plan_issues"] == ["TRACK 'Invoice Paid' v1: properties.currency"]

    cli = subprocess.run([sys.executable, "-m", "handler", str(SAMPLES / "invoice.paid.json")], cwd=package,
                         capture_output=True, text=True, timeout=60, env=env_for("http://127.0.0.1:9"))
    record = json.loads(cli.stdout)
    assert [i["code"] for i in record["issues"]] == ["plan_violation"]
    off = subprocess.run([sys.executable, "-m", "handler", str(SAMPLES / "invoice.paid.json")], cwd=package,
                         capture_output=True, text=True, timeout=60, env=env_for("http://127.0.0.1:9", SEGFN_PLAN="none"))
    assert "issues" not in json.loads(off.stdout)
    broken = subprocess.run([sys.executable, "-m", "handler", str(SAMPLES / "invoice.paid.json")], cwd=package,
                            capture_output=True, text=True, timeout=60,
                            env=env_for("http://127.0.0.1:9", SEGFN_PLAN_MODE="drop"))
    assert broken.returncode == 2 and "SEGFN_PLAN_MODE='drop'" in broken.stderr
