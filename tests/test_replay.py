"""Replay of archives through a source function: dry run, out file, delivery, resume."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from segfn_kit import run
from segfn_kit._checkpoint import Checkpoint
from segfn_kit._replay import ReplayError, replay
from segfn_kit._sink import read_sink, running_sink
from segfn_kit.runtime import TrackingClient
from tests._archives import expected_events, write_archive

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
KEY = "wk_replay_test_41c7"


def _retry(ckpt: Path) -> list[str]:
    return sorted(r for entry in Checkpoint(ckpt).entries() for r in entry.retry)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return write_archive(tmp_path / "archive" / "2025-01.jsonl.gz", 400)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "sink.sqlite3"
    with running_sink(write_key=KEY, store=store) as url:
        yield url, store


def test_dry_run_counts_outcomes_and_sends_nothing(archive: Path) -> None:
    summary = replay(STRIPE, archive, dry_run=True)
    assert (summary.payloads, summary.events) == (400, expected_events(400))
    assert summary.outcomes == {"EventNotSupported": 100, "ok": 300}
    assert summary.delivery.requests == 0 and summary.mode == "dry-run"


def test_out_writes_the_events_run_would_emit(archive: Path, tmp_path: Path, samples_dir: Path) -> None:
    out = tmp_path / "events.jsonl"
    replay(STRIPE, archive, out=out)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [e for events in run(STRIPE, archive)["events"] for e in events]
    assert written == expected and len(written) == expected_events(400)
    buffer = io.StringIO()
    replay(STRIPE, samples_dir / "stripe", out=buffer)
    assert buffer.getvalue().count("\n") > 5


def test_delivers_every_event_once(archive: Path, sink: tuple[str, Path], tmp_path: Path) -> None:
    url, store = sink
    summary = replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=tmp_path / "ckpt.json")
    assert summary.ok and summary.delivery.accepted == expected_events(400)
    stored = read_sink(store)
    assert len(stored) == expected_events(400) and stored["message_id"].is_unique
    assert stored["event"].value_counts().to_dict() == {"Customer Created": 100, "Invoice Paid": 100,
                                                        "Charge Succeeded": 100}
    assert "400 read" in str(summary) and "dead letters  0" in str(summary)


def test_second_run_resumes_without_sending_again(archive: Path, sink: tuple[str, Path], tmp_path: Path) -> None:
    url, store = sink
    ckpt = tmp_path / "ckpt.json"
    replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt)
    again = replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt)
    assert (again.resumed, again.events, again.delivery.requests) == (400, 0, 0)
    assert len(read_sink(store)) == expected_events(400)


def test_undelivered_payloads_are_retried_on_resume(archive: Path, sink: tuple[str, Path], tmp_path: Path) -> None:
    url, store = sink
    ckpt = tmp_path / "ckpt.json"
    httpx.post(url + "/__faults", json={"fail_rate": 1.0, "mix": {"500": 1}})
    with TrackingClient(KEY, host=url, budget=0.3, backoff=0.05, dead_letter=tmp_path / "dead.jsonl") as client:
        failed = replay(STRIPE, archive, checkpoint=ckpt, client=client)
    assert not failed.ok and failed.delivery.dead_letters == expected_events(400)
    assert len(failed.failed_payloads) == 300  # the 100 unmapped payloads had nothing to send
    assert "not accepted  300 payloads" in str(failed)
    assert len((tmp_path / "dead.jsonl").read_text().splitlines()) == expected_events(400)
    (entry,) = Checkpoint(ckpt).entries()
    assert entry.complete and entry.position == 400 and len(entry.retry) == 300
    httpx.post(url + "/__faults", json={"fail_rate": 0.0})
    resumed = replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt)
    assert resumed.ok and resumed.resumed == 100 and resumed.events == expected_events(400)
    assert [e.done for e in Checkpoint(ckpt).entries()] == [True]
    assert len(read_sink(store)) == expected_events(400)


def test_checkpoint_of_another_replay_is_refused(archive: Path, tmp_path: Path, sink: tuple[str, Path]) -> None:
    url, _ = sink
    ckpt = tmp_path / "ckpt.json"
    replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt)
    with pytest.raises(ReplayError, match="another replay"):
        replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt, settings={"unused": "x"})
    other = tmp_path / "fn.py"
    other.write_text(STRIPE.read_text() + "\n# edited\n")
    with pytest.raises(ReplayError, match="another replay"):
        replay(other, archive, to=url, write_key=KEY, checkpoint=ckpt)
    ckpt.write_text("{not json")
    with pytest.raises(ReplayError, match="delete it"):
        replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt)


def test_oversize_event_goes_to_dead_letters_and_the_rest_is_delivered(tmp_path: Path, sink: tuple[str, Path]) -> None:
    url, store = sink
    fn = tmp_path / "fn.py"
    fn.write_text(
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    body = request.json()\n"
        "    Segment.track(user_id=body['user'], event='Note', properties={'text': body['text']})\n"
    )
    payloads = tmp_path / "notes.jsonl"
    payloads.write_text("\n".join(json.dumps({"user": f"u{i}", "text": "z" * (40_000 if i == 2 else 10)})
                                  for i in range(5)) + "\n")
    dead = tmp_path / "dead.jsonl"
    summary = replay(fn, payloads, to=url, write_key=KEY, dead_letter=dead)
    assert summary.outcomes == {"ok": 4, "undeliverable": 1} and len(summary.undeliverable) == 1
    assert not summary.ok
    line = json.loads(dead.read_text())
    assert line["payload_id"] == "notes.jsonl#3" and "32,768" in line["reason"]
    assert line["messageId"] == summary.undeliverable[0]
    assert read_sink(store)["user_id"].tolist() == ["u0", "u1", "u3", "u4"]


def test_folders_plain_and_gzip_files(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    write_archive(folder / "a.jsonl", 30)
    write_archive(folder / "nested" / "b.jsonl.gz", 30, start=30)
    summary = replay(STRIPE, folder, dry_run=True)
    assert summary.payloads == 60 and summary.events == expected_events(60)


def test_mistakes_are_clear(archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGMENT_WRITE_KEY", raising=False)
    with pytest.raises(ReplayError, match="SEGMENT_WRITE_KEY"):
        replay(STRIPE, archive, to="http://127.0.0.1:9")
    with pytest.raises(ReplayError, match="no archives"):
        replay(STRIPE, dry_run=True)
    destination = ROOT / "segfn_kit" / "examples" / "zendesk_destination.py"
    with pytest.raises(ReplayError, match="destination function"):
        replay(destination, archive, dry_run=True)
    settings = tmp_path / "settings.json"
    settings.write_text("[1]")
    with pytest.raises(ReplayError, match="write a flat object of setting names"):
        replay(STRIPE, archive, dry_run=True, settings=settings)


def test_command_line_replay_to_the_sink(archive: Path, tmp_path: Path, sink: tuple[str, Path]) -> None:
    url, store = sink
    env = {**os.environ, "SEGMENT_WRITE_KEY": KEY, "SEGMENT_API_HOST": url}
    cmd = [sys.executable, "-m", "segfn_kit", "replay", str(STRIPE), str(archive), "--checkpoint", str(tmp_path / "c")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "400 read" in out.stdout and f"{expected_events(400):,} accepted" in out.stdout
    assert KEY not in out.stdout + out.stderr
    assert len(read_sink(store)) == expected_events(400)
    missing = subprocess.run([*cmd[:5], "--dry-run", str(tmp_path / "absent.jsonl")], capture_output=True,
                             text=True, env=env, cwd=tmp_path)
    assert missing.returncode == 2 and "absent.jsonl" in missing.stderr



def test_retry_error_payloads_are_tried_again_on_resume(tmp_path: Path, sink: tuple[str, Path]) -> None:
    url, store = sink
    fn = tmp_path / "fn.py"
    flag = tmp_path / "upstream-down"
    flag.write_text("yes")
    fn.write_text(
        "import pathlib\n"
        "from segfn_kit.runtime import RetryError, Segment\n"
        f"FLAG = pathlib.Path({str(flag)!r})\n"
        "def on_request(request, settings):\n"
        "    body = request.json()\n"
        "    if body['n'] == 1 and FLAG.exists():\n"
        "        raise RetryError('the enrichment API answered 503')\n"
        "    Segment.track(user_id=f\"u{body['n']}\", event='Seen')\n"
    )
    payloads = tmp_path / "p.jsonl"
    payloads.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(3)))
    ckpt = tmp_path / "ckpt.json"
    first = replay(fn, payloads, to=url, write_key=KEY, checkpoint=ckpt)
    assert first.outcomes == {"RetryError": 1, "ok": 2} and first.failed_payloads == ["p.jsonl#2"]
    assert _retry(ckpt) == ["p.jsonl#2"]
    flag.unlink()
    second = replay(fn, payloads, to=url, write_key=KEY, checkpoint=ckpt)
    assert second.ok and second.resumed == 2 and second.outcomes == {"ok": 1}
    assert sorted(read_sink(store)["user_id"]) == ["u0", "u1", "u2"]
    with pytest.raises(ReplayError, match="checkpoint"):
        replay(fn, payloads, dry_run=True, checkpoint=ckpt)


# -- Segment.set objects ----------------------------------------------------------------------

ROOMS_FUNCTION = (
    "from segfn_kit.runtime import Segment\n"
    "def on_request(request, settings):\n"
    "    body = request.json()\n"
    "    Segment.track(user_id=body['user'], event='Room Listed')\n"
    "    Segment.set(collection=body.get('collection', 'rooms'), id=body['room'], properties={'beds': body['beds']})\n"
)


def rooms_archive(tmp_path: Path, n: int, bad: int | None = None) -> tuple[Path, Path]:
    fn = tmp_path / "rooms.py"
    fn.write_text(ROOMS_FUNCTION)
    payloads = tmp_path / "rooms.jsonl"
    lines = [{"user": f"u{i}", "room": f"r{i}", "beds": i % 4, **({"collection": "Rooms"} if i == bad else {})}
             for i in range(n)]
    payloads.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return fn, payloads


def test_replay_delivers_objects_with_the_events(tmp_path: Path, sink: tuple[str, Path]) -> None:
    url, store = sink
    fn, payloads = rooms_archive(tmp_path, 250)
    ckpt = tmp_path / "ckpt.json"
    summary = replay(fn, payloads, to=url, objects_to=url, write_key=KEY, checkpoint=ckpt)
    assert summary.ok and (summary.events, summary.objects) == (250, 250)
    assert (summary.delivery.accepted, summary.delivery.objects_accepted) == (250, 250)
    assert "objects       250 emitted, 250 accepted" in str(summary)
    stored = read_sink(store, objects=True)
    assert stored["id"].tolist() == [f"r{i}" for i in range(250)]
    assert stored["properties"].tolist() == [{"beds": i % 4} for i in range(250)]
    requests = read_sink(store, requests=True)
    assert (requests["endpoint"] == "set").sum() == 3  # 100 + 100 + 50 objects
    again = replay(fn, payloads, to=url, objects_to=url, write_key=KEY, checkpoint=ckpt)
    assert (again.resumed, again.objects, again.delivery.requests) == (250, 0, 0)


def test_payloads_whose_objects_were_not_accepted_are_retried_on_resume(
    tmp_path: Path, sink: tuple[str, Path]
) -> None:
    url, store = sink
    fn, payloads = rooms_archive(tmp_path, 20)
    ckpt = tmp_path / "ckpt.json"
    dead = tmp_path / "dead.jsonl"
    # the Tracking API takes the events; the Objects API host does not answer at all
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with TrackingClient(KEY, host=url, objects_host=nowhere, budget=0.3, backoff=0.05, dead_letter=dead) as client:
        failed = replay(fn, payloads, checkpoint=ckpt, client=client)
    assert not failed.ok and failed.delivery.accepted == 20 and failed.delivery.objects_accepted == 0
    assert len(failed.failed_payloads) == 20 and len(failed.delivery.dead_letter_objects) == 20
    assert sorted(_retry(ckpt)) == sorted(f"rooms.jsonl#{i + 1}" for i in range(20))
    lines = [json.loads(line) for line in dead.read_text().splitlines()]
    assert [(line["collection"], line["object"]["id"]) for line in lines] == [("rooms", f"r{i}") for i in range(20)]
    assert read_sink(store, objects=True).empty
    resumed = replay(fn, payloads, to=url, objects_to=url, write_key=KEY, checkpoint=ckpt)
    assert resumed.ok and resumed.objects == 20 and _retry(ckpt) == []
    assert read_sink(store, objects=True)["id"].tolist() == [f"r{i}" for i in range(20)]
    assert len(read_sink(store, unique=True)) == 20  # the events came again under the same messageIds


def test_invalid_object_dead_letters_its_payload_and_the_rest_is_delivered(
    tmp_path: Path, sink: tuple[str, Path]
) -> None:
    url, store = sink
    fn, payloads = rooms_archive(tmp_path, 5, bad=3)
    dead = tmp_path / "dead.jsonl"
    summary = replay(fn, payloads, to=url, objects_to=url, write_key=KEY, dead_letter=dead)
    assert summary.outcomes == {"ok": 4, "undeliverable": 1} and not summary.ok
    assert summary.undeliverable == ["objects[0]"]
    held, line = [json.loads(text) for text in dead.read_text().splitlines()]
    assert line["payload_id"] == "rooms.jsonl#4" and "lower case" in line["reason"]
    assert line["object"] == {"collection": "Rooms", "id": "r3", "properties": {"beds": 3}}
    # the payload's valid event was not sent either: it is kept beside the object, not lost
    assert held["payload_id"] == "rooms.jsonl#4" and held["reason"].startswith("held back")
    assert held["event"]["userId"] == "u3"
    assert read_sink(store, objects=True)["id"].tolist() == ["r0", "r1", "r2", "r4"]
    assert read_sink(store)["user_id"].tolist() == ["u0", "u1", "u2", "u4"]  # none of the bad payload


def test_command_line_replay_sends_objects_to_objects_to(tmp_path: Path, sink: tuple[str, Path]) -> None:
    url, store = sink
    fn, payloads = rooms_archive(tmp_path, 3)
    env = {**os.environ, "SEGMENT_WRITE_KEY": KEY, "SEGMENT_API_HOST": url}
    env.pop("SEGMENT_OBJECTS_HOST", None)
    cmd = [sys.executable, "-m", "segfn_kit", "replay", str(fn), str(payloads), "--objects-to", url]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "objects       3 emitted, 3 accepted" in out.stdout
    assert read_sink(store, objects=True)["id"].tolist() == ["r0", "r1", "r2"]


# -- checkpoints keyed by content -------------------------------------------------------------


def test_an_archive_rewritten_at_the_same_path_is_replayed_not_skipped(
    archive: Path, sink: tuple[str, Path], tmp_path: Path
) -> None:
    url, store = sink
    ckpt = tmp_path / "ckpt.json"
    replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt)
    write_archive(archive, 400, start=400)  # new content, same path
    again = replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt)
    assert again.changed == [str(archive.resolve())] and again.resumed == 0
    assert again.ok and again.delivery.accepted == expected_events(400, start=400)
    assert "changed       1 archives" in str(again)
    assert len(read_sink(store)) == expected_events(400) + expected_events(400, start=400)
    third = replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt)
    assert (third.resumed, third.events, third.changed) == (400, 0, [])


def test_a_new_archive_next_to_replayed_ones_is_replayed(
    archive: Path, sink: tuple[str, Path], tmp_path: Path
) -> None:
    url, store = sink
    ckpt = tmp_path / "ckpt.json"
    replay(STRIPE, archive.parent, to=url, write_key=KEY, checkpoint=ckpt)
    write_archive(archive.parent / "2025-02.jsonl", 40, start=400)
    again = replay(STRIPE, archive.parent, to=url, write_key=KEY, checkpoint=ckpt)
    assert again.resumed == 400 and again.delivery.accepted == expected_events(40, start=400)
    assert len(read_sink(store)) == expected_events(440)


def test_a_checkpoint_past_the_end_of_an_archive_is_an_error(
    archive: Path, sink: tuple[str, Path], tmp_path: Path
) -> None:
    url, store = sink
    ckpt = tmp_path / "ckpt.json"
    data = {"version": 2, "run": None, "entries": {}}
    location = str(archive.resolve())
    from segfn_kit._checkpoint import CheckpointKey

    digest = CheckpointKey.of_file(archive).digest
    data["entries"] = {location: {"location": location, "digest": digest, "complete": True,
                                  "position": 10_000, "retry": [], "info": {}}}
    ckpt.write_text(json.dumps(data))
    with pytest.raises(ReplayError, match=r"says 10,000 payloads .* holds 400"):
        replay(STRIPE, archive, to=url, write_key=KEY, checkpoint=ckpt)
    assert not store.exists() or len(read_sink(store)) == 0


@pytest.mark.parametrize("text, says", [
    ("[1, 2]", "a JSON list"),
    ('{"version": 1, "key": "k", "done": 3}', "older segfn_kit"),
    ('{"version": 2, "run": null, "entries": [1]}', "'entries' is list"),
    ('{"version": 2, "run": null, "entries": {"a": {"location": "a"}}}', "has no 'digest'"),
    ("\ud83d", "cannot read the checkpoint"),
])
def test_a_malformed_checkpoint_is_a_clear_error_with_exit_2(
    archive: Path, tmp_path: Path, text: str, says: str
) -> None:
    ckpt = tmp_path / "ckpt.json"
    if text == "\ud83d":
        ckpt.write_bytes(b"\xed\xa0\xbd")  # a lone surrogate, not UTF-8
    else:
        ckpt.write_text(text, encoding="utf-8")
    env = {**os.environ, "SEGMENT_WRITE_KEY": KEY, "SEGMENT_API_HOST": "http://127.0.0.1:9"}
    cmd = [sys.executable, "-m", "segfn_kit", "replay", str(STRIPE), str(archive), "--checkpoint", str(ckpt),
           "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and str(ckpt) in out.stderr and "delete it" in out.stderr
    assert says in out.stderr


def test_unloadable_payloads_fail_the_replay_and_are_listed(
    tmp_path: Path, sink: tuple[str, Path]
) -> None:
    url, store = sink
    folder = tmp_path / "archive"
    write_archive(folder / "a.jsonl", 8)
    (folder / "b.jsonl").write_text('{"id": "evt_1", "type": "payout.paid"\n{not json}\n')
    dry = replay(STRIPE, folder, dry_run=True)
    assert not dry.ok and len(dry.unloadable) == 2 and dry.unloadable[0].startswith("archive/b.jsonl#1: ")
    assert "unloadable    2 payloads could not be loaded" in str(dry) and "archive/b.jsonl#2" in str(dry)
    ckpt = tmp_path / "ckpt.json"
    env = {**os.environ, "SEGMENT_WRITE_KEY": KEY, "SEGMENT_API_HOST": url}
    cmd = [sys.executable, "-m", "segfn_kit", "replay", str(STRIPE), str(folder), "--checkpoint", str(ckpt),
           "--no-progress"]
    for _ in range(2):  # a resume reads them again: still a failure, still listed
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert out.returncode == 1, out.stderr
        assert "unloadable    2 payloads" in out.stdout and "archive/b.jsonl#1" in out.stdout
    assert len(read_sink(store)) == expected_events(8)


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_lines_read_where_the_function_runs_give_what_the_loader_gives(tmp_path: Path, isolation: str) -> None:
    # every shape of line: bare, envelopes (JSON and text bodies), a 20-digit integer (parsed by
    # the standard library), a BOM, blanks, a refused content type, a bad line
    from segfn_kit._payloads import iter_payloads
    from segfn_kit.runtime import Function

    fn_file = tmp_path / "fn.py"
    fn_file.write_text(
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    body = request.json()\n"
        "    Segment.track(anonymous_id='a', event='Seen', properties={'body': body,\n"
        "                  'ctype': request.headers.get('content-type')})\n"
    )
    lines = [
        '\ufeff{"id": 1, "n": 1.5}',
        "",
        '{"headers": {"Content-Type": "application/json"}, "body": {"id": 2}}',
        '{"headers": {"X-A": "1"}, "body": "{\\"id\\": 3}"}',
        '{"id": 12345678901234567890123}',
        "   ",
        '{"headers": {"Content-Type": "application/xml"}, "body": "<a/>"}',
        '{"id": ',
        '{"b": 2, "a": [1, {"z": null}]}',
    ]
    archive = tmp_path / "mixed.jsonl"
    archive.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = io.StringIO()
    kw = {"workers": 2} if isolation == "process" else {}
    summary = replay(fn_file, archive, out=out, isolation=isolation, **kw)  # type: ignore[arg-type]
    fn = Function.from_file(fn_file)
    expected = [
        json.dumps(e, ensure_ascii=False, separators=(",", ":"))
        for p in iter_payloads(archive, bodies=False) if not p.error
        for e in fn.on_request(p.request()).events
        if p.headers.get("Content-Type") != "application/xml"
    ]
    assert out.getvalue().splitlines() == expected and len(expected) == 5
    assert summary.outcomes == {"error": 1, "ok": 5, "unloadable": 1}
    assert [u.split(": ", 1)[0] for u in summary.unloadable] == ["mixed.jsonl#8"]
    assert summary.errors[0].startswith("mixed.jsonl#7: ") and "415" in summary.errors[0]
