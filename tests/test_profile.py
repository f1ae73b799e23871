"""Field profiles and drift over payload frames."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from segfn_kit import drift, load_payloads, profile
from segfn_kit._cli import main as cli
from segfn_kit._profile import json_type


def frame_of(*bodies: object) -> pd.DataFrame:
    return load_payloads(list(bodies))


def test_types_presence_nulls_distinct_examples() -> None:
    p = profile(
        frame_of(
            {"id": 1, "email": "a@x.com", "plan": None},
            {"id": "2", "email": "b@x.com"},
            {"id": 3, "email": "a@x.com", "plan": "pro"},
            {"other": True},
        )
    )
    assert p.at["id", "types"] == "integer|string"
    assert bool(p.at["id", "mixed_types"]) is True
    assert p.at["id", "present"] == 0.75
    assert p.at["email", "distinct"] == 2
    assert p.at["email", "examples"] == ["a@x.com", "b@x.com"]
    assert bool(p.at["email", "mixed_types"]) is False
    # absent and null are told apart: plan is in 2 of 4 payloads, null in 1 of those 2
    assert p.at["plan", "present"] == 0.5
    assert p.at["plan", "null_rate"] == 0.5
    assert p.at["plan", "types"] == "null|string"
    assert bool(p.at["plan", "mixed_types"]) is False
    assert p.at["other", "rows"] == 4


def test_nested_and_array_item_paths() -> None:
    p = profile(frame_of({"data": {"object": {"items": [{"price": 5}, {"price": "5.00"}]}}}))
    assert p.at["data.object", "types"] == "object"
    assert p.at["data.object.items", "types"] == "array"
    assert p.at["data.object.items[].price", "types"] == "integer|string"
    assert bool(p.at["data.object.items[].price", "mixed_types"])


def test_timestamps_unix_ms_iso_and_mixed() -> None:
    p = profile(
        frame_of(
            {"created": 1700000000, "updated_at": "2026-11-26T13:40:00.123456789Z", "amount": 1700000000,
             "sent_at_ms": 1700000000000, "api_version": "2020-08-27", "when": 1700000000},
            {"created": "2026-11-26T13:40:00Z", "updated_at": "2026-11-27T13:40:00Z"},
        )
    )
    assert p.at["created", "timestamp"] == "iso8601|unix"
    assert p.at["updated_at", "timestamp"] == "iso8601"
    assert p.at["sent_at_ms", "timestamp"] == "unix_ms"
    assert not p.at["amount", "timestamp_like"]  # a number in range, but not a time by name
    assert not p.at["api_version", "timestamp_like"]  # a date-shaped version string
    assert p.attrs["mixed_timestamps"] is True
    assert "created" in p.attrs["timestamp_formats"]["unix"]


def test_profile_by_event_type() -> None:
    frame = frame_of(
        {"type": "customer.created", "data": {"object": {"email": "a@x.com"}}},
        {"type": "invoice.paid", "data": {"object": {"amount_paid": 100}}},
        {"type": "invoice.paid", "data": {"object": {"amount_paid": 200}}},
    )
    p = profile(frame, by="event_type")
    assert p.index.names == ["event_type", "field"]
    assert p.loc[("invoice.paid", "data.object.amount_paid"), "present"] == 1.0
    assert p.loc[("invoice.paid", "data.object.amount_paid"), "rows"] == 2
    assert ("invoice.paid", "data.object.email") not in p.index
    with pytest.raises(KeyError, match="no column 'nope'"):
        profile(frame, by="nope")


def test_drift_added_removed_type_changed() -> None:
    old = frame_of({"id": 1, "plan": "pro", "note": None}, {"id": 2, "plan": "team", "note": None})
    new = frame_of({"id": "1", "seats": 3, "note": "hi"})
    d = drift(old, new)
    assert d["change"].to_dict() == {"id": "type changed", "plan": "removed", "seats": "added"}
    assert d.at["id", "old_types"] == "integer" and d.at["id", "new_types"] == "string"
    assert d.at["seats", "new_present"] == 1.0
    # only-null before, string now: not a type change
    assert "note" not in d.index
    assert drift(old, old).empty


def test_drift_by_event_type_between_profiles() -> None:
    old = profile(frame_of({"type": "a", "x": 1}), by="event_type")
    new = profile(frame_of({"type": "a", "x": 1.5}, {"type": "b", "y": 1}), by="event_type")
    d = drift(old, new)
    assert d.loc[("a", "x"), "change"] == "type changed"
    assert d.loc[("b", "y"), "change"] == "added"


def test_profile_accepts_paths(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"type": "t", "n": 1}')
    assert profile(tmp_path).at["n", "types"] == "integer"


def test_json_type_names() -> None:
    assert json_type(True) == "boolean" and json_type(2**70) == "integer"


def test_cli_profile_and_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    (tmp_path / "old" / "a.json").write_text('{"type": "t", "n": 1, "gone": true}')
    (tmp_path / "new" / "a.json").write_text('{"type": "t", "n": "1"}')
    assert cli(["profile", str(tmp_path / "old"), "--by", "event_type"]) == 0
    out = capsys.readouterr().out
    assert "gone" in out and "1 payloads, 3 fields" in out
    assert cli(["profile", str(tmp_path / "old"), "--drift", str(tmp_path / "new")]) == 0
    out = capsys.readouterr().out
    assert "type changed" in out and "removed" in out
    assert cli(["profile", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
