"""Segment's rules for running functions, each written once.

Every path that runs a function (the notebook preview, ``run``, ``segfn run``, ``segfn
replay``, and the Lambda, ASGI and command-line entry points of an exported handler)
applies these, so a function behaves the same wherever it runs:

- limits: a request body of at most 512 KiB, an event of at most 32 KB, 400 events per
  ``on_batch`` call;
- which request is refused before the function runs (``request_refusal``: 413 for a body
  over the limit, 415 for a content type the handler does not take), in the preview and
  deployed;
- which input is no event a destination would ever receive, and which event Segment's
  Tracking API drops (``reject_event``: no type or an unknown one, neither userId nor
  anonymousId, a track without ``event``, a group without ``groupId``, an alias without
  ``previousId`` or ``userId``);
- what an outcome answers (``status_of``);
- what ``on_batch``'s returned statuses mean (``batch_results``): 2xx delivered; 429 and
  5xx retried; any other 4xx discarded (Bad Request), never retried; a list of the wrong
  length, a non-list or a status that is no integer is one clear error;
- what a single destination handler's invocation means (``event_result``), including an
  insert function's changed event;
- how long a ``Retry-After`` header asks to wait (``retry_after``).
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._function import DESTINATION_HANDLERS, Invocation

__all__ = [
    "BATCH_CONTRACT",
    "MAX_BATCH_EVENTS_PER_CALL",
    "MAX_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "STATUS",
    "EventResult",
    "Refusal",
    "batch_results",
    "event_result",
    "reject_event",
    "request_refusal",
    "retry_after",
    "status_of",
]

MAX_BODY_BYTES = 512 * 1024
"""Segment's limit for a source function's request body (512 KiB)."""
MAX_EVENT_BYTES = 32 * 1024
"""Segment's limit for one event (analytics-python's ``MAX_MSG_SIZE = 32 << 10``)."""
MAX_BATCH_EVENTS_PER_CALL = 400
"""The most events Segment hands one ``on_batch`` call."""

STATUS: dict[str, int] = {
    "ok": 200,
    "EventNotSupported": 200,
    "DropEvent": 200,
    "InvalidEventPayload": 400,
    "ValidationError": 400,
    "RetryError": 503,
    "timeout": 504,
    "error": 500,
}
"""The HTTP status an outcome answers: 2xx when nothing should be sent again, 4xx when
sending again cannot help, 5xx when it should be retried."""

BATCH_CONTRACT = (
    "on_batch returns None (all delivered) or a list of one {'status': <int>, "
    "'errormessage': <str>} per event, in input order"
)


_TEXT_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/")


class Refusal(NamedTuple):
    """A request refused before the function runs: the status, a code and why."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def row_error(self) -> str:
        """The error of the payload's row where the kit runs it (``run()``, the preview,
        ``segfn run``, ``segfn replay``): the deployed answer, and that the function never ran.

        Example:
            >>> body_too_large(600_000).row_error().split(" (")[0]
            '413 too_large: body of 600000 bytes is over the 524288-byte limit'
        """
        return f"{self} (the exported handler answers this status before the function runs)"


def body_too_large(size: int | str | None, max_body: int = MAX_BODY_BYTES) -> Refusal:
    """The 413 refusal of a body of ``size`` bytes (``None``: not known, it was cut off)."""
    of = f"body of {size} bytes" if size is not None else "body"
    return Refusal(413, "too_large", f"{of} is over the {max_body}-byte limit")


def request_refusal(
    content_type: str | None, size: int, *, kind: str = "source", max_body: int = MAX_BODY_BYTES
) -> Refusal | None:
    """Why a request is refused before the function runs, or ``None`` when it may run.

    A body over ``max_body`` bytes (Segment's 512 KiB) is 413; a content type other than
    JSON, url-encoded form or text (a source) or JSON (a destination, as Segment posts
    events) is 415. The preview and ``run()`` make such a payload an error row with the
    same text as the deployed handler's answer.

    Example:
        >>> str(request_refusal("application/json", 600_000))
        '413 too_large: body of 600000 bytes is over the 524288-byte limit'
        >>> request_refusal("application/xml", 10).status
        415
        >>> request_refusal("text/plain; charset=utf-8", 10) is None
        True
    """
    if size > max_body:
        return body_too_large(size, max_body)
    key = (content_type or "", kind)
    if key in _MEDIA:  # the same few content types over and over: decided once each
        return _MEDIA[key]
    refusal = _media_refusal(*key)
    if len(_MEDIA) < 256:
        _MEDIA[key] = refusal
    return refusal


