"""Signed timestamps (Stripe, Zendesk) share one freshness rule: 300 s either way by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from segfn_kit._payloads import load_payloads, request_from_row
from segfn_kit.runtime import Function, sign, verify_signature
from segfn_kit.runtime._signatures import SIGNATURE_TOLERANCE, STRIPE_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
ZENDESK = ROOT / "segfn_kit" / "examples" / "zendesk_source.py"
SAMPLE_SECRET = "zendesk_test_segfn_kit_documented_secret"  # the documented test secret of the samples
BODY = b'{"type":"zen:event-type:ticket.created"}'
NOW = 1_796_000_000  # 2026-11-30T00:53:20Z


@pytest.mark.parametrize("scheme", ["stripe", "zendesk"])
@pytest.mark.parametrize("signed_at, says", [
    (1_577_836_800, "stale: signed 218163200 s ago, tolerance 300 s"),  # 2020-01-01
    (4_102_444_800, "from the future: signed 2306444800 s ahead of now, tolerance 300 s"),  # 2100-01-01
    (NOW - 301, "stale: signed 301 s ago"),
    (NOW + 301, "from the future: signed 301 s ahead"),
])
def test_signatures_far_from_the_clock_fail_with_the_reason(scheme: str, signed_at: int, says: str) -> None:
    headers = sign(scheme, "s3cret", BODY, timestamp=signed_at)
    check = verify_signature(scheme, "s3cret", headers, BODY, now=NOW)
    assert not check and says in check.reason
    assert verify_signature(scheme, "s3cret", headers, BODY, now=NOW, tolerance=0)  # archives: age not checked
    assert verify_signature(scheme, "s3cret", headers, BODY, now=signed_at + 299)
    assert verify_signature(scheme, "s3cret", headers, BODY, now=signed_at - 299)
    assert SIGNATURE_TOLERANCE == STRIPE_TOLERANCE == 300


def test_zendesk_iso_timestamps_are_read_and_bad_ones_named() -> None:
    import base64
    import hashlib
    import hmac

    def zendesk_headers(stamp: str) -> dict[str, str]:
        digest = base64.b64encode(hmac.new(b"s3cret", stamp.encode() + BODY, hashlib.sha256).digest()).decode()
        return {"X-Zendesk-Webhook-Signature": digest, "X-Zendesk-Webhook-Signature-Timestamp": stamp}

    assert verify_signature("zendesk", "s3cret", zendesk_headers("2026-11-30T00:53:20Z"), BODY, now=NOW)
    old = verify_signature("zendesk", "s3cret", zendesk_headers("2020-01-01T00:00:00Z"), BODY, now=NOW)
    assert not old and old.reason.startswith("stale")
    bad = verify_signature("zendesk", "s3cret", zendesk_headers("yesterday"), BODY, now=NOW)
    assert not bad and "malformed X-Zendesk-Webhook-Signature-Timestamp 'yesterday'" in bad.reason
    # a wrong signature is a mismatch whatever its time
    wrong = verify_signature("zendesk", "other", zendesk_headers("2020-01-01T00:00:00Z"), BODY, now=NOW)
    assert wrong.reason == "signature mismatch"


def test_the_zendesk_example_refuses_old_signatures_unless_told(samples_dir: Path) -> None:
    fn = Function.from_file(ZENDESK)
    frame = load_payloads(samples_dir / "zendesk")
    row = frame.iloc[0]
    request = request_from_row(row)
    assert verify_signature("zendesk", SAMPLE_SECRET, request.headers, request.content, tolerance=0)
    refused = fn.on_request(request, fn.settings({"signingSecret": SAMPLE_SECRET}))
    assert refused.outcome == "ValidationError" and "stale: signed" in str(refused.error)
    replayed = fn.on_request(request, fn.settings({"signingSecret": SAMPLE_SECRET, "signatureTolerance": "0"}))
    assert replayed.outcome == "ok"
    fresh_headers = {**dict(request.headers), **sign("zendesk", SAMPLE_SECRET, request.content)}
    fresh = type(request)(request.content, headers=fresh_headers)
    assert fn.on_request(fresh, fn.settings({"signingSecret": SAMPLE_SECRET})).outcome == "ok"
