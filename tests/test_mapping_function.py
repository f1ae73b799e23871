"""Mapping function files (contract 5): loading, bad input named by place, and running them
wherever a Python function file runs (``run()``, ``segfn run``, the runtime's Function)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import segfn_kit
from segfn_kit.runtime import Function, FunctionLoadError, Request

EXAMPLES = Path(segfn_kit.__file__).parent / "examples"
GITHUB = EXAMPLES / "github_source.mapping.json"
STRIPE = EXAMPLES / "stripe_source.mapping.json"
SEGFN = shutil.which("segfn", path=str(Path(sys.executable).parent)) or "segfn"

SIMPLE = {
    "kind": "source", "name": "simple",
    "settings": {"apiToken": {"type": "string", "required": False, "secret": True}},
    "route": {"@path": "$.body.kind"},
    "routes": {"signup": [
        {"type": "identify", "userId": {"@path": "$.body.user"}, "traits": {"email": {"@path": "$.body.email"}}},
        {"type": "track", "userId": {"@path": "$.body.user"}, "event": "Signed Up",
         "properties": {"plan": {"@case": {"operator": "upper", "value": {"@path": "$.body.plan"}}},
                        "via": {"@path": "$.query.via"}, "agent": {"@path": "$.headers.user-agent"}}},
    ]},
}


def load(doc: Any, name: str = "t.mapping.json") -> Function:
    return Function.from_source(json.dumps(doc) if not isinstance(doc, str) else doc, name)


def test_calls_go_out_in_order_with_the_messageids_of_a_python_function() -> None:
    fn = load(SIMPLE)
    body = b'{"kind": "signup", "user": "u1", "email": "a@example.com", "plan": "pro"}'
    request = Request(body, headers={"User-Agent": "curl/8"}, url="https://h/?via=ad")
    got = fn.on_request(request)
    python = Function.from_source(
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    b = request.json()\n"
        "    Segment.identify({'userId': b['user'], 'traits': {'email': b['email']}})\n"
        "    Segment.track(user_id=b['user'], event='Signed Up', properties={'plan': 'PRO',"
        " 'via': request.query['via'], 'agent': request.headers['user-agent']})\n")
    want = python.on_request(Request(body, headers={"User-Agent": "curl/8"}, url="https://h/?via=ad"))
    assert got.outcome == "ok", got.error
    assert got.events == want.events
    assert [e["type"] for e in got.events] == ["identify", "track"]
    assert len({e["messageId"] for e in got.events}) == 2
    assert fn.declared_settings["apiToken"]["secret"] is True


def test_unrouted_and_non_json_bodies() -> None:
    fn = load(SIMPLE)
    assert fn.on_request(Request(b'{"kind": "other"}')).outcome == "EventNotSupported"
    assert fn.on_request(Request(b'{"nokind": 1}')).outcome == "EventNotSupported"
    bad = fn.on_request(Request(b"<html>not json"))
    assert bad.outcome == "InvalidEventPayload" and bad.events == []
    strict = load({**SIMPLE, "otherwise": "InvalidEventPayload"})
    assert strict.on_request(Request(b'{"kind": "other"}')).outcome == "InvalidEventPayload"


def test_a_directive_failing_on_a_payload_names_the_call() -> None:
    fn = load({"route": "x", "routes": {"x": [
        {"type": "track", "event": "E", "userId": "u", "properties": {"p": {"@json": {"mode": "decode", "value": {"@path": "$.body.s"}}}}}]}})
    inv = fn.on_request(Request(b'{"s": "{broken"}'))
    assert inv.outcome == "error" and "/routes/x/0" in (inv.error or "") and "@json" in (inv.error or "")
    assert fn.on_request(Request(b'{"s": "[1]"}')).events[0]["properties"] == {"p": [1]}


@pytest.mark.parametrize(("doc", "place"), [
    ({"route": "x", "routes": {"x": [{"type": "track", "event": {"@nope": 1}}]}}, "/routes/x/0/event: has an invalid directive: @nope"),
    ({"route": "x", "routes": {"x": [{"type": "track", "event": {"@path": 5}}]}}, "/routes/x/0/event/@path: should be a string"),
    ({"route": "x", "routes": {"x": [{"type": "track", "properties": {"l": [{"@bad": 1}]}}]}}, "/routes/x/0/properties/l/0: has an invalid directive: @bad"),
    ({"route": "x", "routes": {"x": {"type": "track"}}}, "/routes/x: should be a list of calls"),
    ({"route": "x", "routes": {"x": [{"event": "E"}]}}, "/routes/x/0: the call has no \"type\""),
    ({"route": "x", "routes": {"x": [{"type": "trak"}]}}, "/routes/x/0/type: \"trak\" is not a Segment call"),
    ({"route": "x", "routes": {"x": [{"type": "track", "traits": {}}]}}, "/routes/x/0/traits: a track call takes"),
    ({"route": 5, "routes": {"x": []}}, "/route: should be a string or a directive"),
    ({"route": ["a"], "routes": {"x": []}}, "/route: should be a string or a directive"),
    ({"route": {"@replace": {"value": "a"}}, "routes": {"x": []}}, "/route/@replace: should have field \"pattern\""),
    ({"routes": {"x": []}}, "/route: missing"),
    ({"route": "x", "routes": []}, "/routes: should be an object"),
    ({"route": "x", "routes": {"x": []}, "otherwise": "Nope"}, "/otherwise: should be"),
    ({"route": "x", "routes": {"x": []}, "settings": {"k": 1}}, "/settings/k: should be an object"),
    ({"route": "x", "routes": {"x": []}, "extra": 1}, "/extra: unknown key"),
    ('{"route": "x", "routes": {"x": [}}', "not valid JSON"),
])
def test_bad_files_are_refused_at_load_time_naming_the_place(doc: Any, place: str) -> None:
    with pytest.raises(FunctionLoadError) as info:
        load(doc, "bad.mapping.json")
    assert "bad.mapping.json" in str(info.value)
    assert place in str(info.value)


def test_file_loading_and_run_take_mapping_files_and_json_text(tmp_path: Path) -> None:
    path = tmp_path / "simple.mapping.json"
    path.write_text(json.dumps(SIMPLE, indent=2))
    payload = {"headers": {"user-agent": "x"}, "body": {"kind": "signup", "user": "u9", "plan": "free"}}
    by_path = segfn_kit.run(str(path), [payload])
    by_text = segfn_kit.run(json.dumps(SIMPLE), [payload])
    assert by_path["outcome"].tolist() == ["ok"] == by_text["outcome"].tolist()
    assert by_path["events"].iloc[0] == by_text["events"].iloc[0]
    assert by_path["events"].iloc[0][1]["properties"] == {"plan": "FREE", "agent": "x"}
    assert Function.from_file(path).mapping is not None


def _segfn(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([SEGFN, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_segfn_run_jsonl_over_the_github_corpus(corpora_dir: Path) -> None:
    folder = corpora_dir / "hookdeck-webhook-samples" / "github"
    files = sorted(str(p) for p in folder.rglob("*.json") if p.name != "index.json")
    done = _segfn("run", str(GITHUB), *files, "--jsonl")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == len(files) >= 10
    assert {r["outcome"] for r in rows} == {"ok"}
    events = [e for r in rows for e in r["events"]]
    assert all(e["userId"].startswith("gh:") for e in events)
    assert not [r["issues"] for r in rows if r["issues"]]
    # the same run through the Python API gives the same events
    frame = segfn_kit.run(str(GITHUB), files)
    assert [e for evs in frame["events"] for e in evs] == events


def test_bundled_stripe_mapping_over_the_stripe_corpus(corpora_dir: Path) -> None:
    frame = segfn_kit.run(str(STRIPE), corpora_dir / "stripe-ruby-mock")
    outcomes = frame["outcome"].value_counts().to_dict()
    assert set(outcomes) <= {"ok", "EventNotSupported"}
    assert outcomes["ok"] >= 10
    tracked = {e["event"] for evs in frame["events"] for e in evs if e["type"] == "track"}
    assert {"Customer Created", "Charge Succeeded", "Invoice Paid", "Subscription Created"} <= tracked


def test_exported_python_handler_of_a_mapping_file_passes_its_own_tests(corpora_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pkg"
    done = _segfn("export", str(GITHUB), "--out", str(out), "--payloads",
                  str(corpora_dir / "hookdeck-webhook-samples" / "github"))
    assert done.returncode == 0, done.stderr
    # named as what it holds: the handler loads it as a mapping file by its name
    assert json.loads((out / "function.mapping.json").read_text())["name"] == "github_activity"
    assert not (out / "function.py").exists()
    assert '"function.mapping.json"' in (out / "handler.py").read_text()
    assert '"function.mapping.json"' in (out / "build_zip.py").read_text()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=out,
                           capture_output=True, text=True, timeout=300, check=False)
    assert tests.returncode == 0, tests.stdout[-2000:]
    assert " passed" in tests.stdout


def test_profile_fields_become_paths_that_read_them(samples_dir: Path) -> None:
    from segfn_kit.mapping import MappingError, mapping_from_profile, path_mapping, transform

    frame = segfn_kit.load_payloads(samples_dir / "stripe")
    fields = segfn_kit.profile(frame, by="event_type").loc["customer.created"]
    mapping = mapping_from_profile(fields, {"email": "data.object.email", "id": "data.object.id"})
    body = frame.loc["stripe/customer.created.json", "body"]
    got = transform(mapping, {"body": body})
    assert got == {"email": body["data"]["object"]["email"], "id": body["data"]["object"]["id"]}
    with pytest.raises(KeyError, match="not a field"):
        mapping_from_profile(fields, {"x": "data.object.nope"})
    items = transform({"v": path_mapping("a[].b")}, {"body": {"a": [{"b": 1}, {"c": 2}, {"b": 3}]}})
    assert items == {"v": [1, None, 3]}
    with pytest.raises(MappingError, match="cannot be named"):
        path_mapping("data.we'ird")


def test_replay_of_a_mapping_file_sends_the_ids_segfn_run_shows(corpora_dir: Path, tmp_path: Path) -> None:
    folder = corpora_dir / "hookdeck-webhook-samples" / "github"
    out = tmp_path / "events.jsonl"
    done = _segfn("replay", str(GITHUB), str(folder), "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    replayed = [json.loads(line) for line in out.read_text().splitlines()]
    frame = segfn_kit.run(str(GITHUB), folder)
    assert replayed == [e for evs in frame["events"] for e in evs] and len(replayed) >= 10
