"""``segfn export FILE.mapping.json --target segment``: the Segment source function in JavaScript,
and its fidelity: run under Node in a vm context shaped like Segment's runtime, over every corpus
payload the bundled mappings cover, it gives the outcome and the events of ``segfn run --jsonl``,
byte for byte (both rendered as ``JSON.stringify`` renders them)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import segfn_kit
from segfn_kit._export import ExportError
from segfn_kit._export._segment import export_segment
from segfn_kit._payloads import load_payloads, request_from_row
from segfn_kit.runtime._mapping import js_stringify

from ._node import NODE_DIR, node

EXAMPLES = Path(segfn_kit.__file__).parent / "examples"
SEGFN = shutil.which("segfn", path=str(Path(sys.executable).parent)) or "segfn"
COVERED = {
    "github_source.mapping.json": ["hookdeck-webhook-samples/github", "segment-functions-library/github"],
    "stripe_source.mapping.json": ["stripe-ruby-mock", "hookdeck-webhook-samples/stripe",
                                   "segment-functions-library/stripe-events"],
}


def _segfn(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([SEGFN, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


def _files(corpora: Path, folders: list[str]) -> list[str]:
    out = []
    for folder in folders:
        out += sorted(str(p) for p in (corpora / folder).rglob("*.json") if p.name != "index.json")
    return out


def _run_js(function_js: Path, requests: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    cases = tmp / "requests.json"
    cases.write_text(json.dumps(requests), encoding="utf-8")
    done = subprocess.run([node(), str(NODE_DIR / "segment_runtime.js"), str(function_js), str(cases)],
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    out: list[dict[str, Any]] = json.loads(done.stdout)
    return out


def _requests(files: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    frame = load_payloads(*files)
    ids, requests = [], []
    for payload_id, row in frame.iterrows():
        if row.get("error") is not None and isinstance(row.get("error"), str):
            continue
        request = request_from_row(row)
        ids.append(str(payload_id))
        requests.append({"body_base64": base64.b64encode(request.content).decode(),
                         "headers": dict(request.headers.items()), "url": request.url})
    return ids, requests


@pytest.mark.parametrize("mapping", sorted(COVERED))
def test_function_js_sends_what_segfn_run_shows(mapping: str, corpora_dir: Path, tmp_path: Path) -> None:
    files = _files(corpora_dir, COVERED[mapping])
    assert files
    package = export_segment(EXAMPLES / mapping, tmp_path / "out")
    done = _segfn("run", str(EXAMPLES / mapping), *files, "--jsonl")
    assert done.returncode in (0, 1), done.stderr
    python = {r["payload_id"]: r for r in map(json.loads, done.stdout.splitlines())}
    ids, requests = _requests(files)
    js = _run_js(package / "function.js", requests, tmp_path)
    compared = ok = 0
    for payload_id, result in zip(ids, js, strict=True):
        expected = python[payload_id]
        compared += 1
        assert result["outcome"] == expected["outcome"], (payload_id, result, expected["error"])
        assert result["events"] == js_stringify(expected["events"]), payload_id
        assert result["objects"] == js_stringify(expected["objects"]), payload_id
        ok += expected["outcome"] == "ok" and bool(expected["events"])
    assert compared == len(python) and ok >= 9


def test_non_json_and_empty_bodies_are_invalid_in_javascript_too(tmp_path: Path) -> None:
    package = export_segment(EXAMPLES / "github_source.mapping.json", tmp_path / "out")
    bodies = [b"<xml/>", b"", b"{\"ref\": ", b"   "]
    requests = [{"body_base64": base64.b64encode(b).decode(), "headers": {"x-github-event": "push"},
                 "url": "https://fn.segmentapis.com/"} for b in bodies]
    assert [r["outcome"] for r in _run_js(package / "function.js", requests, tmp_path)] == ["InvalidEventPayload"] * 4
    python = segfn_kit.run(str(EXAMPLES / "github_source.mapping.json"),
                           [{"headers": {"x-github-event": "push"}, "body": b.decode()} for b in bodies])
    assert set(python["outcome"]) == {"InvalidEventPayload"}


def test_messageids_and_numbers_match_on_hand_made_bodies(tmp_path: Path) -> None:
    doc = {"route": "x", "settings": {"region": {"type": "string"}},
           "routes": {"x": [{"type": "track", "event": "E", "userId": {"@path": "$.body.id"},
                             "properties": {"all": {"@path": "$.body"}, "q": {"@path": "$.query"},
                                            "region": {"@path": "$.settings.region"}}},
                            {"type": "identify", "userId": {"@path": "$.body.n"}, "traits": {"t": {"@path": "$.body.t"}}},
                            {"type": "set", "collection": "c", "id": {"@path": "$.body.id"}, "properties": {"a": 1}}]}}
    path = tmp_path / "nums.mapping.json"
    path.write_text(json.dumps(doc))
    bodies = ['{"id": "a", "n": 12, "t": [1.0, 2.5, 1e21, 1e-7, -0.0, 0.1, 123456789.125], "z": {"é": 1, "a": 2, "\\ud83d\\ude00": 3, "\\uffff": 4}}',
              '{"n": true, "id": 5, "t": "caf\\u00e9 \\n \\u0001", "w": [[], {}, null, false]}',
              '  {"id":"b","n":3.5}  ']
    payloads = [{"headers": {"X-Mixed": "A"}, "body": b, "url": "https://h/?q=1&q=2&e=&s=x"} for b in bodies]
    frame = segfn_kit.run(str(path), payloads, {"region": "eu"})
    package = export_segment(path, tmp_path / "out")
    requests = [{"body_base64": base64.b64encode(b.encode()).decode(), "headers": {"X-Mixed": "A"},
                 "url": "https://h/?q=1&q=2&e=&s=x", "settings": {"region": "eu"}} for b in bodies]
    js = _run_js(package / "function.js", requests, tmp_path)
    for (_, row), result in zip(frame.iterrows(), js, strict=True):
        assert result["outcome"] == row["outcome"] == "ok", result
        assert result["events"] == js_stringify(row["events"])
        assert result["objects"] == js_stringify(row["objects"])


def test_export_is_deterministic_and_complete(tmp_path: Path) -> None:
    a = export_segment(EXAMPLES / "stripe_source.mapping.json", tmp_path / "a")
    b = export_segment(EXAMPLES / "stripe_source.mapping.json", tmp_path / "b")
    names = sorted(p.name for p in a.iterdir())
    assert names == ["README.md", "create_function.json", "export.json", "function.js", "segment_function.tf"]
    assert all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    body = json.loads((a / "create_function.json").read_text())
    assert body["code"] == (a / "function.js").read_text()
    assert body["resourceType"] == "SOURCE" and body["displayName"] == "stripe_source"
    js = (a / "function.js").read_text()
    assert "async function onRequest(request, settings)" in js
    assert "require(" not in js and "process." not in js and "fetch(" not in js
    assert 'resource "segment_function"' in (a / "segment_function.tf").read_text()


def test_settings_reach_the_api_body_and_terraform(tmp_path: Path) -> None:
    doc = {"route": "x", "routes": {"x": []},
           "settings": {"apiToken": {"type": "string", "required": True, "secret": True, "label": "API token",
                                     "description": "for ${x}"},
                        "verbose": {"type": "boolean"}}}
    path = tmp_path / "s.mapping.json"
    path.write_text(json.dumps(doc))
    out = export_segment(path, tmp_path / "out")
    body = json.loads((out / "create_function.json").read_text())
    assert body["settings"] == [
        {"name": "apiToken", "label": "API token", "description": "for ${x}", "type": "STRING", "required": True, "sensitive": True},
        {"name": "verbose", "label": "verbose", "description": "", "type": "BOOLEAN", "required": False, "sensitive": False}]
    tf = (out / "segment_function.tf").read_text()
    assert 'description = "for $${x}"' in tf and "sensitive   = true" in tf


def test_python_files_and_cli(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="Python function file"):
        export_segment(EXAMPLES / "stripe_source.py", tmp_path / "py")
    done = _segfn("export", str(EXAMPLES / "github_source.mapping.json"), "--target", "segment",
                  "--out", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli" / "function.js").is_file() and "function.js" in done.stdout
    bad = _segfn("export", str(EXAMPLES / "stripe_source.py"), "--target", "segment", "--out", str(tmp_path / "x"))
    assert bad.returncode == 1 and "mapping function file" in bad.stderr
