"""Stripe webhooks -> Segment: customers, subscriptions, trials, invoices, charges, checkouts.

A source function in the style of Segment Functions (and of Segment's functions-library
Stripe example, which it extends). Point a Stripe webhook endpoint at the function and
choose the event types below; every other type is answered with ``EventNotSupported``.

=========================================  ===============================================
Stripe event                               Segment calls
=========================================  ===============================================
customer.created                           identify + track "Customer Created"
customer.updated                           identify + track "Customer Updated"
customer.deleted                           track "Customer Deleted"
customer.subscription.created              track "Subscription Created"
customer.subscription.updated              track "Subscription Updated"
customer.subscription.deleted              track "Subscription Canceled"
customer.subscription.trial_will_end       track "Trial Ending Soon"
invoice.paid                               track "Invoice Paid"
invoice.payment_failed                     track "Invoice Payment Failed"
charge.succeeded (with a customer)         track "Charge Succeeded"
checkout.session.completed                 track "Checkout Completed" (+ identify with email)
=========================================  ===============================================

The Stripe customer id (``cus_...``) is the Segment ``userId``; event times come from the
Stripe event's ``created`` (a Unix time) as ISO 8601. Amounts are kept in Stripe's minor
units (``amount``, cents) and also given in major units as ``revenue``/``value``.

Settings: ``signingSecret`` (optional, secret): the endpoint's ``whsec_...`` secret; when
set, requests whose ``Stripe-Signature`` does not match are rejected.
``signatureTolerance`` (optional): largest age of a signature in seconds (300 by
default; 0 accepts any age, for replaying captured payloads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from segfn_kit.runtime import (
    EventNotSupported,
    InvalidEventPayload,
    Request,
    Segment,
    ValidationError,
    verify_signature,
)

Obj = dict[str, Any]

SETTINGS = {
    "signingSecret": {
        "type": "string",
        "required": False,
        "secret": True,
        "description": "The webhook endpoint's signing secret (whsec_...); checks Stripe-Signature when set.",
    },
    "signatureTolerance": {
        "type": "string",
        "required": False,
        "description": "Largest signature age in seconds (default 300; 0 for any age).",
    },
}

# currencies Stripe counts in whole units (https://stripe.com/docs/currencies#zero-decimal)
ZERO_DECIMAL = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
    "ugx", "vnd", "vuv", "xaf", "xof", "xpf",
}


def on_request(request: Request, settings: Mapping[str, Any]) -> None:
    check_signature(request, settings)
    event = request.json()
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise InvalidEventPayload("expected a Stripe event object with a 'type'")
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict):
        raise InvalidEventPayload(f"{event['type']}: the event has no data.object")
    handler = HANDLERS.get(event["type"])
    if handler is None:
        raise EventNotSupported(f"{event['type']} is not mapped")
    handler(event, obj)


def check_signature(request: Request, settings: Mapping[str, Any]) -> None:
    secret = settings.get("signingSecret")
    if not secret:
        return
    tolerance = settings.get("signatureTolerance")
    tolerance = 300 if tolerance in (None, "") else int(tolerance)
    check = verify_signature("stripe", secret, request.headers, request.content, tolerance=tolerance)
    if not check:
        raise ValidationError(f"Stripe-Signature rejected: {check.reason}")


# -- helpers --------------------------------------------------------------------------


def iso(unix: int | float | None) -> str | None:
    """A Stripe Unix time as ISO 8601 (None stays None)."""
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat()


def major(amount: int | None, currency: str | None) -> int | float | None:
    """An amount in minor units (cents) as a number in major units (dollars)."""
    if amount is None:
        return None
    if (currency or "").lower() in ZERO_DECIMAL:
        return amount
    return amount / 100


def compact(values: Obj) -> Obj:
    """Leave out what Stripe sent as null, so Segment does not overwrite known traits."""
    return {k: v for k, v in values.items() if v is not None}


def customer_id(obj: Obj, event_type: str) -> str:
    customer = obj.get("customer")
    if isinstance(customer, dict):  # an expanded customer object
        customer = customer.get("id")
    if not customer:
        raise ValidationError(f"{event_type}: {obj.get('id')} has no customer to attribute it to")
    return str(customer)


def context(event: Obj) -> Obj:
    return {"integration": {"name": "stripe", "version": event.get("api_version") or "unknown"}}


def track(event: Obj, user_id: str, name: str, properties: Obj) -> None:
    Segment.track(
        user_id=user_id,
        event=name,
        properties=compact(properties),
        timestamp=iso(event.get("created")),
        context=context(event),
    )


def plan_of(subscription: Obj) -> Obj:
    """The subscription's plan or price, from ``plan`` (older API versions) or its items."""
    plan = subscription.get("plan")
    if not plan:
        items = (subscription.get("items") or {}).get("data") or []
        if items:
            plan = items[0].get("price") or items[0].get("plan")
    return plan or {}


