"""The incoming event type of a payload: from a sender's header, a topic, or the body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# headers that name the event type, most specific first
EVENT_HEADERS = (
    "X-GitHub-Event",
    "X-Gitlab-Event",
    "X-Shopify-Topic",
    "X-Event-Key",  # Bitbucket
    "X-WC-Webhook-Topic",  # WooCommerce
    "X-Zendesk-Event-Type",
    "X-Hook-Event",
    "X-Webhook-Event",
    "X-Event-Type",
)
# body keys that name the event type, first match wins
EVENT_KEYS = (
    "type",
    "event",
    "event_type",
    "eventType",
    "topic",
    "alert_name",  # Paddle classic
    "subscriptionType",  # HubSpot
    "webhookEvent",  # Jira
    "event_name",
)


def detect_event_type(headers: Mapping[str, str], body: Any, topic: Any = None) -> str | None:
    """The incoming event type: from a header, the capture's topic, or the body.

    Example:
        >>> detect_event_type({"X-GitHub-Event": "push"}, {"ref": "main"})
        'push'
        >>> detect_event_type({}, {"type": "customer.created"})
        'customer.created'
    """
    if headers:
        lowered = {str(k).lower(): v for k, v in headers.items()}
        for name in EVENT_HEADERS:
            value = lowered.get(name.lower())
            if isinstance(value, str) and value:
                return value
    if isinstance(topic, str) and topic:
        return topic
    if isinstance(body, dict):
        for key in EVENT_KEYS:
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    elif isinstance(body, list) and body and isinstance(body[0], dict):
        first = detect_event_type({}, body[0])
        if first is not None and all(
            isinstance(item, dict) and detect_event_type({}, item) == first for item in body
        ):
            return first
    return None
