"""Tracking plans: every reader, the checker's issues, bad plans, infer and diff, run and CLI."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import segfn_kit
from segfn_kit._plan import check_results, diff_plans, infer_plan, load_plan, plan_summary
from segfn_kit.examples import example_path
from segfn_kit.runtime import Plan, PlanError

STRIPE = str(example_path("stripe_source"))
SEGFN = shutil.which("segfn", path=str(Path(sys.executable).parent)) or "segfn"

PAID_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "required": ["properties"],
    "definitions": {"money": {"type": "number", "minimum": 0}},
    "properties": {
        "properties": {
            "type": "object",
            "required": ["revenue"],
            "properties": {"revenue": {"$ref": "#/definitions/money"}, "currency": {"enum": ["USD"]}},
        }
    },
}
RULES: list[dict[str, Any]] = [
    {"type": "TRACK", "key": "Invoice Paid", "version": 1, "jsonSchema": PAID_SCHEMA},
    {"type": "COMMON", "key": "", "version": 1, "jsonSchema": {"required": ["userId"]}},
]


def paid(**properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Invoice Paid", "userId": "u1", "properties": properties}


def segfn(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([SEGFN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


# -- readers ---------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["api", "rules", "list"])
def test_public_api_shapes_read_the_same_rules(shape: str) -> None:
    data: Any = {"api": {"data": {"rules": RULES}}, "rules": {"rules": RULES}, "list": RULES}[shape]
    plan = load_plan(data)
    assert [r.label for r in plan.rules] == ["TRACK 'Invoice Paid' v1", "COMMON v1"]
    assert plan.check([paid(revenue=5)]) == []


def test_plan_file_from_disk_and_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"rules": RULES}), encoding="utf-8")
    assert len(load_plan(path)) == 2
    (tmp_path / "bad.json").write_text('{"tracks": []}', encoding="utf-8")
    with pytest.raises(PlanError, match=r"bad\.json: not a tracking plan.*found keys tracks"):
        load_plan(tmp_path / "bad.json")
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(PlanError, match=r"broken\.json: not JSON"):
        load_plan(tmp_path / "broken.json")


def test_typewriter_9_plan_json_with_unwrapped_schemas() -> None:
    # typewriter 9 keeps the Public API rules but unwraps TRACK schemas to the properties
    plan_json = {
        "id": "tp_1", "name": "Web", "rules": [{
            "key": "Invoice Paid", "type": "TRACK", "version": 1,
            "jsonSchema": {
                "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                "properties": {"revenue": {"type": "number", "id": "/properties/revenue"}},
                "required": ["revenue"],
                "eventMetadata": {"name": "Invoice Paid", "type": "TRACK"},
            },
        }],
    }
    plan = load_plan(plan_json)
    assert plan.name == "Web"
    assert plan.check([paid(revenue=1.5)]) == []
    (issue,) = plan.check([paid(revenue="1.50")])
    assert issue["field"] == "properties.revenue" and "type" in issue["message"]
    (missing,) = plan.check([paid()])
    assert missing["field"] == "properties.revenue" and "required" in missing["message"]


def test_older_typewriter_plan() -> None:
    old = {
        "display_name": "Demo", "name": "workspaces/x/tracking-plans/rs_1",
        "rules": {
            "events": [{"name": "Sign In Failed", "version": 1, "rules": {
                "properties": {"properties": {"required": ["id"], "properties": {"id": {"type": "string"}}}}}}],
            "global": {"properties": {"userId": {"type": "string"}}},
            "identify": {"properties": {"traits": {"properties": {"email": {"type": "string"}}}}},
            "group_traits": [], "identify_traits": [],
        },
    }
    plan = load_plan(old)
    assert sorted(r.label for r in plan.rules) == ["COMMON v1", "IDENTIFY v1", "TRACK 'Sign In Failed' v1"]
    issues = plan.check([{"type": "identify", "userId": 5, "traits": {"email": 1}}])
    assert sorted(i["field"] for i in issues) == ["traits.email", "userId"]
    local = {"events": old["rules"]["events"], "name": "local"}  # type: ignore[index]
    assert [r.label for r in load_plan(local).rules] == ["TRACK 'Sign In Failed' v1"]


RUDDER_EVENTS = """\
version: rudder/v0.1
kind: events
metadata:
  name: app_events
