"""The emitters' fast path for plain keyword calls builds exactly the events, problems and
errors of their general path (``_emit_any``, which takes every call the plans do not): a
differential test over random calls of every kind with random values.

Both sides get the same call, each with its own collector; the reference side runs with
every plan refused, so each of its calls takes the general path. The test compares what
each raised, the events (``repr``: values and key order at every level), the problems and
the number of calls counted. ``tests/test_message_ids.py`` pins the ids both derive.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import enum
import math
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segfn_kit.runtime import _segment

# the keywords of each emitter, in its signature's order
KEYWORDS = {
    "identify": ("user_id", "traits", "context", "timestamp", "anonymous_id", "integrations",
                 "message_id"),
    "track": ("user_id", "event", "properties", "context", "timestamp", "anonymous_id",
              "integrations", "message_id"),
    "group": ("user_id", "group_id", "traits", "context", "timestamp", "anonymous_id",
              "integrations", "message_id"),
    "page": ("user_id", "category", "name", "properties", "context", "timestamp",
             "anonymous_id", "integrations", "message_id"),
    "screen": ("user_id", "category", "name", "properties", "context", "timestamp",
               "anonymous_id", "integrations", "message_id"),
    "alias": ("previous_id", "user_id", "context", "timestamp", "anonymous_id", "integrations",
              "message_id"),
}
OBJECTS = {"properties", "traits", "context", "integrations"}
# the keywords without which analytics-python refuses a call
REQUIRED = {"track": ("user_id", "event"), "group": ("user_id", "group_id"),
            "alias": ("previous_id", "user_id")}


class Colour(enum.Enum):
    RED = "red"
    NAN = math.nan


class Text(str):
    pass


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


OPAQUE = Opaque()

names_and_ids = st.sampled_from(["u1", "E", "Order Completed", "é"])
texts = st.one_of(st.sampled_from(["u1", "", "E", "Order Completed", "é"]), st.text(max_size=6))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([math.nan, math.inf, -math.inf, 1.5]))
naive = dt.datetime(2024, 1, 31, 12, 30)
scalars = st.one_of(
    texts, st.none(), st.booleans(), st.integers(-5, 2**70), floats,
    st.sampled_from([
        decimal.Decimal("9.99"), decimal.Decimal("NaN"), decimal.Decimal("sNaN"), Colour.RED,
        Colour.NAN, naive, naive.replace(tzinfo=dt.UTC), dt.date(2024, 1, 31), b"bytes",
        b"\xff", Text("sub"), OPAQUE, 1700000000, 1706702400000,
    ]),
)
keys = st.one_of(texts, st.integers(0, 3), st.sampled_from([True, None, 1.5]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.dictionaries(keys, inner, max_size=4),
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(st.one_of(st.integers(0, 9), texts), max_size=3),
        st.sets(st.one_of(st.integers(0, 3), st.sampled_from(["a", "b"])), max_size=3),
        st.dictionaries(texts, inner, max_size=3).map(types.MappingProxyType),
        st.dictionaries(texts, inner, max_size=3).map(OrderedDict),
    ),
    max_leaves=8,
)
plain_objects = st.dictionaries(texts, st.one_of(texts, st.integers(), st.booleans(), st.none(),
                                                 floats), max_size=4)


# values of almost the plain types
near_plain = st.sampled_from([
    0, 1, 42, -1.5, True, False, Text("u1"), Text(""), None, {}, OrderedDict(a=1),
    types.MappingProxyType({"a": 1}), [], "", 1706702400, decimal.Decimal(7), naive,
])


def value_for(keyword: str, plain_only: bool) -> st.SearchStrategy[Any]:
    """What a function passes for this keyword (plain values only), or mostly that and
    sometimes anything at all."""
    plain = plain_objects if keyword in OBJECTS else st.one_of(texts, texts, st.none())
    return plain if plain_only else st.one_of(plain, plain, plain, values)


def one_in(n: int, value: bool = True) -> st.SearchStrategy[bool]:
    """``value`` about once in ``n`` draws (and in what Hypothesis shrinks to, not)."""
    return st.sampled_from([not value] * (n - 1) + [value])


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, Any, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(KEYWORDS)))
    names = draw(st.lists(st.sampled_from(KEYWORDS[kind]), unique=True, max_size=6))
    plain_only = draw(st.booleans())
    required: tuple[str, ...] = ()
    if plain_only and draw(one_in(5, False)):  # mostly a call that is sent
        required = REQUIRED.get(kind, ("user_id",))
        names += [name for name in required if name not in names]
    kwargs = {  # in a random order
        name: draw(st.one_of(names_and_ids, value_for(name, plain_only)) if name in required
                   else value_for(name, plain_only))
        for name in names
    }
    if plain_only and names and draw(one_in(3)):  # all plain but one
        kwargs[draw(st.sampled_from(names))] = draw(st.one_of(near_plain, values))
    if draw(one_in(20)):
        kwargs[draw(st.sampled_from(["userId", "UserID", "evnt", "properties_"]))] = "x"
    spec: Any = None
    if draw(one_in(5)):  # a JavaScript-style call, perhaps with keywords too
        spec_keys = st.sampled_from(
            ["userId", "anonymousId", "event", "properties", "traits", "timestamp", "type",
             "messageId", "groupId", "previousId", "name", "user_id", "other"])
        spec = draw(st.one_of(
            st.dictionaries(spec_keys, values, max_size=5),
            st.dictionaries(spec_keys, values, max_size=3).map(types.MappingProxyType),
            st.just(["not", "a", "mapping"]),
        ))
    return kind, spec, kwargs


@contextlib.contextmanager
def general_path(on: bool) -> Iterator[None]:
    """Every emitter call in the block takes the general path (no plan), when ``on``."""
    if not on:
        yield
        return
    with mock.patch.object(_segment._Keywords, "plan", lambda self, values: None):
        yield


def outcome(collector: Any, kind: str, spec: Any, kwargs: dict[str, Any], *, general: bool = False) -> str:
    token = _segment._current.set(collector)
    try:
        with general_path(general):
            method: Callable[..., None] = getattr(_segment.Segment, kind)
            if spec is None:
                method(**kwargs)
            else:
                method(spec, **kwargs)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        _segment._current.reset(token)
    return "ok"


def state(collector: Any) -> tuple[Any, ...]:
    return (
        repr(collector.events),
        [list(event) for event in collector.events],
        repr(collector.problems),
        collector.calls,
    )


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(calls(), min_size=1, max_size=5), st.booleans())
def test_emitters_match_the_general_path(sequence: list[tuple[str, Any, dict[str, Any]]], lazy: bool) -> None:
    digest = "037c9214eef74cc3887f3a4f085b4e17d76280dafd273b0ee160c09c4ba1cfd4"
    ours = _segment.Collector((lambda: digest) if lazy else digest)
    theirs = _segment.Collector((lambda: digest) if lazy else digest)
    for kind, spec, kwargs in sequence:
        assert outcome(ours, kind, spec, kwargs) == outcome(theirs, kind, spec, kwargs, general=True)
    assert state(ours) == state(theirs)


@pytest.mark.parametrize("kind", sorted(KEYWORDS))
def test_plain_calls_match_the_general_path(kind: str) -> None:
    """Calls that take the fast path, with every keyword given, and then some left out."""
    plain = {name: ({"a": 1, "b": [1.5, math.nan]} if name in OBJECTS else f"{name}-1")
             for name in KEYWORDS[kind]}
    variants = [plain, {**plain, "message_id": None}, {**plain, "anonymous_id": None},
                {**plain, "user_id": ""}, {**plain, "user_id": "", "anonymous_id": ""},
                {k: v for k, v in plain.items() if k not in ("message_id", "anonymous_id")},
                {k: v for k, v in plain.items() if k not in ("user_id", "anonymous_id")},
                {**plain, "timestamp": None, "context": None}]
    ours, theirs = _segment.Collector("d"), _segment.Collector("d")
    for kwargs in variants:
        assert outcome(ours, kind, None, kwargs) == outcome(theirs, kind, None, kwargs, general=True)
    assert state(ours) == state(theirs)
    assert ours.events, "no plain call was sent"


def test_outside_an_invocation_both_paths_raise_the_same() -> None:
    for general in (False, True):
        with general_path(general), pytest.raises(RuntimeError, match="outside a function invocation"):
            _segment.Segment.track(user_id="u", event="E")
