"""Segment's Actions Mapping Kit in Python: ``transform`` and ``validate`` with the exact
semantics of ``@segment/actions-core`` 3.153.0 (``packages/core/src/mapping-kit``).

A mapping is compiled once into closures (:func:`compile_mapping`); running it on a payload then
costs a few dictionary look-ups per field instead of a walk over the mapping's JSON.

JavaScript semantics kept on purpose (the differential tests compare with the real package):

- a missing path is ``undefined``: an object key whose value is undefined is dropped from the
  result, an array item that is undefined becomes ``null``; a path that meets a falsy value
  (``0``, ``""``, ``false``, ``null``) returns that value (``a && a[key]``);
- ``"length"`` and numeric keys of strings count UTF-16 code units, as JavaScript does;
- ``@template`` writes a missing or ``null`` value as ``""``, numbers as JavaScript prints them,
  arrays joined with ``,`` and objects as ``[object Object]``; ``{{{x}}}`` is rendered first;
- ``@if`` with ``blank`` treats ``undefined``, ``null``, ``""``, ``0``, ``false`` and ``[]`` as blank
  (JavaScript's ``value != ''``), and ``else`` is used only when it is truthy;
- ``@replace`` patterns are literal, ``global`` is on and ``ignorecase`` off by default, and
  ``$&``, ``$$``, ``$``` and ``$'`` in the replacement work as in ``String.prototype.replace``;
- ``@merge`` assigns left to right (``direction: "right"``: later objects win);
- the top-level mapping is spread into an object (``{...mapping}``), as ``transform`` does.

Known differences: integers above 2**53 keep their exact value here (JavaScript rounds them to
the nearest double), and prototype members of objects (``constructor``, ``toString``...) are not
reachable by a path.

Example:
    >>> from segfn_kit.runtime._mapping import transform
    >>> transform({"id": {"@path": "$.user.id"}, "kind": {"@case": {"operator": "upper",
    ...            "value": {"@path": "$.kind"}}}}, {"user": {"id": "u1"}, "kind": "push"})
    {'id': 'u1', 'kind': 'PUSH'}
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from typing import Any

from ._errors import MappingError

__all__ = [
    "ACTIONS_CORE_VERSION",
    "DIRECTIVES",
    "UNDEFINED",
    "CompiledMapping",
    "compile_mapping",
    "js_stringify",
    "transform",
    "validate",
]

ACTIONS_CORE_VERSION = "3.153.0"

DIRECTIVES = (
    "@if", "@case", "@replace", "@arrayPath", "@path", "@template", "@literal",
    "@flatten", "@json", "@merge", "@transform", "@excludeWhenNull",
)
_DIRECTIVE_SET = frozenset(DIRECTIVES)
_ROOT_KEY = "__segment_internal_directive"
MAX_PATTERN_LENGTH = 10
MAX_REPLACEMENT_LENGTH = 10


class _Undefined:
    """JavaScript's ``undefined``: a missing value, distinct from ``null`` (``None``)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()
_U = UNDEFINED

Fn = Callable[[Any], Any]


# ---------------------------------------------------------------- JavaScript value helpers

def _real_type(value: Any) -> str:
    """``realTypeOf`` of actions-core: Object.prototype.toString's tag, lower-cased."""
    if value is _U:
        return "undefined"
    if value is None:
        return "null"
    t = type(value)
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    if t is list or t is tuple:
        return "array"
    if t is dict or isinstance(value, dict):
        return "object"
    return "object"


def _typeof(value: Any) -> str:
    t = _real_type(value)
    if t in ("null", "array"):
        return "object"
    return t


def _truthy(value: Any) -> bool:
    t = type(value)
    if t is str:
        return bool(value != "")
    if t is bool:
        return bool(value)
    if t is int or t is float:
        return bool(value == value and value != 0)
    return value is not None and value is not _U


def _falsy(value: Any) -> bool:
    return not _truthy(value)


def _is_index(key: str) -> bool:
    return key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) < 4294967295


def _js_items(obj: dict[str, Any]) -> Any:
    """A JavaScript object's own entries in its order: integer keys ascending first."""
    index = [k for k in obj if k[:1].isdigit() and _is_index(k)]
    if not index:
        return obj.items()
    index.sort(key=int)
    seen = set(index)
    return [(k, obj[k]) for k in index] + [(k, v) for k, v in obj.items() if k not in seen]


def _utf16_units(text: str) -> list[str]:
    if text.isascii():
        return list(text)
    units: list[str] = []
    for ch in text:
        code = ord(ch)
        if code > 0xFFFF:
            code -= 0x10000
            units.append(chr(0xD800 + (code >> 10)))
            units.append(chr(0xDC00 + (code & 0x3FF)))
        else:
            units.append(ch)
    return units


