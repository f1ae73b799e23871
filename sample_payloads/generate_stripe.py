"""Write the Stripe sample payloads in sample_payloads/stripe/ (run from the project root).

    .venv/bin/python sample_payloads/generate_stripe.py

The event bodies follow the shapes of Stripe's API reference (objects "Event", "Customer",
"Subscription", "Invoice", "Charge", "Checkout Session", API version 2024-06-20); ids,
names and amounts are made up. Each file is a capture envelope whose ``Stripe-Signature``
signs the body's compact serialisation with the documented test secret below, at a fixed
time, so the files are byte-for-byte repeatable.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any

from segfn_kit.runtime import sign

SECRET = "whsec_test_segfn_kit_documented_secret"
API_VERSION = "2024-06-20"
OUT = Path(__file__).with_name("stripe")

CUSTOMER = "cus_QkX2bT4nF8vR1a"
CREATED = 1732608000  # 2024-11-26T08:00:00Z


def address(city: str, country: str, line1: str, postal: str, state: str | None) -> dict[str, Any]:
    return {"city": city, "country": country, "line1": line1, "line2": None,
            "postal_code": postal, "state": state}


def customer(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": CUSTOMER,
        "object": "customer",
        "address": address("Portland", "US", "1234 Main Street", "97201", "OR"),
        "balance": 0,
        "created": CREATED - 60,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": "Acme Analytics, team plan lead",
        "discount": None,
        "email": "jenny.rosen@example.com",
        "invoice_prefix": "7C3D1E2A",
        "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                             "footer": None, "rendering_options": None},
        "livemode": False,
        "metadata": {"signup_source": "pricing_page"},
        "name": "Jenny Rosen",
        "next_invoice_sequence": 1,
        "phone": "+15555550123",
        "preferred_locales": ["en"],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    obj.update(overrides)
    return obj


PRICE = {
    "id": "price_1QkX3cT4nF8vR1aPro",
    "object": "price",
    "active": True,
    "billing_scheme": "per_unit",
    "created": CREATED - 86400 * 30,
    "currency": "usd",
    "custom_unit_amount": None,
    "livemode": False,
    "lookup_key": "team_monthly",
    "metadata": {},
    "nickname": "Team monthly",
    "product": "prod_RdT9ffs1XhJ2Qm",
    "recurring": {"aggregate_usage": None, "interval": "month", "interval_count": 1,
                  "meter": None, "trial_period_days": 14, "usage_type": "licensed"},
    "tax_behavior": "exclusive",
    "tiers_mode": None,
    "transform_quantity": None,
    "type": "recurring",
    "unit_amount": 4900,
    "unit_amount_decimal": "4900",
}

PLAN = {
    "id": PRICE["id"], "object": "plan", "active": True, "aggregate_usage": None,
    "amount": 4900, "amount_decimal": "4900", "billing_scheme": "per_unit",
    "created": PRICE["created"], "currency": "usd", "interval": "month", "interval_count": 1,
    "livemode": False, "metadata": {}, "meter": None, "nickname": "Team monthly",
    "product": PRICE["product"], "tiers_mode": None, "transform_usage": None,
    "trial_period_days": 14, "usage_type": "licensed",
}


def subscription(status: str, **overrides: Any) -> dict[str, Any]:
    start = CREATED - 86400 * 11
    obj: dict[str, Any] = {
        "id": "sub_1QkX4dT4nF8vR1aTeam",
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None},
        "billing_cycle_anchor": start + 86400 * 14,
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": start,
        "currency": "usd",
        "current_period_end": start + 86400 * 14,
        "current_period_start": start,
        "customer": CUSTOMER,
        "days_until_due": None,
        "default_payment_method": "pm_1QkX4aT4nF8vR1aCard",
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discount": None,
        "discounts": [],
        "ended_at": None,
        "items": {
            "object": "list",
            "data": [{
                "id": "si_RdTA1nF8vR1aQ2",
                "object": "subscription_item",
                "billing_thresholds": None,
                "created": start,
                "discounts": [],
                "metadata": {},
                "plan": PLAN,
                "price": PRICE,
                "quantity": 5,
                "subscription": "sub_1QkX4dT4nF8vR1aTeam",
                "tax_rates": [],
            }],
            "has_more": False,
            "total_count": 1,
            "url": "/v1/subscription_items?subscription=sub_1QkX4dT4nF8vR1aTeam",
        },
        "latest_invoice": "in_1QkX5eT4nF8vR1aInv1",
        "livemode": False,
        "metadata": {"workspace": "acme-analytics"},
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "plan": PLAN,
        "quantity": 5,
        "schedule": None,
        "start_date": start,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": start + 86400 * 14,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": start,
    }
    obj.update(overrides)
    return obj


def invoice(status: str, **overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "in_1QkX5eT4nF8vR1aInv1",
        "object": "invoice",
        "account_country": "US",
        "account_name": "Acme Analytics",
        "amount_due": 24500,
        "amount_paid": 24500 if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else 24500,
        "attempt_count": 1,
        "attempted": True,
        "auto_advance": status != "paid",
        "billing_reason": "subscription_cycle",
        "charge": "ch_3QkX6fT4nF8vR1a0Chg1",
        "collection_method": "charge_automatically",
        "created": CREATED - 3600,
        "currency": "usd",
        "customer": CUSTOMER,
        "customer_email": "jenny.rosen@example.com",
        "customer_name": "Jenny Rosen",
        "description": None,
        "discount": None,
        "due_date": None,
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1Nv0FGQ9RKHgCVdK/test_YWNjdF8xTnYw",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct_1Nv0FGQ9RKHgCVdK/test_YWNjdF8xTnYw/pdf",
        "lines": {
            "object": "list",
            "data": [{
                "id": "il_1QkX5eT4nF8vR1aLine",
                "object": "line_item",
                "amount": 24500,
                "currency": "usd",
                "description": "5 × Team (at $49.00 / month)",  # noqa: RUF001 - as Stripe writes it
                "discountable": True,
                "livemode": False,
                "metadata": {},
                "period": {"end": CREATED + 86400 * 30, "start": CREATED},
                "plan": PLAN,
                "price": PRICE,
                "proration": False,
                "quantity": 5,
                "subscription": "sub_1QkX4dT4nF8vR1aTeam",
                "type": "subscription",
            }],
            "has_more": False,
            "total_count": 1,
            "url": "/v1/invoices/in_1QkX5eT4nF8vR1aInv1/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": None if status == "paid" else CREATED + 86400 * 3,
        "number": "7C3D1E2A-0002",
        "paid": status == "paid",
        "payment_intent": "pi_3QkX6fT4nF8vR1a0Pay1",
        "period_end": CREATED,
        "period_start": CREATED - 86400 * 30,
        "status": status,
        "status_transitions": {
            "finalized_at": CREATED - 3500,
            "marked_uncollectible_at": None,
            "paid_at": CREATED - 3400 if status == "paid" else None,
            "voided_at": CREATED - 3000 if status == "void" else None,
        },
        "subscription": "sub_1QkX4dT4nF8vR1aTeam",
        "subtotal": 24500,
        "tax": None,
        "total": 24500,
        "webhooks_delivered_at": CREATED - 3590,
    }
    obj.update(overrides)
    return obj


def charge(customer_id: str | None, **overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "ch_3QkX6fT4nF8vR1a0Chg1",
        "object": "charge",
        "amount": 24500,
        "amount_captured": 24500,
        "amount_refunded": 0,
        "balance_transaction": "txn_3QkX6fT4nF8vR1a0Bal1",
        "billing_details": {
            "address": address("Portland", "US", "1234 Main Street", "97201", "OR"),
            "email": "jenny.rosen@example.com", "name": "Jenny Rosen", "phone": None,
        },
        "captured": True,
        "created": CREATED - 3400,
        "currency": "usd",
        "customer": customer_id,
        "description": "Subscription update",
        "disputed": False,
        "failure_code": None,
        "failure_message": None,
        "invoice": "in_1QkX5eT4nF8vR1aInv1",
        "livemode": False,
        "metadata": {},
        "outcome": {"network_status": "approved_by_network", "reason": None, "risk_level": "normal",
                    "risk_score": 32, "seller_message": "Payment complete.", "type": "authorized"},
        "paid": True,
        "payment_intent": "pi_3QkX6fT4nF8vR1a0Pay1",
        "payment_method": "pm_1QkX4aT4nF8vR1aCard",
        "payment_method_details": {
            "card": {"brand": "visa", "checks": {"address_line1_check": "pass",
                                                 "address_postal_code_check": "pass",
                                                 "cvc_check": "pass"},
                     "country": "US", "exp_month": 8, "exp_year": 2027, "funding": "credit",
                     "last4": "4242", "network": "visa", "three_d_secure": None, "wallet": None},
            "type": "card",
        },
        "receipt_email": "jenny.rosen@example.com",
        "receipt_number": None,
        "receipt_url": "https://pay.stripe.com/receipts/invoices/CAcaFwoVYWNjdF8xTnYwRkdROVJLSGdDVmRL",
        "refunded": False,
        "status": "succeeded",
    }
    obj.update(overrides)
    return obj


def checkout_session() -> dict[str, Any]:
    return {
        "id": "cs_test_a1QkX7gT4nF8vR1aSessionTeamPlan5Seats",
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": True,
        "amount_subtotal": 24500,
        "amount_total": 24500,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": "auto",
        "cancel_url": "https://acme-analytics.example.com/pricing",
        "client_reference_id": "acct_acme_7781",
        "consent": None,
        "created": CREATED - 86400 * 11 - 120,
        "currency": "usd",
        "customer": CUSTOMER,
        "customer_creation": "always",
        "customer_details": {
            "address": address("Portland", "US", "1234 Main Street", "97201", "OR"),
            "email": "jenny.rosen@example.com", "name": "Jenny Rosen", "phone": None,
            "tax_exempt": "none", "tax_ids": [],
        },
        "customer_email": None,
        "expires_at": CREATED - 86400 * 10,
        "invoice": "in_1QkX5eT4nF8vR1aInv0",
        "livemode": False,
        "locale": None,
        "metadata": {"campaign": "black-friday-2024"},
        "mode": "subscription",
        "payment_intent": None,
        "payment_method_types": ["card"],
        "payment_status": "paid",
        "status": "complete",
        "submit_type": None,
        "subscription": "sub_1QkX4dT4nF8vR1aTeam",
        "success_url": "https://acme-analytics.example.com/welcome?session_id={CHECKOUT_SESSION_ID}",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": None,
    }


def event(n: int, kind: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous is not None:
        data["previous_attributes"] = previous
    return {
        "id": f"evt_1QkX{n:02d}T4nF8vR1aEvent{n:02d}",
        "object": "event",
        "api_version": API_VERSION,
        "created": CREATED + n * 60,
        "data": data,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": f"req_Qk{n:02d}bT4nF8vR1", "idempotency_key": f"0d4e7c3b-{n:04d}-4f1e-9a6b-2c8d5e7f1a3b"},
        "type": kind,
    }


def samples() -> dict[str, dict[str, Any]]:
    sub = subscription("trialing")
    return {
        "customer.created": event(1, "customer.created", customer()),
        "customer.updated": event(2, "customer.updated", customer(email="jenny@acme-analytics.example.com"),
                                  {"email": "jenny.rosen@example.com"}),
        "checkout.session.completed": event(3, "checkout.session.completed", checkout_session()),
        "customer.subscription.created": event(4, "customer.subscription.created", sub),
        "customer.subscription.trial_will_end": event(5, "customer.subscription.trial_will_end", sub),
        "customer.subscription.updated": event(6, "customer.subscription.updated",
                                               subscription("active", trial_end=sub["trial_end"]),
                                               {"status": "trialing"}),
        "invoice.paid": event(7, "invoice.paid", invoice("paid")),
        "charge.succeeded": event(8, "charge.succeeded", charge(CUSTOMER)),
        "charge.succeeded.guest": event(9, "charge.succeeded", charge(
            None, id="ch_3QkX9iT4nF8vR1a0Gst1", amount=1500, amount_captured=1500,
            description="Workshop ticket", invoice=None, payment_intent="pi_3QkX9iT4nF8vR1a0Gst1")),
        "invoice.payment_failed": event(10, "invoice.payment_failed", invoice(
            "open", id="in_1QkX10T4nF8vR1aInv2", attempt_count=2, charge="ch_3QkX10T4nF8vR1a0Fail")),
        "invoice.voided": event(11, "invoice.voided", invoice("void", id="in_1QkX11T4nF8vR1aInv3")),
        "customer.subscription.deleted": event(12, "customer.subscription.deleted", subscription(
            "canceled", canceled_at=CREATED + 700, ended_at=CREATED + 700,
            cancellation_details={"comment": "Moving to an annual plan", "feedback": "switched_service",
                                  "reason": "cancellation_requested"})),
        "payment_intent.succeeded": event(13, "payment_intent.succeeded", {
            "id": "pi_3QkX6fT4nF8vR1a0Pay1", "object": "payment_intent", "amount": 24500,
            "amount_received": 24500, "currency": "usd", "customer": CUSTOMER,
            "latest_charge": "ch_3QkX6fT4nF8vR1a0Chg1", "livemode": False, "metadata": {},
            "payment_method": "pm_1QkX4aT4nF8vR1aCard", "status": "succeeded",
            "created": CREATED - 3450,
        }),
    }


def envelope(name: str, body: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Host": "hooks.acme-analytics.example.com",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": str(len(raw)),
        "Accept": "*/*; q=0.5, application/xml",
        "Cache-Control": "no-cache",
        **sign("stripe", SECRET, raw, timestamp=body["created"] + 1),
    }
    return {
        "method": "POST",
        "path": "/webhooks/stripe",
        "headers": headers,
        "body": body,
        "received_at": f"{_iso(body['created'] + 1)}",
    }


def _iso(unix: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, body in samples().items():
        text = json.dumps(envelope(name, body), indent=2, ensure_ascii=False) + "\n"
        (OUT / f"{name}.json").write_text(text, encoding="utf-8")
    print(f"wrote {len(samples())} payloads to {OUT}")


if __name__ == "__main__":
    main()
