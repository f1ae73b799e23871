"""Hostile files: each malformed file, HAR entry or archive member is one row, never an exception.

Also the size cap (``max_bytes`` / ``$SEGFN_MAX_BYTES``) against gzip bombs, and the warnings for
numbers that overflow to infinity and keys repeated anywhere in a document.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from segfn_kit import iter_payloads, load_payloads
from segfn_kit._payloads import PayloadError

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def har(*requests: Any) -> str:
    return json.dumps({"log": {"entries": [{"request": r} for r in requests]}})


def gz_stream(path: Path, head: bytes, filler: bytes, repeat: int, tail: bytes) -> Path:
    """A gzip file written a chunk at a time (its expanded content is never held in memory)."""
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(head)
        for _ in range(repeat):
            fh.write(filler)
        fh.write(tail)
    return path


# --------------------------------------------------------------------------- HAR shapes


def test_har_headers_as_an_object_and_post_data_as_a_string(tmp_path: Path) -> None:
    path = write(
        tmp_path / "odd.har",
        har(
            {
                "method": "POST",
                "url": "https://hooks.example.com/in?x=1",
                "headers": {"Content-Type": "application/json", ":authority": "h"},
                "postData": '{"type": "ping"}',
            },
            {"method": "POST", "url": "https://h/x", "headers": [], "postData": 42},
            {"method": "POST", "url": "https://h/x", "headers": "nope", "postData": {"text": "{}"}},
            {"method": "POST", "url": "https://h/y", "headers": [["X-A", "1"]], "postData": None},
        ),
    )
    rows = {p.position: p for p in iter_payloads(path)}
    assert sorted(rows) == [1, 2, 3, 4]
    first = rows[1]
    assert first.error is None
    assert first.headers == {"Content-Type": "application/json"}
    assert first.body == {"type": "ping"} and first.event_type == "ping"
    assert first.query == {"x": "1"}
    assert rows[2].error is not None and "postData must be an object, not int" in rows[2].error
    # headers that are neither a list nor an object: loaded, with the reason as a warning
    assert rows[3].error is None and rows[3].body == {}
    assert rows[3].warning is not None and "headers must be a list" in rows[3].warning
    assert rows[4].error is None and rows[4].headers == {"X-A": "1"} and rows[4].raw == ""


def test_har_entries_of_every_wrong_type_are_rows_or_skipped(tmp_path: Path) -> None:
    odd_entries = [
        None,
        7,
        {"request": "POST"},
        {"request": {"method": "POST", "postData": {"params": [1, {"name": "a", "value": 2}]}}},
        {"request": {"method": "POST", "postData": {"text": 5, "mimeType": 3}}},
        {"request": {"method": "POST", "queryString": [1, {"name": "q"}], "url": 9}},
        {"request": {"method": "POST", "headers": [{"value": "no name"}]}},
        {"request": {"method": "POST", "postData": {"text": "!!", "encoding": "base64"}}},
    ]
    path = write(tmp_path / "odd.har", json.dumps({"log": {"entries": odd_entries}}))
    rows = list(iter_payloads(path))
    assert [r.position for r in rows] == [4, 5, 6, 7, 8]
    by_pos = {r.position: r for r in rows}
    assert by_pos[4].body == {"a": "2"}
    assert by_pos[5].raw == "5"
    assert by_pos[6].url is None
    assert by_pos[7].error is not None and "name/value" in by_pos[7].error
    # an unreadable body is still a request a function would receive: loaded, with the reason
    assert by_pos[8].error is None and by_pos[8].raw == ""
    assert by_pos[8].warning is not None and "not valid base64" in by_pos[8].warning


# --------------------------------------------------------------------------- broken archives


def test_truncated_and_corrupt_gzip_members_are_one_row_each(tmp_path: Path) -> None:
    lines = b"".join(json.dumps({"type": "t", "n": i}).encode() + b"\n" for i in range(2000))
    whole = gzip.compress(lines)
    write(tmp_path / "cut.jsonl.gz", whole[: len(whole) // 2])
    write(tmp_path / "corrupt.json.gz", whole[:10] + b"\x00" * 50 + whole[60:200])
    write(tmp_path / "notgzip.json.gz", b'{"type": "plain"}')
    write(tmp_path / "good.json", '{"type": "fine"}')
    rows = list(iter_payloads(tmp_path))
    by_source: dict[str, list[Any]] = {}
    for row in rows:
        by_source.setdefault(Path(row.source).name, []).append(row)
    assert [r.body for r in by_source["good.json"]] == [{"type": "fine"}]
    cut = by_source["cut.jsonl.gz"]
    assert len(cut) > 1 and all(r.error is None for r in cut[:-1])
    assert cut[-1].error is not None and "truncated or corrupt" in cut[-1].error
    assert cut[-1].payload_id.endswith("#error")
    for name in ("corrupt.json.gz", "notgzip.json.gz"):
        (row,) = by_source[name]
        assert row.error is not None and "cannot read the file" in row.error


# --------------------------------------------------------------------------- the size cap


def test_a_gzip_bomb_is_refused_with_the_cap_named(tmp_path: Path) -> None:
    bomb = gz_stream(tmp_path / "bomb.json.gz", b'{"a": "', b" " * MIB, 8, b'"}')
    ok = write(tmp_path / "ok.json.gz", gzip.compress(b'{"type": "small"}'))
    rows = {Path(p.source).name: p for p in iter_payloads(bomb, ok, max_bytes=MIB)}
    assert rows["ok.json.gz"].body == {"type": "small"}
    error = rows["bomb.json.gz"].error
    assert error is not None
    assert "decompressed" in error and "1 MiB size cap" in error
    assert "max_bytes=" in error and "SEGFN_MAX_BYTES" in error
    # raised cap: the same file loads
    (row,) = list(iter_payloads(bomb, max_bytes=16 * MIB))
    assert row.error is None and len(row.body["a"]) == 8 * MIB


def test_a_gzip_whose_trailer_understates_is_still_capped_while_streaming(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(b'{"a": "' + b" " * (3 * MIB) + b'"}'))
    data[-4:] = (10).to_bytes(4, "little")  # a lying size: decompression must still stop
    path = write(tmp_path / "liar.json.gz", bytes(data))
    (row,) = list(iter_payloads(path, max_bytes=MIB))
    assert row.error is not None and "size cap" in row.error


def test_one_long_json_lines_line_is_one_row_and_the_next_lines_load(tmp_path: Path) -> None:
    path = gz_stream(
        tmp_path / "lines.jsonl.gz",
        b'{"type": "first"}\n{"big": "',
        b"x" * MIB,
        3,
        b'"}\n{"type": "after"}\n',
    )
    rows = list(iter_payloads(path, max_bytes=MIB))
    assert [r.position for r in rows] == [1, 2, 3]
    assert rows[0].event_type == "first" and rows[2].event_type == "after"
    assert rows[1].error is not None and "line 2 is over the 1 MiB size cap" in rows[1].error


def test_plain_files_over_the_cap_and_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "big.json", '{"a": "' + " " * 5000 + '"}')
    monkeypatch.setenv("SEGFN_MAX_BYTES", "4K")
    (row,) = list(iter_payloads(path))
    assert row.error is not None and "the file is over the 4 KiB size cap" in row.error
    assert "decompressed" not in row.error
    frame = load_payloads(path, max_bytes=10_000)
    assert frame["error"].tolist() == [None]
    monkeypatch.setenv("SEGFN_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="SEGFN_MAX_BYTES: 'lots' is not a size"):
        list(iter_payloads(path))
    with pytest.raises(ValueError, match="max_bytes must be at least 1"):
        list(iter_payloads(path, max_bytes=0))


def test_strict_still_raises_payload_error_through_the_guard(tmp_path: Path) -> None:
    path = write(tmp_path / "x.har", har({"method": "POST", "postData": 1}))
    with pytest.raises(PayloadError, match="postData must be an object"):
        list(iter_payloads(path, strict=True))


# --------------------------------------------------------------------------- warnings


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bare.json", '{"amount": 1e400}'),
        ("lines.jsonl", '{"amount": -1E+400}\n'),
        ("env.json", '{"headers": {}, "body": {"amount": 1e400}}'),
        ("str.json", '{"headers": {}, "body": "{\\"amount\\": 1e999}"}'),
    ],
)
def test_numbers_that_overflow_to_infinity_are_warned(tmp_path: Path, name: str, text: str) -> None:
    (row,) = list(iter_payloads(write(tmp_path / name, text)))
    assert row.error is None
    assert abs(row.body["amount"]) == float("inf")
    assert row.warning is not None and "read as infinity" in row.warning


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("env.json", '{"headers": {}, "body": {"id": 1, "id": 2}}'),
        ("lib.json", '{"payload": {"headers": {}, "body": {"a": {"k": 1, "k": 2}}}}'),
        ("topic.json", '{"topic": "t", "headers": {}, "body": {"k": 1, "k": 2}}'),
        ("lines.jsonl", '{"headers": {}, "body": {"k": 1, "k": 2}}\n'),
        ("inner.jsonl", '{"headers": {},"body": {"x": {"k":1,"k":2}}}\n'),
    ],
)
def test_duplicate_keys_inside_a_wrappers_body_are_warned(
    tmp_path: Path, name: str, text: str
) -> None:
    (row,) = list(iter_payloads(write(tmp_path / name, text)))
    assert row.error is None
    assert row.warning is not None and "duplicate key" in row.warning


def test_no_duplicate_warning_without_duplicates(tmp_path: Path) -> None:
    text = json.dumps({"headers": {"a": "1"}, "body": {"a": 1, "b": {"a": 2}}}, indent=2)
    (row,) = list(iter_payloads(write(tmp_path / "env.json", text)))
    assert row.warning is None


# --------------------------------------------------------------------------- the commands


def test_segfn_profile_and_run_survive_a_folder_of_hostile_files(tmp_path: Path) -> None:
    folder = tmp_path / "captures"
    write(folder / "a.har", har({"method": "POST", "headers": {"X": "1"}, "postData": "{}"}))
    write(folder / "b.har", har({"method": "POST", "postData": 3}))
    write(folder / "c.jsonl.gz", gzip.compress(b'{"type": "x"}\n')[:-6])
    write(folder / "d.json", '{"type": "ok", "n": 1e400}')
    gz_stream(folder / "e.json.gz", b'{"a": "', b" " * MIB, 3, b'"}')
    env = {**os.environ, "SEGFN_MAX_BYTES": "1M"}
    fn = write(
        tmp_path / "fn.py",
        "from segfn_kit.runtime import Segment\n\n"
        "def on_request(request, settings):\n"
        "    Segment.track(event='Seen', anonymous_id='a')\n",
    )
    for args in (["profile", str(folder)], ["run", str(fn), str(folder), "--jsonl"]):
        done = subprocess.run(
            [sys.executable, "-m", "segfn_kit", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=ROOT,
        )
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode in (0, 1), done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.strip()]
    outcomes = {row["payload_id"]: row["outcome"] for row in lines}
    assert outcomes["captures/a.har#1"] == "ok"
    assert outcomes["captures/d.json"] == "ok"
    assert outcomes["captures/b.har#1"] == "error"
    assert outcomes["captures/e.json.gz"] == "error"
    assert outcomes["captures/c.jsonl.gz#error"] == "error"
    assert len(outcomes) == 6


def test_max_bytes_on_the_command_line(tmp_path: Path) -> None:
    folder = tmp_path / "caps"
    write(folder / "big.json", '{"type": "big", "a": "' + " " * 5000 + '"}')
    write(folder / "small.json", '{"type": "small"}')
    base = [sys.executable, "-m", "segfn_kit"]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)

    capped = cli("profile", str(folder), "--max-bytes", "4K")
    assert capped.returncode == 0, capped.stderr
    assert "1 of 2 payloads could not be read" in capped.stderr
    assert cli("profile", str(folder), "--max-bytes", "1M").stderr == ""
    bad = cli("profile", str(folder), "--max-bytes", "lots")
    assert bad.returncode == 2 and "'lots' is not a size" in bad.stderr
    out = tmp_path / "out"
    done = cli("redact", str(folder), "--out", str(out), "--max-bytes", "4K")
    assert done.returncode == 0, done.stderr
    assert "size cap" in done.stdout
    assert not (out / "caps" / "big.json").exists() and (out / "caps" / "small.json").exists()


def test_a_long_line_costs_no_more_memory_than_the_cap(tmp_path: Path) -> None:
    import tracemalloc

    path = gz_stream(tmp_path / "l.jsonl.gz", b'{"a": "', b"x" * MIB, 16, b'"}\n{"type": "next"}\n')
    tracemalloc.start()
    try:
        rows = list(iter_payloads(path, max_bytes=2 * MIB))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows[0].error is not None and rows[1].event_type == "next"
    assert peak < 6 * MIB, peak  # the 16 MiB line was never held: at most the cap and a chunk


def test_lone_surrogates_in_bodies_cost_one_row_at_most(tmp_path: Path) -> None:
    # JSON text can carry a lone surrogate only escaped ("\ud81e"): a JSON-valued body keeps it
    # escaped, so the function reads the same value; a raw body text holding one (no UTF-8
    # body can) is that payload's InvalidEventPayload, never an exception of the run
    import segfn_kit
    from segfn_kit.runtime import Function

    write(tmp_path / "a.jsonl", "\n".join([
        '{"topic": {}, "headers": {}, "body": ["\\ud81e400\\udc00"]}',
        '{"headers": {"Content-Type": "application/json"}, "body": "{\\"s\\": \\"\\ud800\\"}"}',
        '{"headers": {}, "body": {"ok": "caf\\u00e9"}}',
    ]) + "\n")
    frame = load_payloads(tmp_path / "a.jsonl")
    assert len(frame) == 3
    fn = Function.from_source(
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    body = request.json()\n"
        "    Segment.track(user_id='u', event='E', properties={'n': len(str(body))})\n"
    )
    results = segfn_kit.run(fn, frame, progress=False)
    assert results["outcome"].tolist() == ["ok", "InvalidEventPayload", "ok"]
    assert "UTF-8" in results["error"].iloc[1]
    from segfn_kit._payloads import request_from_row

    assert request_from_row(frame.iloc[0]).json() == ["\ud81e400\udc00"]
