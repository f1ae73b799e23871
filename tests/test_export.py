"""Export: handler packages, tested in three layers.

1. golden files: the bundled Stripe and Zendesk exports, byte for byte (``make regen``);
2. the generated tests run in a clean virtual environment holding only the package's
   requirements and pytest (it cannot import segfn_kit, pandas or IPython);
3. the generated handler compiles and passes ``mypy --strict``.

Then the handler's behaviour as an endpoint (Lambda events, signatures, limits, outcomes,
logs, hostile input), the import checks, the CLI and the Lambda zip.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segfn_kit._export import ExportError, check_imports, export
from segfn_kit.examples import example_path
from segfn_kit.runtime import sign
from tests.golden import regen

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "segfn_kit" / "runtime"
UV = ROOT / ".tools" / "bin" / "uv"
ZENDESK_SECRET = regen.CASES["zendesk_destination"][2]["apiToken"]

PING = """\
from segfn_kit.runtime import Segment, EventNotSupported, RetryError, ValidationError
import time

SETTINGS = {"source": {"type": "string"}, "apiToken": {"type": "string", "secret": True}}


def on_request(request, settings):
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = request.form()
        Segment.track(user_id=form["user"], event="Form Posted")
        return
    body = request.json()
    kind = body.get("type")
    if kind == "skip":
        raise EventNotSupported("skip is not mapped")
    if kind == "retry":
        raise RetryError("upstream busy")
    if kind == "invalid":
        raise ValidationError("no user in " + settings["apiToken"])
    if kind == "slow":
        time.sleep(3)
    Segment.track(user_id=body["user"], event="Pinged", properties={"source": settings["source"]})
