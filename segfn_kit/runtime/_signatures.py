"""Webhook signatures: make and check them, over the raw bytes as received.

Schemes:

======== ======================================= =====================================================
scheme   header(s)                               signed value
======== ======================================= =====================================================
stripe   ``Stripe-Signature: t=<unix>,v1=<hex>`` hex HMAC-SHA256(secret, "<t>.<raw body>"), 300 s tolerance
github   ``X-Hub-Signature-256: sha256=<hex>``   hex HMAC-SHA256(secret, raw body)
shopify  ``X-Shopify-Hmac-Sha256: <base64>``     base64 HMAC-SHA256(secret, raw body)
zendesk  ``X-Zendesk-Webhook-Signature`` and     base64 HMAC-SHA256(secret, timestamp + raw body)
         ``...-Signature-Timestamp``
hmac-sha256 ``X-Signature: <hex>``               hex HMAC-SHA256(secret, raw body)
======== ======================================= =====================================================

Digests are compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ._request import Headers

__all__ = ["SCHEMES", "STRIPE_TOLERANCE", "SignatureCheck", "sign", "verify_signature"]

SCHEMES = ("stripe", "github", "shopify", "zendesk", "hmac-sha256")
STRIPE_TOLERANCE = 300  # seconds, as Stripe's own libraries


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
    tolerance: int = STRIPE_TOLERANCE,
    now: float | None = None,
) -> SignatureCheck:
    """Check a request's signature over its raw body.

    Args:
        scheme: one of ``stripe``, ``github``, ``shopify``, ``zendesk``, ``hmac-sha256``.
        secret: the signing secret.
        headers: the request headers (any case).
        body: the raw body bytes exactly as received.
        tolerance: Stripe only: the largest age of the signed timestamp, in seconds.
        now: the current Unix time (for tests); defaults to the clock.

    Example:
        >>> body = b'{"id": "evt_1"}'
        >>> headers = sign("stripe", "whsec_test", body)
        >>> bool(verify_signature("stripe", "whsec_test", headers, body))
        True
        >>> verify_signature("stripe", "whsec_test", headers, body + b" ").reason
        'signature mismatch'
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
        age = (time.time() if now is None else now) - ts
        if tolerance and abs(age) > tolerance:
            return SignatureCheck(scheme, False, f"stale: signed {int(age)} s ago, tolerance {tolerance} s")
        return SignatureCheck(scheme, True)
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
        return _compare(scheme, base64.b64encode(_hmac(secret, stamp.encode() + body)).decode(), given)
    if scheme == "hmac-sha256":
        given = h.get("X-Signature")
        if not given:
            return SignatureCheck(scheme, False, "missing header X-Signature")
        return _compare(scheme, _hmac(secret, body).hex(), given.removeprefix("sha256="))
    raise ValueError(f"unknown signature scheme {scheme!r}; use one of {', '.join(SCHEMES)}")


def _compare(scheme: str, expected: str, given: str) -> SignatureCheck:
    if hmac.compare_digest(expected.encode(), given.strip().encode()):
        return SignatureCheck(scheme, True)
    return SignatureCheck(scheme, False, "signature mismatch")
