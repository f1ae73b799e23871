"""Zendesk destination: support-worthy Segment events become Zendesk tickets.

- ``on_track``: "Order Failed", "Support Requested", "Payment Failed", "Invoice Payment
  Failed", "Refund Requested" and "Subscription Canceled" create a ticket (requester,
  subject, comment body, priority, tags); other track events are not supported.
- ``on_identify``: creates or updates the Zendesk user.
- 429 (rate limit, with ``Retry-After``), 5xx and connection errors raise ``RetryError``;
  other 4xx raise ``ValidationError``; an event without an email raises ``ValidationError``.

Settings: ``subdomain`` (the ``acme`` of acme.zendesk.com), ``email`` (the agent the API
token belongs to) and ``apiToken`` (secret).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import httpx

from segfn_kit.runtime import EventNotSupported, RetryError, ValidationError

SETTINGS = {
    "subdomain": {"type": "string", "required": True, "description": "acme for acme.zendesk.com"},
    "email": {"type": "string", "required": True, "description": "the agent who owns the API token"},
    "apiToken": {"type": "string", "required": True, "secret": True, "description": "Zendesk API token"},
}

# track event name -> (ticket priority, tag)
SUPPORT_EVENTS = {
    "Order Failed": ("high", "order_failed"),
    "Payment Failed": ("high", "payment_failed"),
    "Invoice Payment Failed": ("high", "invoice_payment_failed"),
    "Support Requested": ("normal", "support_requested"),
    "Refund Requested": ("normal", "refund_requested"),
    "Subscription Canceled": ("low", "subscription_canceled"),
}


def _api(settings: Mapping[str, Any], path: str, body: dict[str, Any]) -> None:
    """POST to the Zendesk API; rate limits and outages are retried by Segment."""
    credentials = f"{settings['email']}/token:{settings['apiToken']}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    url = f"https://{settings['subdomain']}.zendesk.com{path}"
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=4.0)
    except httpx.TimeoutException as exc:
        raise RetryError(f"Zendesk did not answer in time ({type(exc).__name__})") from None
    except httpx.TransportError as exc:
        raise RetryError(f"cannot reach Zendesk ({type(exc).__name__})") from None
    if response.status_code == 429:
        wait = response.headers.get("Retry-After", "unknown")
        raise RetryError(f"Zendesk rate limit (429), Retry-After {wait} s")
    if response.status_code >= 500:
        raise RetryError(f"Zendesk server error {response.status_code}")
    if response.status_code >= 400:
        raise ValidationError(f"Zendesk refused the request: {response.status_code} {response.text[:200]}")


def _email(event: Mapping[str, Any]) -> str | None:
    for source in (event.get("properties") or {}, event.get("traits") or {},
                   (event.get("context") or {}).get("traits") or {}):
        if source.get("email"):
            return str(source["email"])
    return None


def on_track(event: dict[str, Any], settings: Mapping[str, Any]) -> None:
    name = event.get("event")
    if name not in SUPPORT_EVENTS:
        raise EventNotSupported(f"track {name!r} does not open a ticket")
    email = _email(event)
    if not email:
        raise ValidationError(f"{name!r} has no email in properties, traits or context.traits: cannot name the requester")
    properties = event.get("properties") or {}
    traits = (event.get("context") or {}).get("traits") or {}
    priority, tag = SUPPORT_EVENTS[name]
    details = "\n".join(f"{key}: {value}" for key, value in sorted(properties.items()) if key != "email")
    reference = next(
        (properties[k] for k in ("order_id", "number", "invoice_id", "subscription_id", "topic") if properties.get(k)),
        event.get("messageId", ""),
    )
    ticket: dict[str, Any] = {
        "subject": f"{name}: {reference}".rstrip(": "),
        "comment": {"body": f"{name} for {email}.\n{details}".strip()},
        "requester": {"name": properties.get("name") or traits.get("name") or email, "email": email},
        "priority": priority,
        "tags": ["segment", tag],
        "external_id": event.get("messageId"),
    }
    _api(settings, "/api/v2/tickets.json", {"ticket": ticket})


def on_identify(event: dict[str, Any], settings: Mapping[str, Any]) -> None:
    traits = event.get("traits") or {}
    email = traits.get("email") or _email(event)
    if not email:
        raise ValidationError("identify has no traits.email: Zendesk users need an email")
    user: dict[str, Any] = {
        "email": email,
        "name": traits.get("name") or email,
        "external_id": event.get("userId") or event.get("anonymousId"),
    }
    if traits.get("phone"):
        user["phone"] = traits["phone"]
    if traits.get("company"):
        user["organization"] = {"name": traits["company"]}
    _api(settings, "/api/v2/users/create_or_update.json", {"user": user})
