"""The loader's lazy path (``bodies=False``, what replay reads with) hands functions the same
requests as the full path, and replay starts without pandas."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from segfn_kit import iter_payloads
from segfn_kit._payloads import request_from_row

ROOT = Path(__file__).resolve().parents[1]


def captures(folder: Path) -> Path:
    folder.mkdir()
    (folder / "env.json").write_text(
        json.dumps(
            {"headers": {"X-GitHub-Event": "push"}, "url": "/in?a=1&b=", "body": '{"k": 1, "k": 2}'}
        )
    )
    (folder / "b64.json").write_text(
        json.dumps({"headers": {}, "body_base64": base64.b64encode(b'{"x": "\xff"}').decode()})
    )
    (folder / "form.json").write_text(
        json.dumps(
            {
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
                "query": {},
                "url": "https://h/in?x=1",
                "body": "a=1&b=2",
            }
        )
    )
    (folder / "lines.jsonl").write_text(
        '{"type": "a", "id": 123456789012345678901234567890}\n'
        '{"headers": {"X-Shopify-Topic": "orders/create"}, "body": {"id": 1}}\n'
        "not json\n"
    )
    (folder / "s.har").write_text(
        json.dumps(
            {
                "log": {
                    "entries": [
                        {
                            "request": {
                                "method": "POST",
                                "url": "https://h/x?q=2",
                                "headers": [{"name": "Content-Type", "value": "application/json"}],
                                "postData": {"text": '{"type": "t"}'},
                            }
                        }
                    ]
                }
            }
        )
    )
    return folder


def test_lazy_rows_give_the_same_requests(tmp_path: Path) -> None:
    folder = captures(tmp_path / "c")
    full = list(iter_payloads(folder))
    lazy = list(iter_payloads(folder, bodies=False))
    assert [p.payload_id for p in full] == [p.payload_id for p in lazy]
    assert len(full) == 7
    for a, b in zip(full, lazy, strict=True):
        assert a.raw == b.raw and a.error == b.error and a.source == b.source
        ra, rb = a.request(), b.request()
        assert (ra.content, dict(ra.headers), ra.method, ra.url, ra.query) == (
            rb.content,
            dict(rb.headers),
            rb.method,
            rb.url,
            rb.query,
        )
    by_id = {p.payload_id: p for p in lazy}
    assert by_id["c/lines.jsonl#1"].body is None  # not parsed: replay never reads it
    assert by_id["c/env.json"].body is None and by_id["c/env.json"].warning is None
    assert by_id["c/lines.jsonl#3"].error is not None  # still an unloadable line
    full_env = {p.payload_id: p for p in full}["c/env.json"]
    assert full_env.warning is not None and "duplicate key" in full_env.warning


def test_request_query_from_the_loader_or_the_url(tmp_path: Path) -> None:
    rows = {p.payload_id: p for p in iter_payloads(captures(tmp_path / "c"))}
    assert rows["c/env.json"].request().query == {"a": "1", "b": ""}
    # an explicit empty query beside a URL with one: the URL's, as before
    assert rows["c/form.json"].request().query == {"x": "1"}
    assert rows["c/s.har#1"].request().query == {"q": "2"}
    assert rows["c/lines.jsonl#1"].request().query == {}
    # a frame row or a dict gives the same request as the record
    record = rows["c/env.json"]
    as_dict = {name: getattr(record, name) for name in ("raw", "headers", "method", "url", "query")}
    assert request_from_row(as_dict).query == record.request().query


def test_replay_imports_no_pandas() -> None:
    code = "import sys, segfn_kit._replay; print('pandas' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.stdout.strip() == "False", done.stderr
