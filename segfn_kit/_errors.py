"""Every error the workbench raises, in one place (the runtime's own are in
``segfn_kit/runtime/_errors.py``, since the runtime ships alone inside exports).

Workbench errors (all exported by ``segfn_kit``)::

    SegfnError                      base of the workbench's errors below
    ├── PayloadError (ValueError)   a payload could not be loaded (``strict=True``)
    ├── SettingsFileError (ValueError)
    │                               a settings file is missing, not JSON, or not flat
    ├── ApprovedOutputError (ValueError)
    │                               an approved-outputs file is not usable
    ├── ScriptError (ValueError)    a destination preview's response script cannot be read
    ├── UnscriptedRequest           strict mode: a request no rule of the script answers
    ├── ExportError                 a function cannot be exported as it is
    ├── CheckpointError (ValueError)
    │                               a replay checkpoint cannot be used
    └── ReplayError                 a replay cannot start or go on
        └── ClusterError            a cluster replay could not finish
    NetworkBlocked (ConnectionError)
                                    a preview refused a connection that did not go through
                                    httpx (a ConnectionError first, so a function's own
                                    ``except ConnectionError`` sees what it would see live)

Function errors and the runtime's errors (``segfn_kit.runtime``, also exported here)::

    FunctionError: EventNotSupported, InvalidEventPayload, ValidationError, RetryError,
                   DropEvent (raised by functions, with Segment's meanings)
    FunctionLoadError, FunctionTimeout, ConfigError, DeliveryError > UndeliverableEvent,
    PlanError (ValueError: a tracking plan that cannot be used; ``segfn_kit.PlanError``)

Every message names the input at fault and says how to fix it.

Example:
    >>> from segfn_kit import PayloadError, SegfnError
    >>> issubclass(PayloadError, SegfnError) and issubclass(PayloadError, ValueError)
    True
"""

from __future__ import annotations

__all__ = [
    "ApprovedOutputError",
    "CheckpointError",
    "ClusterError",
    "ExportError",
    "NetworkBlocked",
    "PayloadError",
    "ReplayError",
    "ScriptError",
    "SegfnError",
    "SettingsFileError",
    "UnscriptedRequest",
]


class SegfnError(Exception):
    """Base class of the workbench's errors (not of the function errors)."""


class PayloadError(SegfnError, ValueError):
    """A payload could not be loaded and ``strict=True`` was asked for.

    Attributes:
        source: the file (or input) that failed.
        reason: why.
    """

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class SettingsFileError(SegfnError, ValueError):
    """A settings file is missing, not JSON, or not a flat object of names to values."""


class ApprovedOutputError(SegfnError, ValueError):
    """An approved-outputs file, or what was asked to be approved, is not usable."""


class ScriptError(SegfnError, ValueError):
    """A response script that cannot be understood; the message names the part and the fix."""


class UnscriptedRequest(SegfnError):
    """Strict mode: a request that no rule of the script answers."""


class NetworkBlocked(ConnectionError):
    """A preview refused a network connection that did not go through httpx."""


class ExportError(SegfnError):
    """A function cannot be exported as it is; the message says what to change."""


class CheckpointError(SegfnError, ValueError):
    """A checkpoint cannot be used: unreadable, malformed, of another run, or inconsistent
    with the archives (a position past the end of a unit). The message names the file and
    says what to do."""


class ReplayError(SegfnError):
    """A replay cannot start or go on: bad arguments, a checkpoint of another replay."""


class ClusterError(ReplayError):
    """A cluster replay could not finish: a partition killed its workers (``KilledWorker``),
    no worker is left, or the scheduler cannot be reached (``segfn replay`` exits 1)."""
