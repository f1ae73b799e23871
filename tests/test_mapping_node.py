"""Differential tests: segfn_kit.mapping against the real Mapping Kit of @segment/actions-core.

Every case (a mapping and a payload) runs through the pinned package's ``transform`` in one Node
process and through the Python interpreter; results are compared as JSON, errors as errors
(validation errors message by message).
"""

from __future__ import annotations

import json
import math
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from segfn_kit.mapping import MappingError, transform, validate
from segfn_kit.runtime._mapping import _mapping_to_process

from ._node import NODE_DIR, actions_core, node

P: dict[str, Any] = {
    "a": 1, "zero": 0, "f": 1.5, "one": 1.0, "big": 1e21, "small": 1e-7, "tiny": 5e-324,
    "huge": 1.7976931348623157e308, "negzero": -0.0, "t": True, "fa": False, "n": None, "e": "",
    "s": "Hello World", "u": "héllo 😀 ß İ Σας", "arr": [1, "two", None, {"x": 1}, [3, [4]]],
    "emptyArr": [], "single": [""], "zeros": [0], "obj": {"b": {"c": "deep"}, "n": None, "z": 0,
    "list": [{"id": 1, "name": "A"}, {"id": 2, "name": None}, {"id": 3}]},
    "emptyObj": {}, "nested": {"b": "bee", "1": "one", "0": "zero", "10": "ten", "01": "oh-one"},
    "spaces": " a b.c ", "dot.key": "dk", "json": '{"k": [1, 2.50, "x"], "u": "\\u00e9"}',
    "badjson": "{nope", "nanjson": "NaN", "tmpl": "{{s}}", "upper": "MiXeD Case", "num": "42",
    "dollar": "a$b$c", "quote": "it's \"q\"", "ctrl": "tab\there\nnew\u0001\u001f\u007f\u2028",
    "astral": "\U0001d49c\U0001d49d", "sigma": "ΟΔΟΣ", "kelvin": "\u212a", "long_s": "\u017f",
    "deep": {"a": {"b": {"c": {"d": [1, {"e": "end"}]}}}},
    "collide": {"a.b": 1, "a": {"b": 2}}, "str_list": ["a", "b"],
}

# hand-written edge cases, directive by directive: (mapping, payload or None for P)
HAND: list[tuple[Any, Any]] = []


def case(mapping: Any, payload: Any = None) -> None:
    HAND.append((mapping, P if payload is None else payload))


PATHS = [
    "$.a", "$.s", "a", "$.obj.b.c", "obj.b.c", "$.obj.list[0].name", "$.obj.list.1.id",
    "$.obj.list[1].name", "$.obj.list[5].id", "$.arr[3].x", "$.arr.length", "$.s.length",
    "$.u.length", "$.u[7]", "$.u[8]", "$.astral[0]", "$.astral.1", "$.s[0]", "$.zero.x",
    "$.e.x", "$.fa.x", "$.n.x", "$.t.x", "$.a.x", "$.missing", "$.missing.deep", "",
    "$.", ".", "$", "$.dot.key", "$['dot.key']", '$["obj"]["b"]', "$.obj['b'].c", "$.nested.1",
    "$.nested.01", "$.nested[0]", "$.arr.-1", "$.arr.01", "$.arr.1.0", "$.emptyArr.length",
    "$.deep.a.b.c.d[1].e", "$.deep..a", "x.$.a", "$.$.a", "$.arr[0]]", "$.obj.b.c.length",
    "$.f.toFixed", "$.str_list.0.length", "$.num.0", "a.b.c.d.e.f",
]
for _p in PATHS:
    case({"v": {"@path": _p}})
case({"@path": "$.obj"})
case({"@path": "$.missing"})
case({"@path": "$.s"})
case({"v": {"@path": {"@path": "$.tmpl"}}}, {"tmpl": "a.b", "a": {"b": 7}})
case({"v": {"@path": {"@path": "$.a"}}})
case({"v": {"@path": {"@path": "$.missing"}}})
case({"v": {"@path": 3}})
case({"v": {"@path": None}})
case({"v": {"@path": ["$.a"]}})

