"""413 and 415 are one rule (``runtime._rules.request_refusal``): the preview and ``run()``
give a payload the exported handler would refuse an error row with the handler's own words."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from segfn_kit import load_payloads, preview, run
from segfn_kit.runtime._rules import MAX_BODY_BYTES, request_refusal
from tests._servers import clean_env, serving

FUNCTION = '''
from segfn_kit.runtime import Segment
def on_request(request, settings):
    Segment.track(user_id="u1", event="Seen", properties={"n": len(request.content)})
'''
BIG = {"pad": "x" * MAX_BODY_BYTES}
PAYLOADS: list[dict[str, Any]] = [
    {"headers": {"Content-Type": "application/json"}, "body": {"small": True}},
    {"headers": {"Content-Type": "application/json"}, "body": BIG},
    {"headers": {"Content-Type": "application/xml"}, "body": "<a/>"},
    {"headers": {"content-type": "text/plain; charset=utf-8"}, "body": "plain words"},
    {"headers": {"Content-Type": "application/x-www-form-urlencoded"}, "body": "a=1&b=2"},
    {"headers": {"Content-Type": "multipart/form-data; boundary=x"}, "body": "--x--"},
]
REFUSED = {1: 413, 2: 415, 5: 415}


def _wire(payload: dict[str, Any]) -> bytes:
    body = payload["body"]
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def test_the_rule_itself() -> None:
    assert request_refusal("application/json", MAX_BODY_BYTES) is None
    too_big = request_refusal("application/json", MAX_BODY_BYTES + 1)
    assert too_big is not None and (too_big.status, too_big.code) == (413, "too_large")
    assert request_refusal(None, 10) is None and request_refusal("application/vnd.api+json", 10) is None
    assert request_refusal("text/csv", 10) is None
    assert request_refusal("text/plain", 10, kind="destination") is not None
    assert request_refusal("APPLICATION/XML; charset=utf-8", 10) == request_refusal("application/xml", 10)


def test_run_gives_a_refused_payload_an_error_row_and_runs_the_others() -> None:
    out = run(FUNCTION, PAYLOADS)
    for n, (_, row) in enumerate(out.iterrows()):
        if n in REFUSED:
            assert row["outcome"] == "error" and row["events"] == [], n
            assert row["error"].startswith(f"{REFUSED[n]} "), row["error"]
            assert "the exported handler answers this status before the function runs" in row["error"]
        else:
            assert row["outcome"] == "ok", (n, row["error"])
    assert out["error"].iloc[1].startswith(f"413 too_large: body of {len(_wire(PAYLOADS[1]))} bytes is over the ")
    assert "content type 'application/xml' not accepted" in out["error"].iloc[2]
    # in-process too, and in the preview (which calls run)
    assert run(FUNCTION, PAYLOADS, isolation="none")["error"].tolist() == out["error"].tolist()
    wb = preview(FUNCTION, load_payloads(PAYLOADS))
    assert wb.results is not None
    assert wb.results["error"].tolist() == out["error"].tolist()


@pytest.fixture(scope="module")
def handler_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from segfn_kit._export import export

    tmp = tmp_path_factory.mktemp("refusal_export")
    (tmp / "seen.py").write_text(FUNCTION, encoding="utf-8")
    (tmp / "payload.json").write_text(json.dumps({"small": True}), encoding="utf-8")
    package = export(tmp / "seen.py", tmp / "package", payloads=[tmp / "payload.json"])
    env = clean_env(SEGMENT_WRITE_KEY="wk-refusal", SEGMENT_API_HOST="http://127.0.0.1:9", SEGFN_ISOLATION="none")
    with serving(package, env, log_path=tmp / "server.log", timeout=30) as (url, _):
        yield url


def test_the_exported_handler_answers_what_the_rows_say(handler_url: str) -> None:
    rows = run(FUNCTION, PAYLOADS)
    with httpx.Client(timeout=30) as client:
        for n, payload in enumerate(PAYLOADS):
            if n not in REFUSED:
                continue
            answer = client.post(handler_url, content=_wire(payload), headers=payload["headers"])
            body = answer.json()
            assert answer.status_code == REFUSED[n], body
            # the row's text is the answer's status, code and error, word for word
            assert rows["error"].iloc[n].startswith(f"{answer.status_code} {body['outcome']}: {body['error']}")


def test_replay_refuses_what_the_handler_refuses_and_sends_the_rest(tmp_path: Path) -> None:
    from segfn_kit._replay import replay

    archive = tmp_path / "captured.jsonl"
    archive.write_text("".join(json.dumps(p) + "\n" for p in PAYLOADS), encoding="utf-8")
    (tmp_path / "seen.py").write_text(FUNCTION, encoding="utf-8")
    rows = run(FUNCTION, load_payloads(archive))
    for isolation in ("process", "none"):
        out = tmp_path / f"events-{isolation}.jsonl"
        summary = replay(tmp_path / "seen.py", archive, out=out, isolation=isolation, progress=False)
        sent = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(sent) == len(PAYLOADS) - len(REFUSED) == summary.events
        assert summary.outcomes == {"error": len(REFUSED), "ok": len(PAYLOADS) - len(REFUSED)}
        # each refused payload is named with the row's own text
        assert summary.errors == [f"{rows.index[n]}: {rows['error'].iloc[n]}" for n in sorted(REFUSED)]


def test_an_export_records_a_refused_payload_as_a_case_expecting_the_refusal(tmp_path: Path,
                                                                            clean_venv: Path) -> None:
    from segfn_kit._export import export

    (tmp_path / "seen.py").write_text(FUNCTION, encoding="utf-8")
    files = []
    for n, payload in enumerate(PAYLOADS):
        path = tmp_path / "payloads" / f"p{n}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(payload), encoding="utf-8")
        files.append(path)
    package = export(tmp_path / "seen.py", tmp_path / "package", payloads=files)
    cases = [json.loads(line) for line in (package / "tests" / "cases.jsonl").read_text().splitlines()]
    by_file = {Path(c["payload_id"]).name.split("#")[0]: c for c in cases}
    assert len(by_file) == len(PAYLOADS)
    rows = run(FUNCTION, PAYLOADS)
    for n in range(len(PAYLOADS)):
        case = by_file[f"p{n}.json"]
        if n in REFUSED:
            refused = case["refused"]
            assert refused["status"] == REFUSED[n] and case["outcome"] == "error" and case["events"] == []
            # the expectation is the run() row's text: status, code and error
            assert rows["error"].iloc[n].startswith(f"{refused['status']} {refused['outcome']}: {refused['error']}")
        else:
            assert "refused" not in case and case["outcome"] == "ok" and case["events"], case
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "SEGFN_", "PYTHON", "VIRTUAL_ENV"))}
    result = subprocess.run([str(clean_venv), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package,
                            env={**env, "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # the refused cases ran through the Lambda and ASGI entry points, the others through the function too
    passed = int(result.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 3 * (len(PAYLOADS) - len(REFUSED)) + 2 * len(REFUSED)
