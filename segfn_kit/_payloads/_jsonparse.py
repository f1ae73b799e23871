"""Exact JSON: orjson where it is exact, the standard library for long integers and NaN.

Also the duplicate-key check: both parsers keep the last value of a repeated key without a
word, so the loader looks for them (a cheap screen first, the exact check only when needed).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_INF = float("inf")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{19,}")
_BEFORE_NUMBER_BYTES = b":,[ \t\r\n"


# bytes.translate maps digits to "0" and everything else to " ": finding 19 zeros in a row
# is then a plain substring search, far faster than a regular expression over digit-heavy
# JSON (timestamps, amounts, ids)
_DIGIT_TABLE = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_NINETEEN = b"0" * 19


def _may_hold_long_int(data: bytes | str) -> bool:
    """Whether the JSON text may hold an integer beyond 64 bits (19 digits or more).

    orjson reads such integers as floats without a word; a run of 19 digits inside a
    string (``"sub_0000000000000000000"``) is not one, so only runs that start where a
    number can start count.
    """
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
    if _NINETEEN not in raw.translate(_DIGIT_TABLE):  # the common case, at C speed
        return False
    for match in _LONG_DIGITS_BYTES.finditer(raw):
        start = match.start()
        if raw[start - 1 : start] == b"-":
            start -= 1
        if raw[start - 1 : start] in _BEFORE_NUMBER_BYTES:  # b"" (start 0) is in it too
            return True
    return False


def parse_json(data: bytes | str) -> tuple[Any, str | None]:
    """Parse JSON exactly: orjson where it is exact, the standard library where it is not.

    orjson rejects integers beyond 64 bits and the NaN/Infinity literals; the standard
    library reads both (integers stay exact Python ints). Returns the value and a warning
    for non-standard input (NaN/Infinity literals, numbers such as ``1e400`` that overflow
    a double to infinity).

    Raises:
        ValueError: the text is not JSON (the message says where).

    Example:
        >>> parse_json(b'{"id": 123456789012345678901234567890}')[0]["id"]
        123456789012345678901234567890
        >>> parse_json("[NaN]")[1]
        'non-standard JSON literal NaN (kept as a float)'
        >>> parse_json("[1e400]")
        ([inf], 'number 1e400 is beyond a double and was read as infinity (inf)')
    """
    # orjson turns integers beyond 64 bits into floats without a word; any run of 19
    # digits may be one, so those texts go to the standard library, which keeps them exact
    if not _may_hold_long_int(data):
        try:
            return orjson.loads(data), None
        except orjson.JSONDecodeError:
            pass
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    literals: list[str] = []

    def constant(name: str) -> float:
        literals.append(name)
        return float(name)

    def number(digits: str) -> float:
        value = float(digits)
        if value in (_INF, -_INF):  # 1e400: beyond a double
            overflows.append(digits)
        return value

    overflows: list[str] = []
    try:
        value = json.loads(text, parse_constant=constant, parse_float=number)
    except json.JSONDecodeError as exc:
        ends_early = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated")
        hint = " (the text ends early: it looks truncated)" if ends_early else ""
        raise ValueError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos}){hint}"
        ) from None
    except RecursionError:
        raise ValueError("JSON nested too deeply to read (over about 1,000 levels)") from None
    warning = None
    if literals:
        names = ", ".join(dict.fromkeys(literals))
        warning = f"non-standard JSON literal {names} (kept as a float)"
    if overflows:
        shown = ", ".join(_short(n) for n in dict.fromkeys(overflows))
        note = f"number {shown} is beyond a double and was read as infinity (inf)"
        warning = f"{warning}; {note}" if warning else note
    return value, warning


def _short(digits: str) -> str:
    return digits if len(digits) <= 24 else f"{digits[:10]}...{digits[-8:]} ({len(digits)} chars)"


def _duplicate_key(text: str) -> str | None:
    """The first key that appears twice in one JSON object of ``text``, if any.

    Both parsers keep the last value of a repeated key without a word, so this looks.
    """
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)
        if len(result) != len(items) and not found:
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    found.append(key)
                    break
                seen.add(key)
        return result

    try:
        json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None


def _may_have_duplicates(value: Any, text: str | bytes) -> bool:
    # A cheap screen before the exact (slow) check. orjson re-serialises the parsed value
    # compactly (fast, in C): for compact input of the same length nothing was dropped.
    # Otherwise count keys: every key is a string followed by ':', and the re-serialised
    # value has one '":' per key it kept.
    try:
        compact = orjson.dumps(value)
    except orjson.JSONEncodeError:  # ints beyond 64 bits, nesting beyond 255 levels
        raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        return raw.count(b'":') + raw.count(b'" :') > _count_keys(value, 0)
    raw = text if isinstance(text, bytes) else text.encode("utf-8", "surrogateescape")
    if len(compact) == len(raw):
        return False
    return raw.count(b'":') + raw.count(b'" :') != compact.count(b'":')


def _count_keys(value: Any, depth: int) -> int:
    if depth > 200:
        return 1 << 60  # too deep to count cheaply: let the exact check decide
    if isinstance(value, dict):
        n = len(value)
        for v in value.values():
            if isinstance(v, dict | list):
                n += _count_keys(v, depth + 1)
        return n
    if isinstance(value, list):
        n = 0
        for v in value:
            if isinstance(v, dict | list):
                n += _count_keys(v, depth + 1)
        return n
    return 0


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _compact(value: Any) -> str:
    r"""The compact serialisation a JSON-valued body stands for (contract 2).

    A string holding a lone surrogate (which JSON text can carry only escaped, as
    ``"\ud800"``) keeps it escaped, so that the body is UTF-8 and parses back to the same value.

    Example:
        >>> _compact({"a": "caf\u00e9 \ud800"})
        '{"a":"café \\ud800"}'
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # outside strings JSON text has no such character
            text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text