TEMPLATES = [
    "{{s}}", "{{ s }}", "hi {{s}}!", "{{missing}}", "{{n}}", "{{zero}}", "{{fa}}", "{{t}}",
    "{{f}}", "{{one}}", "{{big}}", "{{small}}", "{{tiny}}", "{{huge}}", "{{negzero}}", "{{arr}}",
    "{{obj}}", "{{emptyArr}}", "{{single}}", "{{{s}}}", "{{{tmpl}}}", "{{tmpl}}", "{{{ s }}}",
    "{{s}}{{a}}{{e}}", "{{}}", "{{ }}", "{{.}}", "{{obj.list[0].name}}", "{{obj.list.1.name}}",
    "{{u}} {{u.length}}", "{{{{s}}}}", "{s}", "{{s}", "plain", "", "{{a}}{{{a}}}{{{{a}}}}",
    "{{\u00a0s\u3000}}", "{{\ufeffs}}", "{{\u001fs}}", "{{\ns\n}}", "{{nested}}", "{{dollar}}",
    "{{ctrl}}", "{{astral}}", "$& {{s}} $1", "{{deep.a.b.c.d}}", "{{zeros}}",
]
for _t in TEMPLATES:
    case({"v": {"@template": _t}})
case({"v": {"@template": {"@path": "$.tmpl"}}})
case({"v": {"@template": {"@path": "$.a"}}})
case({"v": {"@template": 5}})
case({"@template": "{{s}}"})

LITERALS = [1, 1.5, "x", None, True, [1, 2], {"a": 1}, {"@path": "$.s"}, [{"@path": "$.s"}],
            {"k": {"@path": "$.missing"}}, [], {}, ""]
for _l in LITERALS:
    case({"v": {"@literal": _l}})