_MEDIA: dict[tuple[str, str], Refusal | None] = {}


def _media_refusal(content_type: str, kind: str) -> Refusal | None:
    media = content_type.split(";", 1)[0].strip().lower()
    if kind == "destination":
        if media in ("", "application/json") or media.endswith("+json"):
            return None
        return Refusal(415, "unsupported_media_type",
                       f"content type {media!r} not accepted; Segment posts events as JSON")
    if media == "" or media.endswith("+json") or media.startswith(_TEXT_TYPES):
        return None
    return Refusal(415, "unsupported_media_type",
                   f"content type {media!r} not accepted; send JSON, url-encoded form or text")


def status_of(outcome: str, timed_out: bool = False) -> int:
    """The HTTP status for an invocation's outcome.

    Example:
        >>> status_of("ok"), status_of("ValidationError"), status_of("error", timed_out=True)
        (200, 400, 504)
    """
    if timed_out:
        return STATUS["timeout"]
    return STATUS.get(outcome, 500)


def reject_event(event: Any) -> str | None:
    """Why Segment would never hand this input to a destination, or ``None`` for an event.

    Example:
        >>> reject_event({"type": "track", "userId": "u1", "event": "Paid"}) is None
        True
        >>> reject_event({"type": "track"})
        'the event has neither userId nor anonymousId; Segment only delivers events that carry one: add userId or anonymousId'
    """
    known = ", ".join(DESTINATION_HANDLERS)
    if not isinstance(event, Mapping):
        return (
            f"the entry is {type(event).__name__}, not an event object; "
            f"a Segment event is a JSON object with a type ({known})"
        )
    kind = event.get("type")
    if kind in (None, ""):
        return f"the event has no type; set type to one of {known}"
    if not isinstance(kind, str) or kind not in DESTINATION_HANDLERS:
        return f"type {kind!r} is not a Segment event type; use one of {known}"
    if kind in ("delete", "alias") and not event.get("userId"):
        return f"the {kind} event has no userId; Segment's {kind} events always carry one"
    if not event.get("userId") and not event.get("anonymousId"):
        return (
            "the event has neither userId nor anonymousId; Segment only delivers events "
            "that carry one: add userId or anonymousId"
        )
    needed = _REQUIRED_FIELD.get(kind)
    if needed is not None and not event.get(needed):
        return f"the {kind} event has no {needed}; Segment drops {kind} events without one: set {needed}"
    return None


# the field each call needs besides an id (Segment's HTTP Tracking API reference)
_REQUIRED_FIELD = {"track": "event", "group": "groupId", "alias": "previousId"}


