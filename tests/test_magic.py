"""The ``%%segfn`` cell magic, in a real IPython InteractiveShell."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from segfn_kit._payloads import load_payloads
from segfn_kit._preview import Workbench
from segfn_kit._preview._magic import FUNCTIONS, WORKBENCHES

WIDGET = "application/vnd.jupyter.widget-view+json"
SECRET = "zd_tok_5a4b3c2d1e"

FUNCTION = """from segfn_kit.runtime import Segment, EventNotSupported

def on_request(request, settings):
    body = request.json()
    if body["type"] != "customer.created":
        raise EventNotSupported(body["type"])
    Segment.identify(user_id=body["id"], traits={"plan": "{plan}"})
"""

_names = count(1)


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "segfn_kit")
    yield ip


@pytest.fixture()
def name(shell: InteractiveShell) -> Iterator[str]:
    value = f"fn_{next(_names)}"
    shell.user_ns["frame"] = load_payloads([
        {"headers": {}, "body": {"type": "customer.created", "id": "cus_1"}},
        {"headers": {}, "body": {"type": "invoice.voided", "id": "in_1"}},
    ])
    yield value
    WORKBENCHES.pop(value, None)
    FUNCTIONS.pop(value, None)


def cell(shell: InteractiveShell, line: str, body: str) -> tuple[Any, list[dict[str, Any]]]:
    with capture_output() as captured:
        result = shell.run_cell(f"%%segfn {line}\n{body}", store_history=False)
    return result, [o.data for o in captured.outputs]


def test_cell_becomes_a_previewed_function(shell: InteractiveShell, name: str) -> None:
    text = FUNCTION.replace("{plan}", "pro")
    result, outputs = cell(shell, f"source {name} --payloads frame", text)
    assert result.success
    assert len(outputs) == 1 and WIDGET in outputs[0] and "text/html" in outputs[0]
    wb = shell.user_ns[name]
    assert isinstance(wb, Workbench)
    assert wb.summary.counts["mapped"] == 1 and wb.summary.counts["unsupported"] == 1
    assert wb.results is not None and wb.results.iloc[0]["events"][0]["traits"] == {"plan": "pro"}
    # the function text is kept exactly as written, for the export
    assert FUNCTIONS[name].source == text and FUNCTIONS[name].kind == "source"
    assert outputs[0][WIDGET]["model_id"] == wb.model_id


def test_rerunning_the_cell_refreshes_the_same_preview(shell: InteractiveShell, name: str) -> None:
    cell(shell, f"source {name} --payloads frame", FUNCTION.replace("{plan}", "pro"))
    first = shell.user_ns[name]
    result, outputs = cell(shell, f"source {name} --payloads frame", FUNCTION.replace("{plan}", "team"))
    assert result.success
    wb = shell.user_ns[name]
    assert wb is first
    assert outputs[0][WIDGET]["model_id"] == first.model_id
    assert wb.previous is not None
    assert wb.changed_ids == [str(shell.user_ns["frame"].index[0])]
    assert "team" in FUNCTIONS[name].source


def test_syntax_error_keeps_the_last_good_preview(shell: InteractiveShell, name: str) -> None:
    good = FUNCTION.replace("{plan}", "pro")
    cell(shell, f"source {name} --payloads frame", good)
    wb = shell.user_ns[name]
    results = wb.results
    broken = good.replace('body["type"] != "customer.created":', 'body["type"] != "customer.created"')
    result, outputs = cell(shell, f"source {name} --payloads frame", broken)
    assert result.success  # the cell itself does not fail: the preview shows the error
    assert shell.user_ns[name] is wb and wb.results is results
    assert "line 5 (line 6 of the cell)" in wb.error_area.value and "syntax error" in wb.error_area.value
    assert "line 5" in outputs[0]["text/html"]
    assert FUNCTIONS[name].source == good  # the last text that loaded
    # and the kernel carries on
    assert shell.run_cell("1 + 1", store_history=False).result == 2


def test_error_at_import_on_the_first_run(shell: InteractiveShell, name: str) -> None:
    text = "import json\nraise ImportError('no module named stripe_helpers')\n"
    result, outputs = cell(shell, f"source {name} --payloads frame", text)
    assert result.success
    wb = shell.user_ns[name]
    assert wb.results is None
    assert "no module named stripe_helpers" in outputs[0]["text/html"] and "line 2" in outputs[0]["text/html"]
    assert name not in FUNCTIONS


def test_settings_and_secrets(shell: InteractiveShell, name: str) -> None:
    shell.user_ns["settings"] = {"apiToken": SECRET}
    text = FUNCTION.replace('"{plan}"', "settings.apiToken")
    result, outputs = cell(shell, f"source {name} --payloads frame --settings settings", text)
    assert result.success
    wb = shell.user_ns[name]
    assert wb.results.iloc[0]["events"][0]["traits"]["plan"] == SECRET  # the function saw it
    wb.select(str(shell.user_ns["frame"].index[0]))
    assert SECRET not in json.dumps(outputs) and SECRET not in wb.detail.value


def test_kind_mismatch_is_explained(shell: InteractiveShell, name: str) -> None:
    result, _ = cell(shell, f"destination {name} --payloads frame", FUNCTION)
    assert result.success
    assert "defines a source function" in shell.user_ns[name].error_area.value


def test_usage_errors_show_the_usage(shell: InteractiveShell, name: str) -> None:
    result, _ = cell(shell, f"source {name}", FUNCTION)
    assert not result.success
    assert "--payloads" in str(result.error_in_exec) and "usage: %%segfn" in str(result.error_in_exec)
    result, _ = cell(shell, f"source {name} --payloads nothing_here", FUNCTION)
    assert "no notebook variable named 'nothing_here'" in str(result.error_in_exec)
    result, _ = cell(shell, f"sauce {name} --payloads frame", FUNCTION)
    assert "invalid choice" in str(result.error_in_exec)
    result, _ = cell(shell, "--help", "pass")
    assert "usage: %%segfn" in str(result.error_in_exec)


def test_payloads_from_a_path_and_approve(shell: InteractiveShell, name: str, tmp_path: Path) -> None:
    folder = tmp_path / "payloads"
    folder.mkdir()
    (folder / "one.json").write_text(json.dumps({"headers": {}, "body": {"type": "customer.created", "id": "c9"}}))
    out = tmp_path / "functions"
    text = FUNCTION.replace("{plan}", "pro")
    result, _ = cell(shell, f"source {name} --payloads '{folder}' --dir '{out}'", text)
    assert result.success
    wb = shell.user_ns[name]
    assert wb.summary.counts["mapped"] == 1
    # re-running with the same path refreshes the same workbench
    cell(shell, f"source {name} --payloads '{folder}' --dir '{out}'", text)
    assert shell.user_ns[name] is wb
    written = wb.approve()
    assert written == out / f"{name}.approved.jsonl"
    assert (out / f"{name}.py").read_text() == text
    assert json.loads(written.read_text())["events"][0]["userId"] == "c9"


def test_exit_at_import_or_in_a_handler_keeps_the_kernel(shell: InteractiveShell, name: str) -> None:
    good = FUNCTION.replace("{plan}", "pro")
    cell(shell, f"source {name} --payloads frame", good)
    wb = shell.user_ns[name]
    results = wb.results
    result, _ = cell(shell, f"source {name} --payloads frame", "import sys\nsys.exit(3)\n")
    assert result.success and wb.results is results
    assert "exit(3)" in wb.error_area.value
    result, _ = cell(shell, f"source {name} --payloads frame",
                     "import sys\ndef on_request(request, settings):\n    sys.exit(4)\n")
    # a handler that exits is an error on each payload's row, like any other exception
    assert result.success and wb.summary.counts["errored"] == 2
    assert "SystemExit" in wb.detail.value
    assert shell.run_cell("2 + 2", store_history=False).result == 4


def test_reloaded_payloads_refresh_the_same_preview(shell: InteractiveShell, name: str) -> None:
    text = FUNCTION.replace("{plan}", "pro")
    cell(shell, f"source {name} --payloads frame", text)
    wb = shell.user_ns[name]
    first_ids = list(wb.results.index)
    # the loading cell is run again, with one more payload
    shell.user_ns["frame"] = load_payloads([
        {"headers": {}, "body": {"type": "customer.created", "id": "cus_1"}},
        {"headers": {}, "body": {"type": "invoice.voided", "id": "in_1"}},
        {"headers": {}, "body": {"type": "customer.created", "id": "cus_2"}},
    ])
    result, outputs = cell(shell, f"source {name} --payloads frame", text)
    assert result.success and shell.user_ns[name] is wb
    assert outputs[0][WIDGET]["model_id"] == wb.model_id
    assert wb.summary.total == 3 and list(wb.previous.index) == first_ids
    assert wb.changes["change"].tolist() == ["added"]


MAPPING_CELL = json.dumps({
    "route": {"@path": "$.body.type"},
    "routes": {"customer.created": [
        {"type": "identify", "userId": {"@path": "$.body.id"}, "traits": {"plan": "pro"}}]},
}, indent=2)


def test_a_json_cell_is_a_mapping_function(shell: InteractiveShell, name: str) -> None:
    result, _outputs = cell(shell, f"source {name} --payloads frame", MAPPING_CELL)
    assert result.success
    wb = shell.user_ns[name]
    assert wb.summary.counts["mapped"] == 1 and wb.summary.counts["unsupported"] == 1
    assert wb.results is not None and wb.results.iloc[0]["events"][0]["traits"] == {"plan": "pro"}
    assert FUNCTIONS[name].source.strip() == MAPPING_CELL and FUNCTIONS[name].kind == "source"
    bad = MAPPING_CELL.replace('"@path": "$.body.id"', '"@pth": "$.body.id"')
    result, _outputs = cell(shell, f"source {name} --payloads frame", bad)
    assert result.success and shell.user_ns[name] is wb
    assert "has an invalid directive: @pth" in wb.error_area.value
