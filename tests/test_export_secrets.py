"""Exports with secret settings: no test cases that test nothing, no secret in any form."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from segfn_kit._export import ExportError, export
from segfn_kit.examples import example_path
from tests.test_export import _isolated_env

TEST_SECRET = "whsec_test_segfn_kit_documented_secret"  # what the bundled Stripe samples are signed with
STRIPE = example_path("stripe_source")


def _cases(package: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (package / "tests" / "cases.jsonl").read_text().splitlines()]


def test_a_placeholder_that_fails_every_case_is_refused_naming_the_secret(tmp_path: Path, samples_dir: Path) -> None:
    # the real secret given: the cases would run with a placeholder and all fail the signature check
    with pytest.raises(ExportError) as info:
        export(STRIPE, tmp_path / "pkg", payloads=[samples_dir / "stripe"],
               settings={"signingSecret": TEST_SECRET, "signatureTolerance": "0"})
    message = str(info.value)
    assert "every one of the" in message and "ValidationError" in message and "'signingSecret'" in message
    assert "placeholder-signingSecret" in message and "with the real value" in message
    assert "--test-secret signingSecret=VALUE" in message and "test_secrets=" in message
    assert not (tmp_path / "pkg").exists()
    # without the real value, the placeholder still fails everything: refused too
    (tmp_path / "fn.py").write_text(STRIPE.read_text().replace('"required": False,\n        "secret": True',
                                                               '"required": True,\n        "secret": True', 1))
    with pytest.raises(ExportError, match=r"every one of the .* 'signingSecret'"):
        export(tmp_path / "fn.py", tmp_path / "pkg2", payloads=[samples_dir / "stripe"],
               settings={"signatureTolerance": "0"})


def test_a_test_secret_records_cases_that_check_the_mapping(
    tmp_path: Path, samples_dir: Path, clean_venv: Path
) -> None:
    package = export(STRIPE, tmp_path / "pkg", payloads=[samples_dir / "stripe"],
                     settings={"signatureTolerance": "0"}, test_secrets={"signingSecret": TEST_SECRET})
    outcomes = {c["outcome"] for c in _cases(package)}
    assert "ok" in outcomes and "ValidationError" not in outcomes
    settings = json.loads((package / "tests" / "settings.json").read_text())
    assert settings == {"signatureTolerance": "0", "signingSecret": TEST_SECRET}
    result = subprocess.run([str(clean_venv), "-m", "pytest", "-q"], cwd=package, env=_isolated_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(ExportError, match="its real value"):
        export(STRIPE, tmp_path / "pkg3", payloads=[samples_dir / "stripe"],
               settings={"signingSecret": TEST_SECRET}, test_secrets={"signingSecret": TEST_SECRET})
    with pytest.raises(ExportError, match="not a secret setting"):
        export(STRIPE, tmp_path / "pkg4", payloads=[samples_dir / "stripe"],
               test_secrets={"signatureTolerance": "1234"})


def test_the_command_line_takes_a_test_secret(tmp_path: Path, samples_dir: Path) -> None:
    import sys

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"signingSecret": TEST_SECRET, "signatureTolerance": "0"}))
    base = [sys.executable, "-m", "segfn_kit", "export", str(STRIPE), "--payloads", str(samples_dir / "stripe")]
    refused = subprocess.run([*base, "--out", str(tmp_path / "a"), "--settings", str(settings)],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "--test-secret signingSecret=VALUE" in refused.stderr
    assert TEST_SECRET not in refused.stdout
    settings.write_text(json.dumps({"signatureTolerance": "0"}))
    ok = subprocess.run([*base, "--out", str(tmp_path / "b"), "--settings", str(settings),
                         "--test-secret", f"signingSecret={TEST_SECRET}"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "ok" in {c["outcome"] for c in _cases(tmp_path / "b")}


ECHO = '''
from segfn_kit.runtime import Segment

SETTINGS = {"apiKey": {"type": "string", "secret": True}}


def on_request(request, settings):
    body = request.json()
    Segment.track(user_id=body["user"], event="Echoed", properties={"note": body["note"]})
'''


@pytest.mark.parametrize("secret", ['se"cret-quote-1', "back\\slash\\key-2", 'both\\"and-3', "ünï\"cødé-4"])
def test_secrets_with_quotes_or_backslashes_reach_no_file_in_any_form(tmp_path: Path, secret: str) -> None:
    fn = tmp_path / "echo.py"
    fn.write_text(ECHO)
    payload = tmp_path / "p.json"
    payload.write_text(json.dumps({"headers": {"Content-Type": "application/json", "X-Api-Key": secret},
                                   "body": {"user": "u1", "note": f"key is {secret}!"}}))
    package = export(fn, tmp_path / "pkg", payloads=[payload], settings={"apiKey": secret})
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    for path in package.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(form.encode() in data for form in forms), path
    (case,) = _cases(package)
    assert case["payload"]["headers"]["X-Api-Key"] == "••••••"  # type: ignore[index]
    assert case["events"][0]["properties"]["note"] == "key is ••••••!"  # type: ignore[index]
