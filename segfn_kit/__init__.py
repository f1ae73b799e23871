"""segfn_kit: the Python and Jupyter workbench for Segment-style functions.

Load captured webhooks into pandas, write a function file in the style of Segment
Functions, preview it over every payload in widgets, and export it as a handler package.

Names are imported on first use, so ``from segfn_kit.runtime import Segment`` (what a
function file does) stays light: it never pulls in pandas, pydantic or ipywidgets.

Example:
    >>> import segfn_kit
    >>> "run" in segfn_kit.__all__
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the private module that defines it
_EXPORTS = {
    # core: spec, run
    "validate": "segfn_kit.spec",
    "run": "segfn_kit._run",
    "diff": "segfn_kit._run",
    "coverage": "segfn_kit._run",
    "to_jsonl": "segfn_kit._run",
    # payloads
    "load_payloads": "segfn_kit._payloads",
    "iter_payloads": "segfn_kit._payloads",
    "request_from_row": "segfn_kit._payloads",
    "Payload": "segfn_kit._payloads",
    "PayloadError": "segfn_kit._errors",
    "profile": "segfn_kit._profile",
    "drift": "segfn_kit._profile",
    "redact": "segfn_kit._redact",
    # destinations
    "Responses": "segfn_kit._http",
    "sample_events": "segfn_kit._events",
    # preview
    "preview": "segfn_kit._preview",
    "approve": "segfn_kit._approve",
    # export
    "export": "segfn_kit._export",
    "export_segment": "segfn_kit._export._segment",
    # delivery
    "replay": "segfn_kit._replay",
    "Checkpoint": "segfn_kit._checkpoint",
    "CheckpointKey": "segfn_kit._checkpoint",
    "CheckpointError": "segfn_kit._errors",
    "ReplayError": "segfn_kit._errors",
    "ClusterError": "segfn_kit._errors",
    "read_sink": "segfn_kit._sink",
    # errors (their tree: segfn_kit/_errors.py)
    "SegfnError": "segfn_kit._errors",
    "SettingsFileError": "segfn_kit._errors",
    "ApprovedOutputError": "segfn_kit._errors",
    "ExportError": "segfn_kit._errors",
    "ScriptError": "segfn_kit._errors",
    "UnscriptedRequest": "segfn_kit._errors",
    "NetworkBlocked": "segfn_kit._errors",
    # approvals, destination previews, the local sink
    "load_approved": "segfn_kit._approve",
    "RetryPolicy": "segfn_kit._destination",
    "requests_frame": "segfn_kit._destination",
    "running_sink": "segfn_kit._sink",
    "plan_png": "segfn_kit._preview._planview",
    # tracking plans
    "load_plan": "segfn_kit._plan",
    "infer_plan": "segfn_kit._plan",
    "diff_plans": "segfn_kit._plan",
    "plan_summary": "segfn_kit._plan",
    "PlanError": "segfn_kit.runtime._errors",
}

__all__ = [
    "ApprovedOutputError",
    "Checkpoint",
    "CheckpointError",
    "CheckpointKey",
    "ClusterError",
    "ExportError",
    "NetworkBlocked",
    "Payload",
    "PayloadError",
    "PlanError",
    "ReplayError",
    "Responses",
    "RetryPolicy",
    "ScriptError",
    "SegfnError",
    "SettingsFileError",
    "UnscriptedRequest",
    "__version__",
    "approve",
    "coverage",
    "diff",
    "diff_plans",
    "drift",
    "export",
    "export_segment",
    "infer_plan",
    "iter_payloads",
    "load_approved",
    "load_payloads",
    "load_plan",
    "plan_png",
    "plan_summary",
    "preview",
    "profile",
    "read_sink",
    "redact",
    "replay",
    "request_from_row",
    "requests_frame",
    "run",
    "running_sink",
    "sample_events",
    "to_jsonl",
    "validate",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from segfn_kit._approve import approve, load_approved
    from segfn_kit._checkpoint import Checkpoint, CheckpointKey
    from segfn_kit._destination import RetryPolicy, requests_frame
    from segfn_kit._errors import (
        ApprovedOutputError,
        CheckpointError,
        ClusterError,
        ExportError,
        NetworkBlocked,
        PayloadError,
        ReplayError,
        ScriptError,
        SegfnError,
        SettingsFileError,
        UnscriptedRequest,
    )
    from segfn_kit._events import sample_events
    from segfn_kit._export import export
    from segfn_kit._export._segment import export_segment
    from segfn_kit._http import Responses
    from segfn_kit._payloads import Payload, iter_payloads, load_payloads, request_from_row
    from segfn_kit._plan import diff_plans, infer_plan, load_plan, plan_summary
    from segfn_kit._preview import preview
    from segfn_kit._preview._planview import plan_png
    from segfn_kit._profile import drift, profile
    from segfn_kit._redact import redact
    from segfn_kit._replay import replay
    from segfn_kit._run import coverage, diff, run, to_jsonl
    from segfn_kit._sink import read_sink, running_sink
    from segfn_kit.runtime._errors import PlanError
    from segfn_kit.spec import validate


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segfn_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext segfn_kit``: register the ``%%segfn`` cell magic."""
    from segfn_kit._preview import load_ipython_extension as load

    load(ipython)
