"""JSON for the runtime: orjson where it gives exactly what the standard library gives.

The runtime works with the standard library alone; when orjson is importable, bodies are
parsed and canonicalised with it wherever the result is provably the same:

- parsing: orjson refuses what ``json.loads`` would read differently or at all (NaN and
  Infinity literals, a byte-order mark, lone surrogates, invalid UTF-8, nesting beyond
  1,024 levels), and those bodies go to the standard library. It reads integers beyond
  64 bits as floats without a word, so a body with a run of 19 digits goes there too;
- canonical form (sorted keys, no whitespace, the seed of derived ``messageId``s):
  orjson writes the same text as ``json.dumps(..., sort_keys=True, separators=(",", ":"),
  ensure_ascii=False)`` except for some floats below 1e-4 (``0.00001`` for ``1e-05``,
  ``2.5e-7`` for ``2.5e-07``); output that may hold one is written again by the standard
  library, as is anything orjson cannot write (integers beyond 64 bits, surrogates).

So the digests, and the ids derived from them, do not depend on whether orjson is there.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _import_orjson() -> Any:
    try:
        import orjson as module
    except ImportError:  # an export without orjson: the standard library does it all
        return None
    return module


orjson: Any = _import_orjson()

__all__ = ["MISSING", "body_digest", "canonical_digest", "fast_loads", "loads_with_digest"]

MISSING: Any = object()

# maps every byte to "0" for a digit and " " otherwise: a run of 19 "0"s is a run of digits
_DIGIT_TABLE = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_NINETEEN = b"0" * 19
# where orjson's float text may differ from Python's repr (see the module docstring); a
# match inside a string is only a false alarm (the standard library writes it again)
_MANTISSA = b"0123456789."
_BEFORE_NUMBER = (b":", b",", b"[", b"-", b"")  # in compact JSON a number follows one of these


def _float_text_may_differ(canonical: bytes) -> bool:
    """Whether orjson's text may hold a float that Python writes differently. Only floats
    below 1e-4 differ: ``0.00001`` (Python: ``1e-05``) and ``2.5e-7`` (``2.5e-07``). Such text
    inside a string (a UUID's ``...4f1e-9a6b...``) is told apart by what precedes it; a string
    that looks exactly like a number after a colon is a false alarm, and only costs the
    slower writer.

    Both needles are searched from the end: ``bytes.rfind`` scans compact JSON text faster
    than ``bytes.find`` (or a regular expression) does, here about 30% faster per body.

    Example:
        >>> _float_text_may_differ(b'{"a":0.00001}'), _float_text_may_differ(b'{"a":"one-e-7"}')
        (True, False)
        >>> _float_text_may_differ(b'{"a":"4f1e-9a6b","b":2.5e-7}'), _float_text_may_differ(b'[1e-10]')
        (True, False)
    """
    rfind = canonical.rfind
    at = rfind(b"0.0000")
    while at != -1:
        if canonical[at - 1 : at] in _BEFORE_NUMBER:
            return True
        at = rfind(b"0.0000", 0, at + 5)  # an occurrence that overlaps this one starts before it
    at = rfind(b"e-")
    while at != -1:
        # "e-" and one digit, no more (a short exponent), after a mantissa of digits and dots
        # that follows what a number follows
        if canonical[at + 2 : at + 3].isdigit() and not canonical[at + 3 : at + 4].isdigit():
            window = canonical[max(0, at - 40) : at]
            mantissa = window.rstrip(_MANTISSA)
            if len(mantissa) < len(window) and (
                mantissa[-1:] in _BEFORE_NUMBER if mantissa or at > 40 else True
            ):
                return True
        at = rfind(b"e-", 0, at + 1)  # "e-" cannot overlap itself: the next one ends before
    return False


def fast_loads(content: bytes) -> Any:
    """``content`` parsed by orjson when that is exactly what ``json.loads`` gives, else
    ``MISSING`` (the caller parses with the standard library, errors and all).

    Example:
        >>> fast_loads(b'{"a": [1, 2.5]}') if orjson else {'a': [1, 2.5]}
        {'a': [1, 2.5]}
        >>> fast_loads(b'[NaN]') is MISSING
        True
    """
    if orjson is None or _NINETEEN in content.translate(_DIGIT_TABLE):
        return MISSING
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return MISSING


def _may_hold_a_long_integer(canonical: bytes) -> bool:
    """Whether orjson's canonical text may hold an integer beyond 64 bits that it read as a
    float: such a float is at least 2**63 in size, which orjson (as Python) writes with an
    exponent, ``9.223372036854776e+18``. A ``+`` is rare in JSON text and found at memchr
    speed; an ``e+`` inside a string (``jane+test@...``) is told apart by the letter before it,
    and a string that looks exactly like such a number only costs the slower parser."""
    find = canonical.find
    at = find(b"e+")
    while at != -1:
        if canonical[at - 1 : at].isdigit():
            return True
        at = find(b"e+", at + 2)
    return False


def loads_with_digest(content: bytes) -> tuple[Any, str] | None:
    """``content`` parsed and its digest (as :func:`body_digest` gives it), by orjson in one
    pass each way, when both are exactly what the standard library gives; else ``None`` (the
    caller parses with the standard library, errors and all).

    Parsing first and checking the canonical text after costs less than screening the raw
    body for long integers (:func:`fast_loads`), and the canonical text is needed anyway.

    Example:
        >>> both = loads_with_digest(b'{"b": 1, "a": 2}')  # None without orjson
        >>> both is None or both == ({"b": 1, "a": 2}, body_digest(b'{"a":2,"b":1}'))
        True
        >>> loads_with_digest(b'{"n": 123456789012345678901}') is None
        True
    """
    if orjson is None:
        return None
    try:
        value = orjson.loads(content)
        canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON to orjson, or nested beyond 255 levels
        return None
    if b"+" in canonical and _may_hold_a_long_integer(canonical):
        return None
    if _float_text_may_differ(canonical):
        return value, _standard_digest(value, content)
    return value, hashlib.sha256(canonical).hexdigest()


def canonical_digest(parsed: Any, content: bytes, *, from_orjson: bool = False) -> str:
    """The sha256 of ``parsed`` in canonical JSON, or of ``content`` when it has none.

    ``from_orjson`` says that ``parsed`` came from ``fast_loads`` unchanged (so it holds no
    NaN, which orjson would write as ``null``).
    """
    if from_orjson and orjson is not None:
        try:
            canonical = orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # nesting beyond 255 levels
            pass
        else:
            if not _float_text_may_differ(canonical):
                return hashlib.sha256(canonical).hexdigest()
    return _standard_digest(parsed, content)


def _standard_digest(parsed: Any, content: bytes) -> str:
    try:
        text = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return hashlib.sha256(content).hexdigest()
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def body_digest(content: bytes) -> str:
    """The digest of a body as received: canonical JSON when it is JSON, else its bytes.

    Example:
        >>> body_digest(b'{"b": 1, "a": 2}') == body_digest(b'{"a":2,"b":1}')
        True
    """
    parsed = fast_loads(content)
    if parsed is not MISSING:
        return canonical_digest(parsed, content, from_orjson=True)
    try:
        parsed = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return hashlib.sha256(content).hexdigest()
    return canonical_digest(parsed, content)
