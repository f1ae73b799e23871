"""The preview workbench, driven through its widgets in plain pytest.

Each test sets widget values the way a person clicking would (picker, filters, checkboxes,
buttons) and asserts on what the workbench then shows or writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from segfn_kit._payloads import load_payloads
from segfn_kit._preview import (
    EventView,
    ResultView,
    RunSummary,
    Workbench,
    filter_ids,
    preview,
    summarize,
)
from segfn_kit._run import run
from segfn_kit.runtime import MASK

SECRET = "sk_live_9f8e7d6c5b4a"

FUNCTION = '''
from segfn_kit.runtime import Segment, EventNotSupported, ValidationError

SETTINGS = {"apiKey": {"type": "string", "secret": True}}

def on_request(request, settings):
    body = request.json()
    kind = body["type"]
    obj = body["data"]["object"]
    if kind == "customer.created":
        if not obj.get("email"):
            raise ValidationError("customer has no email")
        Segment.identify(user_id=obj["id"], traits={"email": obj["email"], "name": obj.get("name")})
        Segment.track(user_id=obj["id"], event="Customer Created")
    elif kind == "invoice.paid":
        Segment.track(user_id=obj["customer"], event="Invoice Paid",
                      properties={"amount": obj["amount_paid"] / 100, "currency": obj["currency"]})
    elif kind == "charge.failed":
        # a timestamp that is not ISO 8601: a spec problem the preview must point at
        Segment.track(user_id=obj["id"], event="Charge Failed", properties={"amount": obj["amount"]},
                      timestamp="yesterday")
    elif kind == "charge.refunded":
        return obj["missing_key"]
    else:
        raise EventNotSupported(f"{kind} is not mapped")
'''


def _envelope(kind: str, n: int, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": "http://127.0.0.1:8787/stripe",
        "headers": {"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"},
        "body": {"id": f"evt_{n:04d}", "object": "event", "type": kind, "created": 1700000000 + n,
                 "data": {"object": obj}},
    }


def _payload_list() -> list[dict[str, Any]]:
    return [
        _envelope("customer.created", 1, {"id": "cus_1", "email": "ada@example.com", "name": "Ada"}),
        _envelope("invoice.paid", 2, {"id": "in_1", "customer": "cus_1", "amount_paid": 1999, "currency": "usd"}),
        _envelope("charge.failed", 3, {"id": "ch_1", "amount": 500}),
        _envelope("invoice.voided", 4, {"id": "in_2"}),
        _envelope("customer.created", 5, {"id": "cus_2", "email": "", "name": "Bob"}),
        _envelope("charge.refunded", 6, {"id": "ch_2"}),
        _envelope("customer.created", 7, {"id": "cus_3", "email": "cy@example.com", "name": "Cy"}),
    ]


@pytest.fixture()
def payloads() -> pd.DataFrame:
    return load_payloads(_payload_list())


@pytest.fixture()
def wb(payloads: pd.DataFrame) -> Workbench:
    return preview(FUNCTION, payloads, {"apiKey": SECRET}, name="stripe_source")


def _ids_of(payloads: pd.DataFrame, kind: str) -> list[str]:
    return [str(i) for i, t in payloads["event_type"].items() if t == kind]


def test_summary_counts_outcomes_and_what_each_type_produced(wb: Workbench) -> None:
    summary = wb.summary
    assert summary.total == 7
    assert summary.counts == {"mapped": 4, "unsupported": 1, "invalid": 1, "errored": 1, "dropped": 0}
    assert summary.mapping["customer.created"] == {"identify": 2, "track · Customer Created": 2}
    assert summary.mapping["invoice.paid"] == {"track · Invoice Paid": 1}
    assert "invoice.voided" not in summary.mapping
    assert summary.with_issues == 1  # the charge.failed track with a bad timestamp
    html = wb.summary_html.value
    assert "track · Invoice Paid" in html and "invoice.voided" in html


def test_the_widget_runs_the_same_run_as_the_cli(wb: Workbench, payloads: pd.DataFrame) -> None:
    direct = run(FUNCTION, payloads, {"apiKey": SECRET})
    assert wb.results is not None
    assert wb.results["outcome"].tolist() == direct["outcome"].tolist()
    assert wb.results["events"].tolist() == direct["events"].tolist()


def test_selecting_a_payload_changes_the_events_shown(wb: Workbench, payloads: pd.DataFrame) -> None:
    customer = _ids_of(payloads, "customer.created")[0]
    invoice = _ids_of(payloads, "invoice.paid")[0]
    wb.picker.value = customer
    shown = wb.detail.value
    assert "Customer Created" in shown and "ada@example.com" in shown and "Invoice Paid" not in shown
    wb.picker.value = invoice
    shown = wb.detail.value
    assert "Invoice Paid" in shown and "19.99" in shown and "Customer Created" not in shown
    assert wb.selected == invoice


def test_filters_narrow_the_payload_list(wb: Workbench, payloads: pd.DataFrame) -> None:
    assert len(wb.shown_ids) == 7
    wb.errors_only.value = True
    # the ValidationError, the KeyError and the event with a spec problem
    expected = {*_ids_of(payloads, "customer.created")[1:2], *_ids_of(payloads, "charge.refunded"),
                *_ids_of(payloads, "charge.failed")}
    assert set(wb.shown_ids) == expected
    wb.errors_only.value = False
    wb.type_filter.value = "customer.created"
    assert wb.shown_ids == _ids_of(payloads, "customer.created")
    wb.outcome_filter.value = "ValidationError"
    assert wb.shown_ids == _ids_of(payloads, "customer.created")[1:2]
    assert "customer has no email" in wb.detail.value  # the selection follows the filter
    wb.type_filter.value = "invoice.voided"
    assert wb.shown_ids == []
    assert "No payload matches" in wb.detail.value
    # selecting a payload the filters hide clears them
    invoice = _ids_of(payloads, "invoice.paid")[0]
    wb.select(invoice)
    assert wb.selected == invoice and len(wb.shown_ids) == 7 and wb.type_filter.value == "(all)"
    with pytest.raises(KeyError, match="no payload 'nope'"):
        wb.select("nope")
    wb.type_filter.value = "invoice.voided"
    assert wb.outcome_filter.options[1:4] == ("mapped", "unsupported", "invalid")


def test_filter_ids_by_category_and_outcome(wb: Workbench) -> None:
    assert wb.results is not None
    assert len(filter_ids(wb.results, outcome="mapped")) == 4
    assert len(filter_ids(wb.results, outcome="errored")) == 1
    assert filter_ids(wb.results, outcome="EventNotSupported") == filter_ids(wb.results, outcome="unsupported")


def test_spec_problem_is_marked_on_the_offending_field(wb: Workbench, payloads: pd.DataFrame) -> None:
    wb.select(_ids_of(payloads, "charge.failed")[0])
    shown = wb.detail.value
    assert "spec problem" in shown
    assert wb.results is not None
    issue = wb.results.loc[wb.selected, "issues"][0]
    # the problem's field gets the red mark, with the spec's message beside it
    marked = re.search(r"background:#ffebe9[^>]*>.{0,400}?" + re.escape(issue["field"].split(".")[0]), shown)
    assert marked, shown
    assert issue["message"].split(";")[0][:40] in shown.replace("&#x27;", "'").replace("&quot;", '"')


def test_errors_show_with_the_function_line(wb: Workbench, payloads: pd.DataFrame) -> None:
    wb.select(_ids_of(payloads, "charge.refunded")[0])
    shown = wb.detail.value
    assert "KeyError" in shown and "missing_key" in shown
    line = FUNCTION.splitlines().index('        return obj["missing_key"]') + 1
    assert f"line {line}:" in shown


def test_diff_after_editing_the_function(wb: Workbench, payloads: pd.DataFrame) -> None:
    assert wb.changed_ids == []
    assert "first run" in wb.changes_markup()
    edited = FUNCTION.replace('event="Invoice Paid"', 'event="Order Completed"')
    assert wb.update(edited)
    invoice = _ids_of(payloads, "invoice.paid")
    assert wb.changed_ids == invoice
    assert wb.previous is not None and wb.source == edited
    wb.tabs.selected_index = 1
    changes = wb.changes_html.value
    assert "1 payload changed" in changes and "Order Completed" in changes and "Invoice Paid" in changes
    wb.tabs.selected_index = 0
    wb.changed_only.value = True
    assert wb.shown_ids == invoice
    assert "Order Completed" in wb.detail.value
    assert wb.summary.mapping["invoice.paid"] == {"track · Order Completed": 1}


def test_syntax_error_keeps_the_last_good_preview(wb: Workbench, payloads: pd.DataFrame) -> None:
    wb.select(_ids_of(payloads, "invoice.paid")[0])
    before_results, before_detail = wb.results, wb.detail.value
    broken = FUNCTION.replace("    body = request.json()", "    body = request.json(")
    assert not wb.update(broken)
    assert wb.results is before_results
    assert wb.detail.value == before_detail
    line = broken.splitlines().index("    body = request.json(") + 1
    assert wb.load_error is not None and "syntax error" in wb.load_error
    assert f"line {line}" in wb.error_area.value or f"line {line + 1}" in wb.error_area.value
    assert "last one that did" in wb.error_area.value
    # fixing it clears the error and runs again
    assert wb.update(FUNCTION)
    assert wb.error_area.value == "" and wb.load_error is None


def test_import_error_shows_its_line(payloads: pd.DataFrame) -> None:
    text = "import json\nraise RuntimeError('config missing')\n\ndef on_request(request, settings):\n    pass\n"
    wb = preview(text, payloads)
    assert wb.results is None
    assert "config missing" in wb.error_area.value and "line 2" in wb.error_area.value
    assert "RuntimeError" in repr(wb)
    assert wb.update("def on_request(request, settings):\n    pass\n")
    assert wb.results is not None and wb.summary.counts["mapped"] == 7


def test_zero_payloads_says_so() -> None:
    wb = preview(FUNCTION, load_payloads([]))
    assert wb.summary.total == 0
    assert "No payloads" in wb.summary_html.value
    assert "No payloads" in wb.detail.value
    assert "no payloads" in wb.shown_count.value
    wb.draw_all()
    assert "No payloads" in wb.coverage_html.value
    assert wb.outcomes_image.value[:4] == b"\x89PNG"


def test_huge_body_is_truncated_with_a_way_to_expand() -> None:
    items = [{"sku": f"sku-{i:05d}", "qty": i} for i in range(3000)]
    note = "y" * 5000
    frame = load_payloads([{"headers": {}, "body": {"type": "order.created", "note": note, "items": items}}])
    wb = preview("def on_request(request, settings):\n    pass\n", frame)
    short = wb.detail.value
    assert "truncated" in short and "sku-02999" not in short
    assert "(+4,700 characters)" in short
    wb.full_body.value = True
    full = wb.detail.value
    assert "sku-02999" in full and note in full
    assert len(full) > 5 * len(short)


def test_secrets_never_shown(payloads: pd.DataFrame) -> None:
    leaky = FUNCTION.replace(
        'properties={"amount": obj["amount_paid"] / 100, "currency": obj["currency"]}',
        'properties={"amount": obj["amount_paid"] / 100, "key": settings["apiKey"]}',
    ).replace('raise EventNotSupported(f"{kind} is not mapped")',
              'raise EventNotSupported(f"{kind} is not mapped for key " + settings.apiKey)')
    wb = preview(leaky, payloads, {"apiKey": SECRET})
    wb.draw_all()
    texts = [wb.summary_html.value, wb.changes_html.value, wb.coverage_html.value, wb.snapshot_html(), repr(wb)]
    for pid in wb.shown_ids:
        wb.picker.value = pid
        texts.append(wb.detail.value)
    wb.full_body.value = True
    texts.append(wb.detail.value)
    bundle = wb._repr_mimebundle_()
    texts.extend(str(v) for v in bundle.values())
    joined = "\n".join(texts)
    assert SECRET not in joined
    assert MASK in joined  # the secret was there, masked, not silently dropped


def test_approve_writes_the_approved_outputs(wb: Workbench, payloads: pd.DataFrame, tmp_path: Path) -> None:
    wb.directory = tmp_path
    wb.tabs.selected_index = 4
    assert wb.approve_path.value == str(tmp_path / "stripe_source.approved.jsonl")
    wb.approve_button.click()
    target = tmp_path / "stripe_source.approved.jsonl"
    assert "approved 7 output(s)" in wb.approve_status.value
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["payload_id"] for line in lines] == [str(i) for i in payloads.index]
    first = lines[0]
    assert set(first) == {"payload_id", "payload", "outcome", "events", "objects"}
    assert first["outcome"] == "ok" and first["events"][0]["type"] == "identify"
    assert json.loads(first["payload"]["body"])["data"]["object"]["id"] == "cus_1"
    # the cell function is saved beside them, exactly as written
    assert (tmp_path / "stripe_source.py").read_text() == FUNCTION
    # a secret setting's value is masked wherever it shows up, headers included
    assert SECRET not in target.read_text()


def test_approve_error_shows_in_the_widget(wb: Workbench, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    wb.approve_path.value = str(blocker / "x.approved.jsonl")  # a file where a folder should be
    wb.approve_button.click()
    assert "could not approve" in wb.approve_status.value


def test_progress_bar_on_large_frames(payloads: pd.DataFrame) -> None:
    many = load_payloads(_payload_list() * 6)
    wb = preview(FUNCTION, many, {"apiKey": SECRET}, progress_threshold=10)
    seen: list[tuple[int, str]] = []
    wb.progress.observe(lambda change: seen.append((change["new"], wb.progress.layout.display)), names="value")
    assert wb.rerun()
    # the bar moved chunk by chunk while it was shown
    assert len(seen) >= 10 and [v for v, _ in seen] == sorted(v for v, _ in seen)
    assert all(display == "" for v, display in seen if v)
    assert wb.progress.max == len(many) == 42
    assert wb.progress.value == 42
    assert wb.progress.layout.display == "none"  # hidden again once done
    assert wb.results is not None
    direct = run(FUNCTION, many, {"apiKey": SECRET})
    assert wb.results.index.tolist() == direct.index.tolist()
    assert wb.results["outcome"].tolist() == direct["outcome"].tolist()
    assert wb.results.attrs["kind"] == "source"


def test_coverage_and_plots(wb: Workbench) -> None:
    wb.tabs.selected_index = 2
    html = wb.coverage_html.value
    assert "invoice.voided" in html and "never reach an event" in html
    assert "data.object.id" in html or "created" in html
    wb.tabs.selected_index = 3
    assert wb.outcomes_image.value[:4] == b"\x89PNG"
    assert wb.coverage_image.value[:4] == b"\x89PNG"


def test_plot_layout_makes_room_for_long_labels() -> None:
    from segfn_kit._preview._plots import coverage_png, forget_charts

    def width(png: bytes) -> int:
        assert png[:4] == b"\x89PNG"
        return int.from_bytes(png[16:20], "big")  # the IHDR chunk's width

    short = coverage_png({"a": 3}, mapped=4)
    long = coverage_png({"data.object." + "very_long_field_name." * 4 + "x": 3}, mapped=4)
    assert width(long) > width(short) + 200  # the bars keep their width; the labels get theirs
    assert coverage_png({"a": 3}, mapped=4) is short  # the same numbers: the figure kept
    forget_charts()
    again = coverage_png({"a": 3}, mapped=4)
    assert again == short and again is not short  # drawn again, to the same bytes


def test_tabs_draw_only_when_opened(wb: Workbench) -> None:
    assert wb.coverage_html.value == "" and wb.outcomes_image.value == b""
    wb.tabs.selected_index = 2
    assert wb.coverage_html.value != ""


def test_reprs_without_widgets(wb: Workbench, payloads: pd.DataFrame) -> None:
    assert wb.results is not None
    summary = summarize(wb.results)
    assert isinstance(summary, RunSummary)
    assert repr(summary).startswith("RunSummary(7 payloads: mapped 4, unsupported 1, invalid 1, errored 1")
    assert "Customer Created" in summary._repr_html_()
    event = wb.results.iloc[0]["events"][0]
    view = EventView(event)
    bundle = view._repr_mimebundle_()
    assert bundle["application/json"]["userId"] == "cus_1" and "identify" in bundle["text/html"]
    pid = _ids_of(payloads, "invoice.voided")[0]
    result = ResultView(pid, wb.results.loc[pid], payloads.loc[pid])
    assert "invoice.voided is not mapped" in result._repr_html_()
    widget_bundle = wb._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in widget_bundle
    assert "stripe_source" in widget_bundle["text/html"]
    assert "RunSummary(no payloads" in repr(summarize(pd.DataFrame({"outcome": []})))


def test_bad_payloads_argument_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="payload frame"):
        preview(FUNCTION, 42)


def test_destination_runs_show_recorded_requests_with_secrets_masked() -> None:
    from segfn_kit._events import sample_events
    from segfn_kit._http import Responses

    source = (Path(__file__).resolve().parents[1] / "segfn_kit" / "examples" / "zendesk_destination.py").read_text()
    token = "zd_api_token_5e6f7a8b"
    events = sample_events([
        {"type": "track", "userId": "u1", "event": "Order Failed",
         "properties": {"email": "ada@example.com", "order_id": "o1"}},
        {"type": "identify", "userId": "u2", "traits": {"email": "bob@example.com", "name": "Bob"}},
        {"type": "page", "userId": "u3", "name": "Home"},
    ])
    settings = {"subdomain": "acme", "email": "ops@acme.test", "apiToken": token}
    # the first ticket request meets a rate limit, then goes through on the retry
    script = Responses().add("https://acme.zendesk.com/api/v2/tickets.json", method="POST",
                             respond=[{"status": 429, "retry_after": 30}, 201])
    wb = preview(source, events, settings, responses=script)
    assert wb.kind == "destination"
    assert wb.summary.counts["mapped"] == 2 and wb.summary.counts["unsupported"] == 1
    assert wb.summary.requests == 3
    assert wb.summary.mapping["track"] == {"POST acme.zendesk.com/api/v2/tickets.json": 2}
    track_id, identify_id, page_id = (str(i) for i in events.index)
    wb.picker.value = track_id
    shown = wb.detail.value
    assert "incoming event" in shown and "Order Failed" in shown
    assert "HTTP requests (2)" in shown and "tickets.json" in shown and "429" in shown
    assert "attempts" in shown and "delivered" in shown
    wb.picker.value = identify_id
    assert "create_or_update" in wb.detail.value
    wb.picker.value = page_id
    assert "no on_page handler" in wb.detail.value
    everything = "\n".join([wb.summary_html.value, wb.snapshot_html(), *[wb.detail_html(i) for i in wb.shown_ids]])
    assert token not in everything


def test_destination_over_a_source_runs_output(payloads: pd.DataFrame) -> None:
    root = Path(__file__).resolve().parents[1] / "segfn_kit" / "examples"
    source_run = run(root / "stripe_source.py", load_payloads(root.parents[1] / "sample_payloads" / "stripe"))
    settings = {"subdomain": "acme", "email": "ops@acme.test", "apiToken": "zd_tok_1234abcd"}
    wb = preview((root / "zendesk_destination.py").read_text(), source_run, settings)
    assert wb.kind == "destination"
    emitted = sum(len(e) for e in source_run["events"])
    assert wb.summary.total == emitted == len(wb.payloads)
    assert "event" in wb.payloads.columns  # the source's events became the destination's input
    for pid in wb.shown_ids:
        shown = wb.detail_html(pid)
        assert "incoming event" in shown and "payload not available" not in shown


def test_approved_outputs_are_compared_with_the_current_run(wb: Workbench, payloads: pd.DataFrame, tmp_path: Path) -> None:
    wb.directory = tmp_path
    wb.tabs.selected_index = 4
    assert "nothing approved yet" in wb.approve_status.value
    wb.approve()
    assert wb.unapproved_ids() == []
    assert wb.update(FUNCTION.replace('event="Invoice Paid"', 'event="Order Completed"'))
    assert wb.unapproved_ids() == _ids_of(payloads, "invoice.paid")
    wb.tabs.selected_index = 0
    wb.tabs.selected_index = 4
    assert "1 output(s) differ" in wb.approve_status.value
