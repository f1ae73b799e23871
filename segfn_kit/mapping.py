"""Segment's Actions Mapping Kit in Python (the semantics of ``@segment/actions-core`` 3.153.0).

A mapping is JSON: plain values are copied, objects with one ``@`` key are directives
(``@path``, ``@template``, ``@if``, ``@case``, ``@replace``, ``@arrayPath``, ``@flatten``,
``@json``, ``@merge``, ``@transform``, ``@excludeWhenNull``, ``@literal``).

Example:
    >>> from segfn_kit.mapping import transform, validate
    >>> transform({"userId": {"@template": "gh:{{sender.login}}"}}, {"sender": {"login": "octo"}})
    {'userId': 'gh:octo'}
    >>> validate({"userId": {"@path": 1}})
    ['/userId/@path should be a string or a mapping directive but it is a number.']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from segfn_kit.runtime._errors import MappingError
from segfn_kit.runtime._mapping import (
    ACTIONS_CORE_VERSION,
    DIRECTIVES,
    CompiledMapping,
    compile_mapping,
    transform,
    validate,
)

__all__ = [
    "ACTIONS_CORE_VERSION",
    "DIRECTIVES",
    "CompiledMapping",
    "MappingError",
    "compile_mapping",
    "mapping_from_profile",
    "path_mapping",
    "transform",
    "validate",
]

_PLAIN_KEY = re.compile(r"[^.\[\]'\"]+")


def path_mapping(field: str | tuple[Any, ...], *, root: str = "body") -> dict[str, Any]:
    """The mapping that reads one field of a payload profile (``segfn_kit.profile``).

    ``field`` is a profile field (``"data.object.email"``, or a ``(event_type, field)`` index
    entry); array items (``items[].price``) become ``@arrayPath``. ``root`` is where the
    profiled value sits in a mapping function's input (``body``; ``""`` for the input itself).

    Raises:
        MappingError: a key holds a dot, a bracket or a quote, which Mapping Kit paths cannot name.

    Example:
        >>> path_mapping("data.object.email")
        {'@path': '$.body.data.object.email'}
        >>> path_mapping("data.items[].price.id")
        {'@arrayPath': ['$.body.data.items', {'@path': '$.price.id'}]}
    """
    name = field[-1] if isinstance(field, tuple) else field
    parts = str(name).split("[]")
    if parts[-1] == "" and len(parts) > 1:
        parts = parts[:-1]  # "tags[]": the array itself
    prefixes = [root] if root else []
    segments = [p.strip(".") for p in parts]
    for segment in segments:
        for key in filter(None, segment.split(".")):
            if not _PLAIN_KEY.fullmatch(key):
                raise MappingError(f"{name}: the key {key!r} cannot be named by a Mapping Kit path")
    first = ".".join([*prefixes, segments[0]] if segments[0] else prefixes)
    if len(segments) == 1:
        return {"@path": f"$.{first}" if first else "$."}
    inner: dict[str, Any] = path_mapping("[]".join(segments[1:]) if len(segments) > 2 else segments[1], root="")
    return {"@arrayPath": [f"$.{first}", inner]}


def mapping_from_profile(profile: Any, fields: Mapping[str, str], *, root: str = "body") -> dict[str, Any]:
    """An object mapping from profile fields: ``{name: path_mapping(field)}``, each field checked.

    Args:
        profile: a profile frame (``segfn_kit.profile``), indexed by field (or by event type and
            field; pass ``profile.loc[event_type]`` for one type).
        fields: output name -> profile field.
        root: as in :func:`path_mapping`.

    Raises:
        KeyError: a field the profile does not have (the message lists close names).

    Example:
        >>> import segfn_kit
        >>> frame = segfn_kit.load_payloads([{"headers": {}, "body": {"user": {"id": "u1"}}}])
        >>> mapping_from_profile(segfn_kit.profile(frame), {"userId": "user.id"})
        {'userId': {'@path': '$.body.user.id'}}
    """
    index = profile.index
    known = {i[-1] if isinstance(i, tuple) else i for i in index}
    out: dict[str, Any] = {}
    for name, field in fields.items():
        if field not in known:
            close = sorted(k for k in known if field.rsplit(".", 1)[-1] in str(k))[:5]
            raise KeyError(f"{field!r} is not a field of this profile" + (f"; close: {close}" if close else ""))
        out[name] = path_mapping(field, root=root)
    return out
