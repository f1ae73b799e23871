"""Replay calls the function in killable worker processes: hostile payloads cost their own row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from segfn_kit._checkpoint import Checkpoint
from segfn_kit._replay import ReplayError, replay
from segfn_kit._sink import read_sink, running_sink
from tests._archives import write_archive

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
KEY = "wk_replay_iso_5d21"

HOSTILE = '''\
import os
from segfn_kit.runtime import Segment

def on_request(request, settings):
    body = request.json()
    what = body.get("do")
    if what == "loop":
        while True:
            try:
                while True:
                    pass
            except:  # noqa: E722 - swallows the timeout signal: only a kill stops it
                pass
    if what == "exit":
        os._exit(3)
    if what == "allocate":
        hoard = bytearray(6 * 2**30)
        return len(hoard)
    Segment.track(user_id=body["user"], event="Seen", properties={"n": body["n"]})
'''

HOSTILE_AT = {7: "loop", 300: "exit", 301: "allocate"}  # around the first chunk boundary (256)
TOTAL = 400


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    fn = tmp_path / "hostile.py"
    fn.write_text(HOSTILE)
    archive = tmp_path / "archive.jsonl"
    with archive.open("w") as fh:
        for n in range(TOTAL):
            body: dict[str, object] = {"user": f"u{n}", "n": n}
            if n in HOSTILE_AT:
                body["do"] = HOSTILE_AT[n]
            fh.write(json.dumps(body) + "\n")
    return fn, archive


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    store = tmp_path / "sink.sqlite3"
    with running_sink(write_key=KEY, store=store) as url:
        yield url, store


def test_hostile_payloads_are_their_own_errors_and_the_rest_is_delivered(
    hostile: tuple[Path, Path], sink: tuple[str, Path], tmp_path: Path
) -> None:
    fn, archive = hostile
    url, store = sink
    ckpt = tmp_path / "ckpt.json"
    env = {**os.environ, "SEGMENT_WRITE_KEY": KEY, "SEGMENT_API_HOST": url}
    cmd = [sys.executable, "-m", "segfn_kit", "replay", str(fn), str(archive), "--checkpoint", str(ckpt)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    # the timed-out payload is not accepted (Segment retries timeouts): exit status 1
    assert out.returncode == 1, out.stderr
    assert f"{TOTAL:,} read" in out.stdout
    assert f"{TOTAL - 3:,} accepted" in out.stdout
    assert "errors        3 payloads ended in an error" in out.stdout
    assert "FunctionTimeout" in out.stdout and "WorkerExit" in out.stdout and "MemoryLimitExceeded" in out.stdout
    assert "not accepted  1 payloads" in out.stdout
    assert KEY not in out.stdout + out.stderr
    stored = read_sink(store)
    assert len(stored) == TOTAL - 3 and stored["message_id"].is_unique
    seen = sorted(int(u[1:]) for u in stored["user_id"])
    assert seen == [n for n in range(TOTAL) if n not in HOSTILE_AT]
    # the checkpoint settled everything but the timeout, which a second run tries again
    retry = sorted(r for entry in Checkpoint(ckpt).entries() for r in entry.retry)
    assert len(retry) == 1 and retry[0].endswith("#8")
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert f"{TOTAL - 1:,} skipped" in again.stdout and "errors        1 payloads" in again.stdout, again.stderr
    assert len(read_sink(store)) == TOTAL - 3  # nothing accepted was sent again


@pytest.mark.parametrize("workers", [1, 2])
def test_api_summary_names_each_failed_payload(hostile: tuple[Path, Path], sink: tuple[str, Path],
                                               workers: int) -> None:
    fn, archive = hostile
    url, store = sink
    summary = replay(fn, archive, to=url, write_key=KEY, workers=workers)
    assert summary.payloads == TOTAL and summary.delivery.accepted == TOTAL - 3
    assert summary.outcomes == {"ok": TOTAL - 3, "timeout": 1, "error": 2}
    errors = dict(line.split(": ", 1) for line in summary.errors)
    by_n = {int(pid.rsplit("#", 1)[1]) - 1: text for pid, text in errors.items()}
    assert sorted(by_n) == sorted(HOSTILE_AT)
    assert by_n[7].startswith("FunctionTimeout")
    assert by_n[300].startswith("WorkerExit") and "exit code 3" in by_n[300]
    assert by_n[301].startswith("MemoryLimitExceeded")
    assert [pid.rsplit("#", 1)[1] for pid in summary.failed_payloads] == ["8"]
    assert len(read_sink(store)) == TOTAL - 3


def test_dry_run_and_out_finish_with_the_hostile_payloads(hostile: tuple[Path, Path], tmp_path: Path) -> None:
    fn, archive = hostile
    events = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "segfn_kit", "replay", str(fn), str(archive), "--out", str(events)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "errors        3 payloads" in out.stdout, out.stderr
    written = [json.loads(line) for line in events.read_text().splitlines()]
    # in input order, hostile payloads left out
    assert [e["properties"]["n"] for e in written] == [n for n in range(TOTAL) if n not in HOSTILE_AT]
    dry = subprocess.run([*cmd[:6], "--dry-run"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert f"{TOTAL:,} read" in dry.stdout and "errors        3 payloads" in dry.stdout, dry.stderr


def test_same_events_and_message_ids_as_in_process(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "archive" / "2025-01.jsonl.gz", 300)
    isolated, in_process = tmp_path / "process.jsonl", tmp_path / "none.jsonl"
    a = replay(STRIPE, archive, out=isolated)
    b = replay(STRIPE, archive, out=in_process, isolation="none")
    assert a.outcomes == b.outcomes and a.events == b.events > 0
    assert isolated.read_text() == in_process.read_text()
    ids = [json.loads(line)["messageId"] for line in isolated.read_text().splitlines()]
    assert len(set(ids)) == len(ids)


def test_several_workers_keep_the_archive_order_and_the_ids(tmp_path: Path) -> None:
    archive = write_archive(tmp_path / "archive" / "2025-01.jsonl.gz", 1300)  # several chunks each
    one, three = tmp_path / "one.jsonl", tmp_path / "three.jsonl"
    a = replay(STRIPE, archive, out=one, workers=1)
    b = replay(STRIPE, archive, out=three, workers=3)
    assert a.outcomes == b.outcomes and a.events == b.events > 1000
    assert one.read_text() == three.read_text()
    cmd = [sys.executable, "-m", "segfn_kit", "replay", str(STRIPE), str(archive), "--dry-run", "--workers", "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and f"{a.events:,} emitted" in out.stdout, out.stderr


def test_workers_are_checked(tmp_path: Path) -> None:
    archive = tmp_path / "a.jsonl"
    archive.write_text('{"user": "u1"}\n')
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ReplayError, match="workers must be a whole number"):
            replay(STRIPE, archive, dry_run=True, workers=bad)  # type: ignore[arg-type]
    with pytest.raises(ReplayError, match="give one or the other"):
        replay(STRIPE, archive, dry_run=True, workers=2, isolation="none")
    with pytest.raises(ReplayError, match="with a scheduler the cluster's workers"):
        replay(STRIPE, archive, dry_run=True, workers=2, scheduler="local:1")
    cmd = [sys.executable, "-m", "segfn_kit", "replay", str(STRIPE), str(archive), "--dry-run",
           "--workers", "2", "--scheduler", "local:1"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 2 and "--workers is for a replay on this machine" in out.stderr


def test_isolation_is_checked_and_the_command_has_it(tmp_path: Path) -> None:
    archive = tmp_path / "a.jsonl"
    archive.write_text('{"user": "u1"}\n')
    with pytest.raises(ReplayError, match='isolation must be "process" or "none"'):
        replay(STRIPE, archive, dry_run=True, isolation="thread")
    help_text = subprocess.run([sys.executable, "-m", "segfn_kit", "replay", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert "--isolation {process,none}" in help_text and "--workers N" in help_text
