"""Differential suite: one function, five ways to run it, one behaviour.

Every bundled source example runs over every payload of ``sample_payloads`` and of the shared
corpora (``../shared/corpora``), and purpose-written destination and insert functions run
over Segment events, through

1. ``segfn_kit.run()`` (what the notebook preview shows),
2. ``segfn run --jsonl`` (the workbench's command line),
3. the exported package's Lambda entry point,
4. its ASGI application, and
5. its command line (``python -m handler``),

the last three inside a virtual environment that holds only the package's requirements (no
segfn_kit, no pandas). Each input must give the same outcome (mapped to its HTTP status), the
same events (for sources: those delivered; for insert functions: the changed events) and,
for destinations, the same HTTP requests, byte for byte apart from ``sentAt``.

Many payloads go through each process call: one driver run per package and entry point.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from segfn_kit import run
from segfn_kit._destination import RetryPolicy
from segfn_kit._export import export
from segfn_kit._payloads import iter_payloads
from segfn_kit.runtime import status_of

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_payloads"
CORPORA = ROOT.parent / "shared" / "corpora"
SEGFN = Path(sys.executable).with_name("segfn")

EXAMPLES = ROOT / "segfn_kit" / "examples"
# every bundled source example: function files and mapping files
SOURCES = {
    p.name: p for p in sorted(EXAMPLES.iterdir())
    if p.name.endswith(".mapping.json") or (p.suffix == ".py" and "def on_request" in p.read_text(encoding="utf-8"))
}
ZENDESK_SETTINGS = {"subdomain": "acme", "email": "agent@example.com", "apiToken": "zd-differential-secret"}

# runs inside the clean venv, in the package folder: every input through one entry point
DRIVER = r'''
import asyncio, base64, json, os, sys
sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "tests")]
from recorder import record_http
import handler

class Recorder:
    def __init__(self):
        self.events, self.objects = [], []
    def send(self, events, *, objects=None, budget=None):
        self.events.extend(events); self.objects.extend(objects or [])
    async def asend(self, events, *, objects=None, budget=None):
        self.send(events, objects=objects)

def lambda_event(item):
    return {"version": "2.0", "rawPath": item["path"], "rawQueryString": item["query"],
            "headers": {k.lower(): v for k, v in item["headers"]},
            "requestContext": {"http": {"method": "POST", "path": item["path"]}},
            "body": item["body"], "isBase64Encoded": True}

async def asgi(item):
    body = base64.b64decode(item["body"])
    scope = {"type": "http", "method": "POST", "path": item["path"], "query_string": item["query"].encode(),
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in item["headers"]]}
    sent = []
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}
    async def send(message):
        sent.append(message)
    await handler.app(scope, receive, send)
    return sent[0]["status"], sent[1]["body"].decode()

modes, path = sys.argv[1].split(","), sys.argv[2]
items = [json.loads(line) for line in open(path, encoding="utf-8")]
every = {}
for mode, item in [(m, i) for m in modes for i in items]:
    out = every.setdefault(mode, [])
    recorder = Recorder()
    handler.ENGINE.get_client = lambda config: recorder
    with record_http() as calls:
        if mode == "lambda":
            answer = handler.lambda_handler(lambda_event(item), None)
            status, body = answer["statusCode"], answer["body"]
        elif mode == "asgi":
            status, body = asyncio.run(asgi(item))
        else:  # the command line, over this one input
            with open("_one.json", "w", encoding="utf-8") as fh:
                fh.write(item["doc"])
            import contextlib, io
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                handler.main(["_one.json"])
            status, body = 0, buffer.getvalue()
    out.append({"status": status, "body": body, "delivered": recorder.events, "calls": calls})
print(json.dumps(every))
'''


def _dump(value: Any) -> str:
    """Events compared byte for byte, apart from sentAt."""
    def strip(event: Any) -> Any:
        return {k: v for k, v in event.items() if k != "sentAt"} if isinstance(event, dict) else event

    return json.dumps([strip(e) for e in value], ensure_ascii=False, separators=(",", ":"))


def _payload_paths() -> list[Path]:
    paths = [SAMPLES / "stripe", SAMPLES / "zendesk"]
    if CORPORA.is_dir():
        paths += sorted(p for p in CORPORA.iterdir() if p.is_dir())
    return paths


def _isolated_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "SEGFN_", "PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


MODES = ("lambda", "asgi", "cli")


def _drive(python: Path, package: Path, items: list[dict[str, Any]], settings: dict[str, Any],
           tmp: Path) -> dict[str, list[dict[str, Any]]]:
    """Every input through each entry point, in one process of the clean venv."""
    driver = tmp / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    inputs = tmp / "inputs.jsonl"
    inputs.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    env = _isolated_env({"SEGMENT_WRITE_KEY": "wk-differential", "SEGFN_SETTINGS": json.dumps(settings)})
    done = subprocess.run([str(python), str(driver), ",".join(MODES), str(inputs)], cwd=package, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answers: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    return answers


def _segfn_run(function: Path, inputs: Iterable[Path | str], settings: dict[str, Any], tmp: Path) -> list[dict[str, Any]]:
    settings_file = tmp / "settings.json"
    settings_file.write_text(json.dumps(settings), encoding="utf-8")
    done = subprocess.run([str(SEGFN), "run", str(function), *map(str, inputs), "--jsonl", "--allow-errors",
                           "--settings", str(settings_file)],
                          capture_output=True, text=True, timeout=300, env=_isolated_env())
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


# -- sources ------------------------------------------------------------------------------------


def _source_items(paths: list[Path]) -> tuple[list[str], list[dict[str, Any]]]:
    ids: list[str] = []
    items: list[dict[str, Any]] = []
    for payload in iter_payloads(*map(str, paths)):
        if payload.error:
            continue
        envelope = payload.to_envelope()
        request = payload.request()
        url = request.url or "/"
        path, _, query = url.partition("?")
        if path.startswith(("http://", "https://")):
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        ids.append(payload.payload_id)
        items.append({
            "body": base64.b64encode(request.content).decode(),
            "headers": [(k, v) for k, v in request.headers.items()],
            "path": path or "/", "query": query,
            "doc": json.dumps(envelope, ensure_ascii=False),
        })
    return ids, items


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_source_examples_behave_the_same_everywhere(name: str, clean_venv: Path, tmp_path: Path) -> None:
    settings: dict[str, Any] = {}
    function = SOURCES[name]
    paths = _payload_paths()
    ids, items = _source_items(paths)
    assert len(ids) >= 15

    preview = run(function, list(map(str, paths)), settings, progress=False)
    rows = {str(pid): row for pid, row in zip(preview.index, preview.to_dict("records"), strict=True)}
    cli_rows = {r["payload_id"]: r for r in _segfn_run(function, paths, settings, tmp_path)}
    package = export(function, tmp_path / "pkg", payloads=[SAMPLES / "stripe" / "customer.created.json"])
    deployed = _drive(clean_venv, package, items, settings, tmp_path)

    compared = 0
    for n, pid in enumerate(ids):
        row = rows[pid]
        status = status_of(row["outcome"])
        events = _dump(row["events"])
        assert cli_rows[pid]["outcome"] == row["outcome"], pid
        assert _dump(cli_rows[pid]["events"]) == events, pid
        for mode in ("lambda", "asgi"):
            answer = deployed[mode][n]
            assert answer["status"] == status, (mode, pid, row["outcome"], row["error"], answer["body"])
            assert json.loads(answer["body"])["outcome"] == row["outcome"], (mode, pid)
            assert _dump(answer["delivered"]) == events, (mode, pid)
        line = json.loads(deployed["cli"][n]["body"])
        assert (line["outcome"], line["status"]) == (row["outcome"], status), pid
        assert _dump(line["events"]) == events, pid
        compared += 1
    assert compared == len(ids)
    outcomes = {rows[p]["outcome"] for p in ids}
    assert {"ok", "EventNotSupported"} <= outcomes, outcomes
    assert sum(len(rows[p]["events"]) for p in ids) >= 4


# -- destinations and insert functions ----------------------------------------------------------

STATUSES = """\
STATUS = {"Accepted": 200, "Created": 201, "Missing": 404, "Refused": 400, "Busy": 429, "Broken": 500,
          "Down": 503}


