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
    "transform",
    "validate",
]