"""
PING_SECRET = "ping-secret-token-77"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("golden")
    return {name: regen.export_case(name, root / name) for name in regen.CASES}


@pytest.fixture(scope="module")
def ping_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ping")
    fn = root / "ping.py"
    fn.write_text(PING, encoding="utf-8")
    payloads = root / "payloads"
    payloads.mkdir()
    for name, body in {"a": {"user": "u1"}, "b": {"type": "skip"}, "c": {"type": "retry"}}.items():
        envelope = {"headers": {"Content-Type": "application/json"}, "body": body}
        (payloads / f"{name}.json").write_text(json.dumps(envelope), encoding="utf-8")
    return export(fn, root / "out", payloads=[payloads], settings={"source": "web", "apiToken": PING_SECRET})


def load_handler(package: Path) -> types.ModuleType:
    """Import a package's handler.py in this process, under a name of its own."""
    name = f"exported_handler_{abs(hash(str(package)))}"
    spec = importlib.util.spec_from_file_location(name, package / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("SEGMENT_", "SEGFN_")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture(scope="module")
def ping(ping_package: Path) -> types.ModuleType:
    return load_handler(ping_package)


class FakeClient:
    def __init__(self, fail: Exception | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.objects: list[dict[str, Any]] = []
        self.fail = fail
        self.budget = 10.0
        self.budgets: list[float | None] = []

    def send(
        self,
        events: list[dict[str, Any]],
        *,
        objects: list[dict[str, Any]] | None = None,
        budget: float | None = None,
    ) -> None:
        self.budgets.append(budget)
        if self.fail:
            raise self.fail
        self.sent.extend(events)
        self.objects.extend(objects or [])

    async def asend(self, events: list[dict[str, Any]], *, objects: list[dict[str, Any]] | None = None) -> None:
        self.send(events, objects=objects)


@pytest.fixture
def fake(ping: types.ModuleType, clean_env: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient()
    clean_env.setattr(ping.ENGINE, "get_client", lambda config: client)
    clean_env.setenv("SEGMENT_WRITE_KEY", "wk-test-1234")
    clean_env.setenv("SEGFN_SETTINGS", json.dumps({"source": "web", "apiToken": PING_SECRET}))
    return client


def v2_event(body: bytes, headers: dict[str, str], *, method: str = "POST", b64: bool = False) -> dict[str, Any]:
    return {
        "version": "2.0",
        "rawPath": "/hook",
        "rawQueryString": "a=1&a=2&b=x",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": method, "path": "/hook"}},
        "body": base64.b64encode(body).decode() if b64 else body.decode("utf-8", "surrogateescape"),
        "isBase64Encoded": b64,
    }


JSON = {"Content-Type": "application/json"}


# -- layer 1: golden files, determinism, no secrets, no paths ---------------------------------


@pytest.mark.parametrize("name", sorted(regen.CASES))
def test_export_matches_golden_files(name: str, golden_exports: dict[str, Path]) -> None:
    exported = regen.golden_files(golden_exports[name])
    golden = regen.golden_files(regen.GOLDEN / name)
    assert sorted(exported) == sorted(golden), "file list changed: run `make regen` and review the diff"
    changed = [rel for rel in exported if exported[rel] != golden[rel]]
    assert not changed, f"{changed} differ from tests/golden/{name}: run `make regen` and review the diff"


@pytest.mark.parametrize("name", sorted(regen.CASES))
def test_runtime_is_copied_verbatim(name: str, golden_exports: dict[str, Path]) -> None:
    copied = golden_exports[name] / "segfn_kit" / "runtime"
    for source in RUNTIME.glob("*.py"):
        assert (copied / source.name).read_bytes() == source.read_bytes(), source.name
    assert sorted(p.name for p in copied.glob("*.py")) == sorted(p.name for p in RUNTIME.glob("*.py"))
    assert (golden_exports[name] / "function.py").read_bytes() == regen.CASES[name][0].read_bytes()


@pytest.mark.parametrize("name", sorted(regen.CASES))
def test_handler_is_a_page_of_entry_points(name: str, golden_exports: dict[str, Path]) -> None:
    """The rules live once, in the vendored runtime: the handler only wires entry points to it."""
    text = (golden_exports[name] / "handler.py").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 150
    assert "Engine(FUNCTION" in text
    for rule in ("def reject_event", "def _batch_statuses", "Retry-After", "_STATUS = {", "def from_environ"):
        assert rule not in text


def test_two_exports_into_two_folders_are_byte_identical(tmp_path: Path) -> None:
    function, payloads, settings = regen.CASES["zendesk_destination"]
    first = export(function, tmp_path / "one", payloads=payloads, settings=settings)
    second = export(function, tmp_path / "elsewhere" / "two", payloads=payloads, settings=settings)
    a = {p.relative_to(first).as_posix(): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    b = {p.relative_to(second).as_posix(): p.read_bytes() for p in second.rglob("*") if p.is_file()}
    assert a == b
    for content in a.values():
        assert str(tmp_path).encode() not in content  # no output path in any file
        assert str(ROOT).encode() not in content  # nor where the inputs live


def test_exporting_again_replaces_the_earlier_export(tmp_path: Path) -> None:
    function, payloads, _ = regen.CASES["stripe_source"]
    out = export(function, tmp_path / "pkg", payloads=payloads)
    (out / "stale.txt").write_text("left from before")
    export(function, out, payloads=payloads)
    assert not (out / "stale.txt").exists()


def test_refuses_to_write_into_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    function, payloads, _ = regen.CASES["stripe_source"]
    with pytest.raises(ExportError, match="not empty"):
        export(function, tmp_path, payloads=payloads)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", sorted(regen.CASES))
def test_secret_setting_values_are_never_written(name: str, golden_exports: dict[str, Path]) -> None:
    secret = ZENDESK_SECRET.encode()
    for path in golden_exports[name].rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    settings = json.loads((golden_exports[name] / "tests" / "settings.json").read_text())
    if name == "zendesk_destination":
        assert settings == {"apiToken": "placeholder-apiToken", "email": "agent@example.com", "subdomain": "acme"}


def test_secret_in_ping_export_is_masked_everywhere(ping_package: Path) -> None:
    for path in ping_package.rglob("*"):
        if path.is_file():
            assert PING_SECRET.encode() not in path.read_bytes(), path


def test_secret_written_in_the_function_file_is_refused(tmp_path: Path) -> None:
    fn = tmp_path / "leaky.py"
    fn.write_text(PING.replace("import time", f"import time\nTOKEN = '{PING_SECRET}'"))
    with pytest.raises(ExportError, match="secret setting appears in the function file"):
        export(fn, tmp_path / "out", payloads=[_one_payload(tmp_path)], settings={"source": "s", "apiToken": PING_SECRET})
    assert not (tmp_path / "out").exists()


def _one_payload(tmp_path: Path) -> Path:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"headers": JSON, "body": {"user": "u9"}}))
    return path


def test_required_non_secret_setting_without_value_is_an_error(tmp_path: Path) -> None:
    function, payloads, _ = regen.CASES["zendesk_destination"]
    with pytest.raises(ExportError, match="'subdomain' is required"):
        export(function, tmp_path / "out", payloads=payloads, settings={"email": "a@example.com"})


def test_approved_outputs_become_the_expectations(tmp_path: Path) -> None:
    fn = tmp_path / "ping.py"
    fn.write_text(PING)
    envelope = {"method": "POST", "headers": JSON, "body": '{"user":"u5"}'}
    approved = {"payload_id": "p/1.json", "payload": envelope, "outcome": "ok",
                "events": [{"type": "track", "userId": "u5", "event": "Pinged", "messageId": "fixed"}], "objects": []}
    (tmp_path / "ping.approved.jsonl").write_text(json.dumps(approved) + "\n")
    out = export(fn, tmp_path / "out", settings={"source": "web"})
    cases = [json.loads(line) for line in (out / "tests" / "cases.jsonl").read_text().splitlines()]
    assert cases == [{k: approved[k] for k in ("payload_id", "payload", "outcome", "events", "objects")}]


def test_no_payloads_and_no_approval_is_an_error(tmp_path: Path) -> None:
    fn = tmp_path / "ping.py"
    fn.write_text(PING)
    with pytest.raises(ExportError, match="--payloads"):
        export(fn, tmp_path / "out")


# -- import checks ----------------------------------------------------------------------------


def test_imports_the_package_cannot_hold_are_reported_with_their_line(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("X = 1\n")
    fn = tmp_path / "bad.py"
    fn.write_text(
        "import json\nimport pandas as pd\nfrom IPython.display import display\nimport helpers\n"
        "from . import sibling\nfrom segfn_kit import run\nimport httpx\nfrom segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n    import numpy\n"
    )
    with pytest.raises(ExportError) as info:
        export(fn, tmp_path / "out", payloads=[_one_payload(tmp_path)])
    message = str(info.value)
    for expected in ("line 2: import pandas", "line 3: import IPython.display", "line 4: import helpers",
                     "local module", "line 5: import .", "line 6: import segfn_kit",
                     "import from segfn_kit.runtime", "line 10: import numpy", "--requirement pandas"):
        assert expected in message
    assert "import json" not in message and "import httpx" not in message
    assert not (tmp_path / "out").exists()


def test_a_requirement_allows_its_import_and_is_written(tmp_path: Path) -> None:
    fn = tmp_path / "dated.py"
    fn.write_text(PING.replace("import time", "import time\nimport dateutil.parser"))
    assert [p.module for p in check_imports(fn.read_text())] == ["dateutil.parser"]
    assert check_imports(fn.read_text(), ("python-dateutil>=2.8",)) == []


# -- layer 2: the generated tests in a clean virtual environment ------------------------------


def _isolated_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "SEGFN_", "PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test_clean_venv_cannot_import_the_workbench(clean_venv: Path, tmp_path: Path) -> None:
    code = "import importlib.util as u; print([m for m in ('segfn_kit', 'pandas', 'IPython') if u.find_spec(m)])"
    out = subprocess.run([str(clean_venv), "-c", code], cwd=tmp_path, env=_isolated_env(),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(regen.CASES))
def test_generated_tests_pass_in_a_clean_venv(name: str, golden_exports: dict[str, Path], clean_venv: Path,
                                              tmp_path: Path) -> None:
    package = tmp_path / name
    shutil.copytree(golden_exports[name], package)
    guard = (
        "import sys, importlib.util as u\n"
        "assert u.find_spec('pandas') is None and u.find_spec('IPython') is None\n"
        "import segfn_kit\n"
        "assert segfn_kit.__file__.startswith(sys.argv[1]), segfn_kit.__file__\n"
        "print('runtime from the package')\n"
    )
    check = subprocess.run([str(clean_venv), "-c", guard, str(package)], cwd=package, env=_isolated_env(),
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    result = subprocess.run([str(clean_venv), "-m", "pytest", "-q"], cwd=package, env=_isolated_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    cases = json.loads((package / "export.json").read_text())["cases"]
    passed = int(result.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 3 * cases  # each case through the function, Lambda and ASGI


def test_generated_tests_fail_when_the_function_changes(golden_exports: dict[str, Path], clean_venv: Path,
                                                        tmp_path: Path) -> None:
    package = tmp_path / "changed"
    shutil.copytree(golden_exports["stripe_source"], package)
    function = package / "function.py"
    function.write_text(function.read_text().replace('"Customer Created"', '"Customer Signed Up"'))
    result = subprocess.run([str(clean_venv), "-m", "pytest", "-q", "-x"], cwd=package, env=_isolated_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "Customer Signed Up" in result.stdout


# -- layer 3: compiled and type-checked -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(regen.CASES))
def test_generated_code_compiles_type_checks_and_is_formatted(name: str, golden_exports: dict[str, Path]) -> None:
    package = golden_exports[name]
    for path in package.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    mypy = Path(sys.executable).with_name("mypy")
    result = subprocess.run(
        [str(mypy), "--strict", "--follow-imports=silent", "--no-incremental", "--cache-dir=/dev/null",
         "handler.py", "build_zip.py", "tests/recorder.py"],
        cwd=package, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout
    ruff = Path(sys.executable).with_name("ruff")
    python_files = ["handler.py", "__main__.py", "build_zip.py", "tests"]
    lint = subprocess.run([str(ruff), "check", "--isolated", "--no-cache", "--line-length", "120",
                           "--select", "E,F,W,I,B,UP,RUF", *python_files], cwd=package, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    formatted = subprocess.run([str(ruff), "format", "--isolated", "--no-cache", "--line-length", "120", "--check",
                                *python_files], cwd=package, capture_output=True, text=True)
    assert formatted.returncode == 0, formatted.stdout


# -- the handler as an endpoint ---------------------------------------------------------------


def test_lambda_http_api_v2_event_is_delivered(ping: types.ModuleType, fake: FakeClient) -> None:
    body = b'{"user":"u1"}'
    response = ping.lambda_handler(v2_event(body, JSON), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"ok": True, "outcome": "ok", "events": 1}
    assert [e["userId"] for e in fake.sent] == ["u1"]


def test_lambda_rest_api_v1_event_with_base64_body(ping: types.ModuleType, fake: FakeClient) -> None:
    body = b'{"user":"u2"}'
    event = {
        "version": "1.0", "httpMethod": "POST", "path": "/hook",
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": {"a": "1"}, "multiValueQueryStringParameters": {"a": ["1"]},
        "body": base64.b64encode(body).decode(), "isBase64Encoded": True,
    }
    assert ping.lambda_handler(event, None)["statusCode"] == 200
    assert fake.sent[0]["userId"] == "u2"


def test_function_url_event_with_url_encoded_body(ping: types.ModuleType, fake: FakeClient) -> None:
    body = b"user=u3&x=%20y"
    event = v2_event(body, {"Content-Type": "application/x-www-form-urlencoded"}, b64=True)
    event["requestContext"]["domainName"] = "abc.lambda-url.us-east-1.on.aws"
    assert ping.lambda_handler(event, None)["statusCode"] == 200
    assert fake.sent[0]["event"] == "Form Posted"


@pytest.mark.parametrize(
    ("body", "status", "outcome"),
    [
        (b'{"type":"skip"}', 200, "EventNotSupported"),
        (b'{"type":"retry"}', 503, "RetryError"),
        (b'{"type":"invalid"}', 400, "ValidationError"),
        (b'{"nouser":1}', 500, "error"),
        (b"{not json", 400, "InvalidEventPayload"),
        (b"\xff\xfe", 400, "InvalidEventPayload"),
        (b"[" * 50_000 + b"]" * 50_000, 400, "InvalidEventPayload"),
    ],
)
def test_status_follows_the_outcome(ping: types.ModuleType, fake: FakeClient, body: bytes, status: int,
                                    outcome: str) -> None:
    response = ping.lambda_handler(v2_event(body, JSON, b64=True), None)
    assert (response["statusCode"], json.loads(response["body"])["outcome"]) == (status, outcome)
    assert fake.sent == []


def test_timeout_answers_504_within_lambdas_remaining_time(ping: types.ModuleType, fake: FakeClient) -> None:
    class Context:
        aws_request_id = "req-1"

        def get_remaining_time_in_millis(self) -> int:
            return 1800

    # the function sleeps 3 s: within the default 5 s limit it would succeed, so a 504 shows
    # the limit came from the context's remaining time (1.8 s, less the delivery reserve)
    response = ping.lambda_handler(v2_event(b'{"type":"slow","user":"u"}', JSON), Context())
    assert response["statusCode"] == 504
    assert fake.sent == []


def test_lambdas_remaining_time_bounds_this_delivery_only(ping: types.ModuleType, fake: FakeClient) -> None:
    class Context:
        aws_request_id = "req-2"

        def get_remaining_time_in_millis(self) -> int:
            return 3000

    assert ping.lambda_handler(v2_event(b'{"user":"u1"}', JSON), Context())["statusCode"] == 200
    assert ping.lambda_handler(v2_event(b'{"user":"u2"}', JSON), None)["statusCode"] == 200
    first, second = fake.budgets
    assert first is not None and 0.5 <= first < 3.0  # what was left of the Lambda's time
    assert second is None  # the next call is not bound by the earlier deadline
    assert fake.budget == 10.0  # the shared client was not changed


def test_failed_delivery_is_never_acknowledged(ping: types.ModuleType, clean_env: pytest.MonkeyPatch) -> None:
    # a real client against a port nothing listens on, with a short budget
    clean_env.setenv("SEGMENT_WRITE_KEY", "wk-never-logged-5678")
    clean_env.setenv("SEGMENT_API_HOST", "http://127.0.0.1:9")
    clean_env.setenv("SEGFN_SETTINGS", json.dumps({"source": "web"}))
    clean_env.setenv("SEGFN_DELIVERY_BUDGET", "1")
    response = ping.lambda_handler(v2_event(b'{"user":"u1"}', JSON), None)
    assert response["statusCode"] == 502
    assert "wk-never-logged-5678" not in response["body"]


@pytest.mark.parametrize("scheme", ["stripe", "github", "shopify", "zendesk", "hmac-sha256"])
def test_signatures_are_checked_before_the_function_runs(ping: types.ModuleType, fake: FakeClient,
                                                         clean_env: pytest.MonkeyPatch, scheme: str) -> None:
    clean_env.setenv("SEGFN_SIGNATURE", scheme)
    clean_env.setenv("SEGFN_SIGNING_SECRET", "whsec_test_123")
    body = b'{"user":"u1"}'
    good = {**JSON, **sign(scheme, "whsec_test_123", body)}
    bad = {**JSON, **sign(scheme, "whsec_other", body)}
    assert ping.lambda_handler(v2_event(body, bad), None)["statusCode"] == 401
    assert ping.lambda_handler(v2_event(body, JSON), None)["statusCode"] == 401
    assert fake.sent == []
    assert ping.lambda_handler(v2_event(body, good), None)["statusCode"] == 200
    assert len(fake.sent) == 1


@pytest.mark.parametrize("scheme", ["stripe", "zendesk"])
@pytest.mark.parametrize("when, says", [(-301, "stale"), (1_577_836_800, "stale"), (4_102_444_800, "from the future")])
def test_stale_or_future_signatures_are_refused(ping: types.ModuleType, fake: FakeClient,
                                                clean_env: pytest.MonkeyPatch, scheme: str, when: int,
                                                says: str) -> None:
    clean_env.setenv("SEGFN_SIGNATURE", scheme)
    clean_env.setenv("SEGFN_SIGNING_SECRET", "whsec_test_123")
    body = b'{"user":"u1"}'
    timestamp = int(time.time()) + when if when < 0 else when  # 301 s ago, 2020-01-01, 2100-01-01
    stale = {**JSON, **sign(scheme, "whsec_test_123", body, timestamp=timestamp)}
    response = ping.lambda_handler(v2_event(body, stale), None)
    assert response["statusCode"] == 401
    assert says in json.loads(response["body"])["error"] and "tolerance 300 s" in json.loads(response["body"])["error"]
    assert fake.sent == []


def test_limits_method_and_content_type(ping: types.ModuleType, fake: FakeClient,
                                        clean_env: pytest.MonkeyPatch) -> None:
    assert ping.lambda_handler(v2_event(b"", {}, method="GET"), None)["statusCode"] == 405
    assert ping.lambda_handler(v2_event(b"", {}, method="GET"), None)["headers"]["Allow"] == "POST"
    xml = ping.lambda_handler(v2_event(b"<a/>", {"Content-Type": "multipart/form-data; boundary=x"}), None)
    assert xml["statusCode"] == 415
    assert ping.lambda_handler(v2_event(b'{"user":"' + b"x" * 600_000 + b'"}', JSON), None)["statusCode"] == 413
    clean_env.setenv("SEGFN_MAX_BODY", "10")
    assert ping.lambda_handler(v2_event(b'{"user":"u1"}', JSON), None)["statusCode"] == 413
    assert fake.sent == []


@pytest.mark.parametrize(
    "event",
    [None, [], "text", {"not": "http"}, {"httpMethod": "POST", "body": 12},
     {"version": "2.0", "requestContext": {"http": {"method": "POST"}}, "body": "%%%", "isBase64Encoded": True},
     {"version": "2.0", "requestContext": {"http": {"method": "POST"}}, "headers": {"x\r\ninjected": "a\r\nb"},
      "body": '{"user":"u1"}'}],
)
def test_no_exception_escapes_on_hostile_events(ping: types.ModuleType, fake: FakeClient, event: Any) -> None:
    response = ping.lambda_handler(event, None)
    assert isinstance(response["statusCode"], int)
    assert "\r\n" not in json.dumps(response["headers"])


def test_configuration_errors_answer_500_and_name_the_variable(ping: types.ModuleType, fake: FakeClient,
                                                              clean_env: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("SEGFN_SETTINGS", '{"apiToken": "' + PING_SECRET + '", oops')
    response = ping.lambda_handler(v2_event(b'{"user":"u1"}', JSON), None)
    assert response["statusCode"] == 500
    assert "SEGFN_SETTINGS" in response["body"]
    assert PING_SECRET not in response["body"] + capsys.readouterr().err
    clean_env.setenv("SEGFN_SETTINGS", "{}")
    clean_env.setenv("SEGFN_SIGNATURE", "stripe")
    assert "SEGFN_SIGNING_SECRET" in ping.lambda_handler(v2_event(b"{}", JSON), None)["body"]


def test_missing_write_key_is_a_configuration_error(ping: types.ModuleType, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SEGFN_SETTINGS", json.dumps({"source": "web"}))
    response = ping.lambda_handler(v2_event(b'{"user":"u1"}', JSON), None)
    assert response["statusCode"] == 500
    assert "SEGMENT_WRITE_KEY is not set" in json.loads(response["body"])["error"]


def test_settings_from_one_variable_each(ping: types.ModuleType, fake: FakeClient,
                                         clean_env: pytest.MonkeyPatch) -> None:
    clean_env.delenv("SEGFN_SETTINGS")
    clean_env.setenv("SEGFN_SETTING_source", "mobile")
    assert ping.lambda_handler(v2_event(b'{"user":"u1"}', JSON), None)["statusCode"] == 200
    assert fake.sent[0]["properties"] == {"source": "mobile"}


def test_one_json_log_line_per_invocation_without_payload_or_secrets(
    ping: types.ModuleType, fake: FakeClient, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    ping.lambda_handler(v2_event(b'{"user":"private-user-42"}', JSON), None)
    ping.lambda_handler(v2_event(b'{"type":"invalid"}', JSON), None)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert {k: first[k] for k in ("via", "status", "outcome", "events")} == {
        "via": "lambda", "status": 200, "outcome": "ok", "events": 1}
    assert isinstance(first["duration_ms"], float)
    assert "private-user-42" not in lines[0]
    # the function put the secret in its error message: the log masks it
    assert second["outcome"] == "ValidationError" and PING_SECRET not in lines[1] and "••••••" in second["error"]
    clean_env.setenv("SEGFN_LOG_PAYLOADS", "1")
    ping.lambda_handler(v2_event(b'{"user":"private-user-42"}', JSON), None)
    assert "private-user-42" in capsys.readouterr().err


def test_asgi_app_posts_lifespan_and_methods(ping: types.ModuleType, fake: FakeClient) -> None:
    import asyncio

    import httpx

    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=ping.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ok = await client.post("/", content=b'{"user":"u7"}', headers=JSON)
            get = await client.get("/")
            big = await client.post("/", content=b"x" * 600_000, headers=JSON)
            return [ok.status_code, get.status_code, big.status_code]

    assert asyncio.run(scenario()) == [200, 405, 413]
    assert [e["userId"] for e in fake.sent] == ["u7"]


def test_destination_handler_takes_single_events_and_batches(
    golden_exports: dict[str, Path], clean_env: pytest.MonkeyPatch
) -> None:
    zendesk = load_handler(golden_exports["zendesk_destination"])
    recorder = load_handler_module(golden_exports["zendesk_destination"] / "tests" / "recorder.py")
    clean_env.setenv("SEGFN_SETTINGS", json.dumps({"subdomain": "acme", "email": "a@example.com",
                                                   "apiToken": ZENDESK_SECRET}))
    track = {"type": "track", "userId": "u1", "event": "Order Failed", "messageId": "m1",
             "properties": {"email": "jo@example.com", "order_id": "o1"}}
    page = {"type": "page", "userId": "u1", "messageId": "m2"}
    no_email = {"type": "track", "userId": "u1", "event": "Support Requested", "messageId": "m3"}
    with recorder.record_http() as calls:
        single = zendesk.lambda_handler(v2_event(json.dumps(track).encode(), JSON), None)
        batch = zendesk.lambda_handler(v2_event(json.dumps([track, page]).encode(), JSON), None)
        wrapped = zendesk.lambda_handler(v2_event(json.dumps({"batch": [track, page]}).encode(), JSON), None)
        rejected = zendesk.lambda_handler(v2_event(json.dumps(no_email).encode(), JSON), None)
    assert [r["statusCode"] for r in (single, batch, wrapped, rejected)] == [200, 200, 200, 400]
    results = json.loads(batch["body"])["results"]
    assert [(r["outcome"], r["status"]) for r in results] == [("ok", 200), ("EventNotSupported", 200)]
    assert [c["url"] for c in calls] == ["https://acme.zendesk.com/api/v2/tickets.json"] * 3


def load_handler_module(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"m_{abs(hash(str(path)))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_destination_retry_answers_5xx(golden_exports: dict[str, Path], clean_env: pytest.MonkeyPatch) -> None:
    import httpx

    zendesk = load_handler(golden_exports["zendesk_destination"])
    clean_env.setenv("SEGFN_SETTINGS", json.dumps({"subdomain": "acme", "email": "a@example.com",
                                                   "apiToken": ZENDESK_SECRET}))

    def busy(self: Any, request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "5"}, request=request)

    clean_env.setattr(httpx.HTTPTransport, "handle_request", busy)
    track = {"type": "track", "userId": "u1", "event": "Order Failed", "messageId": "m1",
             "properties": {"email": "jo@example.com"}}
    response = zendesk.lambda_handler(v2_event(json.dumps(track).encode(), JSON), None)
    assert response["statusCode"] == 503
    assert ZENDESK_SECRET not in response["body"]


# -- command line and Lambda zip --------------------------------------------------------------


def test_command_line_of_the_package(golden_exports: dict[str, Path], tmp_path: Path) -> None:
    package = golden_exports["stripe_source"]
    payload = ROOT / "sample_payloads" / "stripe" / "customer.created.json"
    result = subprocess.run([sys.executable, str(package), str(payload)], cwd=tmp_path, env=_isolated_env(),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["outcome"] == "ok"
    assert [e["type"] for e in record["events"]] == ["identify", "track"]
    piped = subprocess.run([sys.executable, "-m", "handler"], cwd=package, env=_isolated_env(),
                           input=payload.read_text(), capture_output=True, text=True)
    assert json.loads(piped.stdout)["events"] == record["events"]


def test_segfn_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from segfn_kit._cli import main

    out = tmp_path / "stripe"
    code = main(["export", str(example_path("stripe_source")), "--out", str(out),
                 "--payloads", str(ROOT / "sample_payloads" / "stripe")])
    assert code == 0
    assert "test cases" in capsys.readouterr().out
    assert (out / "handler.py").is_file()
    bad = tmp_path / "bad.py"
    bad.write_text("import pandas\ndef on_request(request, settings):\n    pass\n")
    assert main(["export", str(bad), "--out", str(tmp_path / "bad")]) == 1
    assert "line 1: import pandas" in capsys.readouterr().err


def test_lambda_zip_vendors_httpx_and_repeats(golden_exports: dict[str, Path], tmp_path: Path) -> None:
    from segfn_kit._export import build_zip

    package = tmp_path / "pkg"
    shutil.copytree(golden_exports["stripe_source"], package)
    first = build_zip(package)
    second = build_zip(package, tmp_path / "again.zip")
    assert first.read_bytes() == second.read_bytes()
    names = zipfile.ZipFile(first).namelist()
    for expected in ("handler.py", "function.py", "segfn_kit/runtime/_function.py", "httpx/__init__.py"):
        assert expected in names
    assert not any(n.startswith(("tests/", "pandas/", "dist/")) for n in names)


@pytest.fixture(scope="module", autouse=True)
def _forget_loaded_handlers() -> Iterator[None]:
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("exported_handler_"):
            del sys.modules[name]


def test_destination_rejections_match_the_preview(golden_exports: dict[str, Path], clean_env: pytest.MonkeyPatch) -> None:
    """One rule: the deployed answer names the same reason the preview shows, per event, in order."""
    from segfn_kit import run

    zendesk = load_handler(golden_exports["zendesk_destination"])
    clean_env.setenv("SEGFN_SETTINGS", json.dumps({"subdomain": "acme", "email": "a@example.com",
                                                   "apiToken": ZENDESK_SECRET}))
    samples: list[Any] = [
        None, [], {}, {"type": ""}, {"type": "purchase", "userId": "u"}, {"type": "alias", "anonymousId": "a"},
        {"type": "delete"}, {"type": "track", "event": "x"}, {"type": "page", "anonymousId": "a"},
    ]
    preview = run(regen.CASES["zendesk_destination"][0], samples,
                  {"subdomain": "acme", "email": "a@example.com", "apiToken": ZENDESK_SECRET})
    response = zendesk.lambda_handler(v2_event(json.dumps(samples).encode(), JSON), None)
    results = json.loads(response["body"])["results"]
    assert [r["outcome"] for r in results] == preview["outcome"].tolist()
    assert [r.get("error") for r in results] == preview["error"].tolist()


@pytest.mark.parametrize("name", sorted(regen.CASES))
def test_approved_run_becomes_the_package_tests(name: str, tmp_path: Path, clean_venv: Path) -> None:
    """run -> approve -> export: the package's tests pass on the approved outputs."""
    import segfn_kit

    function, inputs, settings = regen.CASES[name]
    fn = tmp_path / function.name
    shutil.copy(function, fn)
    if name == "stripe_source":
        payloads = segfn_kit.load_payloads(*map(str, inputs))
        ids = list(payloads.index)
    else:
        payloads = segfn_kit.sample_events(*inputs)
        ids = [i for i in payloads.index if isinstance(payloads.loc[i, "event"], dict)]
    results = segfn_kit.run(str(fn), payloads, settings=settings)
    segfn_kit.approve(results, payloads, ids=ids, settings=settings)
    package = export(fn, tmp_path / "out", settings=settings)
    cases = [json.loads(line) for line in (package / "tests" / "cases.jsonl").read_text().splitlines()]
    assert [c["payload_id"] for c in cases] == [str(i) for i in ids]
    result = subprocess.run([str(clean_venv), "-m", "pytest", "-q"], cwd=package, env=_isolated_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
