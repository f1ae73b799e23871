"""Redaction of what people call personal or secret beyond emails and tokens, and re-signing.

URL query secrets, IP addresses, phone numbers without ``+`` or stored as integers, card
numbers and IBANs in free text, names beside emails, HAR cookies; the redacted files stay
loadable, and ``resign=True`` keeps signature-checking functions running on them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segfn_kit import load_payloads, redact, run
from segfn_kit._cli import main as cli
from segfn_kit._redact import TEST_SECRET, Redactor, iban_valid
from segfn_kit.runtime import sign, verify_signature

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
SAMPLES = ROOT / "sample_payloads" / "stripe"


def text_of(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def test_secrets_in_url_queries() -> None:
    out = redact(
        {
            "url": "https://hooks.example.com/in?api_key=abc123secret&page=2&token=t0k3n",
            "query": {"api_key": "abc123secret", "page": "2"},
            "headers": {},
            "body": {"callback": "https://x.example/cb?access_token=zzz999&id=7"},
        }
    )
    assert "abc123secret" not in text_of(out) and "t0k3n" not in text_of(out)
    assert "zzz999" not in text_of(out)
    assert out["url"].startswith("https://hooks.example.com/in?api_key=<secret-")
    assert "&page=2&token=<secret-" in out["url"]
    assert (
        out["query"]["page"] == "2"
        and out["query"]["api_key"] == out["url"].split("=")[1].split("&")[0]
    )
    assert out["body"]["callback"].endswith("&id=7")


def test_ip_addresses_v4_and_v6() -> None:
    out = redact(
        {
            "headers": {
                "X-Forwarded-For": "81.2.69.142, 2a00:1450:4001:81b::200e",
                "X-Real-IP": "10.1.2.3",
            },
            "body": {
                "ip": "81.2.69.142",
                "client": {"ip_address": "2a00:1450:4001:81b::200e", "userIp": "172.16.0.9"},
                "note": "login from 8.8.8.8 at 12:30:45 with app v1.2.3 (mac aa:bb:cc:dd:ee:ff)",
            },
        }
    )
    flat = text_of(out)
    for ip in ("81.2.69.142", "2a00:1450:4001:81b::200e", "10.1.2.3", "8.8.8.8", "172.16.0.9"):
        assert ip not in flat, ip
    first = out["body"]["ip"]
    assert first.startswith("192.0.2.")
    assert out["headers"]["X-Forwarded-For"].split(", ")[0] == first  # same IP, same placeholder
    assert out["body"]["client"]["ip_address"].startswith("2001:db8::")
    note = out["body"]["note"]
    assert "12:30:45" in note and "v1.2.3" in note and "aa:bb:cc:dd:ee:ff" in note
    # idempotent: redacting the redacted copy changes nothing
    assert redact(out) == out


def test_phone_numbers_without_plus_and_as_integers() -> None:
    out = redact(
        {
            "contact": {"phone": 4155550134, "mobile_number": "415 555 0199"},
            "note": "call (415) 555-0134 or 415-555-0188, order 1234567",
        }
    )
    assert isinstance(out["contact"]["phone"], int)
    assert str(out["contact"]["phone"]).startswith("1555000")
    assert out["contact"]["mobile_number"].startswith("+1555000")
    note = out["note"]
    assert "555-0134" not in note and "555-0188" not in note and "order 1234567" in note
    assert redact(out) == out


def test_card_numbers_and_ibans_in_free_text() -> None:
    assert iban_valid("DE89370400440532013000") and not iban_valid("DE89370400440532013001")
    out = redact(
        {
            "note": "card 4242424242424242, amex 378282246310005, sent at 1700000000000; "
            "pay to GB82 WEST 1234 5698 7654 32 or DE89370400440532013000, not DE89370400440532013001",
            "iban": "FR1420041010050500013M02606",
        }
    )
    note = out["note"]
    assert "4242424242424242" not in note and "378282246310005" not in note
    assert "1700000000000" in note  # a millisecond timestamp is not a card
    assert "GB82 WEST" not in note and "DE89370400440532013000" not in note
    assert "DE89370400440532013001" in note  # fails the mod-97 check
    assert out["iban"].startswith("<iban-")


def test_names_beside_emails() -> None:
    out = redact(
        {
            "submitter": {"email": "john@corp.example", "name": "John Smith"},
            "item": {"customer_email": "ann@corp.example", "name": "Ann Lee"},
            "product": {"name": "Team plan", "sku": "T1"},
            "message": 'From: John Smith <john@corp.example>, cc "Ann Lee" <ann@corp.example>',
        }
    )
    assert out["submitter"]["name"] == out["message"].split(" <")[0].removeprefix("From: ")
    assert out["item"]["name"].startswith("Person ")
    assert out["product"]["name"] == "Team plan"
    flat = text_of(out)
    assert "John Smith" not in flat and "Ann Lee" not in flat


def test_har_cookies_and_query_strings(tmp_path: Path) -> None:
    har = {
        "log": {
            "entries": [
                {
                    "request": {
                        "method": "POST",
                        "url": "https://h.example/in?apikey=k-123456",
                        "headers": [{"name": "Content-Type", "value": "application/json"}],
                        "cookies": [
                            {
                                "name": "sid",
                                "value": "s3cr3t-session",
                                "path": "/",
                                "httpOnly": True,
                            }
                        ],
                        "queryString": [{"name": "apikey", "value": "k-123456"}],
                        "postData": {
                            "mimeType": "application/json",
                            "text": '{"ip": "81.2.69.142"}',
                        },
                    },
                    "response": {
                        "cookies": [{"name": "sid", "value": "n3w-s3ss10n", "secure": True}]
                    },
                }
            ]
        }
    }
    src = tmp_path / "in"
    src.mkdir()
    (src / "s.har").write_text(json.dumps(har))
    redact(src, out=tmp_path / "out")
    written = (tmp_path / "out" / "in" / "s.har").read_text()
    for secret in ("s3cr3t-session", "n3w-s3ss10n", "k-123456", "81.2.69.142"):
        assert secret not in written, secret
    (row,) = load_payloads(tmp_path / "out").to_dict("records")
    assert row["error"] is None and row["body"]["ip"].startswith("192.0.2.")


def test_redacted_files_stay_loadable(tmp_path: Path) -> None:
    src = tmp_path / "caps"
    src.mkdir()
    (src / "a.json").write_text(
        json.dumps(
            {
                "url": "/in?api_key=zz",
                "headers": {"X-Forwarded-For": "81.2.69.142"},
                "body": '{"email": "a@b.example", "name": "Al Bo", "phone": 4155550134}',
            }
        )
    )
    (src / "b.jsonl").write_text('{"note": "IBAN GB82WEST12345698765432", "ip": "::1"}\n{"n": 1}\n')
    redact(src, out=tmp_path / "out")
    before = load_payloads(src)
    after = load_payloads(tmp_path / "out")
    assert len(after) == len(before) == 3
    assert after["error"].isna().all()
    assert after.loc["out/caps/a.json", "query"] == {
        "api_key": after.loc["out/caps/a.json", "query"]["api_key"]
    }
    assert after.loc["out/caps/a.json", "query"]["api_key"].startswith("<secret-")


# --------------------------------------------------------------------------- re-signing


def signed_envelope(scheme: str, body: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(body, separators=(",", ":"))
    headers = {"Content-Type": "application/json"}
    headers.update(sign(scheme, "the-real-secret", raw.encode(), timestamp=1700000000))
    return {"headers": headers, "body": raw}


def test_resign_keeps_every_scheme_valid_with_the_test_secret() -> None:
    body = {
        "type": "customer.created",
        "customer": {"email": "jane@corp.example", "name": "Jane Roe"},
    }
    for scheme in ("stripe", "github", "shopify", "zendesk"):
        envelope = signed_envelope(scheme, body)
        out = redact(envelope, resign=True)
        assert "jane@corp.example" not in out["body"]
        check = verify_signature(
            scheme, TEST_SECRET, out["headers"], out["body"].encode(), tolerance=0
        )
        assert check.valid, (scheme, check.reason)
        plain = redact(envelope)
        assert not verify_signature(
            scheme, TEST_SECRET, plain["headers"], plain["body"].encode(), tolerance=0
        )
    stripe = redact(signed_envelope("stripe", body), resign=True)
    assert stripe["headers"]["Stripe-Signature"].startswith("t=1700000000,")  # timestamp kept


def test_resign_a_body_given_as_a_json_value_and_a_frame() -> None:
    envelope = {
        "headers": {"X-Hub-Signature-256": "sha256=00"},
        "body": {"sender": {"email": "x@y.example"}},
    }
    out = redact(envelope, resign=True)
    raw = json.dumps(out["body"], ensure_ascii=False, separators=(",", ":")).encode()
    assert verify_signature("github", TEST_SECRET, out["headers"], raw)
    frame = load_payloads(signed_envelope("shopify", {"email": "x@y.example"}))
    redacted = redact(frame, resign=True)
    row = redacted.iloc[0]
    assert verify_signature("shopify", TEST_SECRET, row["headers"], row["raw"].encode())
    kinds = redacted.attrs["redactions"]["kind"].tolist()
    assert "signature" in kinds


def test_a_signature_checking_function_runs_on_resigned_samples(tmp_path: Path) -> None:
    settings = {"signingSecret": TEST_SECRET, "signatureTolerance": 0}
    original = run(STRIPE, SAMPLES, settings=settings)
    assert cli(["redact", str(SAMPLES), "--out", str(tmp_path / "r"), "--resign", "--quiet"]) == 0
    assert cli(["redact", str(SAMPLES), "--out", str(tmp_path / "p"), "--quiet"]) == 0
    resigned = run(STRIPE, tmp_path / "r", settings=settings)
    plain = run(STRIPE, tmp_path / "p", settings=settings)
    assert len(original) == len(resigned) == len(plain) > 5
    assert original["outcome"].tolist() == resigned["outcome"].tolist()
    assert "ok" in original["outcome"].tolist()
    assert "ok" not in plain["outcome"].tolist()  # without re-signing, every signature fails
    assert [len(e) for e in original["events"]] == [len(e) for e in resigned["events"]]


def test_redactor_resign_is_off_by_default() -> None:
    assert Redactor().resign is False


def test_a_gzip_bomb_is_skipped_not_copied(tmp_path: Path, monkeypatch: Any) -> None:
    import gzip

    src = tmp_path / "in"
    src.mkdir()
    with gzip.open(src / "bomb.json.gz", "wb") as fh:
        fh.write(b'{"a": "' + b" " * (3 << 20) + b'"}')
    (src / "ok.json").write_text('{"email": "a@b.example"}')
    monkeypatch.setenv("SEGFN_MAX_BYTES", "1M")
    report = redact(src, out=tmp_path / "out")
    skipped = report[report["kind"] == "skipped"]
    assert len(skipped) == 1 and "size cap" in skipped.iloc[0]["placeholder"]
    assert not (tmp_path / "out" / "in" / "bomb.json.gz").exists()
    assert (tmp_path / "out" / "in" / "ok.json").exists()


def test_zendesk_samples_resigned_still_pass_the_signature_check(tmp_path: Path) -> None:
    zendesk = ROOT / "segfn_kit" / "examples" / "zendesk_source.py"
    samples = ROOT / "sample_payloads" / "zendesk"
    checked = {"signingSecret": TEST_SECRET, "signatureTolerance": "0"}
    redact(samples, out=tmp_path / "r", resign=True)
    redact(samples, out=tmp_path / "p")
    unchecked = run(zendesk, tmp_path / "r")  # no signing secret: no signature check
    resigned = run(zendesk, tmp_path / "r", settings=checked)
    plain = run(zendesk, tmp_path / "p", settings=checked)
    assert len(resigned) == len(list(samples.glob("*.json"))) > 3
    assert resigned["outcome"].tolist() == unchecked["outcome"].tolist()
    assert "ok" in set(resigned["outcome"])
    assert "ok" not in set(plain["outcome"])  # placeholders instead of signatures fail the check