def _utf16_len(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


_NUMBER = re.compile(r"(-?)(\d+)(?:\.(\d+))?(?:e([+-]?\d+))?")


def js_number(value: float | int) -> str:
    """``String(number)`` as JavaScript prints it (``1`` for ``1.0``, ``1e+21``, ``1e-7``).

    Example:
        >>> js_number(1.0), js_number(1e21), js_number(0.0000001), js_number(123)
        ('1', '1e+21', '1e-7', '123')
    """
    if type(value) is int:
        return str(value)
    x = float(value)
    if x != x:
        return "NaN"
    if x in (math.inf, -math.inf):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    match = _NUMBER.fullmatch(repr(x))
    if match is None:  # pragma: no cover - repr of a finite float always matches
        return repr(x)
    sign, whole, frac, exp = match.groups()
    digits = whole + (frac or "")
    point = len(whole) + int(exp or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mark = "+" if e >= 0 else "-"
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{mark}{abs(e)}"
    return sign + text


def _js_string(value: Any) -> str:
    """``String(value)``."""
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float:
        return js_number(value)
    if value is None:
        return "null"
    if value is _U:
        return "undefined"
    if t is list or t is tuple:
        return ",".join("" if x is None or x is _U else _js_string(x) for x in value)
    return "[object Object]"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_str(text: str) -> str:
    out = json.dumps(text, ensure_ascii=False)
    if not text.isascii() and _LONE_SURROGATE.search(out):
        out = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)
    return out


def js_stringify(value: Any) -> Any:
    """``JSON.stringify(value)``: compact, JavaScript number format, undefined keys dropped.

    Returns ``UNDEFINED`` for an undefined value, as JavaScript does.

    Example:
        >>> js_stringify({"a": 1.0, "b": [None, 2.5], "c": "é"})
        '{"a":1,"b":[null,2.5],"c":"é"}'
    """
    if value is _U:
        return _U
    return _stringify(value)


def _stringify(value: Any) -> str:
    t = type(value)
    if t is str:
        return _json_str(value)
    if value is None or value is _U:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float:
        return js_number(value) if math.isfinite(value) else "null"
    if t is list or t is tuple:
        return "[" + ",".join(_stringify(x) for x in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(
            _json_str(k) + ":" + _stringify(v) for k, v in _js_items(value) if v is not _U
        ) + "}"
    return "null"


def _json_parse(text: str) -> Any:
    def reject(name: str) -> Any:
        raise MappingError(f"@json: Unexpected token in JSON: {name}")

    try:
        return json.loads(text, parse_constant=reject)
    except json.JSONDecodeError as exc:
        raise MappingError(f"@json: {exc.msg} in JSON at position {exc.pos}") from None


def _remove_undefined(value: Any) -> Any:
    """``removeUndefined`` for the final result: undefined keys dropped, undefined items null."""
    t = type(value)
    if t is dict:
        return {k: _remove_undefined(v) for k, v in value.items() if v is not _U}
    if t is list:
        return [None if v is _U else _remove_undefined(v) for v in value]
    return value


# ---------------------------------------------------------------- paths (get.js)

_SPLIT = re.compile(r"\[(?=\"|'|\d)|\.|(?<=\"|'|\d)\]+", re.ASCII)
_QUOTES = re.compile("['\"]")


def _member(obj: Any, key: str) -> Any:
    """``obj[key]`` for a truthy value that is not a plain object."""
    t = type(obj)
    if t is list or t is tuple:
        if key[:1].isdigit() and _is_index(key):
            i = int(key)
            return obj[i] if i < len(obj) else _U
        if key == "length":
            return len(obj)
        return _U
    if t is str:
        if key == "length":
            return _utf16_len(obj)
        if key[:1].isdigit() and _is_index(key):
            i = int(key)
            if obj.isascii():
                return obj[i] if i < len(obj) else _U
            units = _utf16_units(obj)
            return units[i] if i < len(units) else _U
        return _U
    if isinstance(obj, dict):
        return obj.get(key, _U)
    return _U


def _path_keys(path: str) -> tuple[str, ...] | None:
    """The keys of a path, or ``None`` for the whole object (``""`` and ``"."``)."""
    if path in ("", "."):
        return None
    return tuple(_QUOTES.sub("", p) for p in _SPLIT.split(path) if p)


def _compile_get(path: str) -> Fn:
    keys = _path_keys(path)
    if keys is None or not keys:
        return lambda obj: obj
    if len(keys) == 1:
        (k0,) = keys

        def get1(obj: Any) -> Any:
            if type(obj) is dict:
                return obj.get(k0, _U)
            if _falsy(obj):
                return obj
            return _member(obj, k0)

        return get1
    if len(keys) == 2:
        k0, k1 = keys

        def get2(obj: Any) -> Any:
            if type(obj) is dict:
                obj = obj.get(k0, _U)
                if type(obj) is dict:
                    return obj.get(k1, _U)
            elif _falsy(obj):
                return obj
            else:
                obj = _member(obj, k0)
            if _falsy(obj):
                return obj
            return _member(obj, k1)

        return get2

    def get(obj: Any) -> Any:
        for key in keys:
            if type(obj) is dict:
                obj = obj.get(key, _U)
            elif _falsy(obj):
                return obj
            else:
                obj = _member(obj, key)
        return obj

    return get


_GET_CACHE: dict[str, Fn] = {}


def _get(obj: Any, path: str) -> Any:
    fn = _GET_CACHE.get(path)
    if fn is None:
        if len(_GET_CACHE) > 4096:
            _GET_CACHE.clear()
        fn = _GET_CACHE[path] = _compile_get(path)
    return fn(obj)


# ---------------------------------------------------------------- templates (placeholders.js)

_TRIPLE = re.compile(r"\{\{\{([^}]+)\}\}\}")
_DOUBLE = re.compile(r"\{\{([^}]+)\}\}")
# String.prototype.trim: WhiteSpace and LineTerminator of ECMAScript
_JS_SPACE = "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def _placeholder(value: Any) -> str:
    if value is None or value is _U:
        return ""
    return value if type(value) is str else _js_string(value)


def _render_pass(pattern: re.Pattern[str], template: str, data: Any) -> str:
    return pattern.sub(lambda m: _placeholder(_get(data, m.group(1).strip(_JS_SPACE))), template)


def _compile_template(template: str) -> Fn:
    if _TRIPLE.search(template):
        def slow(data: Any) -> str:
            return _render_pass(_DOUBLE, _render_pass(_TRIPLE, template, data), data)

        return slow
    pieces: list[str | Fn] = []
    last = 0
    for m in _DOUBLE.finditer(template):
        if m.start() > last:
            pieces.append(template[last:m.start()])
        pieces.append(_compile_get(m.group(1).strip(_JS_SPACE)))
        last = m.end()
    if last < len(template):
        pieces.append(template[last:])
    if not any(callable(p) for p in pieces):
        return lambda data: template
    if len(pieces) == 1:
        only = pieces[0]
        assert callable(only)
        return lambda data: _placeholder(only(data))
    parts = tuple(pieces)

    def render(data: Any) -> str:
        out = []
        for p in parts:
            if type(p) is str:
                out.append(p)
            else:
                v = p(data)  # type: ignore[operator]
                out.append(v if type(v) is str else _placeholder(v))
        return "".join(out)

    return render


# ---------------------------------------------------------------- @replace

def _canon(ch: str) -> str:
    """The case folding of a non-unicode JavaScript regular expression with the ``i`` flag."""
    if ord(ch) > 0xFFFF:
        return ch
    up = ch.upper()
    if len(up) != 1 or (ord(ch) >= 128 and ord(up) < 128):
        return ch
    return up


def _substitution(replacement: str) -> list[str | int]:
    """GetSubstitution without captures: 0 = matched text, 1 = before, 2 = after."""
    parts: list[str | int] = []
    text = ""
    i = 0
    while i < len(replacement):
        ch = replacement[i]
        nxt = replacement[i + 1] if i + 1 < len(replacement) else ""
        if ch == "$" and nxt in ("$", "&", "`", "'"):
            if nxt == "$":
                text += "$"
            else:
                if text:
                    parts.append(text)
                    text = ""
                parts.append({"&": 0, "`": 1, "'": 2}[nxt])
            i += 2
            continue
        text += ch
        i += 1
    if text:
        parts.append(text)
    return parts


def _perform_replace(value: str, pattern: str, replacement: str, is_global: bool, ignorecase: bool) -> str:
    if _utf16_len(pattern) > MAX_PATTERN_LENGTH:
        raise MappingError(f"@replace requires a \"pattern\" less than {MAX_PATTERN_LENGTH} characters")
    if _utf16_len(replacement) > MAX_REPLACEMENT_LENGTH:
        raise MappingError(f"@replace requires a \"replacement\" less than {MAX_REPLACEMENT_LENGTH} characters")
    haystack, needle = value, pattern
    if ignorecase:
        haystack = "".join(map(_canon, value))
        needle = "".join(map(_canon, pattern))
    subst = _substitution(replacement)
    plain = all(type(p) is str for p in subst)
    out: list[str] = []
    last = 0
    start = haystack.find(needle)
    while start >= 0:
        end = start + len(needle)
        out.append(value[last:start])
        if plain:
            out.append(replacement.replace("$$", "$"))
        else:
            for p in subst:
                if type(p) is str:
                    out.append(p)
                elif p == 0:
                    out.append(value[start:end])
                elif p == 1:
                    out.append(value[:start])
                else:
                    out.append(value[end:])
        last = end
        if not is_global:
            break
        start = haystack.find(needle, end)
    out.append(value[last:])
    return "".join(out)


# ---------------------------------------------------------------- @flatten, @merge, @excludeWhenNull

def _flatten(value: Any, prefix: str, separator: str, ignore_arrays: bool) -> dict[str, Any]:
    t = type(value)
    if isinstance(value, dict) or (not ignore_arrays and (t is list or t is tuple)):
        items = _js_items(value) if isinstance(value, dict) else ((str(i), v) for i, v in enumerate(value))
        acc: dict[str, Any] = {}
        for key, item in items:
            acc.update(_flatten(item, f"{prefix}{separator}{key}" if prefix else key, separator, ignore_arrays))
        return acc
    return {prefix: value}


def _assign(target: dict[str, Any], source: Any) -> None:
    t = type(source)
    if isinstance(source, dict):
        for k, v in _js_items(source):
            target[k] = v
    elif t is list or t is tuple:
        for i, v in enumerate(source):
            target[str(i)] = v
    elif t is str:
        for i, unit in enumerate(_utf16_units(source)):
            target[str(i)] = unit


def _clean_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = dict(value)
        for k, v in value.items():
            if v is None:
                cleaned[k] = _U
            elif isinstance(v, dict):
                cleaned[k] = _clean_nulls(v)
        return cleaned
    return value


# ---------------------------------------------------------------- the compiler

class _Node:
    """A compiled mapping value: ``fn(payload)``, whether it may be undefined itself
    (``undef``) and whether its result may hold undefined values inside (``dirty``)."""

    __slots__ = ("dirty", "fn", "undef")

    def __init__(self, fn: Fn, undef: bool = True, dirty: bool = True):
        self.fn = fn
        self.undef = undef
        self.dirty = dirty


def _raiser(message: str) -> _Node:
    def fail(payload: Any) -> Any:
        raise MappingError(message)

    return _Node(fail, False, False)


def _const(value: Any) -> _Node:
    return _Node(lambda payload: value, value is _U, False)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_directive(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    has = False
    for k in value:
        if k.startswith("@"):
            has = True
        elif k != "_metadata":
            return False
    return has


def _compile(mapping: Any, pdirty: bool, final: bool) -> _Node:
    """Compile ``resolve(mapping, payload)``; ``final``: the result goes straight to the output,
    so undefined keys may be dropped at once; ``pdirty``: the payload may hold undefined."""
    t = type(mapping)
    if t is list or t is tuple:
        nodes = [_compile(m, pdirty, final) for m in mapping]
        fns = tuple(n.fn for n in nodes)
        if final:
            def array_final(payload: Any) -> Any:
                out = []
                for f in fns:
                    v = f(payload)
                    out.append(None if v is _U else v)
                return out

            return _Node(array_final, False, False)
        return _Node(lambda payload: [f(payload) for f in fns], False,
                     any(n.undef or n.dirty for n in nodes))
    if not isinstance(mapping, dict):
        return _const(mapping)
    if _is_directive(mapping):
        name = next(k for k in mapping if k.startswith("@"))
        compiler = _COMPILERS.get(name)
        if compiler is None:
            return _raiser(f"{name} is not a valid directive, got undefined")
        node = compiler(mapping[name], pdirty, final)
        if final and node.dirty:
            inner = node.fn
            return _Node(lambda payload: _remove_undefined(inner(payload)), node.undef, False)
        return node
    entries = [(k, _compile(v, pdirty, final)) for k, v in _js_items(mapping)]
    if final:
        return _Node(_object_final(entries), False, False)
    pairs = tuple((k, n.fn) for k, n in entries)
    return _Node(lambda payload: {k: f(payload) for k, f in pairs}, False,
                 any(n.undef or n.dirty for _, n in entries))


def _object_final(entries: list[tuple[str, _Node]]) -> Fn:
    sure = tuple((k, n.fn) for k, n in entries if not n.undef)
    maybe = tuple((k, n.fn) for k, n in entries if n.undef)
    if not maybe:
        return lambda payload: {k: f(payload) for k, f in sure}
    if all(not n.undef for _, n in entries[: len(sure)]):
        # the always-defined keys come first: build them in one comprehension
        def build_ordered(payload: Any) -> Any:
            out = {k: f(payload) for k, f in sure}
            for k, f in maybe:
                v = f(payload)
                if v is not _U:
                    out[k] = v
            return out

        return build_ordered
    pairs = tuple((k, n.fn) for k, n in entries)

    def build(payload: Any) -> Any:
        out = {}
        for k, f in pairs:
            v = f(payload)
            if v is not _U:
                out[k] = v
        return out

    return build


def _opt(opts: dict[str, Any], key: str) -> Any:
    return opts.get(key, _U)


def _c_if(opts: Any, pdirty: bool, final: bool) -> _Node:
    if not _is_object(opts):
        return _raiser('@if requires an object with an "exists" key')
    exists, blank = _opt(opts, "exists"), _opt(opts, "blank")
    if not _truthy(exists) and not _truthy(blank):
        return _raiser('@if requires an "exists" key or a "blank" key')
    check_blank = exists is _U
    cond = _compile(blank if check_blank else exists, pdirty, False).fn
    then = _opt(opts, "then")
    other = _opt(opts, "else")
    then_node = _compile(then, pdirty, final) if then is not _U else _const(_U)
    else_node = _compile(other, pdirty, final) if _truthy(other) else _const(_U)
    then_fn, else_fn = then_node.fn, else_node.fn

    def run_if(payload: Any) -> Any:
        value = cond(payload)
        if check_blank:
            ok = value is not _U and value is not None and not _loose_blank(value)
        else:
            ok = value is not _U and value is not None
        return then_fn(payload) if ok else else_fn(payload)

    return _Node(run_if, True, then_node.dirty or else_node.dirty)


def _loose_blank(value: Any) -> bool:
    """JavaScript's ``value == ''`` for a value that is neither null nor undefined."""
    t = type(value)
    if t is str:
        return value == ""  # type: ignore[no-any-return]
    if t is bool:
        return not value
    if t is int or t is float:
        return value == 0  # type: ignore[no-any-return]
    if t is list or t is tuple:
        return _js_string(value) == ""
    return False


def _c_case(opts: Any, pdirty: bool, final: bool) -> _Node:
    if not _is_object(opts):
        return _raiser('@case requires an object with a "operator" key')
    operator = _opt(opts, "operator")
    if not _truthy(operator):
        return _raiser('@case requires a "operator" key')
    raw = _opt(opts, "value")
    if not _truthy(raw):
        return _const(_U)
    node = _compile(raw, pdirty, False)
    value_fn = node.fn

    def run_case(payload: Any) -> Any:
        value = value_fn(payload)
        if type(value) is str:
            if operator == "lower":
                return value.lower()
            if operator == "upper":
                return value.upper()
            raise MappingError('operator key should have a value of "lower" or "upper"')
        return value

    return _Node(run_case, True, node.dirty)


def _c_replace(opts: Any, pdirty: bool, final: bool) -> _Node:
    if not _is_object(opts):
        return _raiser('@replace requires an object with a "pattern" key')
    pattern = _opt(opts, "pattern")
    if not _truthy(pattern):
        return _raiser('@replace requires a "pattern" key')
    replacement = _opt(opts, "replacement")
    if replacement is None or replacement is _U:
        replacement = ""
    pattern2 = _opt(opts, "pattern2")
    replacement2 = _opt(opts, "replacement2")
    if _truthy(pattern2) and (replacement2 is None or replacement2 is _U):
        replacement2 = ""
    ignorecase = _opt(opts, "ignorecase")
    if ignorecase is None or ignorecase is _U:
        ignorecase = False
    is_global = _opt(opts, "global")
    if is_global is None or is_global is _U:
        is_global = True
    raw = _opt(opts, "value")
    if not _truthy(raw):
        return _const(_U)
    value_fn = _compile(raw, pdirty, False).fn
    types_ok = (type(pattern) is str and type(replacement) is str
                and type(ignorecase) is bool and type(is_global) is bool)
    second = _truthy(pattern2) and type(pattern2) is str and type(replacement2) is str

    def run_replace(payload: Any) -> Any:
        value = value_fn(payload)
        t = type(value)
        if t is bool or t is int or t is float:
            value = _js_string(value)
        if type(value) is not str or not types_ok:
            return ""
        new = _perform_replace(value, pattern, replacement, is_global, ignorecase)
        if second:
            new = _perform_replace(new, pattern2, replacement2, is_global, ignorecase)
        return new

    return _Node(run_replace, True, False)


def _c_array_path(data: Any, pdirty: bool, final: bool) -> _Node:
    if type(data) is not list:
        return _raiser(f"@arrayPath expected array, got {_real_type(data)}")
    path = data[0] if data else _U
    shape = data[1] if len(data) > 1 else _U
    if type(path) is str:
        root_fn = _compile_get(path.replace("$.", "", 1))
        root_dirty = pdirty
    else:
        root_node = _compile(path, pdirty, False)
        root_fn, root_dirty = root_node.fn, root_node.undef or root_node.dirty
    if not (isinstance(shape, dict) and shape):
        return _Node(root_fn, True, root_dirty)
    item = _compile(shape, root_dirty, final)
    item_fn = item.fn

    def run_array_path(payload: Any) -> Any:
        root = root_fn(payload)
        t = type(root)
        if t is list:
            items = root
        elif isinstance(root, dict):
            items = [root]
        else:
            return root
        if final:
            return [None if v is _U else v for v in map(item_fn, items)]
        return [item_fn(i) for i in items]

    return _Node(run_array_path, True, root_dirty or (not final and (item.undef or item.dirty)))


def _c_string_directive(name: str, make: Callable[[str], Fn]) -> Callable[[Any, bool, bool], _Node]:
    def compiler(arg: Any, pdirty: bool, final: bool) -> _Node:
        if type(arg) is str:
            return _Node(make(arg), True, pdirty)
        arg_fn = _compile(arg, pdirty, False).fn
        cache: dict[str, Fn] = {}

        def run_dynamic(payload: Any) -> Any:
            text = arg_fn(payload)
            if type(text) is not str:
                raise MappingError(f"{name}: expected string, got {_real_type(text)}")
            fn = cache.get(text)
            if fn is None:
                if len(cache) > 1024:
                    cache.clear()
                fn = cache[text] = make(text)
            return fn(payload)

        return _Node(run_dynamic, True, pdirty)

    return compiler


def _c_literal(value: Any, pdirty: bool, final: bool) -> _Node:
    return _compile(value, pdirty, final)


def _c_flatten(opts: Any, pdirty: bool, final: bool) -> _Node:
    if not _is_object(opts):
        return _raiser('@flatten requires an object with a "separator" key')
    if not _truthy(_opt(opts, "separator")):
        return _raiser('@flatten requires a "separator" key')
    sep_fn = _compile(opts["separator"], pdirty, False).fn
    value_fn = _compile(_opt(opts, "value"), pdirty, False).fn
    omit = _truthy(_opt(opts, "omitArrays"))

    def run_flatten(payload: Any) -> Any:
        separator = sep_fn(payload)
        if type(separator) is not str:
            raise MappingError("@flatten requires a string separator")
        return _flatten(value_fn(payload), "", separator, omit)

    return _Node(run_flatten, False, True)


def _c_json(opts: Any, pdirty: bool, final: bool) -> _Node:
    if not _is_object(opts):
        return _raiser('@json requires an object with a "value" key')
    mode = _opt(opts, "mode")
    if not _truthy(mode):
        return _raiser('@json requires a "mode" key')
    raw = _opt(opts, "value")
    if not _truthy(raw):
        return _raiser('@json requires a "value" key')
    node = _compile(raw, pdirty, False)
    value_fn = node.fn
    if mode == "encode":
        return _Node(lambda payload: js_stringify(value_fn(payload)), True, False)
    if mode == "decode":
        def decode(payload: Any) -> Any:
            value = value_fn(payload)
            return _json_parse(value) if type(value) is str else value

        return _Node(decode, True, node.dirty)

    def nothing(payload: Any) -> Any:
        value_fn(payload)
        return _U

    return _Node(nothing, True, False)


def _c_merge(opts: Any, pdirty: bool, final: bool) -> _Node:
    if not _is_object(opts):
        return _raiser('@merge requires an object with an "objects" key and a "direction" key')
    if not _truthy(_opt(opts, "direction")):
        return _raiser('@merge requires a "direction" key')
    direction_fn = _compile(opts["direction"], pdirty, False).fn
    objects = _opt(opts, "objects")
    if not _truthy(objects) or type(objects) is not list:
        message = ('@merge requires a "objects" key' if not _truthy(objects)
                   else f"@merge: expected opts.array, got {_typeof(objects)}")

        def fail(payload: Any) -> Any:
            direction_fn(payload)
            raise MappingError(message)

        return _Node(fail, False, False)
    fns = tuple(_compile(o, pdirty, False).fn for o in objects)

    def run_merge(payload: Any) -> Any:
        left = direction_fn(payload) == "left"
        values = [f(payload) for f in fns]
        if left:
            values.reverse()
        out: dict[str, Any] = {}
        for v in values:
            _assign(out, v)
        return out

    return _Node(run_merge, False, True)


def _c_transform(opts: Any, pdirty: bool, final: bool) -> _Node:
    if not _is_object(opts):
        return _raiser('@transform requires an object with an "apply" key and a "mapping" key')
    if not _truthy(_opt(opts, "mapping")):
        return _raiser('@transform requires a "mapping" key')
    apply = _opt(opts, "apply")
    if not _truthy(apply):
        return _raiser('@transform requires a "apply" key')
    if not _is_object(apply):
        return _raiser('@transform "apply" key should be an object')
    inner = CompiledMapping(apply)
    node = _compile(opts["mapping"], False, final)
    mapping_fn = node.fn

    def run_transform(payload: Any) -> Any:
        return mapping_fn(inner.raw(payload))

    return _Node(run_transform, node.undef, node.dirty)


def _c_exclude(value: Any, pdirty: bool, final: bool) -> _Node:
    value_fn = _compile(value, pdirty, False).fn

    def run_exclude(payload: Any) -> Any:
        resolved = value_fn(payload)
        if resolved is None:
            return _U
        return _clean_nulls(resolved)

    return _Node(run_exclude, True, True)


_COMPILERS: dict[str, Callable[[Any, bool, bool], _Node]] = {
    "@if": _c_if,
    "@case": _c_case,
    "@replace": _c_replace,
    "@arrayPath": _c_array_path,
    "@path": _c_string_directive("@path", lambda path: _compile_get(path.replace("$.", "", 1))),
    "@template": _c_string_directive("@template", _compile_template),
    "@literal": _c_literal,
    "@flatten": _c_flatten,
    "@json": _c_json,
    "@merge": _c_merge,
    "@transform": _c_transform,
    "@excludeWhenNull": _c_exclude,
}


def _spread(mapping: Any) -> dict[str, Any]:
    """``{...mapping}``."""
    t = type(mapping)
    if isinstance(mapping, dict):
        return dict(mapping)
    if t is list or t is tuple:
        return {str(i): v for i, v in enumerate(mapping)}
    if t is str:
        return {str(i): u for i, u in enumerate(_utf16_units(mapping))}
    return {}


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [k for k, _ in _js_items(value)]
    if type(value) in (list, tuple):
        return [str(i) for i in range(len(value))]
    if type(value) is str:
        return [str(i) for i in range(_utf16_len(value))]
    return []


def _mapping_to_process(mapping: Any) -> Any:
    """``getMappingToProcess``: the spread mapping, or the root directive holding the rest."""
    if mapping is None:
        raise MappingError("Cannot convert undefined or null to object")
    spread = _spread(mapping)
    if not (isinstance(mapping, dict) and _ROOT_KEY in mapping):
        return spread
    customer = {k: v for k, v in mapping.items() if k != _ROOT_KEY}
    root = mapping[_ROOT_KEY]
    if root is None:
        raise MappingError("Cannot convert undefined or null to object")
    keys = _keys(root)
    if len(keys) > 1:
        raise MappingError("The root mapping must only have a single directive object")
    directive = _member(root, keys[0]) if keys else _U
    if not isinstance(directive, (dict, list)):
        raise MappingError("The root directive must be an object")
    if isinstance(directive, dict):
        directive = {**directive, "mapping": customer}
    if isinstance(root, dict):
        return {keys[0]: directive}
    if type(root) is list:
        return [directive]
    return root


class CompiledMapping:
    """A mapping compiled once into closures; calling it is ``transform(mapping, payload)``.

    Example:
        >>> m = CompiledMapping({"event": {"@template": "{{kind}} done"}})
        >>> m({"kind": "push"})
        {'event': 'push done'}
    """

    __slots__ = ("_error", "_fn", "mapping")

    def __init__(self, mapping: Any):
        self.mapping = mapping
        self._error: MappingError | None = None
        self._fn: Fn = lambda payload: _U
        try:
            process = _mapping_to_process(mapping)
            problems = validate(process)
            if problems:
                raise MappingError(problems[0] if len(problems) == 1 else
                                   f"{len(problems)} problems: " + "; ".join(problems), problems)
            self._fn = _compile(process, False, True).fn
        except MappingError as exc:
            self._error = exc

    def raw(self, payload: Any) -> Any:
        """The result, ``UNDEFINED`` when the mapping is a directive giving nothing."""
        if not isinstance(payload, dict):
            raise MappingError(f"data must be an object, got {_real_type(payload)}")
        if self._error is not None:
            raise self._error
        return self._fn(payload)

    def __call__(self, payload: Any) -> Any:
        value = self.raw(payload)
        return None if value is _U else value


def compile_mapping(mapping: Any) -> CompiledMapping:
    """Compile a mapping once; the result is called with each payload.

    Invalid mappings are reported when called (as ``transform`` does); check
    :func:`validate` first to see them before any run.

    Example:
        >>> compile_mapping({"id": {"@path": "$.a"}})({"a": 1})
        {'id': 1}
    """
    return CompiledMapping(mapping)


_CACHE: dict[int, tuple[Any, Any, CompiledMapping]] = {}


def transform(mapping: Any, payload: Any = None) -> Any:
    """Resolve a Mapping Kit mapping against a payload, as ``transform`` of actions-core.

    The mapping is compiled on first use and kept (while it is unchanged) for the next calls;
    :func:`compile_mapping` does the same explicitly.

    Args:
        mapping: the mapping (JSON value; directives are objects with one ``@`` key).
        payload: the data, a JSON object (``{}`` when omitted).

    Returns:
        The resolved value; ``None`` when the mapping is a directive that gives undefined.

    Raises:
        MappingError: the mapping is invalid (the message names the place), the payload is
            not an object, or a directive failed at run time.

    Example:
        >>> transform({"ref": {"@path": "$.body.ref"}, "x": {"@path": "$.nope"}},
        ...           {"body": {"ref": "main"}})
        {'ref': 'main'}
    """
    data = {} if payload is None else payload
    entry = _CACHE.get(id(mapping))
    if entry is not None and entry[0] is mapping and entry[1] == mapping:
        return entry[2](data)
    compiled = CompiledMapping(mapping)
    if isinstance(mapping, (dict, list)):
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[id(mapping)] = (mapping, copy.deepcopy(mapping), compiled)
    return compiled(data)


# ---------------------------------------------------------------- validate.js

class _VErr(Exception):
    def __init__(self, message: str, stack: list[str]):
        super().__init__(f"/{'/'.join(stack)} {message}.")


class _Agg(Exception):
    errors: list[Exception]

    def __init__(self, errors: list[Exception]):
        flat: list[Exception] = []
        for e in errors:
            flat.extend(e.errors if isinstance(e, _Agg) else [e])
        super().__init__("; ".join(str(e) for e in flat))
        self.errors = flat


def _article(kind: str) -> str:
    return "an" if kind[:1] in "aeiou" else "a"


def _type_or_directive(value: Any) -> str:
    kind = _real_type(value)
    if kind == "object" and any(k.startswith("@") for k in value):
        return "directive"
    return kind


def _v_directive(obj: Any, stack: list[str]) -> None:
    if not _is_directive(obj) and not _is_object(obj):
        kind = _real_type(obj)
        raise _VErr(f"should be a directive object but it is {_article(kind)} {kind}", stack)
    keys = list(obj)
    directive_keys = [k for k in keys if k.startswith("@")]
    if len(directive_keys) > 1:
        raise _VErr(f"should only have one @-prefixed key but it has {len(directive_keys)} keys", stack)
    if any(not k.startswith("@") and k != "_metadata" for k in keys):
        raise _VErr(f"should only have one @-prefixed key but it has {len(keys)} keys", stack)
    name = directive_keys[0]
    fn = _VALIDATORS.get(name)
    if fn is None:
        raise _VErr(f"has an invalid directive: {name}", stack)
    try:
        fn(obj[name], [*stack, name])
    except (_VErr, _Agg):
        raise
    except Exception as exc:  # pragma: no cover - validators raise only the two above
        raise _VErr(str(exc), stack) from None


def _v_raw(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind == "directive":
        _v_directive(value, stack)
    elif kind not in ("object", "array", "boolean", "string", "number", "null"):
        raise _VErr(f"should be a mapping directive or a JSON value but it is {_article(kind)} {kind}", stack)


def _v_dir_or_string(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind == "directive":
        _v_directive(value, stack)
    elif kind != "string":
        raise _VErr(f"should be a string or a mapping directive but it is {_article(kind)} {kind}", stack)


def _v_dir_or_object(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind == "directive":
        _v_directive(value, stack)
    elif kind == "object":
        _v_object(value, stack)
    else:
        raise _VErr(f"should be a object or a mapping directive but it is {_article(kind)} {kind}", stack)


def _v_string(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind != "string":
        raise _VErr(f"should be a string but it is {_article(kind)} {kind}", stack)


def _v_length(low: int, high: int) -> Callable[[Any, list[str]], None]:
    def check(value: Any, stack: list[str]) -> None:
        if type(value) is str and _utf16_len(value) < low:
            raise _VErr(f"should be a string of length {low} or greater", stack)
        if type(value) is str and _utf16_len(value) > high:
            raise _VErr(f"should be a string of length {high} or less", stack)

    return check


def _v_allowed(*allowed: str) -> Callable[[Any, list[str]], None]:
    def check(value: Any, stack: list[str]) -> None:
        _v_string(value, stack)
        if value.lower() not in allowed:
            raise _VErr(f"should be one of {', '.join(allowed)} but it is {_stringify(value)}", stack)

    return check


def _v_boolean(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind != "boolean":
        raise _VErr(f"should be a boolean but it is {_article(kind)} {kind}", stack)


def _v_object(value: Any, stack: list[str]) -> None:
    kind = _type_or_directive(value)
    if kind != "object":
        raise _VErr(f"should be an object but it is {_article(kind)} {kind}", stack)
    keys = [k for k, _ in _js_items(value)]
    directive_key = next((k for k in keys if k[:1] == "@"), None)
    if directive_key is not None:
        raise _VErr(f"shouldn't have directive (@-prefixed) keys but it has {_stringify(directive_key)}", stack)
    errors: list[Exception] = []
    for k in keys:
        try:
            _validate(value[k], [*stack, k])
        except (_VErr, _Agg) as exc:
            errors.append(exc)
    if errors:
        raise _Agg(errors)


Check = Callable[[Any, list[str]], None]


def _v_fields(value: Any, fields: dict[str, tuple[str, Check]], stack: list[str]) -> None:
    _v_object(value, stack)
    errors: list[Exception] = []
    for prop, (how, check) in fields.items():
        try:
            present = prop in value
            if how == "required" and not present:
                raise _VErr(f"should have field {_stringify(prop)} but it doesn't", stack)
            if present:
                check(value[prop], [*stack, prop])
        except (_VErr, _Agg) as exc:
            errors.append(exc)
    if errors:
        raise _Agg(errors)


def _v_array(value: Any, stack: list[str]) -> None:
    kind = _real_type(value)
    if kind != "array":
        raise _VErr(f"should be an array but it is {_article(kind)} {kind}", stack)


def _chain(*checks: Check) -> Check:
    def check(value: Any, stack: list[str]) -> None:
        for c in checks:
            c(value, stack)

    return check


def _v_array_path(value: Any, stack: list[str]) -> None:
    _v_array(value, stack)
    _v_dir_or_string(value[0] if value else _U, stack)
    _validate(value[1] if len(value) > 1 else _U, stack)


def _v_merge(value: Any, stack: list[str]) -> None:
    _v_fields(value, {"direction": ("optional", _v_allowed("left", "right")),
                      "objects": ("required", _v_array)}, stack)
    for obj in value["objects"]:
        _v_dir_or_object(obj, [])


_VALIDATORS: dict[str, Check] = {
    "@if": lambda v, s: _v_fields(v, {"exists": ("optional", _v_raw), "then": ("optional", _v_raw),
                                      "else": ("optional", _v_raw)}, s),
    "@case": lambda v, s: _v_fields(v, {"operator": ("optional", _v_string),
                                        "value": ("optional", _v_dir_or_string)}, s),
    "@replace": lambda v, s: _v_fields(v, {
        "pattern": ("required", _chain(_v_string, _v_length(1, MAX_PATTERN_LENGTH))),
        "replacement": ("optional", _chain(_v_string, _v_length(0, MAX_REPLACEMENT_LENGTH))),
        "value": ("required", _v_dir_or_string),
        "ignorecase": ("optional", _v_boolean),
        "global": ("optional", _v_boolean)}, s),
    "@arrayPath": _v_array_path,
    "@path": _v_dir_or_string,
    "@json": lambda v, s: _v_fields(v, {"value": ("required", _v_raw),
                                        "mode": ("required", _v_allowed("encode", "decode"))}, s),
    "@flatten": lambda v, s: _v_fields(v, {"separator": ("optional", _v_string),
                                           "value": ("required", _v_raw)}, s),
    "@merge": _v_merge,
    "@template": _v_dir_or_string,
    "@literal": _v_raw,
    "@transform": lambda v, s: _v_fields(v, {"apply": ("required", _v_dir_or_object),
                                             "mapping": ("required", _v_dir_or_object)}, s),
    "@excludeWhenNull": _v_raw,
}


def _validate(mapping: Any, stack: list[str]) -> None:
    kind = _type_or_directive(mapping)
    if kind == "directive":
        _v_directive(mapping, stack)
    elif kind == "object":
        _v_object(mapping, stack)
    elif kind == "array":
        _v_array(mapping, stack)


def _strict(mapping: Any, stack: list[str], problems: list[str]) -> None:
    """Directives inside arrays, which actions-core checks only when it runs them."""
    if type(mapping) is list:
        for i, item in enumerate(mapping):
            where = [*stack, str(i)]
            if isinstance(item, dict):
                try:
                    _validate(item, where)
                except (_VErr, _Agg) as exc:
                    problems.extend(str(e) for e in (exc.errors if isinstance(exc, _Agg) else [exc]))
            _strict(item, where, problems)
    elif isinstance(mapping, dict):
        for k, v in mapping.items():
            _strict(v, [*stack, k], problems)


def validate(mapping: Any, *, strict: bool = False) -> list[str]:
    """The problems of a mapping, as actions-core's ``validate`` reports them (empty: valid).

    Each problem names where it stands as a path of keys and directives, for example
    ``/properties/ref/@path should be a string or a mapping directive but it is a number.``

    Args:
        mapping: the mapping to check.
        strict: also check directives inside arrays (actions-core checks those only
            when it runs them); mapping function files are loaded with this on.

    Example:
        >>> validate({"ref": {"@path": 3}})
        ['/ref/@path should be a string or a mapping directive but it is a number.']
        >>> validate({"x": {"@nope": 1}})
        ['/x has an invalid directive: @nope.']
    """
    problems: list[str] = []
    try:
        _validate(mapping, [])
    except _Agg as exc:
        problems.extend(str(e) for e in exc.errors)
    except _VErr as exc:
        problems.append(str(exc))
    if strict:
        _strict(mapping, [], problems)
    return problems
