"""A request body: JSON, url-encoded form, or text kept as received."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

from segfn_kit.runtime._rules import MAX_BODY_BYTES

from ._jsonparse import _compact, _duplicate_key, _may_have_duplicates, parse_json

#: the largest request body Segment accepts (512 KiB): the runtime's rule, named for the payload loaders
SEGMENT_BODY_LIMIT = MAX_BODY_BYTES


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lower = name.lower()
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None


def _is_form(content_type: str | None) -> bool:
    return bool(content_type) and "x-www-form-urlencoded" in str(content_type).lower()


def _looks_form(text: str) -> bool:
    head = text[:400].strip()
    if not head or head[0] in '{["' or "=" not in head:
        return False
    return " " not in head.split("&", 1)[0] and "\n" not in head


def _decode_form(text: str) -> dict[str, Any]:
    parsed = parse_qs(text, keep_blank_values=True)
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


def _is_form_dict(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v))
        for v in value.values()
    )


@dataclass(slots=True)
class _Body:
    raw: str
    body: Any = None
    warning: str | None = None
    error: str | None = None


def _body_from_text(raw: str, content_type: str | None, check_duplicates: bool) -> _Body:
    """Parse a body given as text: JSON, url-encoded, or left as text."""
    if not raw.strip():
        return _Body(raw, None, "the body is empty")
    if _is_form(content_type):
        return _Body(raw, _decode_form(raw))
    try:
        value, warning = parse_json(raw)
    except ValueError as exc:
        if _looks_form(raw):
            return _Body(raw, _decode_form(raw))
        ctype = f" ({content_type})" if content_type else ""
        return _Body(
            raw,
            None,
            f"the body{ctype} is not JSON or url-encoded: {exc}; read it with request.text()",
        )
    if check_duplicates and _may_have_duplicates(value, raw):
        dup = _duplicate_key(raw)
        if dup is not None:
            warning = _join(
                warning, f"duplicate key {dup!r}: the last value is kept, as request.json() does"
            )
    return _Body(raw, value, warning)


def _body_from_value(value: Any, content_type: str | None) -> _Body:
    """A body given as a JSON value (hand-written samples, Hookdeck, functions-library)."""
    if _is_form(content_type) and _is_form_dict(value):
        # a url-encoded request captured as its decoded fields: the wire form is the encoding
        return _Body(urlencode(value, doseq=True), value)
    try:
        return _Body(_compact(value), value)
    except (ValueError, TypeError, RecursionError) as exc:  # TypeError: a set, bytes, an object
        return _Body("", value, None, f"body cannot be serialised as JSON: {exc}")


def _body_from_bytes(data: bytes, content_type: str | None, check_duplicates: bool) -> _Body:
    raw = data.decode("utf-8", "surrogateescape")
    bad = _utf8_problem(data)
    if bad is not None:
        return _Body(raw, None, f"the body is not valid UTF-8 ({bad}); read it with request.content")
    return _body_from_text(raw, content_type, check_duplicates)


def _utf8_problem(data: bytes) -> str | None:
    """Where ``data`` stops being UTF-8 (``"byte 0xff at offset 3"``), or None when it all decodes.

    Example:
        >>> _utf8_problem(b"ok\\xff")
        'byte 0xff at offset 2'
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"byte 0x{data[exc.start]:02x} at offset {exc.start}"
    return None


def _join(a: str | None, b: str | None) -> str | None:
    if a and b:
        return f"{a}; {b}"
    return a or b
