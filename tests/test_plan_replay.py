"""Tracking plans in replays: report sends everything and counts, block holds violating events back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from segfn_kit import run
from segfn_kit._plan import load_plan
from segfn_kit._replay import ReplayError, replay
from segfn_kit._sink import read_sink, running_sink
from segfn_kit.runtime import PlanError

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
PLAN = ROOT / "sample_payloads" / "plans" / "stripe_plan.json"
KEY = "wk_plan_replay_test_7d21"


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "sink.sqlite3"
    with running_sink(write_key=KEY, store=store) as url:
        yield url, store


def expected(samples: Path) -> tuple[list[str], set[str]]:
    """messageIds of every event of the samples in order (the preview's), and of those with a plan issue."""
    results = run(STRIPE, [str(samples)], plan=PLAN)
    every: list[str] = []
    bad: set[str] = set()
    for events, issues in zip(results["events"], results["issues"], strict=True):
        failing = {i["event_index"] for i in issues}
        for i, event in enumerate(events):
            every.append(event["messageId"])
            if i in failing:
                bad.add(event["messageId"])
    return every, bad


@pytest.mark.parametrize("mode", ["report", "block"])
def test_replay_with_plan_to_the_sink(samples_dir: Path, sink: tuple[str, Path], mode: str) -> None:
    url, store = sink
    ordered, bad = expected(samples_dir / "stripe")
    every = set(ordered)
    assert bad and bad < every
    summary = replay(STRIPE, samples_dir / "stripe", to=url, write_key=KEY, plan=PLAN, plan_mode=mode)
    assert summary.ok
    assert summary.plan is not None
    assert summary.plan["checked"] == len(every) and summary.plan["failing"] == len(bad)
    assert summary.plan["held"] == (len(bad) if mode == "block" else 0)
    assert any("properties.currency" in line for line in summary.plan_examples)
    sent = set(read_sink(store)["message_id"])
    assert sent == (every - bad if mode == "block" else every)  # same messageIds as the preview's
    assert "held back (" + mode + ")" in str(summary)


def test_bad_plan_or_mode_stops_replay_before_it_reads(tmp_path: Path, samples_dir: Path) -> None:
    bad = [{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {"$ref": "#/definitions/nope"}}]
    with pytest.raises(PlanError, match="does not resolve"):
        replay(STRIPE, tmp_path / "absent.jsonl", dry_run=True, plan=bad)
    with pytest.raises(ReplayError, match="plan_mode 'drop'"):
        replay(STRIPE, samples_dir / "stripe", dry_run=True, plan=PLAN, plan_mode="drop")
    with pytest.raises(ReplayError, match="one-process replays only"):
        replay(STRIPE, samples_dir / "stripe", dry_run=True, plan=PLAN, scheduler="local:1")


def test_command_line_replay_plan_block(samples_dir: Path, tmp_path: Path, sink: tuple[str, Path]) -> None:
    url, store = sink
    ordered, bad = expected(samples_dir / "stripe")
    every = set(ordered)
    env = {**os.environ, "SEGMENT_WRITE_KEY": KEY, "SEGMENT_API_HOST": url}
    cmd = [sys.executable, "-m", "segfn_kit", "replay", str(STRIPE), str(samples_dir / "stripe"),
           "--plan", str(PLAN), "--plan-mode", "block"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"{len(every):,} events checked, {len(bad):,} with plan issues" in out.stdout
    assert set(read_sink(store)["message_id"]) == every - bad
    broken = tmp_path / "broken.json"
    broken.write_text('{"nope": 1}', encoding="utf-8")
    out = subprocess.run([*cmd[:6], "--plan", str(broken), "--dry-run"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "broken.json: not a tracking plan" in out.stderr
    assert len(load_plan(PLAN)) == 6