IFS: list[Any] = [
    {"exists": {"@path": "$.s"}, "then": "yes", "else": "no"},
    {"exists": {"@path": "$.missing"}, "then": "yes", "else": "no"},
    {"exists": {"@path": "$.n"}, "then": "yes", "else": "no"},
    {"exists": {"@path": "$.zero"}, "then": "yes", "else": "no"},
    {"exists": {"@path": "$.e"}, "then": "yes", "else": "no"},
    {"exists": {"@path": "$.missing"}, "then": "yes", "else": ""},
    {"exists": {"@path": "$.missing"}, "then": "yes", "else": 0},
    {"exists": {"@path": "$.missing"}, "then": "yes", "else": {"@path": "$.s"}},
    {"exists": {"@path": "$.s"}, "else": "no"},
    {"exists": {"@path": "$.s"}, "then": None},
    {"exists": {"@path": "$.s"}, "then": {"@path": "$.missing"}},
    {"exists": 0, "then": "yes"},
    {"exists": "", "then": "yes"},
    {"exists": "lit", "then": "yes"},
    {"exists": None, "blank": "x", "then": "yes", "else": "no"},
    {"then": "yes"},
    {"blank": {"@path": "$.e"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.s"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.zero"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.fa"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.t"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.emptyArr"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.single"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.zeros"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.emptyObj"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.negzero"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.n"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.missing"}, "then": "yes", "else": "no"},
    {"blank": {"@path": "$.spaces"}, "then": "yes", "else": "no"},
    {"blank": 0, "then": "yes"},
    {"exists": {"@path": "$.s"}, "blank": {"@path": "$.e"}, "then": "yes", "else": "no"},
    {"exists": {"@path": "$.s"}, "then": {"@nope": 1}},
    {"exists": {"@path": "$.s"}, "then": [{"@nope": 1}]},
    {"exists": {"@path": "$.missing"}, "then": [{"@nope": 1}], "else": "fine"},
    {"exists": {"@path": "$.s"}, "extra": {"@bad": 1}},
    {"exists": {"@path": "$.s"}, "@then": 1},
    "notanobject",
    ["list"],
    None,
]
for _i in IFS:
    case({"v": {"@if": _i}})

CASES_CASE: list[Any] = [
    {"operator": "upper", "value": {"@path": "$.upper"}},
    {"operator": "lower", "value": {"@path": "$.upper"}},
    {"operator": "upper", "value": {"@path": "$.u"}},
    {"operator": "lower", "value": {"@path": "$.u"}},
    {"operator": "lower", "value": {"@path": "$.sigma"}},
    {"operator": "lower", "value": {"@path": "$.kelvin"}},
    {"operator": "upper", "value": {"@path": "$.long_s"}},
    {"operator": "upper", "value": {"@path": "$.a"}},
    {"operator": "upper", "value": {"@path": "$.missing"}},
    {"operator": "upper", "value": {"@path": "$.obj"}},
    {"operator": "upper", "value": "literal"},
    {"operator": "upper", "value": ""},
    {"operator": "title", "value": "x"},
    {"operator": "title", "value": {"@path": "$.a"}},
    {"operator": "Upper", "value": "x"},
    {"operator": 3, "value": "x"},
    {"operator": "", "value": "x"},
    {"value": "x"},
    {"operator": "upper"},
    {"operator": "upper", "value": 5},
    "str",
]
for _c in CASES_CASE:
    case({"v": {"@case": _c}})

REPLACES: list[Any] = [
    {"pattern": "o", "value": {"@path": "$.s"}},
    {"pattern": "o", "replacement": "0", "value": {"@path": "$.s"}},
    {"pattern": "o", "replacement": "0", "global": False, "value": {"@path": "$.s"}},
    {"pattern": "O", "replacement": "0", "ignorecase": True, "value": {"@path": "$.s"}},
    {"pattern": "O", "replacement": "0", "ignorecase": False, "value": {"@path": "$.s"}},
    {"pattern": ".", "replacement": "!", "value": {"@path": "$.spaces"}},
    {"pattern": " ", "replacement": "_", "value": {"@path": "$.spaces"}},
    {"pattern": "$", "replacement": "S", "value": {"@path": "$.dollar"}},
    {"pattern": "b", "replacement": "[$&]", "value": {"@path": "$.dollar"}},
    {"pattern": "b", "replacement": "$`", "value": {"@path": "$.dollar"}},
    {"pattern": "b", "replacement": "$'", "value": {"@path": "$.dollar"}},
    {"pattern": "b", "replacement": "$$", "value": {"@path": "$.dollar"}},
    {"pattern": "b", "replacement": "$1$<n>$", "value": {"@path": "$.dollar"}},
    {"pattern": "l", "replacement": "L", "pattern2": "o", "replacement2": "0", "value": {"@path": "$.s"}},
    {"pattern": "l", "replacement": "L", "pattern2": "o", "value": {"@path": "$.s"}},
    {"pattern": "l", "pattern2": 5, "value": {"@path": "$.s"}},
    {"pattern": "1", "replacement": "one", "value": {"@path": "$.a"}},
    {"pattern": "5", "replacement": "five", "value": {"@path": "$.f"}},
    {"pattern": "true", "replacement": "yes", "value": {"@path": "$.t"}},
    {"pattern": "e", "replacement": "3", "value": {"@path": "$.big"}},
    {"pattern": "x", "value": {"@path": "$.obj"}},
    {"pattern": "x", "value": {"@path": "$.missing"}},
    {"pattern": "x", "value": {"@path": "$.n"}},
    {"pattern": "ß", "replacement": "ss", "ignorecase": True, "value": {"@path": "$.u"}},
    {"pattern": "S", "replacement": "s", "ignorecase": True, "value": {"@path": "$.long_s"}},
    {"pattern": "k", "replacement": "K", "ignorecase": True, "value": {"@path": "$.kelvin"}},
    {"pattern": "\u03c3", "replacement": "s", "ignorecase": True, "value": {"@path": "$.sigma"}},
    {"pattern": "😀", "replacement": ":)", "value": {"@path": "$.u"}},
    {"pattern": "aa", "replacement": "b", "value": "aaaaa"},
    {"pattern": "0123456789A", "value": "x"},
    {"pattern": "a", "replacement": "0123456789A", "value": "a"},
    {"pattern": "", "value": "a"},
    {"pattern": 5, "value": "a"},
    {"pattern": "a", "global": "yes", "value": "a"},
    {"pattern": "a", "ignorecase": 1, "value": "a"},
    {"pattern": "a"},
    {"value": "a"},
    {"pattern": "a", "value": ""},
    {"pattern": "a", "value": 5},
    {"pattern": "a", "value": "banana", "replacement": None},
    {"pattern": "😀😀😀😀😀😀", "value": "x"},
    "str",
]
for _r in REPLACES:
    case({"v": {"@replace": _r}})

ARRAY_PATHS: list[Any] = [
    ["$.obj.list", {"id": {"@path": "$.id"}, "label": {"@path": "$.name"}}],
    ["$.obj.list", {"id": {"@path": "$.id"}, "n": {"@template": "#{{id}} {{name}}"}}],
    ["$.obj.list"],
    ["$.obj.list", {}],
    ["$.obj.list", "notobject"],
    ["$.obj.b", {"c": {"@path": "$.c"}}],
    ["$.s", {"c": {"@path": "$.length"}}],
    ["$.missing", {"c": {"@path": "$.c"}}],
    ["$.arr", {"x": {"@path": "$.x"}, "len": {"@path": "$.length"}}],
    ["$.arr", {"@path": "$.x"}],
    ["$.emptyArr", {"x": {"@path": "$.x"}}],
    [{"@path": "$.obj.list"}, {"id": {"@path": "$.id"}}],
    [{"@literal": [1, 2]}, {"v": {"@path": "$."}}],
    [{"@path": "$.missing"}, {"id": {"@path": "$.id"}}],
    ["obj.list", {"inner": {"@arrayPath": ["$.name", {"x": 1}]}}],
    [5, {"x": 1}],
    [],
    ["$.obj.list", {"id": {"@path": "$.id"}}, "extra"],
    "notarray",
    {"a": 1},
]
for _a in ARRAY_PATHS:
    case({"v": {"@arrayPath": _a}})

FLATTENS: list[Any] = [
    {"value": {"@path": "$.obj"}, "separator": "."},
    {"value": {"@path": "$.obj"}, "separator": "_"},
    {"value": {"@path": "$.obj"}, "separator": "."},
    {"value": {"@path": "$.obj"}, "separator": ".", "omitArrays": True},
    {"value": {"@path": "$.obj"}, "separator": ".", "omitArrays": "yes"},
    {"value": {"@path": "$.obj"}, "separator": ".", "omitArrays": 0},
    {"value": {"@path": "$.collide"}, "separator": "."},
    {"value": {"@path": "$.nested"}, "separator": "."},
    {"value": {"@path": "$.arr"}, "separator": "/"},
    {"value": {"@path": "$.s"}, "separator": "."},
    {"value": {"@path": "$.missing"}, "separator": "."},
    {"value": {"@path": "$.emptyObj"}, "separator": "."},
    {"value": {"k": {"@path": "$.missing"}, "j": {"x": {"@path": "$.a"}}}, "separator": "."},
    {"value": {"": {"a": 1}, "b": {"": 2}}, "separator": "."},
    {"value": {"@path": "$.deep"}, "separator": "->"},
    {"value": {"@path": "$.obj"}, "separator": ""},
    {"value": {"@path": "$.obj"}},
    {"value": {"@path": "$.obj"}, "separator": 1},
    {"value": {"@path": "$.obj"}, "separator": {"@path": "$.s"}},
    {"separator": "."},
    "str",
]
for _f in FLATTENS:
    case({"v": {"@flatten": _f}})

JSONS: list[Any] = [
    {"value": {"@path": "$.obj"}, "mode": "encode"},
    {"value": {"@path": "$.arr"}, "mode": "encode"},
    {"value": {"@path": "$.nested"}, "mode": "encode"},
    {"value": {"@path": "$.ctrl"}, "mode": "encode"},
    {"value": {"@path": "$.u"}, "mode": "encode"},
    {"value": {"@path": "$.astral"}, "mode": "encode"},
    {"value": {"@path": "$.quote"}, "mode": "encode"},
    {"value": {"@path": "$.big"}, "mode": "encode"},
    {"value": {"@path": "$.small"}, "mode": "encode"},
    {"value": {"@path": "$.one"}, "mode": "encode"},
    {"value": {"@path": "$.negzero"}, "mode": "encode"},
    {"value": {"@path": "$.missing"}, "mode": "encode"},
    {"value": {"@path": "$.n"}, "mode": "encode"},
    {"value": {"@path": "$.astral.0"}, "mode": "encode"},
    {"value": {"k": {"@path": "$.missing"}, "l": [{"@path": "$.missing"}]}, "mode": "encode"},
    {"value": {"@path": "$.json"}, "mode": "decode"},
    {"value": {"@path": "$.badjson"}, "mode": "decode"},
    {"value": {"@path": "$.nanjson"}, "mode": "decode"},
    {"value": {"@path": "$.num"}, "mode": "decode"},
    {"value": {"@path": "$.e"}, "mode": "decode"},
    {"value": {"@path": "$.obj"}, "mode": "decode"},
    {"value": {"@path": "$.missing"}, "mode": "decode"},
    {"value": "[1, 2, {\"a\": null}]", "mode": "decode"},
    {"value": " 1e400 ", "mode": "decode"},
    {"value": "{\"a\": 1, \"a\": 2}", "mode": "decode"},
    {"value": "x", "mode": "ENCODE"},
    {"value": "x", "mode": "other"},
    {"value": "", "mode": "encode"},
    {"value": 0, "mode": "encode"},
    {"value": 5, "mode": "encode"},
    {"mode": "encode"},
    {"value": "x"},
    "str",
]
for _j in JSONS:
    case({"v": {"@json": _j}})

MERGES: list[Any] = [
    {"objects": [{"a": 1, "b": 1}, {"b": 2, "c": 2}], "direction": "right"},
    {"objects": [{"a": 1, "b": 1}, {"b": 2, "c": 2}], "direction": "left"},
    {"objects": [{"a": 1, "b": 1}, {"b": 2, "c": 2}], "direction": "Left"},
    {"objects": [{"@path": "$.obj"}, {"b": "over"}], "direction": "right"},
    {"objects": [{"@path": "$.obj"}, {"b": {"@path": "$.missing"}}], "direction": "right"},
    {"objects": [{"@path": "$.obj"}, {"@excludeWhenNull": {"b": None, "z": 9}}], "direction": "right"},
    {"objects": [{"@path": "$.arr"}, {"@path": "$.s"}], "direction": "right"},
    {"objects": [{"@path": "$.astral"}], "direction": "right"},
    {"objects": [{"@path": "$.missing"}, {"@path": "$.n"}, {"@path": "$.a"}], "direction": "right"},
    {"objects": [{"@path": "$.nested"}, {"5": "five", "b": "B"}], "direction": "left"},
    {"objects": [], "direction": "right"},
    {"objects": [{"a": 1}]},
    {"objects": [1, 2], "direction": "right"},
    {"objects": "x", "direction": "right"},
    {"direction": "right"},
    {"objects": [{"a": 1}], "direction": "up"},
    "str",
]
for _m in MERGES:
    case({"v": {"@merge": _m}})

TRANSFORMS: list[Any] = [
    {"apply": {"name": {"@path": "$.s"}}, "mapping": {"out": {"@path": "$.name"}}},
    {"apply": {"name": {"@path": "$.missing"}}, "mapping": {"out": {"@path": "$.name"}, "all": {"@path": "$."}}},
    {"apply": {"x": {"@path": "$.obj"}}, "mapping": {"@path": "$.x.b.c"}},
    {"apply": {"x": {"@path": "$.obj"}}, "mapping": {"@flatten": {"value": {"@path": "$.x"}, "separator": "."}}},
    {"apply": {"@path": "$.obj"}, "mapping": {"o": {"@path": "$.b"}}},
    {"apply": {"@path": "$.s"}, "mapping": {"o": {"@path": "$.b"}}},
    {"apply": {"a": 1}},
    {"mapping": {"a": 1}},
    {"apply": "x", "mapping": {"a": 1}},
    {"apply": {"a": {"@bad": 1}}, "mapping": {"a": 1}},
    "str",
]
for _tr in TRANSFORMS:
    case({"v": {"@transform": _tr}})

EXCLUDES: list[Any] = [
    {"@path": "$.obj"}, {"@path": "$.n"}, {"@path": "$.missing"}, {"@path": "$.arr"},
    {"a": None, "b": {"c": None, "d": [None]}, "e": 1}, None, 0, "", [None],
    {"x": {"@path": "$.n"}, "y": {"@path": "$.a"}},
]
for _e in EXCLUDES:
    case({"v": {"@excludeWhenNull": _e}})

# the mapping itself, validation and odd shapes
STRUCTURE: list[Any] = [
    {"@path": "$.a", "_metadata": {"x": 1}},
    {"v": {"@path": "$.a", "_metadata": {}}},
    {"v": {"@path": "$.a", "other": 1}},
    {"v": {"@path": "$.a", "@template": "x"}},
    {"v": {"@unknown": 1}},
    {"v": {"@": 1}},
    {"v": [{"@path": "$.a", "other": 1}]},
    {"v": [{"@unknown": 1}]},
    {"v": [[{"@path": "$.s"}]]},
    {"v": {"w": [{"@path": "$.missing"}, 1]}},
    {"a": {"@path": 1}, "b": {"@template": 2}, "c": {"@if": 3}},
    {"a": {"@replace": {"pattern": 1, "value": 2, "ignorecase": "no"}}},
    {"a": {"@merge": {"objects": [1, {"@path": 2}]}}},
    {"a": {"@arrayPath": [1, {"@bad": 1}]}},
    {"a": {"@if": {"exists": {"@path": "$.a"}, "then": {"@template": {"@path": 1}}}}},
    [{"@path": "$.a"}, "b"],
    "ab",
    "😀",
    5,
    True,
    [],
    {},
    None,
    {"__segment_internal_directive": {"@transform": {"apply": {"z": {"@path": "$.s"}}}},
     "out": {"@path": "$.z"}},
    {"__segment_internal_directive": {"@path": "$.a"}, "x": 1},
    {"__segment_internal_directive": {}, "x": 1},
    {"__segment_internal_directive": {"a": 1, "b": 2}},
    {"__segment_internal_directive": "s"},
    {"__segment_internal_directive": None},
    {"__segment_internal_directive": [{"@path": "$.a"}], "x": 1},
    {"v": {"@path": "$.a"}, "nested": {"deep": {"@template": "{{s}}"}, "lit": [1, {"k": "v"}]}},
    {"10": {"@path": "$.a"}, "2": {"@path": "$.s"}, "b": 1, "1": 0},
]
for _s in STRUCTURE:
    case(_s)

PAYLOADS_ODD: list[Any] = [[1], "s", 5, None, {"a": {"b": [1]}}]
for _po in PAYLOADS_ODD:
    case({"v": {"@path": "$.a"}}, _po)


# generated combinations: random trees of directives over the sample payload
def _generated(count: int, seed: int = 13) -> list[tuple[Any, Any]]:
    rnd = random.Random(seed)
    paths = PATHS[:30]

    def value(depth: int) -> Any:
        if depth <= 0 or rnd.random() < 0.3:
            return rnd.choice([{"@path": rnd.choice(paths)}, {"@template": rnd.choice(TEMPLATES)},
                               rnd.choice(LITERALS[:6]), {"@path": rnd.choice(paths)}])
        kind = rnd.choice(["if", "case", "replace", "arrayPath", "template", "literal", "flatten",
                           "json", "merge", "transform", "exclude", "object", "array", "path"])
        d = depth - 1
        if kind == "if":
            opts: dict[str, Any] = {rnd.choice(["exists", "blank"]): value(d), "then": value(d)}
            if rnd.random() < 0.7:
                opts["else"] = value(d)
            return {"@if": opts}
        if kind == "case":
            return {"@case": {"operator": rnd.choice(["lower", "upper"]), "value": value(d)}}
        if kind == "replace":
            return {"@replace": {"pattern": rnd.choice(["o", "l", "1", ".", "e", "A"]),
                                 "replacement": rnd.choice(["", "0", "$&$&"]),
                                 "ignorecase": rnd.random() < 0.5, "global": rnd.random() < 0.5,
                                 "value": value(d)}}
        if kind == "arrayPath":
            return {"@arrayPath": [rnd.choice(["$.obj.list", "$.arr", "$.obj", "$.s"]),
                                   {"k": value(d), "id": {"@path": "$.id"}}]}
        if kind == "template":
            return {"@template": rnd.choice(TEMPLATES)}
        if kind == "literal":
            return {"@literal": value(d)}
        if kind == "flatten":
            return {"@flatten": {"value": value(d), "separator": rnd.choice([".", "_"])}}
        if kind == "json":
            return {"@json": {"value": value(d), "mode": rnd.choice(["encode", "decode"])}}
        if kind == "merge":
            return {"@merge": {"objects": [{"k": value(d)}, rnd.choice([{"@path": "$.obj"}, {"k": value(d)}])],
                               "direction": rnd.choice(["left", "right"])}}
        if kind == "transform":
            return {"@transform": {"apply": {"x": value(d)}, "mapping": {"y": {"@path": "$.x"}}}}
        if kind == "exclude":
            return {"@excludeWhenNull": value(d)}
        if kind == "array":
            return [value(d), value(d)]
        if kind == "path":
            return {"@path": rnd.choice(paths)}
        return {"a": value(d), "b": value(d)}

    return [({"out": value(4), "other": value(2)}, P) for _ in range(count)]


def _corpus_cases(corpora: Path) -> list[tuple[Any, Any]]:
    """Real payloads: leaf paths, templates, flatten and JSON encoding of every body."""
    cases: list[tuple[Any, Any]] = []
    for file in sorted(corpora.rglob("*.json")):
        if file.name == "index.json":
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(data, dict) or _has_big_int(data):
            continue
        leaves = list(_leaf_paths(data))[:12]
        mapping: dict[str, Any] = {f"f{i}": {"@path": "$." + p} for i, p in enumerate(leaves)}
        mapping["tmpl"] = {"@template": " / ".join("{{" + p + "}}" for p in leaves[:5])}
        mapping["flat"] = {"@flatten": {"value": {"@path": "$."}, "separator": "."}}
        mapping["enc"] = {"@json": {"value": {"@path": "$."}, "mode": "encode"}}
        mapping["ifs"] = {"@if": {"blank": {"@path": "$." + (leaves[0] if leaves else "x")},
                                  "then": {"@case": {"operator": "upper",
                                                     "value": {"@template": "{{" + (leaves[0] if leaves else "x") + "}}"}}},
                                  "else": "blank"}}
        cases.append((mapping, data))
    return cases


def _leaf_paths(value: Any, prefix: str = "") -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            if k and all(c.isalnum() or c in "_-" for c in k):
                yield from _leaf_paths(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list):
        for i, v in enumerate(value[:2]):
            yield from _leaf_paths(v, f"{prefix}[{i}]")
    elif prefix:
        yield prefix


def _has_big_int(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_big_int(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_big_int(v) for v in value)
    return type(value) is int and abs(value) > 2**53


def _same(a: Any, b: Any) -> bool:
    """JSON equality with JavaScript numbers: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(b, float) and not math.isfinite(b):
        return a is None  # JSON.stringify writes Infinity and NaN as null
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _python(mapping: Any, payload: Any) -> dict[str, Any]:
    try:
        process = _mapping_to_process(mapping)
    except MappingError as exc:
        return {"error": str(exc), "problems": None}
    problems = validate(process)
    try:
        value = transform(mapping, payload)
    except MappingError as exc:
        return {"error": str(exc), "problems": problems or None}
    from segfn_kit.runtime._mapping import CompiledMapping

    raw = CompiledMapping(mapping).raw(payload)
    if raw is not None and value is None:
        return {"undefined": True}
    return {"value": value}


def _all_cases(corpora: Path | None) -> list[tuple[Any, Any]]:
    cases = list(HAND) + _generated(400)
    if corpora is not None:
        cases += _corpus_cases(corpora)
    return cases


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, Any, Any, Any]]:
    from .conftest import CORPORA

    modules = actions_core()
    cases = _all_cases(CORPORA if CORPORA.is_dir() else None)
    file = tmp_path_factory.mktemp("mapping") / "cases.json"
    file.write_text(json.dumps([{"mapping": m, "payload": p} for m, p in cases]), encoding="utf-8")
    done = subprocess.run([node(), str(NODE_DIR / "mapping_runner.js"), str(modules), str(file)],
                          capture_output=True, timeout=300, check=True)
    js = json.loads(done.stdout)
    assert len(js) == len(cases)
    kit = subprocess.run([node(), str(NODE_DIR / "mapping_runner.js"), str(modules), str(file), str(KIT)],
                         capture_output=True, timeout=300, check=True)
    exported = json.loads(kit.stdout)
    return [(m, p, j, (_python(m, p), e)) for (m, p), j, e in zip(cases, js, exported, strict=True)]


KIT = Path(__file__).resolve().parents[1] / "segfn_kit" / "_export" / "templates" / "segment" / "mapping_kit.js"


def _agrees(js: dict[str, Any], py: dict[str, Any]) -> bool:
    if "error" in js:
        return "error" in py and (js["problems"] is None or js["problems"] == py["problems"])
    if "undefined" in js:
        return "undefined" in py
    return "value" in py and _same(js["value"], py["value"])


def test_the_exported_javascript_interpreter_matches_actions_core(compared: list[tuple[Any, Any, Any, Any]]) -> None:
    """The interpreter inlined in exported Segment functions, over the same cases."""
    failures = [(m, js, ours[1]) for m, _, js, ours in compared if not _agrees(js, ours[1])]
    assert not failures, f"{len(failures)} of {len(compared)} differ; first:\n" + "\n".join(
        json.dumps(f, ensure_ascii=False, default=str)[:1500] for f in failures[:5])


def test_every_case_matches_actions_core(compared: list[tuple[Any, Any, Any, Any]]) -> None:
    failures = []
    for mapping, payload, js, (py, _) in compared:
        if not _agrees(js, py):
            failures.append({"mapping": mapping, "payload": payload if payload is not P else "P",
                             "js": js, "py": py})
    assert not failures, f"{len(failures)} of {len(compared)} differ; first:\n" + "\n".join(
        json.dumps(f, ensure_ascii=False, default=str)[:1500] for f in failures[:5])


def test_the_cases_cover_every_directive_and_both_outcomes(compared: list[tuple[Any, Any, Any, Any]]) -> None:
    from segfn_kit.runtime._mapping import DIRECTIVES

    text = json.dumps([m for m, _, _, _ in compared])
    assert all(f'"{d}"' in text for d in DIRECTIVES)
    errors = sum(1 for _, _, js, _ in compared if "error" in js)
    assert len(compared) >= 600 and 50 <= errors < len(compared) / 2
