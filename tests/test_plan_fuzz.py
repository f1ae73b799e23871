"""Inferred plans against arbitrary events (Hypothesis) and real Stripe payloads from the corpora."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segfn_kit import infer_plan, load_payloads, load_plan, run
from segfn_kit.examples import example_path

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.sampled_from(["2024-11-26T08:00:00Z", "2024-11-26", "2024-02-30T00:00:00Z"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)
fields = st.dictionaries(st.sampled_from(["a", "b", "c", "items", "when"]), values, max_size=5)
events = st.lists(
    st.one_of(
        st.builds(lambda name, props: {"type": "track", "event": name, "properties": props},
                  st.sampled_from(["A", "B"]), st.one_of(fields, st.none(), values)),
        st.builds(lambda traits: {"type": "identify", "traits": traits}, fields),
        st.builds(lambda name, props: {"type": "page", "name": name, "properties": props},
                  st.sampled_from(["Home", "Pricing"]), fields),
        st.just({"type": "track", "event": "A"}),
        st.just({"type": "alias", "previousId": "x"}),
        values,  # not an event at all
    ),
    max_size=12,
)


@FUZZ
@given(events)
def test_every_event_passes_the_plan_inferred_from_it(sample: list[Any]) -> None:
    plan = load_plan(infer_plan(sample))
    assert plan.check(sample) == []


@FUZZ
@given(events, values)
def test_checking_never_raises_and_issues_are_well_formed(sample: list[Any], replacement: Any) -> None:
    plan = load_plan(infer_plan(sample))
    changed = copy.deepcopy(sample)
    for event in changed:
        if isinstance(event, dict) and isinstance(event.get("properties"), dict) and event["properties"]:
            event["properties"][sorted(event["properties"])[0]] = replacement
    for issue in plan.check(changed):
        assert issue["code"] in ("plan_violation", "unplanned_event")
        assert isinstance(issue["event_index"], int) and isinstance(issue["field"], str)
        assert issue["rule"] in issue["message"] or issue["code"] == "unplanned_event"


@pytest.mark.corpora
def test_inferred_from_real_stripe_payloads_passes_and_a_type_change_fails(corpora_dir: Path) -> None:
    folder = corpora_dir / "stripe-ruby-mock"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    payloads = load_payloads(folder)
    results = run(example_path("stripe_source"), payloads)
    emitted = [e for row in results["events"] for e in row]
    assert len(emitted) >= 10
    inferred = infer_plan(results)
    checked = run(example_path("stripe_source"), payloads, plan=inferred)
    assert sum(len(i) for i in checked["issues"]) == sum(len(i) for i in results["issues"])  # no plan issue
    event = copy.deepcopy(next(e for e in emitted if e["type"] == "track" and e.get("properties")))
    name = sorted(event["properties"])[0]
    value = event["properties"][name]
    event["properties"][name] = [value] if not isinstance(value, list) else "changed"
    issues = load_plan(inferred).check([event])
    assert [i["field"] for i in issues] == [f"properties.{name}"]
