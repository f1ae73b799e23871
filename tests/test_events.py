"""Event frames for destination runs: from files, from a source run, generated."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from segfn_kit import run, sample_events
from segfn_kit.spec import validate

TRACK = {"type": "track", "userId": "u1", "event": "Order Failed", "properties": {"email": "a@example.com"}}
IDENTIFY = {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}}


def test_generated_events_are_valid_deterministic_and_cycle_types() -> None:
    first = sample_events(n=14)
    again = sample_events(n=14)
    other = sample_events(n=14, seed=1)
    assert first["event"].tolist() == again["event"].tolist()
    assert first["event"].tolist() != other["event"].tolist()
    assert first["event_type"].tolist()[:6] == ["identify", "track", "page", "screen", "group", "alias"]
    for event in first["event"]:
        assert validate(event) == [], event
    assert len({e["messageId"] for e in first["event"]}) == 14
    names = {e["event"] for e in first["event"] if e["type"] == "track"}
    assert {"Order Completed", "Order Failed", "Support Requested"} <= names
    assert (first["source"] == "generated").all() and first["error"].isna().all()


def test_generated_types_can_be_chosen_including_delete() -> None:
    events = sample_events(n=3, types=["track", "delete"])
    assert events["event_type"].tolist() == ["track", "delete", "track"]
    delete = events["event"].iloc[1]
    assert set(delete) == {"type", "userId", "messageId", "timestamp"}
    with pytest.raises(ValueError, match="cannot generate events of type"):
        sample_events(types=["purchase"])


def test_json_lines_with_a_bad_line_keep_every_other_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(TRACK) + "\n\n{broken\n" + json.dumps(IDENTIFY) + "\n[1, 2]\n")
    events = sample_events(path)
    assert events.index.tolist() == ["events.jsonl#1", "events.jsonl#3", "events.jsonl#4", "events.jsonl#5"]
    assert events["event"].iloc[0] == TRACK
    assert events["event"].iloc[1] is None
    assert "line 3: not JSON" in events["error"].iloc[1] and "fix or remove the line" in events["error"].iloc[1]
    assert events["event_type"].tolist() == ["track", None, "identify", None]
    assert events["event"].iloc[3] == [1, 2]  # kept as it is; the run says why it is no event
    assert events["position"].tolist() == [1, 3, 4, 5]


def test_json_shapes_gzip_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "one.json").write_text(json.dumps(TRACK))
    (folder / "array.json").write_text(json.dumps([TRACK, IDENTIFY]))
    (folder / "batch.json").write_text(json.dumps({"batch": [IDENTIFY], "sentAt": "2026-01-01T00:00:00Z"}))
    (folder / "day.jsonl.gz").write_bytes(gzip.compress((json.dumps(TRACK) + "\n").encode()))
    (folder / "notes.txt").write_text("not an event file")
    events = sample_events(folder)
    assert events.index.tolist() == [
        "exports/array.json#1", "exports/array.json#2", "exports/batch.json#1",
        "exports/day.jsonl.gz#1", "exports/one.json",
    ]
    assert events["event_type"].tolist() == ["track", "identify", "identify", "track", "track"]
    globbed = sample_events(tmp_path / "**" / "*.json")
    assert globbed.index.tolist() == ["array.json#1", "array.json#2", "batch.json#1", "one.json"]


def test_empty_and_unreadable_files_are_rows_with_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_text("  \n")
    (tmp_path / "latin.json").write_bytes(b'{"type": "track", "event": "caf\xe9"}')
    events = sample_events(tmp_path / "empty.json", tmp_path / "latin.json")
    assert events["error"].iloc[0].endswith("the file is empty")
    assert "cannot read the file" in events["error"].iloc[1]


def test_missing_path_and_unknown_sources_raise_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or directory of events"):
        sample_events(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="no 'events' column"):
        sample_events(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="cannot read events from a int"):
        sample_events(5)  # type: ignore[arg-type]


def test_lists_and_single_events() -> None:
    events = sample_events([TRACK, IDENTIFY])
    assert events.index.tolist() == ["events#1", "events#2"]
    assert sample_events(TRACK).index.tolist() == ["events"]


def test_the_same_file_twice_keeps_ids_unique(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text(json.dumps(TRACK))
    events = sample_events(path, path)
    assert events.index.tolist() == ["e.json", "e.json@2"]


def test_events_from_a_source_run_remember_their_payload() -> None:
    source = '''
from segfn_kit.runtime import Segment, EventNotSupported
def on_request(request, settings):
    body = request.json()
    if body.get("type") != "customer.created":
        raise EventNotSupported(body.get("type"))
    Segment.identify(user_id=body["id"], traits={"email": body["email"]})
    Segment.track(user_id=body["id"], event="Customer Created")
'''
    results = run(source, [{"type": "customer.created", "id": "cus_1", "email": "a@example.com"},
                           {"type": "invoice.voided"}])
    events = sample_events(results)
    pid = results.index[0]
    assert events.index.tolist() == [f"{pid}:1", f"{pid}:2"]
    assert events["payload"].tolist() == [pid, pid]
    assert events["event_type"].tolist() == ["identify", "track"]
    assert events["event"].tolist() == results["events"].iloc[0]
    # an event frame passes through unchanged
    assert sample_events(events).index.tolist() == events.index.tolist()


SAMPLE_FILES = sorted((Path(__file__).resolve().parents[1] / "sample_payloads" / "segment_events").glob("*.jsonl"))


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=[p.name for p in SAMPLE_FILES])
def test_every_sample_event_is_a_spec_event_or_meant_to_be_bad(path: Path) -> None:
    """Adding a sample file adds a case: ``bad_*`` files hold only non-events, the rest only valid ones."""
    from segfn_kit._destination import run_destination
    from segfn_kit.runtime import Function

    events = sample_events(path)
    assert len(events)
    noop = Function.from_source("def on_batch(events, settings):\n    return None\n")
    out = run_destination(noop, events, batch=True)
    if path.name.startswith("bad_"):
        valid = events[out["outcome"] != "InvalidEventPayload"]
        # the one good line in the bad file shows the others are rejected for their own reasons
        assert len(valid) == 1, out["error"].tolist()
    else:
        assert (out["outcome"] == "ok").all(), out["error"].tolist()
        for event in events["event"]:
            assert validate(event) == [], event
