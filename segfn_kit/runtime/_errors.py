"""The errors a function raises, with Segment's meanings, and the runtime's own errors.

Function errors (raise these from a function file)::

    FunctionError
    ├── EventNotSupported    Unsupported Event Type: discarded (also: no handler for the type)
    ├── InvalidEventPayload  Message Rejected: discarded
    ├── ValidationError      Message Rejected: discarded
    ├── RetryError           Retry: Segment retries (sources up to 6 times, destinations for 4 hours)
    └── DropEvent            Filtered: dropped on purpose (insert functions)

Runtime errors (raised by the runtime itself, never by a function)::

    FunctionLoadError        the function file cannot be loaded: syntax error, import error,
                             or no handler at all
    FunctionTimeout          an invocation ran past its time limit (Segment retries timeouts);
                             a BaseException, so a function's ``except Exception`` cannot hide it
    MappingError             a Mapping Kit mapping is invalid (the message names the place),
                             or one of its directives failed on a payload
    PlanError                a tracking plan cannot be used: an unknown file, a schema that is not
                             JSON Schema, a $ref that does not resolve, two rules for one key and
                             version (a ValueError; raised before any event is checked)
"""

from __future__ import annotations

__all__ = [
    "FUNCTION_ERRORS",
    "DropEvent",
    "EventNotSupported",
    "FunctionError",
    "FunctionLoadError",
    "FunctionTimeout",
    "InvalidEventPayload",
    "MappingError",
    "PlanError",
    "RetryError",
    "ValidationError",
]


class FunctionError(Exception):
    """Base class of the five errors a Segment function may raise on purpose."""


class EventNotSupported(FunctionError):
    """The function does not handle this payload or event type; Segment discards it.

    Example:
        >>> from segfn_kit.runtime import EventNotSupported
        >>> raise EventNotSupported("invoice.voided is not mapped")
        Traceback (most recent call last):
        ...
        segfn_kit.runtime._errors.EventNotSupported: invoice.voided is not mapped
    """


class InvalidEventPayload(FunctionError):
    """The payload is malformed (for example not JSON); Segment rejects it."""


class ValidationError(FunctionError):
    """The payload lacks something the function needs (for example an email); rejected."""


class RetryError(FunctionError):
    """A temporary failure (rate limit, 5xx, connection error): Segment retries later."""


class DropEvent(FunctionError):
    """An insert function drops this event on purpose (shown as Filtered)."""


FUNCTION_ERRORS: tuple[type[FunctionError], ...] = (
    EventNotSupported,
    InvalidEventPayload,
    ValidationError,
    RetryError,
    DropEvent,
)


class FunctionLoadError(Exception):
    """A function file could not be loaded.

    Attributes:
        filename: the file (or ``<cell>``) the function came from.
        line: the 1-based line of the problem, when known.
    """

    def __init__(self, message: str, *, filename: str = "<function>", line: int | None = None):
        where = f"{filename}, line {line}" if line else filename
        super().__init__(f"{where}: {message}")
        self.filename = filename
        self.line = line
        self.reason = message


class FunctionTimeout(BaseException):
    """An invocation ran past its time limit (Segment's is 5 s; timeouts are retried).

    A ``BaseException``, like ``KeyboardInterrupt``: it is raised inside the running
    function, and a function's own ``except Exception:`` must not swallow it.
    """


class MappingError(ValueError):
    """A Mapping Kit mapping is invalid, or one of its directives failed on a payload.

    Attributes:
        problems: every problem found, each naming where it stands
            (``/properties/ref/@path should be ...``).

    Example:
        >>> from segfn_kit.runtime import MappingError
        >>> str(MappingError("/x has an invalid directive: @nope."))
        '/x has an invalid directive: @nope.'
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


class PlanError(ValueError):
    """A tracking plan cannot be used; the message names the file or rule and the fix."""
