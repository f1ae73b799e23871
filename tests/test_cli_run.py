"""``segfn run`` through the installed console script, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segfn_kit._run import JSONL_KEYS
from segfn_kit.examples import example_path

SEGFN = shutil.which("segfn", path=str(Path(sys.executable).parent)) or "segfn"
STRIPE = str(example_path("stripe_source"))
SECRET = "whsec_test_segfn_kit_documented_secret"


def segfn(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run([SEGFN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def stripe_samples(samples_dir: Path) -> list[Path]:
    files = sorted((samples_dir / "stripe").glob("*.json"))
    assert len(files) >= 12
    return files


def test_jsonl_has_the_six_keys_on_every_row_for_every_sample(samples_dir: Path) -> None:
    out = segfn("run", STRIPE, str(samples_dir / "stripe"), "--jsonl")
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(records) == len(stripe_samples(samples_dir))
    for record in records:
        assert tuple(record) == JSONL_KEYS
        assert record["outcome"] in ("ok", "EventNotSupported")
        assert isinstance(record["events"], list) and isinstance(record["issues"], list)
        assert record["issues"] == []
    by_id = {r["payload_id"]: r for r in records}
    paid = by_id["stripe/invoice.paid.json"]
    assert [e["event"] for e in paid["events"]] == ["Invoice Paid"]
    assert paid["events"][0]["userId"].startswith("cus_")
    assert by_id["stripe/invoice.voided.json"]["error"] == "EventNotSupported: invoice.voided is not mapped"


@pytest.mark.parametrize("name", ["customer.created", "invoice.paid", "invoice.voided"])
def test_each_sample_file_alone(samples_dir: Path, name: str) -> None:
    out = segfn("run", STRIPE, str(samples_dir / "stripe" / f"{name}.json"), "--jsonl")
    assert out.returncode == 0, out.stderr
    (record,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert tuple(record) == JSONL_KEYS and record["payload_id"] == f"{name}.json"


def test_table_without_jsonl(samples_dir: Path) -> None:
    out = segfn("run", STRIPE, str(samples_dir / "stripe"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["payload", "outcome", "issues", "events", "/", "error"]
    paid = next(line for line in lines if line.startswith("stripe/invoice.paid.json"))
    assert 'track "Invoice Paid"' in paid and " ok " in paid
    assert "payloads: 10 ok, 3 EventNotSupported; 13 events, 0 issues" in out.stdout


def test_settings_file_and_secrets_never_printed(tmp_path: Path, samples_dir: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"signingSecret": "whsec_not_the_right_one", "signatureTolerance": 0}))
    out = segfn("run", STRIPE, str(samples_dir / "stripe" / "invoice.paid.json"), "--settings", str(settings), "--jsonl")
    assert out.returncode == 0  # ValidationError is the function's verdict, not a failure
    record = json.loads(out.stdout)
    assert record["outcome"] == "ValidationError" and "signature mismatch" in record["error"]
    assert "whsec_not_the_right_one" not in out.stdout + out.stderr
    settings.write_text(json.dumps({"signingSecret": SECRET, "signatureTolerance": 0}))
    out = segfn("run", STRIPE, str(samples_dir / "stripe" / "invoice.paid.json"), "--settings", str(settings), "--jsonl")
    assert json.loads(out.stdout)["outcome"] == "ok"
    strict = segfn("run", STRIPE, str(samples_dir / "stripe" / "invoice.paid.json"), "--strict",
                   "--settings", str(tmp_path / "missing.json"))
    assert strict.returncode == 2 and "settings file" in strict.stderr and "does not exist" in strict.stderr


def test_bad_settings_file_exits_2(tmp_path: Path, samples_dir: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text("[1, 2]")
    out = segfn("run", STRIPE, str(samples_dir / "stripe"), "--settings", str(settings))
    assert out.returncode == 2
    assert "flat object" in out.stderr and out.stdout == ""


def test_errors_fail_the_run_unless_allowed(tmp_path: Path) -> None:
    fn = tmp_path / "fn.py"
    fn.write_text("def on_request(request, settings):\n    return request.json()['missing']\n")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.json").write_text('{"x": 1}')
    (tmp_path / "p" / "b.json").write_text('{"missing": 1}')
    (tmp_path / "p" / "c.json").write_text('{"broken": ')
    out = segfn("run", str(fn), str(tmp_path / "p"), "--jsonl")
    assert out.returncode == 1
    outcomes = {r["payload_id"]: r["outcome"] for r in map(json.loads, out.stdout.splitlines())}
    assert outcomes == {"p/a.json": "error", "p/b.json": "ok", "p/c.json": "error"}
    assert segfn("run", str(fn), str(tmp_path / "p"), "--allow-errors").returncode == 0


def test_strict_fails_on_rejections_and_issues(tmp_path: Path) -> None:
    fn = tmp_path / "fn.py"
    fn.write_text(
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n    Segment.track(event='No user')\n"
    )
    payload = tmp_path / "a.json"
    payload.write_text("{}")
    assert segfn("run", str(fn), str(payload)).returncode == 0
    strict = segfn("run", str(fn), str(payload), "--strict")
    assert strict.returncode == 1
    assert "Segment.track() call 1 was not sent: it has no user_id or anonymous_id" in strict.stdout


def test_a_function_that_does_not_load_is_on_every_row(tmp_path: Path, samples_dir: Path) -> None:
    fn = tmp_path / "broken.py"
    fn.write_text("def on_request(request, settings):\n    if True\n")
    out = segfn("run", str(fn), str(samples_dir / "stripe" / "invoice.paid.json"), "--jsonl")
    assert out.returncode == 1
    record = json.loads(out.stdout)
    assert record["outcome"] == "error"
    assert record["error"].startswith(f"FunctionLoadError: {fn}, line 2: syntax error")


def test_missing_files_exit_2(tmp_path: Path, samples_dir: Path) -> None:
    out = segfn("run", str(tmp_path / "nope.py"), str(samples_dir / "stripe"))
    assert out.returncode == 2 and "function file" in out.stderr and "does not exist" in out.stderr
    out = segfn("run", STRIPE, str(tmp_path / "no-such-folder"))
    assert out.returncode == 2 and "no-such-folder" in out.stderr
    (tmp_path / "empty").mkdir()
    out = segfn("run", STRIPE, str(tmp_path / "empty"))
    assert out.returncode == 2 and "no payloads in" in out.stderr


def test_help_explains_exit_status() -> None:
    out = segfn("run", "--help")
    assert out.returncode == 0
    assert "exit status" in out.stdout and "--allow-errors" in out.stdout and "--jsonl" in out.stdout