def on_batch(events, settings):
    return [{"status": STATUS.get(e.get("event"), 200), "errormessage": e.get("event") or ""} for e in events]
"""

TRACK_ONLY = """\
import httpx


def on_track(event, settings):
    httpx.post("https://api.example.com/track", json={"name": event["event"], "id": event["messageId"]})
"""

INSERT = """\
from segfn_kit.runtime import DropEvent


def on_track(event, settings):
    event.setdefault("properties", {})["enriched"] = True
    return event


def on_identify(event, settings):
    raise DropEvent("identifies are filtered")
"""

INSERT_BATCH = """\
def on_batch(events, settings):
    return [{**e, "context": {"seen": True}} for e in events]
"""


def _events() -> list[dict[str, Any]]:
    names = ["Accepted", "Created", "Missing", "Refused", "Busy", "Broken", "Down", "Other"]
    events: list[dict[str, Any]] = [
        {"type": "track", "userId": f"u{i}", "event": name, "messageId": f"m{i}"} for i, name in enumerate(names)
    ]
    events += [
        {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "p1"},
        {"type": "identify", "userId": "u9", "traits": {"plan": "pro"}, "messageId": "i1"},
        {"type": "track", "event": "No one", "messageId": "x1"},  # no userId/anonymousId: rejected
        {"type": "purchase", "userId": "u1", "messageId": "x2"},  # no Segment type: rejected
    ]
    return events


def _lines(folder: Path) -> list[str]:
    return [line for f in sorted(folder.glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:  # bad_events.jsonl holds lines that are no JSON on purpose
        return None


DESTINATIONS = {
    "on_batch_statuses": (STATUSES, 20),
    "on_batch_statuses_one_by_one": (STATUSES, 1),
    "pages_without_a_page_handler": (TRACK_ONLY, 20),
    "insert_function": (INSERT, 20),
    "insert_function_on_batch": (INSERT_BATCH, 5),
    "zendesk_destination": ((EXAMPLES / "zendesk_destination.py").read_text(encoding="utf-8"), 20),
}


def _requests(calls: list[dict[str, Any]]) -> str:
    return json.dumps([{"method": c.get("method"), "url": c.get("url"), "body": c.get("body")} for c in calls],
                      sort_keys=True)


@pytest.mark.parametrize("name", sorted(DESTINATIONS))
def test_destinations_behave_the_same_everywhere(name: str, clean_venv: Path, tmp_path: Path) -> None:
    source, size = DESTINATIONS[name]
    function = tmp_path / f"{name}.py"
    function.write_text(source, encoding="utf-8")
    settings = ZENDESK_SETTINGS if name == "zendesk_destination" else {}
    events = _events()
    if name == "zendesk_destination":  # the bundled example over the bundled Segment events
        events = [e for e in map(_json_or_none, _lines(SAMPLES / "segment_events")) if isinstance(e, dict)]
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")

    preview = run(function, [events_file], settings, batch_size=size, retry=RetryPolicy(max_attempts=1), progress=False)
    rows = preview.to_dict("records")
    assert len(rows) == len(events)
    package = export(function, tmp_path / "pkg", payloads=[events_file], settings=settings)
    groups = [events[i : i + size] for i in range(0, len(events), size)]
    items = [{"body": base64.b64encode(json.dumps(g).encode()).decode(), "headers": [("Content-Type", "application/json")],
              "path": "/", "query": "", "doc": json.dumps(g)} for g in groups]
    deployed = _drive(clean_venv, package, items, settings, tmp_path)
    if size == 20:
        cli_rows = _segfn_run(function, [events_file], settings, tmp_path)
        assert [(r["outcome"], _dump(r["events"]), _requests(r["requests"])) for r in cli_rows] == [
            (r["outcome"], _dump(r["events"]), _requests(r["requests"])) for r in rows]

    expected = [(r["outcome"], status_of(r["outcome"]), _dump(r["events"])) for r in rows]
    for mode in ("lambda", "asgi"):
        got: list[tuple[str, int, str]] = []
        calls: list[dict[str, Any]] = []
        for answer in deployed[mode]:
            results = json.loads(answer["body"])["results"]
            got += [(r["outcome"], r["status"], _dump([r["event"]] if "event" in r else [])) for r in results]
            calls += answer["calls"]
            assert answer["delivered"] == []
        assert got == expected, mode
        assert _requests(calls) == _requests([c for r in rows for c in r["requests"]]
                                             if size == 1 or "on_batch" not in source
                                             else [c for r in rows[::size] for c in r["requests"]]), mode
    cli = [json.loads(line) for answer in deployed["cli"] for line in answer["body"].splitlines()]
    assert [(r["outcome"], r["status"], _dump(r["events"])) for r in cli] == expected

    if name == "on_batch_statuses":
        # Segment's rule: 2xx delivered, 429 and 5xx retried, other 4xx discarded; non-events rejected
        assert [r["outcome"] for r in rows] == [
            "ok", "ok", "ValidationError", "ValidationError", "RetryError", "RetryError", "RetryError", "ok",
            "ok", "ok", "InvalidEventPayload", "InvalidEventPayload"]
        assert json.loads(deployed["lambda"][0]["body"])["outcome"] == "RetryError"
        assert deployed["lambda"][0]["status"] == 503
    if name == "pages_without_a_page_handler":
        assert rows[8]["outcome"] == "EventNotSupported" and expected[8][1] == 200
    if name.startswith("insert_function"):
        assert json.loads(expected[0][2])[0]["properties" if name == "insert_function" else "context"]


@pytest.mark.parametrize(
    ("returned", "fragment"),
    [
        ("'done'", "on_batch returned str 'done'"),
        ("[{'status': 200}]", "on_batch returned 1 statuses for 2 events"),
        ("[{'status': 200}, {'status': '200'}]", "on_batch status 2 is {'status': '200'}"),
        ("[{'status': 200}, {'status': 2.5}]", "on_batch status 2 is {'status': 2.5}"),
    ],
)
def test_wrong_on_batch_answers_are_the_same_error_in_preview_and_deployed(
    returned: str, fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_export import load_handler

    function = tmp_path / "bad_batch.py"
    function.write_text(f"def on_batch(events, settings):\n    return {returned}\n", encoding="utf-8")
    events = [{"type": "track", "userId": "u1", "event": "A"}, {"type": "page", "userId": "u1"}]
    preview = run(function, events, retry=RetryPolicy(max_attempts=1), progress=False)
    handler = load_handler(export(function, tmp_path / "pkg", payloads=[_write(tmp_path / "e.jsonl", events)]))
    for name in list(os.environ):
        if name.startswith(("SEGMENT_", "SEGFN_")):
            monkeypatch.delenv(name)
    answer = handler.lambda_handler({"version": "2.0", "rawPath": "/", "headers": {"content-type": "application/json"},
                                     "requestContext": {"http": {"method": "POST"}},
                                     "body": json.dumps(events)}, None)
    results = json.loads(answer["body"])["results"]
    assert answer["statusCode"] == 500
    assert [r["error"] for r in results] == preview["error"].tolist()
    assert all(fragment in e and "one {'status': <int>" in e for e in preview["error"])


def _write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path
