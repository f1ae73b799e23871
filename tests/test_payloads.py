"""The payload loader: every input format, every kind of bad input, the frame's guarantees."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from segfn_kit import iter_payloads, load_payloads
from segfn_kit._payloads import (
    FRAME_COLUMNS,
    Payload,
    PayloadError,
    detect_event_type,
    parse_json,
    request_from_row,
)
from segfn_kit.runtime import sign, verify_signature


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def dump(value: Any) -> str:
    return json.dumps(value, indent=2)


STRIPE_EVENT = {
    "id": "evt_1",
    "object": "event",
    "type": "customer.created",
    "created": 1700000000,
    "data": {"object": {"id": "cus_1", "email": "a@example.com", "metadata": {}}},
}


# --------------------------------------------------------------------------- formats


def test_envelope_with_string_body_keeps_raw_exactly(tmp_path: Path) -> None:
    raw = '{"type": "customer.created",  "data": {"object": {"id": "cus_1"}}}'
    env = {
        "method": "POST",
        "url": "http://127.0.0.1:8787/stripe?x=1&x=2",
        "path": "/stripe",
        "query": {"x": ["1", "2"]},
        "headers": {"Content-Type": "application/json"},
        "body": raw,
        "received_at": "2026-11-26T13:40:00.123Z",
    }
    frame = load_payloads(write(tmp_path / "cap.json", dump(env)))
    row = frame.iloc[0]
    assert frame.index.tolist() == ["cap.json"]
    assert row["format"] == "envelope"
    assert row["raw"] == raw
    assert row["body"]["data"]["object"]["id"] == "cus_1"
    assert row["body.data.object.id"] == "cus_1"
    assert row["event_type"] == "customer.created"
    assert row["query"] == {"x": ["1", "2"]}
    assert row["path"] == "/stripe"
    assert row["received_at"] == "2026-11-26T13:40:00.123Z"
    assert row["content_type"] == "application/json"
    assert row["error"] is None and row["warning"] is None
    request = request_from_row(row)
    assert request.content == raw.encode()
    assert request.headers["content-type"] == "application/json"
    assert request.url == env["url"]


def test_envelope_with_json_body_stands_for_compact_serialisation(tmp_path: Path) -> None:
    body = {"type": "ping", "text": "café ☕", "n": [1, 2.5]}
    compact = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    headers = sign("github", "s3cret", compact.encode())
    frame = load_payloads(write(tmp_path / "e.json", dump({"headers": headers, "body": body})))
    request = request_from_row(frame.iloc[0])
    assert frame.iloc[0]["raw"] == compact
    assert verify_signature("github", "s3cret", request.headers, request.content)


def test_envelope_body_base64_keeps_invalid_utf8(tmp_path: Path) -> None:
    data = b"\xff\xfebinary\x00"
    env = {
        "headers": {"Content-Type": "application/octet-stream"},
        "body_base64": base64.b64encode(data).decode(),
    }
    frame = load_payloads(write(tmp_path / "b.json", dump(env)))
    row = frame.iloc[0]
    assert row["error"] is None
    assert row["body"] is None
    assert "not valid UTF-8 (byte 0xff at offset 0)" in row["warning"]
    assert request_from_row(row).content == data
    assert (
        Payload(**{**_payload_fields(frame), "raw": row["raw"]}).to_envelope()["body_base64"]
        == env["body_base64"]
    )


def _payload_fields(frame: pd.DataFrame) -> dict[str, Any]:
    row = frame.iloc[0]
    names = [n for n in Payload.__slots__ if n != "payload_id"]
    return {"payload_id": frame.index[0], **{n: row[n] for n in names}}


def test_bare_json_body(tmp_path: Path) -> None:
    text = dump(STRIPE_EVENT)
    frame = load_payloads(write(tmp_path / "customer.created.json", text))
    row = frame.iloc[0]
    assert row["format"] == "bare"
    assert row["raw"] == text
    assert row["method"] == "POST"
    assert row["headers"] == {}
    assert row["body.data.object.email"] == "a@example.com"
    assert row["body.data.object.metadata"] == {}


def test_json_lines_one_payload_per_line_ids_by_line(tmp_path: Path) -> None:
    lines = [
        json.dumps({"type": "a", "n": 1}),
        "",
        json.dumps({"type": "a", "n": 1}),  # identical to line 1: still its own row
        json.dumps({"headers": {"X-GitHub-Event": "push"}, "body": {"ref": "main"}}),
    ]
    frame = load_payloads(write(tmp_path / "events.jsonl", "\n".join(lines) + "\n"))
    assert frame.index.tolist() == ["events.jsonl#1", "events.jsonl#3", "events.jsonl#4"]
    assert frame["position"].tolist() == [1, 3, 4]
    assert frame["format"].tolist() == ["jsonl", "jsonl", "envelope"]
    assert frame.loc["events.jsonl#4", "event_type"] == "push"
    assert frame.loc["events.jsonl#1", "raw"] == lines[0]


def test_har_each_post_entry(tmp_path: Path) -> None:
    har = {
        "log": {
            "entries": [
                {"request": {"method": "GET", "url": "http://x/"}},
                {
                    "startedDateTime": "2026-11-26T10:00:00.000Z",
                    "request": {
                        "method": "POST",
                        "url": "http://x/hook?src=devtools",
                        "headers": [
                            {"name": ":authority", "value": "x"},
                            {"name": "Content-Type", "value": "application/json"},
                            {"name": "X-Shopify-Topic", "value": "orders/create"},
                        ],
                        "queryString": [{"name": "src", "value": "devtools"}],
                        "postData": {
                            "mimeType": "application/json",
                            "text": '{"id": 820982911946154508}',
                        },
                    },
                },
                {
                    "request": {
                        "method": "POST",
                        "url": "http://x/twilio",
                        "headers": [],
                        "postData": {
                            "mimeType": "application/x-www-form-urlencoded",
                            "params": [
                                {"name": "From", "value": "+15550100"},
                                {"name": "Body", "value": "hi"},
                            ],
                        },
                    }
                },
            ]
        }
    }
    frame = load_payloads(write(tmp_path / "session.har", dump(har)))
    assert frame.index.tolist() == ["session.har#2", "session.har#3"]
    first = frame.loc["session.har#2"]
    assert first["format"] == "har"
    assert first["headers"] == {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
    }
    assert first["query"] == {"src": "devtools"}
    assert first["event_type"] == "orders/create"
    assert first["received_at"] == "2026-11-26T10:00:00.000Z"
    assert first["body.id"] == 820982911946154508
    second = frame.loc["session.har#3"]
    assert second["body"] == {"From": "+15550100", "Body": "hi"}
    assert request_from_row(second).form() == {"From": "+15550100", "Body": "hi"}
    assert second["content_type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("query_key", ["queryParameters", "queryParams"])
def test_functions_library_wrapper(tmp_path: Path, query_key: str) -> None:
    doc = {
        "payload": {
            "body": STRIPE_EVENT,
            "headers": {"User-Agent": "Stripe"},
            query_key: {"a": "1"},
        }
    }
    frame = load_payloads(write(tmp_path / "w.json", dump(doc)))
    row = frame.iloc[0]
    assert row["format"] == "functions-library"
    assert row["query"] == {"a": "1"}
    assert row["headers"] == {"User-Agent": "Stripe"}
    assert row["event_type"] == "customer.created"
    assert json.loads(row["raw"]) == STRIPE_EVENT


def test_topic_capture_and_form_encoded_dict_body(tmp_path: Path) -> None:
    doc = {
        "topic": "subscription_created",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "body": {
            "alert_name": "subscription_created",
            "email": "m@example.com",
            "passthrough": "a b&c",
        },
    }
    frame = load_payloads(write(tmp_path / "paddle.json", dump(doc)))
    row = frame.iloc[0]
    assert row["format"] == "topic"
    assert row["event_type"] == "subscription_created"
    # the wire form of a url-encoded request is its encoding, so request.form() works
    assert request_from_row(row).form() == doc["body"]
    assert row["body.passthrough"] == "a b&c"


def test_url_encoded_string_body_decoded_raw_kept(tmp_path: Path) -> None:
    raw = "token=abc&team_id=T1&text=hello+world&channel=%23general"
    env = {"headers": {"Content-Type": "application/x-www-form-urlencoded"}, "body": raw}
    row = load_payloads(write(tmp_path / "slack.json", dump(env))).iloc[0]
    assert row["raw"] == raw
    assert row["body"] == {
        "token": "abc",
        "team_id": "T1",
        "text": "hello world",
        "channel": "#general",
    }
    assert row["body.text"] == "hello world"


def test_array_body_is_one_payload_unless_split(tmp_path: Path) -> None:
    events = [{"event": "delivered", "email": "a@x.com"}, {"event": "open", "email": "b@x.com"}]
    path = write(tmp_path / "sendgrid.json", dump(events))
    one = load_payloads(path)
    assert len(one) == 1 and one.iloc[0]["body"] == events
    many = load_payloads(path, split_arrays=True)
    assert many.index.tolist() == ["sendgrid.json#1", "sendgrid.json#2"]
    assert many["event_type"].tolist() == ["delivered", "open"]
    assert many["body.email"].tolist() == ["a@x.com", "b@x.com"]


def test_gzip_files(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"type": "a"}\n{"type": "b"}\n'))
    single = tmp_path / "one.json.gz"
    single.write_bytes(gzip.compress(json.dumps(STRIPE_EVENT).encode()))
    frame = load_payloads(tmp_path)
    assert frame.index.tolist() == [
        f"{tmp_path.name}/events.jsonl.gz#1",
        f"{tmp_path.name}/events.jsonl.gz#2",
        f"{tmp_path.name}/one.json.gz",
    ]
    assert frame["event_type"].tolist() == ["a", "b", "customer.created"]


def test_payload_dicts_given_directly() -> None:
    frame = load_payloads({"headers": {}, "body": {"type": "x"}}, [{"type": "y"}, {"type": "z"}])
    assert frame.index.tolist() == ["input1", "input2#1", "input2#2"]
    assert frame["event_type"].tolist() == ["x", "y", "z"]


# --------------------------------------------------------------------------- ids, folders, globs


def test_ids_are_stable_unique_and_not_from_content(tmp_path: Path) -> None:
    same = dump({"type": "a"})
    write(tmp_path / "caps" / "one.json", same)
    write(tmp_path / "caps" / "sub" / "one.json", same)
    first = load_payloads(tmp_path / "caps")
    second = load_payloads(tmp_path / "caps")
    assert first.index.tolist() == ["caps/one.json", "caps/sub/one.json"]
    assert first.index.tolist() == second.index.tolist()
    assert first.index.is_unique
    # the same file twice in one load: still one id per row
    twice = load_payloads(tmp_path / "caps" / "one.json", tmp_path / "caps" / "one.json")
    assert twice.index.tolist() == ["one.json", "one.json~2"]


def test_glob_ids_relative_to_the_fixed_folder(tmp_path: Path) -> None:
    write(tmp_path / "c" / "v1" / "orders.create.json", dump({"id": 1}))
    write(tmp_path / "c" / "v2" / "orders.create.json", dump({"id": 2}))
    frame = load_payloads(str(tmp_path / "c" / "**" / "*.json"))
    assert frame.index.tolist() == ["c/v1/orders.create.json", "c/v2/orders.create.json"]
    assert frame["body.id"].tolist() == [1, 2]


def test_folder_with_unrelated_files_reports_skips(tmp_path: Path) -> None:
    write(tmp_path / "ok.json", dump({"type": "a"}))
    write(tmp_path / "README.md", "# notes")
    write(tmp_path / "picture.png", b"\x89PNG")
    write(tmp_path / ".hidden.json", "{}")
    frame = load_payloads(tmp_path)
    assert frame.index.tolist() == [f"{tmp_path.name}/ok.json"]
    reasons = {Path(s["source"]).name: s["reason"] for s in frame.attrs["skipped"]}
    assert set(reasons) == {"README.md", "picture.png", ".hidden.json"}
    assert "not a payload file (.md)" in reasons["README.md"]


def test_missing_path_raises_with_the_path() -> None:
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        load_payloads("no-such-folder")


def test_empty_glob_is_a_reported_skip(tmp_path: Path) -> None:
    frame = load_payloads(str(tmp_path / "*.json"))
    assert len(frame) == 0
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert frame.attrs["skipped"][0]["reason"] == "the pattern matches no file"


# --------------------------------------------------------------------------- frame guarantees


def test_frame_columns_and_dtypes(tmp_path: Path) -> None:
    frame = load_payloads(write(tmp_path / "a.json", dump(STRIPE_EVENT)))
    assert frame.index.name == "payload_id"
    assert [c for c in frame.columns if not c.startswith("body.")] == list(FRAME_COLUMNS)
    assert frame["position"].dtype == "int64"
    assert all(frame[c].dtype == object for c in frame.columns if c != "position")


def test_big_integers_stay_exact(tmp_path: Path) -> None:
    text = '{"a": 9007199254740993, "b": 18446744073709551616, "c": -123456789012345678901234567890, "d": [1.5]}'
    frame = load_payloads(write(tmp_path / "big.json", text), {"headers": {}, "body": {"a": 1}})
    assert frame.iloc[0]["body.a"] == 9007199254740993
    assert type(frame.iloc[0]["body.b"]) is int and frame.iloc[0]["body.b"] == 2**64
    assert frame.iloc[0]["body.c"] == -123456789012345678901234567890
    assert frame.iloc[1]["body.b"] is None  # a missing field is None, not NaN; no float column
    assert frame.iloc[0]["body"]["b"] == 2**64


def test_nineteen_digit_strings_are_not_numbers(tmp_path: Path) -> None:
    value, _ = parse_json(b'{"id": "sub_00000000000000000000000", "n": 1}')
    assert value == {"id": "sub_00000000000000000000000", "n": 1}


def test_heterogeneous_shapes_in_one_frame(tmp_path: Path) -> None:
    a = {"type": "customer.created", "data": {"object": {"id": "cus_1", "email": "x@y.z"}}}
    b = {
        "type": "invoice.paid",
        "data": {"object": {"id": "in_1", "lines": {"data": [{"amount": 5}]}}},
    }
    c = {"type": "charge.succeeded", "data": {"object": "not an object"}}
    frame = load_payloads(a, b, c)
    assert frame["body.data.object.email"].tolist() == ["x@y.z", None, None]
    assert frame["body.data.object.lines.data"].tolist() == [None, [{"amount": 5}], None]
    assert frame["body.data.object"].tolist() == [None, None, "not an object"]


def test_mixed_timestamps_left_as_they_are(tmp_path: Path) -> None:
    frame = load_payloads({"created": 1700000000, "updated_at": "2026-11-26T13:40:00Z"})
    assert frame.iloc[0]["body.created"] == 1700000000
    assert frame.iloc[0]["body.updated_at"] == "2026-11-26T13:40:00Z"


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"X-GitHub-Event": "issues"}, {"action": "opened"}, "issues"),
        ({"x-gitlab-event": "Push Hook"}, {"object_kind": "push"}, "Push Hook"),
        ({"X-Shopify-Topic": "orders/paid"}, {"id": 1}, "orders/paid"),
        ({}, {"event": "delivered"}, "delivered"),
        ({}, {"event_type": "form_response"}, "form_response"),
        ({}, {"event": {"type": "nested"}, "type": "event_callback"}, "event_callback"),
        (
            {},
            [{"subscriptionType": "contact.creation"}, {"subscriptionType": "contact.creation"}],
            "contact.creation",
        ),
        ({}, {"no": "type"}, None),
    ],
)
def test_event_type_detection(headers: dict[str, str], body: Any, expected: str | None) -> None:
    assert detect_event_type(headers, body) == expected


def test_iter_payloads_streams_lazily(tmp_path: Path) -> None:
    path = write(tmp_path / "many.jsonl", "".join(json.dumps({"n": i}) + "\n" for i in range(1000)))
    stream = iter_payloads(path)
    first = next(stream)
    assert (
        isinstance(first, Payload) and first.body == {"n": 0} and first.payload_id == "many.jsonl#1"
    )
    assert sum(1 for _ in stream) == 999


# --------------------------------------------------------------------------- bad input


def bad_inputs(folder: Path) -> dict[str, Path]:
    deep = '{"k":' * 1000 + "1" + "}" * 1000
    return {
        "malformed": write(folder / "malformed.json", '{"a": 1,, }'),
        "truncated": write(folder / "truncated.json", '{"type": "customer.created", "data": {"obj'),
        "invalid_utf8": write(folder / "invalid_utf8.json", b'{"name": "caf\xe9"}'),
        "bom": write(folder / "bom.json", b'\xef\xbb\xbf{"type": "with.bom"}'),
        "empty": write(folder / "empty.json", b""),
        "big": write(folder / "big.json", json.dumps({"type": "big", "blob": "x" * 10_000_000})),
        "deep": write(folder / "deep.json", deep),
        "nan": write(folder / "nan.json", '{"a": NaN, "b": Infinity, "c": -Infinity}'),
        "duplicate": write(folder / "duplicate.json", '{"id": 1, "id": 2}'),
        "har_no_post": write(
            folder / "get_only.har", dump({"log": {"entries": [{"request": {"method": "GET"}}]}})
        ),
        "bad_line": write(folder / "lines.jsonl", '{"type": "ok"}\n{"type": \n{"type": "ok2"}\n'),
        "unrelated": write(folder / "notes.txt", "not a payload"),
    }


def test_bad_inputs_give_rows_or_skips_and_the_rest_loads(tmp_path: Path) -> None:
    bad_inputs(tmp_path / "in")
    write(tmp_path / "in" / "good.json", dump(STRIPE_EVENT))
    frame = load_payloads(tmp_path / "in")
    rows = {pid.split("/", 1)[1]: row for pid, row in frame.iterrows()}

    assert rows["good.json"]["error"] is None
    assert rows["good.json"]["body.data.object.id"] == "cus_1"

    assert "not valid JSON" in rows["malformed.json"]["error"]
    assert "truncated" in rows["truncated.json"]["error"]
    assert rows["truncated.json"]["raw"].startswith('{"type": "customer.created"')
    assert "the file is not valid UTF-8 (byte 0xe9 at offset 13)" in rows["invalid_utf8.json"]["error"]
    assert request_from_row(rows["invalid_utf8.json"]).content == b'{"name": "caf\xe9"}'
    assert rows["bom.json"]["event_type"] == "with.bom"
    assert "byte order mark" in rows["bom.json"]["warning"]
    assert "empty" in rows["empty.json"]["error"]
    assert (
        rows["big.json"]["error"] is None
        and "over Segment's 512 KiB" in rows["big.json"]["warning"]
    )
    assert len(rows["big.json"]["raw"]) > 10_000_000
    assert rows["deep.json"]["error"] is None
    assert "NaN" in rows["nan.json"]["warning"]
    assert "duplicate key 'id'" in rows["duplicate.json"]["warning"]
    assert rows["duplicate.json"]["body"] == {"id": 2}  # as request.json() reads it
    assert "not valid JSON" in rows["lines.jsonl#2"]["error"]
    assert rows["lines.jsonl#3"]["event_type"] == "ok2"

    skipped = {Path(s["source"]).name: s["reason"] for s in frame.attrs["skipped"]}
    assert "no POST request" in skipped["get_only.har"]
    assert "not a payload file" in skipped["notes.txt"]


def test_deep_nesting_flattens_to_a_cap_and_keeps_the_rest_whole(tmp_path: Path) -> None:
    deep = '{"k":' * 1000 + "1" + "}" * 1000
    frame = load_payloads(write(tmp_path / "deep.json", deep), max_depth=5)
    leaf = [c for c in frame.columns if c.startswith("body.")]
    assert leaf == ["body.k.k.k.k.k"]
    assert isinstance(frame.iloc[0][leaf[0]], dict)


def test_raw_round_trips_for_every_bad_input(tmp_path: Path) -> None:
    paths = bad_inputs(tmp_path)
    frame = load_payloads(
        *[p for k, p in paths.items() if k not in ("har_no_post", "unrelated", "bad_line")]
    )
    for pid, row in frame.iterrows():
        original = (tmp_path / str(pid)).read_bytes().removeprefix(b"\xef\xbb\xbf")
        assert row["raw"].encode("utf-8", "surrogateescape") == original, pid


def test_strict_raises_on_the_first_bad_input(tmp_path: Path) -> None:
    write(tmp_path / "a.json", "{broken")
    with pytest.raises(PayloadError, match=r"a\.json.*not valid JSON"):
        load_payloads(tmp_path, strict=True)
    write(tmp_path / "b.har", dump({"log": {"entries": []}}))
    (tmp_path / "a.json").unlink()
    with pytest.raises(PayloadError, match="no POST"):
        load_payloads(tmp_path, strict=True)


def test_unparseable_envelope_body_is_a_warning_not_an_error(tmp_path: Path) -> None:
    env = {"headers": {"Content-Type": "text/xml"}, "body": "<xml>hi</xml>"}
    row = load_payloads(write(tmp_path / "x.json", dump(env))).iloc[0]
    assert row["error"] is None
    assert row["body"] is None
    assert "not JSON or url-encoded" in row["warning"]
    assert request_from_row(row).text() == "<xml>hi</xml>"


def test_thousands_of_columns_stay_in_place_and_unfragmented() -> None:
    bodies = [{f"k{i}": i, "shared": {"n": i}} for i in range(3000)]
    frame = load_payloads(bodies)
    assert frame["body.k2999"].tolist()[-1] == 2999 and frame["body.k2999"].iloc[0] is None
    assert frame["body.shared.n"].tolist() == list(range(3000))
    frame["added"] = 1  # no "highly fragmented" warning (warnings are errors here)
    assert frame.shape == (3000, len(FRAME_COLUMNS) + 3001 + 1)


def test_json_lines_keep_big_ints_and_report_duplicate_keys(tmp_path: Path) -> None:
    lines = [
        '{"id":123456789012345678901234567890}',
        '{"a":1,"a":2}',
        '{"a": 1, "a": 2}',
        '{"n":-12345678901234567890}',
        '{"f":1e16}',
        '{"ok":"sub_0000000000000000000000"}',
    ]
    frame = load_payloads(write(tmp_path / "x.jsonl", "\n".join(lines)))
    assert frame["body"].tolist() == [
        {"id": 123456789012345678901234567890},
        {"a": 2},
        {"a": 2},
        {"n": -12345678901234567890},
        {"f": 1e16},
        {"ok": "sub_0000000000000000000000"},
    ]
    assert type(frame["body.id"].iloc[0]) is int
    warnings = frame["warning"].tolist()
    assert "duplicate key 'a'" in warnings[1] and "duplicate key 'a'" in warnings[2]
    assert [w is None for w in warnings] == [True, False, False, True, True, True]
    assert frame["raw"].tolist() == lines


def test_har_base64_post_data(tmp_path: Path) -> None:
    body = '{"type": "invoice.paid", "note": "café"}'.encode()
    har = {"log": {"entries": [{"request": {
        "method": "POST", "url": "http://x/h", "headers": [],
        "postData": {"mimeType": "application/json", "encoding": "base64",
                     "text": base64.b64encode(body).decode()},
    }}]}}
    row = load_payloads(write(tmp_path / "b.har", dump(har))).iloc[0]
    assert row["event_type"] == "invoice.paid"
    assert row["body.note"] == "café"
    assert request_from_row(row).content == body
