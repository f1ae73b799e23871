"""A replay's calls on JSON Lines lines, made where the function runs.

The replay's own process reads the archive's lines and settles the results; reading a line
into its request (the loader's rules: ``_payloads._formats._Reader.read_line``), the exported
handler's refusal of what it would not take (413, 415), the call itself and the encoding of
what it emitted happen where the function runs: a worker process of the replay's
``WorkerPool`` (these functions are its ``raw`` hooks), or the replay's process with
``isolation="none"``. So the reading process holds a line and its answer per payload,
nothing more, and the workers share the work of each payload between them.

A hook is called as ``hook((line_number, line_bytes), call)``, where ``call(request)`` runs
the function on a request under its limits, and returns ``(invocation, reply)``:

- ``reply`` is a ``str`` when the line cannot be loaded (why; the function did not run);
- ``(events, objects, body)`` for an ``ok`` invocation: how many events and ``Segment.set``
  objects it emitted, and what the replay needs of them (``None`` for a dry run, the events'
  JSON Lines for ``out``, the encoded events and objects for a delivery, the lists
  themselves for a plan's check);
- ``None`` otherwise (an error, a refusal, ``EventNotSupported``, ...: nothing is sent).

Example:
    >>> from segfn_kit.runtime import Function
    >>> fn = Function.from_source(
    ...     "from segfn_kit.runtime import Segment\\n"
    ...     "def on_request(request, settings):\\n"
    ...     "    Segment.track(user_id=request.json()['user'], event='Paid')\\n")
    >>> inv, reply = count((1, b'{"user": "u1"}'), lambda request: fn.on_request(request))
    >>> inv.outcome, reply
    ('ok', (1, 0, None))
    >>> count((2, b'{"user": '), lambda request: fn.on_request(request))[1][:7]
    'line 2:'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from segfn_kit._payloads._formats import _Reader
from segfn_kit._payloads._record import Payload
from segfn_kit.runtime import Invocation, Request, TrackingClient, UndeliverableEvent
from segfn_kit.runtime._json import loads_with_digest
from segfn_kit.runtime._rules import request_refusal

__all__ = ["ENCODERS", "HOOKS", "call_payload", "call_request", "count", "keep", "lines", "send"]

Call = Callable[[Request], Invocation]
Reply = str | tuple[int, int, Any] | None

# what iter_archive's reader would make of the line: bodies left unparsed, as replay reads them
_READER = _Reader(split_arrays=False, check_duplicates=True, on_skip=None, bodies=False)
# encodes events as a delivery sends them (check_all uses no connection, key or host)
_CHECKER = TrackingClient("replay")


def _run(data: tuple[int, bytes], call: Call) -> tuple[Invocation, str | None]:
    """The line's invocation, and why it could not be loaded (then the function did not run)."""
    number, line = data
    # parsed once: the line's shape is told from the value the function gets, with its
    # digest (None: orjson would not read it exactly; the reader parses it its own way)
    both = loads_with_digest(line)
    if both is None:
        payload = _READER.read_line(number, line, "", "")
    else:
        request = _READER.bare_request(line, *both)
        if request is not None:  # the common case: the line is the body
            return call_request(request, call), None
        payload = _READER.read_line(number, line, "", "", both[0])
    if payload.error:
        return Invocation(outcome="error", error=payload.error), payload.error
    return call_payload(payload, call), None


def call_payload(payload: Payload, call: Call) -> Invocation:
    """The invocation of a loaded payload: the handler's refusal, or the call."""
    return call_request(payload.request(), call)


def call_request(request: Request, call: Call) -> Invocation:
    """The invocation of a request: the handler's refusal, or the call."""
    # what the deployed handler refuses (413, 415) never reaches the function
    refusal = request_refusal(request.headers.peek("content-type"), len(request.content))
    if refusal is not None:
        return Invocation(outcome="error", error=refusal.row_error())
    return call(request)


def _hook(encode: Callable[[Invocation], Reply]) -> Callable[[tuple[int, bytes], Call], tuple[Invocation, Reply]]:
    def hook(data: tuple[int, bytes], call: Call) -> tuple[Invocation, Reply]:
        inv, unloadable = _run(data, call)
        return inv, unloadable if unloadable is not None else encode(inv)

    return hook


def encode_counts(inv: Invocation) -> Reply:
    """A dry run's reply: the counts of what the call emitted."""
    return (len(inv.events), len(inv.objects), None) if inv.outcome == "ok" else None


def encode_lines(inv: Invocation) -> Reply:
    """The reply of a replay to ``out``: the events as JSON Lines (one event a line)."""
    if inv.outcome != "ok":
        return None
    text = "".join(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n" for event in inv.events)
    return len(inv.events), len(inv.objects), text


def encode_values(inv: Invocation) -> Reply:
    """The reply of a plan's check (or of a delivery through a given client): the events and
    objects themselves."""
    return (len(inv.events), len(inv.objects), (inv.events, inv.objects)) if inv.outcome == "ok" else None


def encode_batches(inv: Invocation) -> Reply:
    """The reply of a delivery: the events and objects checked and encoded as they are sent
    (``TrackingClient.check_all``: ``[encoded, encoded_objects]``, a list); the events and
    objects themselves when one cannot be sent (the replay names it and dead-letters them)."""
    if inv.outcome != "ok":
        return None
    try:
        body: Any = list(_CHECKER.check_all(inv.events, inv.objects))
    except UndeliverableEvent:
        body = (inv.events, inv.objects)
    return len(inv.events), len(inv.objects), body


count = _hook(encode_counts)
lines = _hook(encode_lines)
keep = _hook(encode_values)
send = _hook(encode_batches)

HOOKS = {"dry-run": f"{__name__}:count", "out": f"{__name__}:lines", "deliver": f"{__name__}:send",
         "keep": f"{__name__}:keep"}
"""The hook (``"module:function"``) of each replay mode (``keep`` for all with a plan, and for
a delivery through a client given to ``replay``)."""
ENCODERS = {"dry-run": encode_counts, "out": encode_lines, "deliver": encode_batches, "keep": encode_values}
"""What each hook replies, for payloads read as ``Payload``s (calls of ``("request", ...)``)."""
