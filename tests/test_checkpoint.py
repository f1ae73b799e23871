"""Content-keyed checkpoints: file and directory layouts, changed bytes, clear errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from segfn_kit._checkpoint import Checkpoint, CheckpointError, CheckpointKey


def test_a_file_checkpoint_survives_reopening_and_sees_changed_bytes(tmp_path: Path) -> None:
    data = tmp_path / "a.jsonl"
    data.write_bytes(b'{"n": 1}\n{"n": 2}\n')
    key = CheckpointKey.of_file(data)
    cp = Checkpoint(tmp_path / "replay.ckpt", run="r1")
    cp.mark(key, complete=False, position=1, retry=["a.jsonl#1"])
    again = Checkpoint(tmp_path / "replay.ckpt", run="r1")
    entry = again.get(key)
    assert entry is not None and (entry.position, entry.retry, entry.done) == (1, ["a.jsonl#1"], False)
    again.mark(key, payloads=2)
    assert Checkpoint(tmp_path / "replay.ckpt").done(key)
    data.write_bytes(b'{"n": 1}\n{"n": 3}\n')
    changed = CheckpointKey.of_file(data)
    assert changed.location == key.location and changed.digest != key.digest
    reopened = Checkpoint(tmp_path / "replay.ckpt", run="r1")
    assert not reopened.done(changed) and reopened.get(changed) is None
    old = reopened.changed(changed)
    assert old is not None and old.digest == key.digest and old.position == 2
    assert list(tmp_path.glob("*.tmp")) == []  # atomic writes leave nothing behind


def test_byte_ranges_are_units_of_their_own(tmp_path: Path) -> None:
    data = tmp_path / "big.jsonl"
    data.write_bytes(b"x" * 3000)
    first, second = CheckpointKey.of_file(data, 0, 1000), CheckpointKey.of_file(data, 1000, 3000)
    assert first.digest == CheckpointKey.of_stream(data, io.BytesIO(b"x" * 3000), 0, 1000).digest
    assert first.location.endswith("big.jsonl@0-1000") and first.digest != second.digest
    cp = Checkpoint(tmp_path / "ckpt", directory=True)
    cp.mark(first)
    assert cp.done(first) and not cp.done(second)
    assert CheckpointKey.of_bytes("s3://bucket/big.jsonl", b"x").location == "s3://bucket/big.jsonl"


def test_processes_mark_their_own_units_in_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    code = (
        "import sys\n"
        "from segfn_kit._checkpoint import Checkpoint, CheckpointKey\n"
        "w = int(sys.argv[1]); cp = Checkpoint(sys.argv[2], run='r', directory=True)\n"
        "for i in range(20):\n"
        "    cp.mark(CheckpointKey.of_bytes(f's3://b/part-{w}-{i}', f'{w}/{i}'.encode()), payloads=i)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(w), str(folder)]) for w in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    cp = Checkpoint(folder, run="r")
    assert len(cp.entries()) == 60 and all(e.done for e in cp.entries())
    assert cp.done(CheckpointKey.of_bytes("s3://b/part-2-7", b"2/7"))
    with pytest.raises(CheckpointError, match="another replay"):
        Checkpoint(folder, run="other")


@pytest.mark.parametrize("text, says", [
    ("[]", "a JSON list"),
    ('"x"', "a JSON string"),
    ("{", "not JSON"),
    ('{"version": 3}', "version 3"),
    ('{"version": 2, "run": "r", "entries": {"a": {"location": "b", "digest": "d", "complete": true, '
     '"position": 0, "retry": []}}}', "names 'b'"),
    ('{"version": 2, "run": "r", "entries": {"a": {"location": "a", "digest": "d", "complete": true, '
     '"position": -1, "retry": []}}}', "wrong type"),
])
def test_malformed_checkpoints_are_clear_errors(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(CheckpointError, match="delete it to start over") as info:
        Checkpoint(path, run="r")
    assert says in str(info.value) and str(path) in str(info.value)


def test_layout_mistakes_are_clear(tmp_path: Path) -> None:
    (tmp_path / "file").write_text(json.dumps({"version": 2, "run": None, "entries": {}}))
    with pytest.raises(CheckpointError, match="not a directory"):
        Checkpoint(tmp_path / "file", directory=True)
    (tmp_path / "dir").mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        Checkpoint(tmp_path / "dir", directory=False)
    with pytest.raises(CheckpointError, match="cannot read"):
        CheckpointKey.of_file(tmp_path / "absent.jsonl")
