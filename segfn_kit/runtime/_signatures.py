"""Webhook signatures: make and check them, over the raw bytes as received.

Schemes:

======== ======================================= =====================================================
scheme   header(s)                               signed value
======== ======================================= =====================================================
stripe   ``Stripe-Signature: t=<unix>,v1=<hex>`` hex HMAC-SHA256(secret, "<t>.<raw body>"), 300 s tolerance
github   ``X-Hub-Signature-256: sha256=<hex>``   hex HMAC-SHA256(secret, raw body)
shopify  ``X-Shopify-Hmac-Sha256: <base64>``     base64 HMAC-SHA256(secret, raw body)
zendesk  ``X-Zendesk-Webhook-Signature`` and     base64 HMAC-SHA256(secret, timestamp + raw body),
         ``...-Signature-Timestamp``             300 s tolerance
hmac-sha256 ``X-Signature: <hex>``               hex HMAC-SHA256(secret, raw body)
======== ======================================= =====================================================

Digests are compared in constant time (``hmac.compare_digest``). Schemes that sign a
timestamp (Stripe, Zendesk) also refuse a signature older or newer than ``tolerance`` seconds
(300 by default, as Stripe's libraries; one rule, ``_check_age``), so a captured request cannot
be replayed forever; ``tolerance=0`` turns that off (archived samples, replays of old captures).
The Zendesk timestamp is read as Unix seconds or as ISO 8601 (``2026-11-20T10:12:08Z``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ._request import Headers

__all__ = ["SCHEMES", "SIGNATURE_TOLERANCE", "STRIPE_TOLERANCE", "SignatureCheck", "sign", "verify_signature"]

SCHEMES = ("stripe", "github", "shopify", "zendesk", "hmac-sha256")
SIGNATURE_TOLERANCE = 300
"""Seconds a signed timestamp may be off the clock, either way (as Stripe's own libraries)."""
STRIPE_TOLERANCE = SIGNATURE_TOLERANCE  # the name it had when only Stripe's timestamps were checked


@dataclass(frozen=True)
class SignatureCheck:
    """The result of checking one request's signature.

    Attributes:
        scheme: the scheme checked.
        valid: the signature matched (and, for Stripe, was fresh).
        reason: why it did not (``"missing header X"``, ``"mismatch"``, ``"stale: 412 s old"``).
    """

    scheme: str
    valid: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.valid


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def sign(scheme: str, secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers a sender using ``scheme`` would attach to ``body``.

    Example:
        >>> sign("github", "s3cret", b"{}")["X-Hub-Signature-256"][:7]
        'sha256='
    """
    if scheme == "stripe":
        ts = int(time.time()) if timestamp is None else timestamp
        digest = _hmac(secret, f"{ts}.".encode() + body).hex()
        return {"Stripe-Signature": f"t={ts},v1={digest}"}
    if scheme == "github":
        return {"X-Hub-Signature-256": "sha256=" + _hmac(secret, body).hex()}
    if scheme == "shopify":
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(_hmac(secret, body)).decode()}
    if scheme == "zendesk":
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = base64.b64encode(_hmac(secret, stamp.encode() + body)).decode()
        return {"X-Zendesk-Webhook-Signature": digest, "X-Zendesk-Webhook-Signature-Timestamp": stamp}
    if scheme == "hmac-sha256":
        return {"X-Signature": _hmac(secret, body).hex()}
    raise ValueError(f"unknown signature scheme {scheme!r}; use one of {', '.join(SCHEMES)}")


def verify_signature(
    scheme: str,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: int = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> SignatureCheck:
    """Check a request's signature over its raw body.

    Args:
        scheme: one of ``stripe``, ``github``, ``shopify``, ``zendesk``, ``hmac-sha256``.
        secret: the signing secret.
        headers: the request headers (any case).
        body: the raw body bytes exactly as received.
        tolerance: Stripe and Zendesk: how many seconds the signed timestamp may be off the
            clock, in the past or the future (0: not checked).
        now: the current Unix time (for tests); defaults to the clock.

    Example:
        >>> body = b'{"id": "evt_1"}'
        >>> headers = sign("stripe", "whsec_test", body)
        >>> bool(verify_signature("stripe", "whsec_test", headers, body))
        True
        >>> verify_signature("stripe", "whsec_test", headers, body + b" ").reason
        'signature mismatch'
        >>> old = sign("zendesk", "s3cret", body, timestamp=1577836800)  # 2020-01-01
        >>> verify_signature("zendesk", "s3cret", old, body, now=1796000000).reason
        'stale: signed 218163200 s ago, tolerance 300 s'
    """
    h = headers if isinstance(headers, Headers) else Headers(headers)
    if scheme == "stripe":
        header = h.get("Stripe-Signature")
        if not header:
            return SignatureCheck(scheme, False, "missing header Stripe-Signature")
        parts: dict[str, list[str]] = {}
        for item in header.split(","):
            key, _, value = item.strip().partition("=")
            parts.setdefault(key, []).append(value)
        try:
            ts = int(parts.get("t", [""])[0])
        except ValueError:
            return SignatureCheck(scheme, False, "malformed Stripe-Signature: no t=<timestamp>")
        expected = _hmac(secret, f"{ts}.".encode() + body).hex()
        if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
            return SignatureCheck(scheme, False, "signature mismatch")
        stale = _check_age(scheme, ts, tolerance, now)
        return stale if stale is not None else SignatureCheck(scheme, True)
    if scheme == "github":
        given = h.get("X-Hub-Signature-256")
        if not given:
            return SignatureCheck(scheme, False, "missing header X-Hub-Signature-256")
        expected = "sha256=" + _hmac(secret, body).hex()
        return _compare(scheme, expected, given)
    if scheme == "shopify":
        given = h.get("X-Shopify-Hmac-Sha256")
        if not given:
            return SignatureCheck(scheme, False, "missing header X-Shopify-Hmac-Sha256")
        return _compare(scheme, base64.b64encode(_hmac(secret, body)).decode(), given)
    if scheme == "zendesk":
        given = h.get("X-Zendesk-Webhook-Signature")
        stamp = h.get("X-Zendesk-Webhook-Signature-Timestamp")
        if not given or stamp is None:
            return SignatureCheck(
                scheme, False, "missing header X-Zendesk-Webhook-Signature or its -Timestamp"
            )
        check = _compare(scheme, base64.b64encode(_hmac(secret, stamp.encode() + body)).decode(), given)
        if not check or not tolerance:
            return check
        signed_at = _unix_time(stamp)
        if signed_at is None:
            return SignatureCheck(scheme, False, f"malformed X-Zendesk-Webhook-Signature-Timestamp {stamp[:40]!r}: "
                                                 "expected Unix seconds or an ISO 8601 time")
        stale = _check_age(scheme, signed_at, tolerance, now)
        return stale if stale is not None else check
    if scheme == "hmac-sha256":
        given = h.get("X-Signature")
        if not given:
            return SignatureCheck(scheme, False, "missing header X-Signature")
        return _compare(scheme, _hmac(secret, body).hex(), given.removeprefix("sha256="))
    raise ValueError(f"unknown signature scheme {scheme!r}; use one of {', '.join(SCHEMES)}")


def _check_age(scheme: str, signed_at: float, tolerance: int, now: float | None) -> SignatureCheck | None:
    """The one freshness rule of signed timestamps: a failed check when ``signed_at`` is more
    than ``tolerance`` seconds from now (either way), else None."""
    if not tolerance:
        return None
    age = (time.time() if now is None else now) - signed_at
    if abs(age) <= tolerance:
        return None
    if age > 0:
        return SignatureCheck(scheme, False, f"stale: signed {int(age)} s ago, tolerance {tolerance} s")
    return SignatureCheck(scheme, False, f"from the future: signed {int(-age)} s ahead of now, "
                                         f"tolerance {tolerance} s; check the sender's clock")


def _unix_time(stamp: str) -> float | None:
    """A Zendesk signature timestamp (Unix seconds, or ISO 8601) as Unix seconds, or None."""
    text = stamp.strip()
    if text.isascii() and text.isdigit() and len(text) <= 12:  # not "²", which float() refuses
        return float(text)
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed.timestamp()


def _compare(scheme: str, expected: str, given: str) -> SignatureCheck:
    if hmac.compare_digest(expected.encode(), given.strip().encode()):
        return SignatureCheck(scheme, True)
    return SignatureCheck(scheme, False, "signature mismatch")
