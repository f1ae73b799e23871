"""A deployed function's configuration, read from the environment (and only from there).

Variables::

    SEGMENT_WRITE_KEY       the source's write key (needed to deliver events and objects)
    SEGMENT_API_HOST        Tracking API host, default https://api.segment.io
                            (EU workspaces: https://events.eu1.segmentapis.com)
    SEGMENT_OBJECTS_HOST    Objects API host for Segment.set objects, default
                            https://objects.segment.com; when SEGMENT_API_HOST is a local sink
                            (segfn sink), set this to the same URL
    SEGFN_SETTINGS          the function's settings, a JSON object
    SEGFN_SETTING_<name>    one setting (overrides SEGFN_SETTINGS), e.g. SEGFN_SETTING_apiToken
    SEGFN_SIGNATURE         signature scheme to require: stripe, github, shopify, zendesk, hmac-sha256
    SEGFN_SIGNING_SECRET    the secret those signatures are made with
    SEGFN_MAX_BODY          largest accepted body in bytes, default 524288 (512 KiB, as Segment)
    SEGFN_TIMEOUT           the function's time limit in seconds, default 5 (as Segment)
    SEGFN_DELIVERY_BUDGET   seconds delivery may take, retries included, default 10
    SEGFN_LOG_PAYLOADS      set to 1 to add the request body to each log line (off by default)
    SEGFN_PLAN              a tracking plan (rules JSON) to hold every event against; default: the
                            package's plan.json when the export shipped one; "none" for no plan
    SEGFN_PLAN_MODE         report (default: send every event, name the plan issues in the answer
                            and the log) or block (hold back the events with a plan issue)
    SEGFN_ISOLATION         process (default): the function runs in worker processes, killed
                            and replaced past its time or memory limit; none: in the handler's
                            own process (no hard limits)
    SEGFN_WORKERS           worker processes per handler process, default min(4, CPUs)
    SEGFN_MEMORY_LIMIT      MiB a worker may add once the function is loaded, default 512
    SEGFN_WORKER_START      fork (default: workers are forked from the handler while it runs
                            one thread, else started as new interpreters) or spawn (always new
                            interpreters)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._delivery import DEFAULT_HOST, DEFAULT_OBJECTS_HOST
from ._errors import PlanError
from ._function import DEFAULT_TIMEOUT, Function
from ._rules import MAX_BODY_BYTES
from ._settings import Settings
from ._signatures import SCHEMES

if TYPE_CHECKING:
    from ._plan import Plan

__all__ = ["DELIVERY_BUDGET", "Config", "ConfigError", "settings_from_environ"]

DELIVERY_BUDGET = 10.0
"""Seconds delivery may take by default, retries included: inside webhook senders' own timeouts."""

_PREFIX = "SEGFN_SETTING_"


class ConfigError(Exception):
    """The environment does not configure the handler correctly (answered 500)."""


def _setting_value(function: Function, name: str, value: str) -> Any:
    """A ``SEGFN_SETTING_<name>`` value: JSON for non-string declared types, else the text."""
    kind = str(function.declared_settings.get(name, {}).get("type", "string")).lower()
    if kind in ("string", "text", "password"):
        return value
    try:
        return json.loads(value)
    except ValueError:
        raise ConfigError(f"{_PREFIX}{name} must be JSON (the setting's type is {kind})") from None


def settings_from_environ(function: Function, environ: Mapping[str, str]) -> Settings:
    """The function's settings from ``SEGFN_SETTINGS`` and ``SEGFN_SETTING_<name>``.

    Raises:
        ConfigError: a variable is not as it should be, or a required setting is missing;
            the message names the variable, never a value (it may be a secret).

    Example:
        >>> fn = Function.from_source("def on_request(r, s):\\n    pass\\n")
        >>> dict(settings_from_environ(fn, {"SEGFN_SETTINGS": '{"a": 1}', "SEGFN_SETTING_b": "x"}))
        {'a': 1, 'b': 'x'}
    """
    values: dict[str, Any] = {}
    raw = environ.get("SEGFN_SETTINGS", "").strip()
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            # the message says where, never what: the value may hold secrets
            raise ConfigError(f"SEGFN_SETTINGS is not valid JSON (line {getattr(exc, 'lineno', '?')})") from None
        if not isinstance(parsed, dict):
            raise ConfigError("SEGFN_SETTINGS must be a JSON object of setting names to values")
        values.update(parsed)
    for name, value in environ.items():
        if name.startswith(_PREFIX) and len(name) > len(_PREFIX):
            key = name[len(_PREFIX) :]
            values[key] = _setting_value(function, key, value)
    missing = function.missing_settings(values)
    if missing:
        raise ConfigError(
            "required settings missing: " + ", ".join(missing) + " (set SEGFN_SETTINGS or SEGFN_SETTING_<name>)"
        )
    return function.settings(values)