# -- customers ------------------------------------------------------------------------


def customer_traits(customer: Obj) -> Obj:
    address = customer.get("address") or {}
    return compact({
        "email": customer.get("email"),
        "name": customer.get("name"),
        "phone": customer.get("phone"),
        "description": customer.get("description"),
        "created_at": iso(customer.get("created")),
        "currency": customer.get("currency"),
        "city": address.get("city"),
        "country": address.get("country"),
        "delinquent": customer.get("delinquent"),
    })


def customer_created(event: Obj, customer: Obj) -> None:
    user_id = customer.get("id")
    if not user_id:
        raise ValidationError("customer.created: the customer has no id")
    Segment.identify(
        user_id=user_id,
        traits=customer_traits(customer),
        timestamp=iso(event.get("created")),
        context=context(event),
    )
    track(event, user_id, "Customer Created", {
        "email": customer.get("email"),
        "name": customer.get("name"),
        "livemode": event.get("livemode"),
    })


def customer_updated(event: Obj, customer: Obj) -> None:
    user_id = customer.get("id")
    if not user_id:
        raise ValidationError("customer.updated: the customer has no id")
    previous = (event.get("data") or {}).get("previous_attributes") or {}
    Segment.identify(
        user_id=user_id,
        traits=customer_traits(customer),
        timestamp=iso(event.get("created")),
        context=context(event),
    )
    track(event, user_id, "Customer Updated", {"changed": sorted(previous)})


def customer_deleted(event: Obj, customer: Obj) -> None:
    user_id = customer.get("id")
    if not user_id:
        raise ValidationError("customer.deleted: the customer has no id")
    track(event, user_id, "Customer Deleted", {"email": customer.get("email")})


# -- subscriptions --------------------------------------------------------------------


def subscription_properties(subscription: Obj) -> Obj:
    plan = plan_of(subscription)
    amount = plan.get("amount", plan.get("unit_amount"))
    currency = plan.get("currency") or subscription.get("currency")
    recurring = plan.get("recurring") or {}
    return {
        "subscription_id": subscription.get("id"),
        "status": subscription.get("status"),
        "plan_id": plan.get("id"),
        "plan_name": plan.get("nickname") or plan.get("name"),
        "product_id": plan.get("product") if isinstance(plan.get("product"), str) else None,
        "interval": plan.get("interval") or recurring.get("interval"),
        "amount": amount,
        "value": major(amount, currency),
        "currency": currency,
        "quantity": subscription.get("quantity"),
        "trial_start": iso(subscription.get("trial_start")),
        "trial_end": iso(subscription.get("trial_end")),
        "current_period_end": iso(subscription.get("current_period_end")),
    }


def subscription_created(event: Obj, subscription: Obj) -> None:
    user_id = customer_id(subscription, event["type"])
    track(event, user_id, "Subscription Created", subscription_properties(subscription))


def subscription_updated(event: Obj, subscription: Obj) -> None:
    user_id = customer_id(subscription, event["type"])
    previous = (event.get("data") or {}).get("previous_attributes") or {}
    properties = subscription_properties(subscription)
    properties["cancel_at_period_end"] = subscription.get("cancel_at_period_end")
    properties["previous_status"] = previous.get("status")
    properties["changed"] = sorted(previous)
    track(event, user_id, "Subscription Updated", properties)


