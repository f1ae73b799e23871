"""Tracking plans in the preview: summary per rule, issues beside each event, the plot, ``%%segfn --plan``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import segfn_kit
from segfn_kit._preview._magic import FUNCTIONS, WORKBENCHES
from segfn_kit._preview._planview import plan_html, plan_png, violations_by_rule_and_field
from segfn_kit.examples import example_path
from segfn_kit.runtime import PlanError

STRIPE = str(example_path("stripe_source"))


@pytest.fixture(scope="module")
def payloads(samples_dir: Path) -> Any:
    return segfn_kit.load_payloads(samples_dir / "stripe")


@pytest.fixture(scope="module")
def team_plan(samples_dir: Path) -> Path:
    return samples_dir / "plans" / "stripe_plan.json"


def test_preview_shows_plan_summary_issues_and_plot(payloads: Any, team_plan: Path) -> None:
    wb = segfn_kit.preview(STRIPE, payloads, plan=team_plan)
    assert "tracking plan" in wb.summary_html.value and "TRACK &#x27;Invoice Paid&#x27; v1" in wb.summary_html.value
    wb.select("stripe/invoice.paid.json")
    assert "1 plan issue(s)" in wb.detail.value and "properties.currency fails enum" in wb.detail.value
    wb.select("stripe/customer.subscription.created.json")
    assert "properties.seats fails required" in wb.detail.value  # a missing field is listed too
    wb.draw_all()
    assert wb.plan_image.value[:4] == b"\x89PNG"
    counts = violations_by_rule_and_field(wb.results)
    assert counts[("TRACK 'Invoice Paid' v1", "properties.currency")] == 1
    assert counts[("TRACK 'Subscription Canceled' (unplanned)", "event")] == 1


def test_use_plan_rechecks_without_running_again(payloads: Any, team_plan: Path) -> None:
    wb = segfn_kit.preview(STRIPE, payloads)
    assert wb.plan is None and "tracking plan" not in wb.summary_html.value
    inferred = segfn_kit.infer_plan(wb.results)
    wb.use_plan(inferred)
    assert sum(len(i) for i in wb.results["issues"]) == 0
    assert "0 failing event(s), 0 unplanned" in wb.summary_html.value
    # edit one rule: revenue must now be a string; the violation appears
    rule = next(r for r in inferred["rules"] if r.get("key") == "Invoice Paid")
    rule["jsonSchema"]["properties"]["properties"]["properties"]["revenue"] = {"type": "string"}
    wb.use_plan(inferred)
    fields = [i["field"] for i in wb.results.loc["stripe/invoice.paid.json", "issues"]]
    assert fields == ["properties.revenue"]
    with pytest.raises(PlanError):
        wb.use_plan([{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {"$ref": "#/x"}}])
    assert wb.plan is not None and len(wb.plan) == len(inferred["rules"])  # kept the last good plan
    wb.use_plan(None)
    assert all(not i for i in wb.results["issues"])


def test_plan_html_and_png_without_issues(payloads: Any, team_plan: Path) -> None:
    results = segfn_kit.run(STRIPE, payloads, plan=segfn_kit.infer_plan(segfn_kit.run(STRIPE, payloads)))
    assert "0 failing event(s)" in plan_html(results)
    assert plan_png(results)[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "segfn_kit")
    yield ip


def test_magic_with_plan_variable_and_file(shell: InteractiveShell, payloads: Any, team_plan: Path) -> None:
    source = Path(STRIPE).read_text(encoding="utf-8")
    shell.user_ns["frame"] = payloads
    shell.user_ns["team_plan"] = segfn_kit.load_plan(team_plan)
    try:
        for plan_arg in ("team_plan", str(team_plan)):
            with capture_output():
                result = shell.run_cell(f"%%segfn source plan_fn --payloads frame --plan {plan_arg}\n{source}",
                                        store_history=False)
            assert result.success
            wb = shell.user_ns["plan_fn"]
            assert wb.plan is not None and "tracking plan" in wb.summary_html.value
        with capture_output():
            shell.run_cell(f"%%segfn source plan_fn --payloads frame\n{source}", store_history=False)
        assert shell.user_ns["plan_fn"].plan is None
        shell.user_ns["bad_plan"] = {"rules": [{"type": "TRACK", "key": "A", "version": 1, "jsonSchema": {"type": 3}}]}
        with capture_output():
            result = shell.run_cell(f"%%segfn source plan_fn --payloads frame --plan bad_plan\n{source}",
                                    store_history=False)
        assert isinstance(result.error_in_exec, UsageError)
        assert "--plan bad_plan: rule TRACK 'A' v1: jsonSchema is not valid JSON Schema" in str(result.error_in_exec)
    finally:
        WORKBENCHES.pop("plan_fn", None)
        FUNCTIONS.pop("plan_fn", None)