@dataclass(frozen=True)
class Config:
    """The handler's configuration, read from the environment.

    Example:
        >>> fn = Function.from_source("def on_request(r, s):\\n    pass\\n")
        >>> Config.from_environ(fn, {"SEGFN_MAX_BODY": "1024"}).max_body
        1024
    """

    write_key: str | None = None
    api_host: str = DEFAULT_HOST
    objects_host: str = DEFAULT_OBJECTS_HOST
    settings: Settings = field(default_factory=Settings)
    signature: str | None = None
    signing_secret: str | None = None
    max_body: int = MAX_BODY_BYTES
    timeout: float = DEFAULT_TIMEOUT
    delivery_budget: float = DELIVERY_BUDGET
    log_payloads: bool = False
    plan: Plan | None = None
    plan_mode: str = "report"
    isolation: str = "process"
    workers: int = 1
    memory_limit: int | None = 512 * 2**20

    @classmethod
    def from_environ(cls, function: Function, environ: Mapping[str, str] | None = None) -> Config:
        """Read the configuration; raise ``ConfigError`` naming the variable at fault."""
        environ = os.environ if environ is None else environ
        settings = settings_from_environ(function, environ)
        signature = environ.get("SEGFN_SIGNATURE", "").strip().lower() or None
        secret = environ.get("SEGFN_SIGNING_SECRET") or None
        if signature is not None and signature not in SCHEMES:
            raise ConfigError(f"SEGFN_SIGNATURE must be one of {', '.join(SCHEMES)}")
        if signature is not None and secret is None:
            raise ConfigError("SEGFN_SIGNATURE is set but SEGFN_SIGNING_SECRET is not")
        if secret is not None and signature is None:
            raise ConfigError("SEGFN_SIGNING_SECRET is set but SEGFN_SIGNATURE (the scheme) is not")
        try:
            max_body = int(environ.get("SEGFN_MAX_BODY") or MAX_BODY_BYTES)
            timeout = float(environ.get("SEGFN_TIMEOUT") or DEFAULT_TIMEOUT)
            budget = float(environ.get("SEGFN_DELIVERY_BUDGET") or DELIVERY_BUDGET)
        except ValueError:
            raise ConfigError(
                "SEGFN_MAX_BODY must be an integer, SEGFN_TIMEOUT and SEGFN_DELIVERY_BUDGET numbers"
            ) from None
        if max_body <= 0 or timeout <= 0 or budget <= 0:
            raise ConfigError("SEGFN_MAX_BODY, SEGFN_TIMEOUT and SEGFN_DELIVERY_BUDGET must be positive")
        base = os.path.dirname(function.filename) if os.path.isabs(function.filename) else None
        from ._plan import plan_from_env  # here: a handler without a plan never loads it

        try:
            plan, plan_mode = plan_from_env(environ, base=base)
        except PlanError as exc:
            raise ConfigError(str(exc)) from None
        isolation = (environ.get("SEGFN_ISOLATION") or "process").strip().lower()
        if isolation not in ("process", "none"):
            raise ConfigError("SEGFN_ISOLATION must be process or none")
        try:
            workers = int(environ.get("SEGFN_WORKERS") or min(4, os.cpu_count() or 1))
            memory_mib = int(environ.get("SEGFN_MEMORY_LIMIT") or 512)
        except ValueError:
            raise ConfigError("SEGFN_WORKERS and SEGFN_MEMORY_LIMIT must be integers") from None
        if workers <= 0 or memory_mib <= 0:
            raise ConfigError("SEGFN_WORKERS and SEGFN_MEMORY_LIMIT must be positive")
        return cls(
            write_key=environ.get("SEGMENT_WRITE_KEY") or None,
            api_host=(environ.get("SEGMENT_API_HOST") or DEFAULT_HOST).rstrip("/"),
            objects_host=(environ.get("SEGMENT_OBJECTS_HOST") or DEFAULT_OBJECTS_HOST).rstrip("/"),
            settings=settings,
            signature=signature,
            signing_secret=secret,
            max_body=max_body,
            timeout=timeout,
            delivery_budget=budget,
            log_payloads=environ.get("SEGFN_LOG_PAYLOADS", "") in ("1", "true", "yes"),
            plan=plan,
            plan_mode=plan_mode,
            isolation=isolation,
            workers=workers,
            memory_limit=memory_mib * 2**20,
        )

    def secret_values(self) -> list[str]:
        """Every configured secret, so that messages can be masked."""
        found = [*self.settings.secret_values(), self.write_key or "", self.signing_secret or ""]
        return [s for s in found if s]
