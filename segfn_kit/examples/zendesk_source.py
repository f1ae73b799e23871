"""Zendesk webhooks -> Segment: ticket activity as track events, new users as identify.

A source function in the style of Segment Functions, for Zendesk's event-subscription
webhooks (``{type: "zen:event-type:...", account_id, id, time, zendesk_event_version,
subject, detail, event}``). Subscribe the webhook to the event types below; every other
type is answered with ``EventNotSupported``.

=========================================  ===============================================
Zendesk event type                         Segment call
=========================================  ===============================================
zen:event-type:ticket.created              track "Ticket Created" (requester)
zen:event-type:ticket.status_changed       track "Ticket Status Changed" (requester)
zen:event-type:ticket.priority_changed     track "Ticket Priority Changed" (requester)
zen:event-type:ticket.comment_added        track "Ticket Comment Added" (requester)
zen:event-type:user.created                identify (the new user)
=========================================  ===============================================

Zendesk ids are strings; the requester's id (``detail.requester_id``) is the Segment
``userId`` of ticket events. The event's ``time`` (ISO 8601, possibly with nanoseconds) is
the Segment ``timestamp``, cut to microseconds.

Settings: ``signingSecret`` (optional, secret): the webhook's signing secret; when set,
requests whose ``X-Zendesk-Webhook-Signature`` does not match, or whose signed timestamp is
more than ``signatureTolerance`` seconds off the clock, are rejected.
``signatureTolerance`` (optional): that tolerance in seconds (300 by default, as Stripe's;
0 accepts any age, for replaying captured payloads).
"""

from __future__ import annotations

import re
from typing import Any

from segfn_kit.runtime import (
    EventNotSupported,
    InvalidEventPayload,
    Segment,
    ValidationError,
    verify_signature,
)

SETTINGS = {
    "signingSecret": {
        "type": "string",
        "required": False,
        "secret": True,
        "description": "The webhook's signing secret; checks X-Zendesk-Webhook-Signature when set.",
    },
    "signatureTolerance": {
        "type": "string",
        "required": False,
        "description": "Largest signature age in seconds (default 300; 0 for any age).",
    },
}

PREFIX = "zen:event-type:"


def on_request(request: Any, settings: Any) -> None:
    check_signature(request, settings)
    event = request.json()
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise InvalidEventPayload("expected a Zendesk webhook event with a 'type'")
    kind = event["type"].removeprefix(PREFIX)
    handler = HANDLERS.get(kind)
    if handler is None:
        raise EventNotSupported(f"{event['type']} is not mapped")
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise InvalidEventPayload(f"{event['type']}: the event has no detail object")
    handler(event, detail, event.get("event") or {})


def check_signature(request: Any, settings: Any) -> None:
    secret = settings.get("signingSecret")
    if not secret:
        return
    tolerance = settings.get("signatureTolerance")
    tolerance = 300 if tolerance in (None, "") else int(tolerance)
    check = verify_signature("zendesk", secret, request.headers, request.content, tolerance=tolerance)
    if not check:
        raise ValidationError(f"X-Zendesk-Webhook-Signature rejected: {check.reason}")


# -- helpers --------------------------------------------------------------------------


def timestamp(value: Any) -> str | None:
    """Zendesk's ISO time, with nanoseconds cut to the microseconds Segment keeps."""
    if not isinstance(value, str):
        return None
    return re.sub(r"(\.\d{6})\d+", r"\1", value)


def compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def context(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "integration": {
            "name": "zendesk",
            "version": event.get("zendesk_event_version") or "unknown",
        },
        "groupId": str(event["account_id"]) if event.get("account_id") is not None else None,
    }


def requester(event: dict[str, Any], ticket: dict[str, Any]) -> str:
    user_id = ticket.get("requester_id")
    if not user_id:
        raise ValidationError(f"{event['type']}: ticket {ticket.get('id')} has no requester_id")
    return str(user_id)


def ticket_properties(ticket: dict[str, Any]) -> dict[str, Any]:
    return compact(
        {
            "ticket_id": ticket.get("id"),
            "subject": ticket.get("subject"),
            "status": (ticket.get("status") or "").lower() or None,
            "priority": (ticket.get("priority") or "").lower() or None,
            "type": (ticket.get("type") or "").lower() or None,
            "tags": ticket.get("tags"),
            "channel": (ticket.get("via") or {}).get("channel"),
            "group_id": ticket.get("group_id"),
            "assignee_id": ticket.get("assignee_id"),
            "organization_id": ticket.get("organization_id"),
        }
    )


def track(
    event: dict[str, Any], ticket: dict[str, Any], name: str, extra: dict[str, Any] | None = None
) -> None:
    Segment.track(
        user_id=requester(event, ticket),
        event=name,
        properties={**ticket_properties(ticket), **(extra or {})},
        timestamp=timestamp(event.get("time")),
        message_id=event.get("id"),
        context=compact(context(event)),
    )


# -- tickets --------------------------------------------------------------------------


def ticket_created(event: dict[str, Any], ticket: dict[str, Any], change: dict[str, Any]) -> None:
    track(event, ticket, "Ticket Created")


def status_changed(event: dict[str, Any], ticket: dict[str, Any], change: dict[str, Any]) -> None:
    track(
        event,
        ticket,
        "Ticket Status Changed",
        compact(
            {
                "previous_status": (change.get("previous") or "").lower() or None,
                "current_status": (change.get("current") or "").lower() or None,
            }
        ),
    )


def priority_changed(event: dict[str, Any], ticket: dict[str, Any], change: dict[str, Any]) -> None:
    track(
        event,
        ticket,
        "Ticket Priority Changed",
        compact(
            {
                "previous_priority": (change.get("previous") or "").lower() or None,
                "current_priority": (change.get("current") or "").lower() or None,
            }
        ),
    )


def comment_added(event: dict[str, Any], ticket: dict[str, Any], change: dict[str, Any]) -> None:
    comment = change.get("comment") or {}
    author = comment.get("author") or {}
    track(
        event,
        ticket,
        "Ticket Comment Added",
        compact(
            {
                "comment_id": comment.get("id"),
                "comment_public": comment.get("is_public"),
                "comment_author_id": author.get("id"),
                "comment_by_staff": author.get("is_staff"),
            }
        ),
    )


# -- users ----------------------------------------------------------------------------


def user_created(event: dict[str, Any], user: dict[str, Any], change: dict[str, Any]) -> None:
    user_id = user.get("id")
    if not user_id:
        raise ValidationError("user.created: the user has no id")
    Segment.identify(
        user_id=str(user_id),
        traits=compact(
            {
                "email": user.get("email"),
                "name": user.get("name"),
                "role": user.get("role"),
                "external_id": user.get("external_id"),
                "organization_id": user.get("organization_id"),
                "created_at": user.get("created_at"),
            }
        ),
        timestamp=timestamp(event.get("time")),
        message_id=event.get("id"),
        context=compact(context(event)),
    )


HANDLERS: dict[str, Any] = {
    "ticket.created": ticket_created,
    "ticket.status_changed": status_changed,
    "ticket.priority_changed": priority_changed,
    "ticket.comment_added": comment_added,
    "user.created": user_created,
}