def retry_after(value: str | None, now: _dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Example:
        >>> retry_after("3"), retry_after("soon"), retry_after(None)
        (3.0, None, None)
        >>> retry_after("Wed, 21 Oct 2015 07:28:00 GMT")  # in the past
        0.0
    """
    if not value:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            import email.utils  # here: only an HTTP-date Retry-After needs it (cold starts)

            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.UTC)
        seconds = (when - (now or _dt.datetime.now(_dt.UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


@dataclass
class EventResult:
    """What one event's invocation means for that event.

    Attributes:
        outcome: ``ok``, one of the five Segment errors by name, or ``error``.
        error: ``ErrorName: message`` (secrets masked), ``None`` when ok.
        error_line: the function file's line that raised, when known.
        retryable: Segment sends this event again (``RetryError``, 429/5xx, a timeout).
        returned: what the handler returned for this event (a status, an API answer...).
        event: the changed event an insert function returned, else ``None``.
        timed_out: the invocation ran past its time limit.
    """

    outcome: str
    error: str | None = None
    error_line: int | None = None
    retryable: bool = False
    returned: Any = None
    event: dict[str, Any] | None = None
    timed_out: bool = False

    @property
    def status(self) -> int:
        """The HTTP status this event's outcome answers (see ``status_of``)."""
        return status_of(self.outcome, self.timed_out)

    @property
    def final(self) -> str:
        """Where the event ends if this was its last attempt.

        ``delivered``, ``dropped`` (``DropEvent``), ``retries exhausted``, or ``discarded``.
        """
        if self.outcome == "ok":
            return "delivered"
        if self.outcome == "DropEvent":
            return "dropped"
        if self.retryable:
            return "retries exhausted"
        return "discarded"


def _changed_event(returned: Any) -> dict[str, Any] | None:
    """An insert function's changed event: a returned mapping with a Segment ``type``."""
    if isinstance(returned, Mapping) and returned.get("type") in DESTINATION_HANDLERS and "status" not in returned:
        return dict(returned)
    return None


def event_result(inv: Invocation) -> EventResult:
    """The result of a single destination handler's invocation (``on_track``, ...).

    A returned event (a mapping with a Segment ``type``) is an insert function's changed
    event; anything else returned (an API answer) is kept but changes nothing.

    Example:
        >>> event_result(Invocation("ok", returned={"type": "track", "event": "X"})).event
        {'type': 'track', 'event': 'X'}
        >>> event_result(Invocation("RetryError", error="RetryError: busy")).retryable
        True
    """
    if inv.outcome != "ok":
        return EventResult(inv.outcome, inv.error, inv.error_line, inv.retryable, None, None, inv.timed_out)
    return EventResult("ok", returned=inv.returned, event=_changed_event(inv.returned))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _status_value(item: Any) -> int | None:
    if not isinstance(item, Mapping):
        return None
    status = item.get("status")
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return status
    return None


def batch_results(inv: Invocation, count: int) -> list[EventResult]:
    """Per-event results of one ``on_batch`` invocation over ``count`` events, in order.

    - the invocation raised (or timed out): every event gets that outcome;
    - it returned ``None``: every event was delivered;
    - it returned one item per event: ``{"status": 2xx}`` delivered; 429 or 5xx retried
      (``RetryError``); any other status discarded as Bad Request (``ValidationError``),
      never retried; a returned event (insert functions) is that event's changed event;
    - anything else (not a list, the wrong length, a status that is no integer from 100
      to 599): every event is the same ``error`` naming the problem.

    Example:
        >>> rs = batch_results(Invocation("ok", returned=[{"status": 200}, {"status": 404}, {"status": 429}]), 3)
        >>> [(r.outcome, r.retryable) for r in rs]
        [('ok', False), ('ValidationError', False), ('RetryError', True)]
        >>> batch_results(Invocation("ok", returned="done"), 2)[0].error
        "error: on_batch returned str 'done'; on_batch returns None (all delivered) or a list of one {'status': <int>, 'errormessage': <str>} per event, in input order"
    """
    if inv.outcome != "ok":
        one = EventResult(inv.outcome, inv.error, inv.error_line, inv.retryable, None, None, inv.timed_out)
        return [EventResult(**vars(one)) for _ in range(count)]
    returned = inv.returned
    if returned is None:
        return [EventResult("ok") for _ in range(count)]
    problem = None
    out: list[EventResult] = []
    if not isinstance(returned, list):
        problem = f"on_batch returned {type(returned).__name__} {_short(returned)}"
    elif len(returned) != count:
        problem = f"on_batch returned {len(returned)} statuses for {count} events"
    else:
        for position, item in enumerate(returned, 1):
            changed = _changed_event(item)
            if changed is not None:
                out.append(EventResult("ok", returned=item, event=changed))
                continue
            status = _status_value(item)
            if status is None:
                problem = f"on_batch status {position} is {_short(item)}, not {{'status': <int>}}"
                break
            assert isinstance(item, Mapping)
            message = str(item.get("errormessage") or item.get("errorMessage") or "")
            said = f": {message}" if message else ""
            if 200 <= status < 300:
                out.append(EventResult("ok", returned=item))
            elif status == 429 or status >= 500:
                out.append(EventResult(
                    "RetryError", f"RetryError: on_batch gave status {status} for this event{said}",
                    retryable=True, returned=item,
                ))
            else:
                out.append(EventResult(
                    "ValidationError",
                    f"ValidationError: on_batch gave status {status} for this event (Bad Request: "
                    f"discarded, never retried){said}",
                    returned=item,
                ))
    if problem is None:
        return out
    error = f"error: {problem}; {BATCH_CONTRACT}"
    return [EventResult("error", error, returned=returned) for _ in range(count)]
