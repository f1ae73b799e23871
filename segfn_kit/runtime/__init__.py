"""What a function file sees at run time, and what runs it.

This package ships inside every exported handler: it imports only the standard library
(and httpx, lazily, for delivery). A function file imports from here::

    from segfn_kit.runtime import Segment, EventNotSupported

    def on_request(request, settings):
        body = request.json()
        if body["type"] != "customer.created":
            raise EventNotSupported(f"{body['type']} is not mapped")
        customer = body["data"]["object"]
        Segment.identify(user_id=customer["id"], traits={"email": customer["email"]})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import Config, ConfigError, settings_from_environ
from ._delivery import DeliveryError, DeliveryReport, TrackingClient, UndeliverableEvent
from ._engine import Answer, Engine, Outbox, invoke_events, invoke_source, read_events
from ._errors import (
    FUNCTION_ERRORS,
    DropEvent,
    EventNotSupported,
    FunctionError,
    FunctionLoadError,
    FunctionTimeout,
    InvalidEventPayload,
    MappingError,
    PlanError,
    RetryError,
    ValidationError,
)
from ._function import DEFAULT_TIMEOUT, DESTINATION_HANDLERS, Function, FunctionKind, Invocation
from ._request import Headers, Request
from ._rules import (
    MAX_BODY_BYTES,
    MAX_EVENT_BYTES,
    EventResult,
    batch_results,
    event_result,
    reject_event,
    retry_after,
    status_of,
)
from ._segment import Segment, payload_digest
from ._settings import MASK, Settings, declared_settings, mask_text, secret_names
from ._signatures import SCHEMES, SignatureCheck, sign, verify_signature

__all__ = [
    "DEFAULT_TIMEOUT",
    "DESTINATION_HANDLERS",
    "FUNCTION_ERRORS",
    "MASK",
    "MAX_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "SCHEMES",
    "Answer",
    "Config",
    "ConfigError",
    "DeliveryError",
    "DeliveryReport",
    "DropEvent",
    "Engine",
    "EventNotSupported",
    "EventResult",
    "Function",
    "FunctionError",
    "FunctionKind",
    "FunctionLoadError",
    "FunctionTimeout",
    "Headers",
    "InvalidEventPayload",
    "Invocation",
    "MappingError",
    "Outbox",
    "Plan",
    "PlanError",
    "Request",
    "RetryError",
    "Segment",
    "Settings",
    "SignatureCheck",
    "TrackingClient",
    "UndeliverableEvent",
    "ValidationError",
    "batch_results",
    "declared_settings",
    "event_result",
    "invoke_events",
    "invoke_source",
    "mask_text",
    "payload_digest",
    "plan_from_env",
    "read_events",
    "reject_event",
    "retry_after",
    "secret_names",
    "settings_from_environ",
    "sign",
    "status_of",
    "verify_signature",
]


if TYPE_CHECKING:
    from ._plan import Plan, plan_from_env


def __getattr__(name: str) -> Any:
    # tracking plans load when first asked for: a handler without one never imports them
    if name in ("Plan", "plan_from_env"):
        from . import _plan

        return getattr(_plan, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