def subscription_deleted(event: Obj, subscription: Obj) -> None:
    user_id = customer_id(subscription, event["type"])
    properties = subscription_properties(subscription)
    properties["canceled_at"] = iso(subscription.get("canceled_at"))
    properties["ended_at"] = iso(subscription.get("ended_at"))
    track(event, user_id, "Subscription Canceled", properties)


def trial_will_end(event: Obj, subscription: Obj) -> None:
    user_id = customer_id(subscription, event["type"])
    track(event, user_id, "Trial Ending Soon", subscription_properties(subscription))


# -- invoices, charges, checkouts -----------------------------------------------------


def invoice_properties(invoice: Obj) -> Obj:
    return {
        "invoice_id": invoice.get("id"),
        "number": invoice.get("number"),
        "subscription_id": invoice.get("subscription"),
        "billing_reason": invoice.get("billing_reason"),
        "currency": invoice.get("currency"),
        "email": invoice.get("customer_email"),
        "hosted_invoice_url": invoice.get("hosted_invoice_url"),
    }


def invoice_paid(event: Obj, invoice: Obj) -> None:
    user_id = customer_id(invoice, event["type"])
    properties = invoice_properties(invoice)
    properties["amount"] = invoice.get("amount_paid")
    properties["revenue"] = major(invoice.get("amount_paid"), invoice.get("currency"))
    track(event, user_id, "Invoice Paid", properties)


def invoice_payment_failed(event: Obj, invoice: Obj) -> None:
    user_id = customer_id(invoice, event["type"])
    properties = invoice_properties(invoice)
    properties["amount"] = invoice.get("amount_due")
    properties["value"] = major(invoice.get("amount_due"), invoice.get("currency"))
    properties["attempt_count"] = invoice.get("attempt_count")
    properties["next_payment_attempt"] = iso(invoice.get("next_payment_attempt"))
    track(event, user_id, "Invoice Payment Failed", properties)


def charge_succeeded(event: Obj, charge: Obj) -> None:
    if not charge.get("customer"):
        # as functions-library: charges without a customer (guest payments) are not mapped
        raise EventNotSupported("charge.succeeded without a customer is not mapped")
    user_id = customer_id(charge, event["type"])
    currency = charge.get("currency")
    track(event, user_id, "Charge Succeeded", {
        "charge_id": charge.get("id"),
        "amount": charge.get("amount"),
        "revenue": major(charge.get("amount"), currency),
        "currency": currency,
        "description": charge.get("description"),
        "invoice_id": charge.get("invoice"),
        "receipt_email": charge.get("receipt_email"),
    })


def checkout_completed(event: Obj, session: Obj) -> None:
    user_id = session.get("customer")
    if isinstance(user_id, dict):
        user_id = user_id.get("id")
    user_id = user_id or session.get("client_reference_id")
    if not user_id:
        raise ValidationError(
            f"checkout.session.completed: {session.get('id')} has neither customer nor "
            "client_reference_id, so there is no user to attribute it to"
        )
    email = (session.get("customer_details") or {}).get("email") or session.get("customer_email")
    if email:
        Segment.identify(
            user_id=user_id,
            traits={"email": email},
            timestamp=iso(event.get("created")),
            context=context(event),
        )
    currency = session.get("currency")
    track(event, user_id, "Checkout Completed", {
        "checkout_session_id": session.get("id"),
        "mode": session.get("mode"),
        "payment_status": session.get("payment_status"),
        "amount": session.get("amount_total"),
        "revenue": major(session.get("amount_total"), currency),
        "currency": currency,
        "subscription_id": session.get("subscription"),
        "email": email,
    })


HANDLERS: dict[str, Callable[[Obj, Obj], None]] = {
    "customer.created": customer_created,
    "customer.updated": customer_updated,
    "customer.deleted": customer_deleted,
    "customer.subscription.created": subscription_created,
    "customer.subscription.updated": subscription_updated,
    "customer.subscription.deleted": subscription_deleted,
    "customer.subscription.trial_will_end": trial_will_end,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "charge.succeeded": charge_succeeded,
    "checkout.session.completed": checkout_completed,
}
