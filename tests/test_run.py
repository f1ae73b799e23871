"""run(), diff(), coverage(), to_jsonl(): bad input gives a clear row and the rest still runs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from segfn_kit import coverage, diff, load_payloads, run, to_jsonl
from segfn_kit._run import COLUMNS, JSONL_KEYS, SettingsFileError, read_settings
from segfn_kit.examples import example_path
from segfn_kit.runtime import MASK, Function

MAPPER = """\
from segfn_kit.runtime import Segment, EventNotSupported

def on_request(request, settings):
    body = request.json()
    if body.get("type") == "unmapped":
        raise EventNotSupported("unmapped is not mapped")
    Segment.track(user_id=body["user"], event="Seen", properties={"n": body.get("n")})
"""


def ok(body: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"headers": {"Content-Type": "application/json"}, "body": body or {"user": "u1", "n": 1}}


def row(results: pd.DataFrame, pid: str) -> pd.Series:
    return results.loc[pid]


# -- the result frame ------------------------------------------------------------------------


def test_result_frame_shape_and_attrs() -> None:
    results = run(MAPPER, [ok(), ok({"type": "unmapped"})])
    assert list(results.columns) == list(COLUMNS)
    assert results.index.name == "payload_id"
    assert list(results.index) == ["input1", "input2"]
    assert results["outcome"].tolist() == ["ok", "EventNotSupported"]
    assert results["duration"].dtype == "float64"
    assert results.attrs["kind"] == "source"
    assert isinstance(results.attrs["function"], Function)
    first = row(results, "input1")
    assert first["events"][0]["event"] == "Seen" and first["issues"] == [] and first["error"] is None
    second = row(results, "input2")
    assert second["events"] == [] and second["error"] == "EventNotSupported: unmapped is not mapped"
    assert second["error_line"] == 6
    # the frame stays usable: filtering copies attrs (and the Function in them)
    assert len(results[results["outcome"] == "ok"]) == 1


def test_function_from_a_file_path_and_payloads_from_a_folder(tmp_path: Path) -> None:
    fn = tmp_path / "fn.py"
    fn.write_text(MAPPER, encoding="utf-8")
    folder = tmp_path / "captures"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(ok()), encoding="utf-8")
    (folder / "b.json").write_text(json.dumps({"user": "u2"}), encoding="utf-8")  # a bare body
    results = run(fn, [folder])
    assert results["outcome"].to_dict() == {"captures/a.json": "ok", "captures/b.json": "ok"}
    assert results.loc["captures/b.json", "events"][0]["userId"] == "u2"
    # a payload frame works the same
    again = run(str(fn), load_payloads(folder))
    assert again["events"].tolist() == results["events"].tolist()


def test_events_before_an_error_are_discarded_not_sent() -> None:
    fn = (
        "from segfn_kit.runtime import Segment, ValidationError\n"
        "def on_request(request, settings):\n"
        "    Segment.identify(user_id='u')\n"
        "    raise ValidationError('no email')\n"
    )
    r = run(fn, [ok()]).iloc[0]
    assert r["outcome"] == "ValidationError"
    assert r["events"] == []
    assert [e["type"] for e in r["discarded_events"]] == ["identify"]


def test_what_the_function_prints_is_its_log_with_secrets_masked(capsys: pytest.CaptureFixture[str]) -> None:
    fn = (
        "import sys\n"
        "def on_request(request, settings):\n"
        "    print('calling with', settings.apiKey)\n"
        "    print('warning', file=sys.stderr)\n"
    )
    results = run(fn, [ok(), ok()], {"apiKey": "sk_live_very_secret"})
    assert results["logs"].tolist() == [f"calling with {MASK}\nwarning\n"] * 2
    captured = capsys.readouterr()
    assert "calling with" not in captured.out and "sk_live" not in captured.err


# -- bad input: each a clear row, the others still run ---------------------------------------


def test_invalid_json_file_is_a_row(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps({"user": "u"}), encoding="utf-8")
    (tmp_path / "broken.json").write_text('{"user": ', encoding="utf-8")
    results = run(MAPPER, [tmp_path])
    bad = results.loc[f"{tmp_path.name}/broken.json"]
    assert bad["outcome"] == "error"
    assert bad["error"].startswith("PayloadError: ") and "not valid JSON" in bad["error"]
    assert results.loc[f"{tmp_path.name}/good.json", "outcome"] == "ok"


def test_empty_body_and_form_body_read_as_json() -> None:
    results = run(MAPPER, [
        {"headers": {}, "body": ""},
        {"headers": {"Content-Type": "application/x-www-form-urlencoded"}, "body": "user=u&n=1"},
        ok(),
    ])
    assert results["outcome"].tolist() == ["InvalidEventPayload", "InvalidEventPayload", "ok"]
    assert "request body is empty" in results.iloc[0]["error"]
    assert "request.form()" in results.iloc[1]["error"]


def test_syntax_error_gives_every_row_the_error_with_its_line() -> None:
    results = run("def on_request(request, settings):\n    return (\n", [ok(), ok()])
    assert results["outcome"].tolist() == ["error", "error"]
    assert results.iloc[0]["error"].startswith("FunctionLoadError: <function>, line 2: syntax error")
    assert results["error_line"].tolist() == [2, 2]


def test_missing_on_request_gives_every_row_the_error() -> None:
    results = run("def handler(request, settings):\n    pass\n", [ok()])
    assert results.iloc[0]["outcome"] == "error"
    assert "defines no handler" in results.iloc[0]["error"] and "on_request" in results.iloc[0]["error"]


def test_missing_function_file_is_a_load_error(tmp_path: Path) -> None:
    results = run(tmp_path / "nope.py", [ok()])
    assert results.iloc[0]["outcome"] == "error"
    assert "cannot read the function file" in results.iloc[0]["error"]


def test_event_without_ids_and_event_over_32_kb_are_issues() -> None:
    fn = (
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    body = request.json()\n"
        "    if body.get('big'):\n"
        "        Segment.track(user_id='u', event='Big', properties={'blob': 'x' * 40000})\n"
        "    else:\n"
        "        Segment.track(event='No Ids')\n"
    )
    results = run(fn, [ok({"big": True}), ok({}), ok({"big": False})])
    assert results["outcome"].tolist() == ["ok", "ok", "ok"]
    big, no_ids = results.iloc[0]["issues"], results.iloc[1]["issues"]
    assert [(i["event_index"], i["code"]) for i in big] == [(0, "too_large")]
    # analytics-python refuses a call without ids: not sent, an issue in its place
    assert [(i["event_index"], i["field"], i["code"]) for i in no_ids] == [(None, "", "refused_call")]
    assert results.iloc[1]["events"] == []
    assert set(big[0]) == {"event_index", "field", "code", "message"}


def test_refused_unix_timestamp_says_how_to_convert_it() -> None:
    fn = (
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    body = request.json()\n"
        "    Segment.track(user_id='u', event='E', timestamp=body['created'])\n"
    )
    results = run(fn, [ok({"created": 1706702400}), ok({"created": [1]}), ok({"created": "2024-01-31T12:00:00Z"})])
    unix, listed, iso = (results.iloc[i]["issues"] for i in range(3))
    assert [i["code"] for i in unix] == ["refused_call"] and results.iloc[0]["events"] == []
    assert "timestamp is 1706702400, which looks like a Unix time" in unix[0]["message"]
    assert "datetime.fromtimestamp(value, timezone.utc)" in unix[0]["message"]
    assert "(here '2024-01-31T12:00:00+00:00')" in unix[0]["message"]
    assert "timestamp is a list; pass a datetime or an ISO 8601 string" in listed[0]["message"]
    assert iso == [] and results.iloc[2]["events"][0]["timestamp"] == "2024-01-31T12:00:00Z"


def test_values_json_cannot_carry() -> None:
    fn = (
        "import datetime, decimal\n"
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    Segment.track(user_id='u', event='E', properties={\n"
        "        'when': datetime.datetime(2024, 1, 31, 12, tzinfo=datetime.timezone.utc),\n"
        "        'price': decimal.Decimal('9.99'), 'tags': {'b', 'a'}, 'odd': object()})\n"
    )
    r = run(fn, [ok()]).iloc[0]
    props = r["events"][0]["properties"]
    assert props["when"] == "2024-01-31T12:00:00+00:00"
    assert props["price"] == 9.99 and props["tags"] == ["a", "b"]
    assert props["odd"].startswith("<object object")
    assert [(i["field"], i["code"]) for i in r["issues"]] == [("properties.odd", "not_serialisable")]
    json.loads(to_jsonl(run(fn, [ok()])) or "")


def test_snake_case_spec_dict_is_flagged() -> None:
    fn = (
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    Segment.track({'user_id': 'u', 'event': 'E'})\n"
    )
    issues = run(fn, [ok()]).iloc[0]["issues"]
    assert any("did you mean userId" in i["message"] for i in issues)


def test_objects_are_validated() -> None:
    fn = (
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    Segment.set(collection='Rooms', id='r1', properties={'beds': float('nan')})\n"
    )
    r = run(fn, [ok()]).iloc[0]
    assert r["objects"] == [{"collection": "Rooms", "id": "r1", "properties": {"beds": None}}]
    assert {(i["field"], i["code"]) for i in r["issues"]} == {
        ("objects[0].properties.beds", "not_finite"),
        ("objects[0].collection", "collection_not_lower_case"),
    }


def test_timeouts_are_rows() -> None:
    fn = "import time\ndef on_request(request, settings):\n    if request.json().get('slow'):\n        time.sleep(3)\n"
    results = run(fn, [ok({"slow": True}), ok()], timeout=0.2)
    assert results["outcome"].tolist() == ["error", "ok"]
    assert "FunctionTimeout" in results.iloc[0]["error"]


def test_required_settings_missing_is_a_clear_error_on_every_row() -> None:
    fn = 'SETTINGS = {"apiToken": {"required": True, "secret": True}}\ndef on_request(request, settings):\n    pass\n'
    results = run(fn, [ok(), ok()])
    assert results["outcome"].tolist() == ["error", "error"]
    assert "SettingsError: required setting apiToken missing" in results.iloc[0]["error"]
    assert run(fn, [ok()], {"apiToken": "t"}).iloc[0]["outcome"] == "ok"


def test_settings_from_a_file(tmp_path: Path) -> None:
    good = tmp_path / "settings.json"
    good.write_text('{"apiToken": "t", "region": "eu", "tags": ["a"]}', encoding="utf-8")
    assert read_settings(good)["region"] == "eu"
    fn = "def on_request(request, settings):\n    print(settings.region)\n"
    assert run(fn, [ok()], good).iloc[0]["logs"] == "eu\n"
    bad = tmp_path / "bad.json"
    for text, expected in [("[1]", "flat object"), ("{", "not valid JSON"), ('{"a": {"b": 1}}', "nested")]:
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(SettingsFileError, match=expected):
            read_settings(bad)
    with pytest.raises(SettingsFileError, match="does not exist"):
        read_settings(tmp_path / "missing.json")


def test_bad_payloads_argument_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="payloads must be"):
        run(MAPPER, 42)


def test_options_are_for_destinations_only() -> None:
    with pytest.raises(TypeError, match="only destination functions take: responses"):
        run(MAPPER, [ok()], responses=None)


def test_destination_functions_are_run_by_the_destination_runner() -> None:
    fn = "def on_track(event, settings):\n    return None\n"
    results = run(fn, [{"type": "track", "userId": "u", "event": "E", "messageId": "m1"}])
    assert results.attrs["kind"] == "destination"
    assert results.iloc[0]["outcome"] == "ok"
    assert "requests" in results.columns


# -- diff --------------------------------------------------------------------------------------


def test_diff_shows_changed_payloads_only() -> None:
    payloads = [ok({"user": "a", "n": 1}), ok({"user": "b", "n": 2}), ok({"type": "unmapped"})]
    before = run(MAPPER, payloads)
    after = run(MAPPER.replace('event="Seen"', 'event="Seen" if body["user"] == "a" else "Other"'), payloads)
    changes = diff(before, after)
    assert changes.index.tolist() == ["input2"]
    change = changes.loc["input2"]
    assert change["change"] == "events"
    assert (change["outcome_before"], change["outcome_after"]) == ("ok", "ok")
    assert '-   "event": "Seen"' in change["diff"] and '+   "event": "Other"' in change["diff"]
    assert diff(before, before).empty
    # durations differ between any two runs and are ignored
    assert diff(before, run(MAPPER, payloads)).empty


def test_diff_added_removed_and_outcome() -> None:
    before = run(MAPPER, [ok(), ok()])
    after = run(MAPPER.replace("Segment.track", "raise ValueError('x')\n    Segment.track"), [ok(), ok(), ok()])
    changes = diff(before, after)
    assert changes["change"].to_dict() == {"input1": "outcome", "input2": "outcome", "input3": "added"}
    assert changes.loc["input3", "outcome_before"] is None


# -- coverage ----------------------------------------------------------------------------------


def test_coverage_of_types_and_fields() -> None:
    payloads = [
        {"type": "seen", "user": "u1", "n": 3, "color": "red", "meta": {"debug": True}},
        {"type": "seen", "user": "u2", "color": None},
        {"type": "unmapped", "user": "u3"},
    ]
    results = run(MAPPER, payloads)
    report = coverage(results, payloads)
    assert report["unmapped_types"].index.tolist() == ["unmapped"]
    types = report["event_types"]
    assert types.loc["seen", "ok"] == 2 and types.loc["unmapped", "EventNotSupported"] == 1
    unused = report["unused_fields"]
    assert unused.index.tolist() == ["color", "meta.debug", "type"]
    assert unused.loc["color", "payloads"] == 1 and unused.loc["color", "example"] == "red"


def test_coverage_counts_unix_times_that_became_timestamps() -> None:
    fn = (
        "import datetime\nfrom segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    b = request.json()\n"
        "    Segment.track(user_id=b['id'], event='E', "
        "timestamp=datetime.datetime.fromtimestamp(b['created'], datetime.timezone.utc).isoformat())\n"
    )
    payloads = [{"id": "u", "created": 1706702400}]
    assert coverage(run(fn, payloads), payloads)["unused_fields"].empty


def test_coverage_matches_values_by_kind() -> None:
    # booleans match booleans only, 5 matches 5.0, the string "7" does not match 7
    fn = (
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    b = request.json()\n"
        "    Segment.track(user_id='u', event='E', properties={'flag': 1, 'n': 5.0, 's': 7, 'tags': ['x']})\n"
    )
    payloads = [
        {"flag": True, "n": 5, "s": "7", "tags": ["y", "x"]},
        {"n": 6, "s": "8", "tags": ["z"]},
    ]
    unused = coverage(run(fn, payloads), payloads)["unused_fields"]
    # True is not 1; n is used by the first payload (5), tags[] by the first ("x")
    assert unused.index.tolist() == ["flag", "s"]
    assert unused.loc["s", "payloads"] == 2 and unused.loc["s", "example"] == "7"


def test_coverage_tells_true_from_one_both_ways() -> None:
    # the event holds True and 0: the payload's True is used and its False is not; 0.0 is
    # used (it is the number 0) and 1 is not (True is no number)
    fn = (
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    Segment.track(user_id='u', event='E', properties={'a': True, 'b': 0})\n"
    )
    payloads = [{"yes": True, "no": False, "one": 1, "zero": 0.0}]
    unused = coverage(run(fn, payloads), payloads)["unused_fields"]
    assert unused.index.tolist() == ["no", "one"]
    assert unused.loc["one", "example"] == 1 and unused.loc["no", "example"] is False


def test_on_progress_counts_up_to_every_payload_and_changes_nothing() -> None:
    payloads = [ok({"user": f"u{i}", "n": i}) for i in range(250)] + [ok({"type": "unmapped", "user": "x"})]
    counts: list[int] = []
    followed = run(MAPPER, payloads, isolation="process", on_progress=counts.append)
    assert counts == sorted(counts) and counts[-1] == len(payloads) and len(counts) > 2
    plain = run(MAPPER, payloads, isolation="process")
    keep = [c for c in plain.columns if c != "duration"]
    assert followed[keep].equals(plain[keep])


# -- JSON Lines --------------------------------------------------------------------------------


def test_to_jsonl_writes_contract_3() -> None:
    fn = MAPPER.replace('properties={"n": body.get("n")}', 'properties={"n": body.get("n"), "big": 2**64 + 1}')
    results = run(fn, [ok(), ok({"type": "unmapped"}), {"headers": {}, "body": ""}])
    lines = (to_jsonl(results) or "").splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    for record in records:
        assert tuple(record) == JSONL_KEYS
    assert records[0]["events"][0]["properties"]["big"] == 2**64 + 1  # every digit kept
    assert records[1]["outcome"] == "EventNotSupported" and records[1]["events"] == []
    assert records[2]["outcome"] == "InvalidEventPayload" and records[2]["error"].startswith("InvalidEventPayload")
    assert records[0]["error"] is None
    buffer = io.StringIO()
    assert to_jsonl(results, buffer) is None
    assert buffer.getvalue().splitlines() == lines


def test_to_jsonl_to_a_path_and_nan(tmp_path: Path) -> None:
    results = run(MAPPER, [ok()])
    results.at["input1", "error"] = float("nan")  # as pandas may leave it
    out = tmp_path / "out.jsonl"
    to_jsonl(results, out)
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["error"] is None


# -- the Stripe example over the samples -------------------------------------------------------


def test_stripe_example_over_the_samples(samples_dir: Path) -> None:
    results = run(example_path("stripe_source"), [samples_dir / "stripe"])
    assert len(results) >= 12
    assert set(results["outcome"]) == {"ok", "EventNotSupported"}
    assert results["issues"].map(len).sum() == 0
    names = {e.get("event") for events in results["events"] for e in events}
    assert {"Customer Created", "Subscription Created", "Invoice Paid", "Trial Ending Soon",
            "Charge Succeeded"} <= names


def test_stripe_example_checks_signatures_when_given_the_secret(samples_dir: Path) -> None:
    path = example_path("stripe_source")
    secret = {"signingSecret": "whsec_test_segfn_kit_documented_secret", "signatureTolerance": 0}
    good = run(path, [samples_dir / "stripe" / "invoice.paid.json"], secret)
    assert good.iloc[0]["outcome"] == "ok"
    wrong = run(path, [samples_dir / "stripe" / "invoice.paid.json"], {**secret, "signingSecret": "whsec_wrong_one"})
    assert wrong.iloc[0]["outcome"] == "ValidationError"
    assert "signature mismatch" in wrong.iloc[0]["error"]
    assert "whsec_wrong_one" not in wrong.iloc[0]["error"]


def test_progress_bar_goes_to_stderr_not_into_the_logs(capsys: pytest.CaptureFixture[str]) -> None:
    fn = "def on_request(request, settings):\n    print('hi')\n"
    results = run(fn, [ok(), ok(), ok()], progress=True)
    captured = capsys.readouterr()
    assert "running" in captured.err and "3/3" in captured.err
    assert results["logs"].tolist() == ["hi\n"] * 3
    run(fn, [ok()])  # small runs show no bar by default
    assert capsys.readouterr().err == ""


STRIPE_SAMPLES = sorted((Path(__file__).resolve().parents[1] / "sample_payloads" / "stripe").glob("*.json"))


@pytest.mark.parametrize("path", STRIPE_SAMPLES, ids=[p.name for p in STRIPE_SAMPLES])
def test_every_stripe_sample_is_signed_and_runs_cleanly(path: Path) -> None:
    from segfn_kit.runtime import verify_signature

    payload = load_payloads(path).iloc[0]
    assert payload["error"] is None and payload["event_type"] == payload["body"]["type"]
    assert payload["headers"]["User-Agent"].startswith("Stripe/1.0")
    assert verify_signature("stripe", "whsec_test_segfn_kit_documented_secret", payload["headers"],
                            payload["raw"].encode(), tolerance=0)
    secret = {"signingSecret": "whsec_test_segfn_kit_documented_secret", "signatureTolerance": 0}
    result = run(example_path("stripe_source"), [path], secret).iloc[0]
    assert result["outcome"] in ("ok", "EventNotSupported"), result["error"]
    assert result["issues"] == []
    if result["outcome"] == "ok":
        assert all(e["userId"].startswith("cus_") for e in result["events"])
