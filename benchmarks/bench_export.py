"""Exported handler: cold start against a bare interpreter, and warm per-request overhead.

Cold start is what AWS Lambda pays on a new container: a fresh interpreter importing
``handler`` from the unpacked Lambda zip (httpx vendored, bytecode precompiled) and answering
its first webhook, delivered to a sink on loopback, with the function in a worker process
(``SEGFN_ISOLATION=process``, the default) and in the handler's own (``none``). The interpreter is a bare virtual
environment (standard library only, like Lambda's runtime), and it is compared with
``python -c pass`` of the same interpreter, run in the same loop (target: at most 100 ms
above it). A cold start ends with the first answer: the timed interpreters leave with
``os._exit`` once they have it (Lambda never tears an interpreter down), while ``python -c
pass`` keeps its own (small) teardown. Warm overhead is the handler's own work per
request (event parsing, config, signature check, response, log line) with the network left
out: ``lambda_handler`` with delivery replaced by a no-op, minus the function alone on the
same request (target: under 1 ms).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from benchmarks._util import median_time, report
from segfn_kit.runtime import DEFAULT_TIMEOUT, Request

ROOT = Path(__file__).resolve().parents[1]
PAYLOADS = ROOT / "sample_payloads" / "stripe"
UV = ROOT / ".tools" / "bin" / "uv"
REPEATS = 15
WARM_REQUESTS = 2000

COLD = """
import base64, json, sys
import handler
body = open(sys.argv[1], "rb").read()
event = {"version": "2.0", "rawPath": "/", "headers": {"content-type": "application/json"},
         "requestContext": {"http": {"method": "POST", "path": "/"}},
         "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
response = handler.lambda_handler(event, None)
assert response["statusCode"] == 200, response
_exit()
"""

# a cold start ends with the first answer: Lambda never tears an interpreter down (it freezes
# or kills the container), and Python's own teardown of the handler's modules is dear (16 ms
# here, 34 ms once a worker was forked: medians of 15, measured side by side)
_EXIT = "import os, sys\ndef _exit():\n    sys.stdout.flush(); sys.stderr.flush(); os._exit(0)\n"


def _raw_body(name: str) -> bytes:
    from segfn_kit._payloads import iter_payloads

    return next(iter_payloads(str(PAYLOADS / name))).raw.encode()


def _cold(python: Path, task: Path, body_file: Path, env: dict[str, str]) -> dict[str, float]:
    bare = [str(python), "-c", "pass"]
    runtime = [str(python), "-c", _EXIT + "import segfn_kit.runtime\n_exit()"]
    importing = [str(python), "-c", _EXIT + "import handler\n_exit()"]
    invoking = [str(python), "-c", _EXIT + COLD, str(body_file)]
    times: dict[str, list[float]] = {"bare": [], "runtime": [], "import": [], "invoke": []}
    for _ in range(REPEATS):  # interleaved, so machine load affects all of them alike
        for key, command in (("bare", bare), ("runtime", runtime), ("import", importing), ("invoke", invoking)):
            start = time.perf_counter()
            subprocess.run(command, cwd=task, env=env, check=True, stderr=subprocess.DEVNULL)
            times[key].append(time.perf_counter() - start)
    return {key: statistics.median(values) for key, values in times.items()}


def _load(package: Path) -> Any:
    spec = importlib.util.spec_from_file_location("bench_export_handler", package / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _NoNetwork:
    budget = 10.0

    def send(self, events: Any) -> None:
        return None


def main() -> None:
    from segfn_kit._export import build_zip, export
    from segfn_kit._sink import running_sink
    from segfn_kit.examples import example_path

    with tempfile.TemporaryDirectory() as tmp:
        package = export(example_path("stripe_source"), Path(tmp) / "stripe", payloads=[PAYLOADS])
        body = _raw_body("customer.created.json")
        body_file = Path(tmp) / "customer.created.body"
        body_file.write_bytes(body)
        lambda_root = Path(tmp) / "task"
        with zipfile.ZipFile(build_zip(package, Path(tmp) / "lambda.zip")) as archive:
            archive.extractall(lambda_root)
        venv = Path(tmp) / "bare"
        subprocess.run([str(UV), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "SEGFN_", "PYTHON"))}

        print(f"cold start, medians of {REPEATS} fresh interpreters (customer.created -> 2 events):")
        with running_sink(write_key="bench-key") as url:
            env = {**base, "SEGMENT_WRITE_KEY": "bench-key", "SEGMENT_API_HOST": url}
            cold = _cold(venv / "bin" / "python", lambda_root, body_file, env)
            # the function in this process: what a cold start costs without the worker process
            cold_here = _cold(venv / "bin" / "python", lambda_root, body_file, {**env, "SEGFN_ISOLATION": "none"})
        report("python -c pass", cold["bare"] * 1000, "ms")
        report("import segfn_kit.runtime (from the unpacked Lambda zip)", cold["runtime"] * 1000, "ms")
        report("import handler (runtime + handler + function file)", cold["import"] * 1000, "ms")
        report("import + first invocation, delivered to a loopback sink", cold["invoke"] * 1000, "ms")
        report("cold start above the bare interpreter", (cold["invoke"] - cold["bare"]) * 1000, "ms",
               "<= 100 ms")
        report("cold start / bare interpreter", cold["invoke"] / cold["bare"], "x")
        report("import + first invocation, SEGFN_ISOLATION=none", cold_here["invoke"] * 1000, "ms")
        report("cold start above the bare interpreter, SEGFN_ISOLATION=none",
               (cold_here["invoke"] - cold_here["bare"]) * 1000, "ms", "<= 100 ms")

        handler = _load(package)
        handler.ENGINE.get_client = lambda config: _NoNetwork()
        os.environ["SEGMENT_WRITE_KEY"] = "bench-key"
        event = {"version": "2.0", "rawPath": "/", "headers": {"content-type": "application/json"},
                 "requestContext": {"http": {"method": "POST", "path": "/"}},
                 "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
        request_headers = {"content-type": "application/json"}
        settings = handler.ENGINE.config().settings

        def through_handler() -> None:
            for _ in range(WARM_REQUESTS):
                handler.lambda_handler(event, None)

        def function_alone() -> None:
            for _ in range(WARM_REQUESTS):
                request = Request(base64.b64decode(event["body"]), request_headers, method="POST", url="/")
                handler.FUNCTION.on_request(request, settings, timeout=DEFAULT_TIMEOUT)

        with contextlib.redirect_stderr(io.StringIO()):
            through_handler()  # warm up
            whole = median_time(through_handler, repeats=5) / WARM_REQUESTS
        alone = median_time(function_alone, repeats=5) / WARM_REQUESTS
        os.environ.pop("SEGMENT_WRITE_KEY", None)
        print(f"warm requests, medians over 5 x {WARM_REQUESTS} (network left out):")
        report("function alone (on_request)", alone * 1e6, "µs")
        report("lambda_handler, delivery a no-op", whole * 1e6, "µs")
        report("handler overhead per request", (whole - alone) * 1000, "ms", "< 1 ms")
        report("lambda_handler / function alone", whole / alone, "x")
        print(json.dumps({"cold_above_bare_ms": round((cold["invoke"] - cold["bare"]) * 1000, 1),
                          "warm_overhead_ms": round((whole - alone) * 1000, 4)}))
        sys.modules.pop("bench_export_handler", None)


if __name__ == "__main__":
    main()
