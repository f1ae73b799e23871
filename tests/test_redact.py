"""Redaction of personal data and secrets: frames, payload dicts and files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from segfn_kit import load_payloads, redact
from segfn_kit._cli import main as cli
from segfn_kit._payloads import request_from_row
from segfn_kit._redact import Redactor, luhn_valid

ENVELOPE = {
    "headers": {
        "Authorization": "Bearer sk_live_abcdefghijklmnop",
        "Cookie": "session=abc123",
        "Stripe-Signature": "t=1,v1=deadbeef",
        "X-Api-Key": "key-123456",
        "Content-Type": "application/json",
        "User-Agent": "Stripe/1.0",
    },
    "body": {
        "type": "customer.created",
        "data": {
            "object": {
                "id": "cus_1",
                "email": "Jenny.Rosen@example.org",
                "name": "Jenny Rosen",
                "phone": "+1 (415) 555-2671",
                "description": "Contact jenny.rosen@example.org or +44 20 7946 0958",
                "metadata": {"api_key": "abc", "first_name": "Jenny", "card_number": "4242 4242 4242 4242"},
                "note": "card 4000-0566-5566-5556 on file",
                "invoice_prefix": "7C3D1E2A",
                "created": 1700000000,
                "cvc_check": "pass",
                "product": {"name": "Team plan"},
            }
        },
    },
}
SECRETS = ["sk_live_abcdefghijklmnop", "abc123", "deadbeef", "key-123456", "Jenny", "Rosen",
           "415", "7946", "4242 4242", "4000-0566"]


def test_redacts_a_payload_dict_and_keeps_the_rest() -> None:
    out = redact(ENVELOPE)
    text = json.dumps(out)
    for secret in SECRETS:
        assert secret not in text, secret
    obj = out["body"]["data"]["object"]
    assert obj["email"] == "person1@example.com"
    assert obj["description"] == "Contact person1@example.com or +15550000002"
    assert obj["name"] == "Person 1"
    assert obj["metadata"]["first_name"] == "Person 2"
    assert obj["metadata"]["card_number"] == "<card-1>"
    assert obj["note"] == "card <card-2> on file"
    assert out["headers"]["Authorization"] == "Bearer <secret-1>"
    # kept: ids, non-personal text, numbers, statuses, product names, safe headers
    assert obj["id"] == "cus_1" and obj["invoice_prefix"] == "7C3D1E2A" and obj["created"] == 1700000000
    assert obj["cvc_check"] == "pass"
    assert obj["product"]["name"] == "Team plan"
    assert out["headers"]["User-Agent"] == "Stripe/1.0"
    assert ENVELOPE["body"]["data"]["object"]["email"] == "Jenny.Rosen@example.org"  # input unchanged


def test_same_value_same_placeholder_everywhere() -> None:
    r = Redactor()
    a = redact({"headers": {}, "body": {"email": "x@corp.com"}}, redactor=r)
    b = redact({"headers": {}, "body": {"customer": {"email": "X@Corp.com"}, "cc": "x@corp.com"}}, redactor=r)
    assert a["body"]["email"] == b["body"]["customer"]["email"] == "person1@example.com"
    assert b["body"]["cc"] == "person1@example.com"
    assert {row["kind"] for row in r.replacements} == {"email"}
    assert all("x@corp.com" not in str(row) for row in r.replacements)  # the report never shows originals


def test_keyed_placeholders_are_stable_across_runs() -> None:
    one = redact({"email": "x@corp.com"}, key="k1")
    two = redact({"other": "y@corp.com", "email": "x@corp.com"}, key="k1")
    three = redact({"email": "x@corp.com"}, key="k2")
    assert one["email"] == two["email"] != three["email"]
    assert one["email"].startswith("person-") and one["email"].endswith("@example.com")


def test_luhn() -> None:
    assert luhn_valid("4242424242424242") and not luhn_valid("4242424242424243")
    # an id that happens to be 16 digits but is not Luhn-valid stays
    assert redact({"number": "1234567812345678"}) == {"number": "1234567812345678"}


def test_string_and_form_bodies(tmp_path: Path) -> None:
    env = {"headers": {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "abc="},
           "body": "From=%2B14155552671&Body=call+me+at+jane%40x.com&AccountSid=AC1"}
    out = redact(env)
    assert out["headers"]["X-Twilio-Signature"] == "<secret-1>"
    assert out["body"] == "From=%2B15550000001&Body=call+me+at+person1%40example.com&AccountSid=AC1"
    raw_json = {"headers": {}, "body": '{"user": {"email": "a@b.co", "name": "Al Bo"}}'}
    assert redact(raw_json)["body"] == '{"user":{"email":"person1@example.com","name":"Person 1"}}'


def test_redacts_a_frame_and_reports(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps(ENVELOPE))
    frame = load_payloads(tmp_path)
    out = redact(frame)
    row = out.iloc[0]
    assert out.index.tolist() == frame.index.tolist()
    assert row["body.data.object.email"] == "person1@example.com"
    assert re.fullmatch(r"<secret-\d+>", row["headers"]["Cookie"])
    assert "Jenny" not in row["raw"]
    assert request_from_row(row).json()["data"]["object"]["email"] == "person1@example.com"
    report = out.attrs["redactions"]
    assert set(report.columns) == {"source", "location", "kind", "placeholder"}
    assert {"email", "phone", "name", "card", "secret"} <= set(report["kind"])
    assert "body.data.object.email" in set(report["location"])
    assert frame.iloc[0]["body.data.object.email"] == "Jenny.Rosen@example.org"  # original frame unchanged


def test_redacts_files_to_a_folder_keeping_formats(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.json").write_text(json.dumps(ENVELOPE))
    (src / "sub" / "b.jsonl").write_text(
        json.dumps({"email": "Jenny.Rosen@example.org"}) + "\n" + json.dumps({"email": "other@x.io"}) + "\n"
    )
    har = {"log": {"entries": [{"request": {"method": "POST", "url": "http://x/",
                                            "headers": [{"name": "Authorization", "value": "Basic dXNlcjpwYXNz"}],
                                            "postData": {"mimeType": "application/json",
                                                         "text": '{"email": "other@x.io"}'}}}]}}
    (src / "c.har").write_text(json.dumps(har))
    (src / "README.md").write_text("not copied")
    report = redact(src, out=tmp_path / "out")
    out = tmp_path / "out" / "src"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "a.json", "c.har", "sub/b.jsonl"]
    frame = load_payloads(out)
    assert frame.loc["src/a.json", "body.data.object.email"] == "person1@example.com"
    assert frame.loc["src/sub/b.jsonl#1", "body.email"] == "person1@example.com"  # same across files
    assert frame.loc["src/sub/b.jsonl#2", "body.email"] == "person2@example.com"
    assert frame.loc["src/c.har#1", "body.email"] == "person2@example.com"
    assert re.fullmatch(r"Basic <secret-\d+>", frame.loc["src/c.har#1", "headers"]["Authorization"])
    assert (report["kind"] == "file").sum() == 3
    assert "Jenny" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())


def test_files_need_an_output_folder(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(ValueError, match="out=FOLDER"):
        redact(tmp_path / "a.json")


def test_cli_redact(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.json").write_text(json.dumps(ENVELOPE))
    assert cli(["redact", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "email -> person1@example.com" in out
    assert "1 files written" in out
    assert "Jenny" not in out and "sk_live" not in out
    assert cli(["redact", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--key-env", "NOPE_UNSET"]) == 2
    monkeypatch.setenv("SEGFN_TEST_KEY", "k")
    assert cli(["redact", str(tmp_path / "in"), "--out", str(tmp_path / "o3"), "--key-env", "SEGFN_TEST_KEY",
                "--quiet"]) == 0
    assert "person-" in (tmp_path / "o3" / "in" / "a.json").read_text()