spec:
  events:
    - id: invoice_paid
      name: Invoice Paid
      event_type: track
    - id: user_identified
      event_type: identify
"""
RUDDER_PROPERTIES = """\
version: rudder/v0.1
kind: properties
metadata:
  name: app_properties
spec:
  properties:
    - id: revenue
      name: revenue
      type: number
      propConfig:
        minimum: 0
    - id: currency
      name: currency
      type: string
      propConfig:
        enum: [USD, EUR]
    - id: email
      display_name: email
      type: string
"""
RUDDER_PLAN = """\
version: rudder/v0.1
kind: tp
metadata:
  name: billing
spec:
  id: billing
  display_name: Billing
  rules:
    - type: event_rule
      id: paid_rule
      event:
        $ref: "#/events/app_events/invoice_paid"
        allow_unplanned: false
      properties:
        - $ref: "#/properties/app_properties/revenue"
          required: true
        - $ref: "#/properties/app_properties/currency"
    - type: event_rule
      id: identify_rule
      event:
        $ref: "#/events/app_events/user_identified"
      properties:
        - $ref: "#/properties/app_properties/email"
          required: true
"""


def test_rudder_cli_yaml_folder_and_single_file(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "events.yaml").write_text(RUDDER_EVENTS, encoding="utf-8")
    (project / "properties.yaml").write_text(RUDDER_PROPERTIES, encoding="utf-8")
    (project / "tracking-plan.yaml").write_text(RUDDER_PLAN, encoding="utf-8")
    for source in (project, project / "tracking-plan.yaml"):
        plan = load_plan(source)
        assert plan.name == "Billing"
        assert [r.label for r in plan.rules] == ["TRACK 'Invoice Paid' v1", "IDENTIFY v1"]
        assert plan.check([paid(revenue=3, currency="USD")]) == []
        fields = sorted(i["field"] for i in plan.check([paid(revenue=-1, currency="usd", coupon="X")]))
        assert fields == ["properties.coupon", "properties.currency", "properties.revenue"]
        assert plan.check([{"type": "identify", "userId": "u", "traits": {}}])[0]["field"] == "traits.email"
    one = tmp_path / "one.yaml"
    one.write_text("---\n".join([RUDDER_EVENTS, RUDDER_PROPERTIES, RUDDER_PLAN]), encoding="utf-8")
    assert len(load_plan(one)) == 2


def test_yaml_that_is_not_a_rudderstack_plan(tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  web:\n    image: nginx\n", encoding="utf-8")
    with pytest.raises(PlanError, match=r"compose\.yaml: not a RudderStack tracking plan: no YAML document with 'kind: tp'"):
        load_plan(path)
    bad = tmp_path / "project"
    bad.mkdir()
    (bad / "tracking-plan.yaml").write_text(RUDDER_PLAN, encoding="utf-8")
    with pytest.raises(PlanError, match=r"rule paid_rule: \$ref '#/events/app_events/invoice_paid' does not resolve"):
        load_plan(bad)


# -- bad plans: a clear error naming the rule, before anything runs ---------------------


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {"type": "objekt"}}],
         r"rule TRACK 'A' v1: jsonSchema is not valid JSON Schema \(draft-07\) at type"),
        ([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {"$ref": "#/definitions/nope"}}],
         r"rule TRACK 'A' v1: \$ref '#/definitions/nope' does not resolve"),
        ([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {"$ref": "https://example.com/s.json"}}],
         r"rule TRACK 'A' v1: \$ref 'https://example.com/s.json' does not resolve"),
        ([{"type": "TRACK", "key": "A", "version": 2}, {"type": "TRACK", "key": "A", "version": 2}],
         r"rules 1 and 2 are both TRACK 'A' v2"),
        ([{"type": "TRAK", "key": "A", "version": 1}], r"rule 1: type 'TRAK' is not one of"),
        ([{"type": "TRACK", "version": 1}], r"rule 1 \(TRACK\): key must be the event name"),
        ([{"type": "PAGE", "key": "Home", "version": "1"}], r"PAGE 'Home' v1: version must be an integer"),
    ],
)
def test_bad_plans_raise_naming_the_rule(rules: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        load_plan(rules)


def test_a_bad_plan_stops_run_before_it_starts(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    source = ("from segfn_kit.runtime import Segment\n"
              f"def on_request(request, settings):\n    open({str(marker)!r}, 'w').close()\n"
              "    Segment.track(user_id='u', event='A')\n")
    with pytest.raises(PlanError, match="does not resolve"):
        segfn_kit.run(source, [{"a": 1}], plan=[{"type": "TRACK", "key": "A", "version": 1,
                                                  "jsonSchema": {"$ref": "#/x"}}])
    assert not marker.exists()


# -- checking ----------------------------------------------------------------------------


def test_issue_names_rule_field_keyword_and_value() -> None:
    plan = load_plan(RULES)
    issues = plan.check([{"type": "track", "event": "Invoice Paid", "properties": {"revenue": "12.00"}}])
    by_field = {i["field"]: i for i in issues}
    assert set(by_field) == {"properties.revenue", "userId"}
    revenue = by_field["properties.revenue"]
    assert revenue["code"] == "plan_violation" and revenue["event_index"] == 0
    assert revenue["rule"] == "TRACK 'Invoice Paid' v1"
    assert "TRACK 'Invoice Paid' v1" in revenue["message"] and "type" in revenue["message"]
    assert '"12.00"' in revenue["message"]
    assert by_field["userId"]["rule"] == "COMMON v1"


def test_event_level_failure_has_empty_field() -> None:
    plan = load_plan([{"type": "COMMON", "version": 1, "jsonSchema": {"maxProperties": 1}}])
    (issue,) = plan.check([{"type": "track", "event": "A"}])
    assert issue["field"] == "" and "maxProperties" in issue["message"]


def test_versions_event_version_else_oldest() -> None:
    def rule(version: int, kind: str) -> dict[str, Any]:
        return {"type": "TRACK", "key": "A", "version": version,
                "jsonSchema": {"properties": {"properties": {"properties": {"n": {"type": kind}}}}}}

    plan = load_plan([rule(3, "string"), rule(1, "integer"), rule(2, "boolean")])
    event = {"type": "track", "event": "A", "properties": {"n": 5}}
    assert plan.check([event]) == []  # no event_version: the oldest, v1
    v2 = {**event, "context": {"protocols": {"event_version": 2}}}
    assert plan.check([v2])[0]["rule"] == "TRACK 'A' v2"
    v9 = {**event, "context": {"protocols": {"event_version": 9}}}
    assert plan.check([v9]) == []  # a version the plan lacks: the oldest


def test_unplanned_track_page_screen_and_types_without_rules() -> None:
    plan = load_plan([{"type": "TRACK", "key": "A", "version": 1},
                      {"type": "PAGE", "key": "Home", "version": 1}])
    events = [{"type": "track", "event": "Typo"}, {"type": "page", "name": "Pricing"},
              {"type": "screen", "name": "Settings"}, {"type": "identify", "userId": "u"}]
    issues = plan.check(events)
    assert [(i["event_index"], i["code"], i["field"]) for i in issues] == [
        (0, "unplanned_event", "event"), (1, "unplanned_event", "name")]
    assert "'Typo'" in issues[0]["message"]


def test_identify_group_alias_by_type() -> None:
    plan = load_plan([{"type": t, "version": 1, "jsonSchema": {"required": ["marker"]}}
                      for t in ("IDENTIFY", "GROUP", "ALIAS")])
    events = [{"type": "identify"}, {"type": "group"}, {"type": "alias"}, {"type": "track", "event": "x"}]
    assert [i["rule"] for i in plan.check(events)] == ["IDENTIFY v1", "GROUP v1", "ALIAS v1"]


def test_date_time_format_checked_with_the_standard_library() -> None:
    plan = load_plan([{"type": "COMMON", "version": 1, "jsonSchema": {
        "properties": {"timestamp": {"type": "string", "format": "date-time"}}}}])
    assert plan.check([{"type": "track", "event": "A", "timestamp": "2024-11-26T08:00:00.123Z"}]) == []
    (issue,) = plan.check([{"type": "track", "event": "A", "timestamp": "26/11/2024"}])
    assert issue["field"] == "timestamp" and "format" in issue["message"]


def test_hold_reports_or_blocks() -> None:
    plan = load_plan(RULES)
    good, bad = paid(revenue=1), paid(revenue="x")
    sent, held, issues = plan.hold([good, bad], "report")
    assert sent == [good, bad] and held == [] and len(issues) == 1
    sent, held, issues = plan.hold([good, bad], "block")
    assert sent == [good] and held == [bad] and issues[0]["event_index"] == 1
    with pytest.raises(ValueError, match="plan mode"):
        plan.hold([good], "drop")  # type: ignore[arg-type]


# -- run, infer, diff ----------------------------------------------------------------------


def test_run_with_the_sample_plan_shows_violations(samples_dir: Path) -> None:
    results = segfn_kit.run(STRIPE, [str(samples_dir / "stripe")], plan=samples_dir / "plans" / "stripe_plan.json")
    assert isinstance(results.attrs["plan"], Plan)
    issues = {(pid, i["field"], i["code"]) for pid, row in results.iterrows() for i in row["issues"]}
    assert ("stripe/invoice.paid.json", "properties.currency", "plan_violation") in issues
    assert ("stripe/customer.subscription.created.json", "properties.seats", "plan_violation") in issues
    assert ("stripe/customer.subscription.deleted.json", "event", "unplanned_event") in issues
    summary = plan_summary(results).set_index("rule")
    assert summary.loc["TRACK 'Invoice Paid' v1"].tolist() == [1, 1, 0]
    assert summary.loc["COMMON v1", "checked"] == sum(len(e) for e in results["events"])
    assert summary.loc["TRACK 'Subscription Canceled' (unplanned)", "unplanned"] == 1


def test_inferred_plan_passes_its_run_and_catches_a_type_change(samples_dir: Path) -> None:
    results = segfn_kit.run(STRIPE, [str(samples_dir / "stripe")])
    inferred = infer_plan(results, name="stripe")
    assert inferred["name"] == "stripe"
    keys = {(r["type"], r.get("key")) for r in inferred["rules"]}
    assert ("TRACK", "Invoice Paid") in keys and ("IDENTIFY", None) in keys
    plan = load_plan(inferred)
    checked = check_results(results.copy(), plan)
    assert all(not row for row in checked["issues"])
    paid_rule = next(r for r in inferred["rules"] if r.get("key") == "Invoice Paid")
    props = paid_rule["jsonSchema"]["properties"]["properties"]
    assert props["properties"]["revenue"]["type"] == "number" and "revenue" in props["required"]
    sub = next(r for r in inferred["rules"] if r.get("key") == "Subscription Created")
    assert sub["jsonSchema"]["properties"]["properties"]["properties"]["trial_end"]["format"] == "date-time"
    event = copy.deepcopy(next(e for row in results["events"] for e in row if e.get("event") == "Invoice Paid"))
    event["properties"]["revenue"] = str(event["properties"]["revenue"])
    (issue,) = plan.check([event])
    assert issue["field"] == "properties.revenue"


def test_infer_required_only_when_present_everywhere_and_nested() -> None:
    events = [
        {"type": "track", "event": "E", "properties": {"a": 1, "b": "x", "items": [{"sku": "1", "n": 1}]}},
        {"type": "track", "event": "E", "properties": {"a": 2.5, "items": [{"sku": "2"}], "c": None}},
    ]
    schema = infer_plan(events)["rules"][0]["jsonSchema"]["properties"]["properties"]
    assert schema["required"] == ["a", "items"]
    assert schema["properties"]["a"] == {"type": "number"}
    assert schema["properties"]["c"] == {"type": "null"}
    assert schema["properties"]["items"]["items"]["required"] == ["sku"]
    assert load_plan(infer_plan(events)).check(events) == []


def test_diff_lists_rules_and_fields() -> None:
    new = copy.deepcopy(RULES)
    new[0]["jsonSchema"]["properties"]["properties"]["properties"]["revenue"] = {"type": "string"}
    new[0]["jsonSchema"]["properties"]["properties"]["properties"]["coupon"] = {"type": "string"}
    new.append({"type": "IDENTIFY", "version": 1, "jsonSchema": {}})
    changes = diff_plans(RULES, new)
    assert {"change": "added", "rule": "IDENTIFY v1", "field": "", "old": None, "new": "rule"} in changes
    by_field = {c["field"]: c for c in changes if c["field"]}
    assert by_field["properties.revenue"]["change"] == "changed"
    assert "required" in by_field["properties.revenue"]["new"]
    assert by_field["properties.coupon"]["change"] == "added"
    assert diff_plans(RULES, RULES) == []


def test_public_names() -> None:
    assert segfn_kit.load_plan is load_plan
    assert segfn_kit.infer_plan is infer_plan
    assert segfn_kit.diff_plans is diff_plans


# -- CLI -----------------------------------------------------------------------------------


def test_cli_run_plan_infer_diff_check(samples_dir: Path, tmp_path: Path) -> None:
    stripe = str(samples_dir / "stripe")
    team = str(samples_dir / "plans" / "stripe_plan.json")
    out = segfn("run", STRIPE, stripe, "--plan", team)
    assert out.returncode == 0, out.stderr
    assert "properties.currency: TRACK 'Invoice Paid' v1" in out.stdout
    assert "tracking plan 'Billing (Stripe source)' (6 rules)" in out.stdout
    assert segfn("run", STRIPE, stripe, "--plan", team, "--strict").returncode == 1
    jsonl = segfn("run", STRIPE, stripe, "--plan", team, "--jsonl")
    codes = {i["code"] for line in jsonl.stdout.splitlines() for i in json.loads(line)["issues"]}
    assert codes == {"plan_violation", "unplanned_event"}

    inferred = tmp_path / "inferred.json"
    out = segfn("plan", "infer", STRIPE, stripe, "--out", str(inferred))
    assert out.returncode == 0, out.stderr
    assert "11 rules from 13 events" in out.stdout
    passing = segfn("run", STRIPE, stripe, "--plan", str(inferred), "--strict")
    assert passing.returncode == 0, passing.stdout
    assert "0 issues" in passing.stdout

    diff = segfn("plan", "diff", team, str(inferred))
    assert diff.returncode == 1 and "removed  rule TRACK 'Subscription Cancelled' v1" in diff.stdout
    assert segfn("plan", "diff", str(inferred), str(inferred)).returncode == 0
    check = segfn("plan", "check", team)
    assert check.returncode == 0 and "6 rules" in check.stdout

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {"$ref": "#/nope"}}]))
    for args in (("run", STRIPE, stripe, "--plan", str(bad)), ("plan", "check", str(bad))):
        out = segfn(*args)
        assert out.returncode == 2 and "rule TRACK 'A' v1: $ref '#/nope' does not resolve" in out.stderr
        assert out.stdout == ""
    for args in (("plan", "--help"), ("plan", "infer", "--help"), ("plan", "diff", "--help"), ("plan", "check", "--help")):
        assert segfn(*args).returncode == 0


def test_check_results_remembers_issues_per_event_content_with_the_right_index() -> None:
    import pandas as pd

    plan = load_plan(RULES)
    bad = paid(revenue="x")
    frame = pd.DataFrame({"events": [[bad], [paid(revenue=1), copy.deepcopy(bad)]], "issues": [[], []]})
    first = check_results(frame.copy(), plan)["issues"].tolist()
    again = check_results(frame.copy(), plan)["issues"].tolist()
    assert first == again
    assert [i["event_index"] for i in first[0]] == [0] and [i["event_index"] for i in first[1]] == [1]
    assert first[1] == [dict(first[0][0], event_index=1)]
