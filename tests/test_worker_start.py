"""How worker processes start: forked from a single-threaded caller (the runtime already
imported: a cold start's cost), started afresh elsewhere; the hard limits hold either way.
And a blocking delivery that needs no httpx (a Lambda's first invocation)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from segfn_kit._sink import read_sink, running_sink
from segfn_kit.runtime import Function, Request, _isolation
from segfn_kit.runtime._isolation import WorkerPool, _can_fork, _Forked, _Worker

ROOT = Path(__file__).resolve().parents[1]

HOSTILE = '''\
import os
from segfn_kit.runtime import Segment


def on_request(request, settings):
    what = request.json()["do"]
    if what == "exit":
        os._exit(3)
    if what == "spin":
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    if what == "interrupt":
        raise KeyboardInterrupt
    if what == "fds":
        Segment.track(user_id="u1", event="fds",
                      properties={"fds": sorted(int(f) for f in os.listdir("/proc/self/fd"))})
        return
    Segment.track(user_id="u1", event="ok")
'''


def call(do: str) -> Request:
    return Request(json.dumps({"do": do}).encode(), {"content-type": "application/json"})


def check_hard_limits(start: str) -> None:
    worker = _Worker()
    try:
        assert isinstance(worker.process, _Forked) is (start == "fork")
    finally:
        worker.kill()
    fn = Function.from_source(HOSTILE, filename="hostile.py")
    with WorkerPool(fn, timeout=0.3, grace=0.2) as pool:
        results = [r.invocation for r in pool.map([call("exit"), call("ok"), call("spin"), call("interrupt"), call("ok")])]
    assert [r.outcome for r in results] == ["error", "ok", "error", "error", "ok"]
    assert results[0].error is not None and "exit code 3" in results[0].error
    assert results[2].timed_out and results[2].error is not None and "FunctionTimeout" in results[2].error
    assert results[3].error is not None and results[3].error.startswith("KeyboardInterrupt")
    assert results[4].events[0]["event"] == "ok"
    assert pool.replaced == 2


def check_descriptors(start: str) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        fn = Function.from_source(HOSTILE, filename="hostile.py")
        with WorkerPool(fn) as pool:
            inv = pool.call(call("fds")).invocation
    fds = inv.events[0]["properties"]["fds"]
    assert listening.fileno() not in fds  # a server's socket stays the server's
    assert len(fds) <= 8, fds  # stdio, its two pipes, its results file (and the listing itself)


@pytest.mark.parametrize("start", ["fork", "spawn"])
@pytest.mark.parametrize("check", ["check_hard_limits", "check_descriptors"])
def test_workers_however_started(check: str, start: str) -> None:
    # in a fresh interpreter: this one may run threads (a sink, dask), where nothing is forked
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGFN_", "PYTHON"))}
    env["PYTHONPATH"] = str(ROOT)
    if start == "spawn":
        env["SEGFN_WORKER_START"] = "spawn"
    script = f"from tests.test_worker_start import {check}; {check}({start!r}); print('ok')"
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_a_caller_running_threads_starts_workers_afresh() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        assert not _can_fork()
        worker = _Worker()
        try:
            assert isinstance(worker.process, subprocess.Popen)
        finally:
            worker.kill()
    finally:
        stop.set()
        thread.join(5)


def test_a_batch_replaces_the_spare_it_took_once_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    # workers started as new interpreters (a notebook kernel runs threads): a spare booting
    # beside a batch would take a core from it, so the batch starts the next one as it ends
    monkeypatch.setattr(_isolation, "_can_fork", lambda: False)
    _isolation._stop_spares()
    try:
        _isolation.start_spare()
        spare = _isolation._SPARES[()][0]
        fn = Function.from_source(HOSTILE, filename="hostile.py")
        during = []
        with WorkerPool(fn) as pool:
            for result in pool.map([call("ok"), call("ok")]):
                assert result.invocation.outcome == "ok"
                during.append(len(_isolation._SPARES.get((), [])))
            assert during == [0, 0]  # the spare is the batch's worker; none boots beside it
            ready = _isolation._SPARES[()]
            assert len(ready) == 1 and ready[0] is not spare
        # a single call (a server's) has its spare replaced at once: the next worker
        # replacing a killed one is ready
        with WorkerPool(fn) as pool:
            assert pool.call(call("ok")).invocation.outcome == "ok"
            assert len(_isolation._SPARES[()]) == 1
    finally:
        _isolation._stop_spares()


DELIVER = '''
import sys
from segfn_kit.runtime import TrackingClient
client = TrackingClient("KEY", host=sys.argv[1], budget=10)
report = client.send([{"type": "track", "userId": "u1", "event": "Paid", "messageId": "std-1"}])
assert report.accepted == 1, report
assert "httpx" not in sys.modules, "a blocking send loaded httpx"
print("ok")
'''


def test_a_blocking_send_needs_no_httpx(tmp_path: Path) -> None:
    store = tmp_path / "sink.sqlite3"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(ROOT)
    with running_sink(write_key="KEY", store=store) as url:
        done = subprocess.run([sys.executable, "-c", DELIVER, url], env=env, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    assert read_sink(store)["message_id"].tolist() == ["std-1"]


LEFT_OPEN = """
import sys
from segfn_kit.runtime import Function, Request
from segfn_kit.runtime._isolation import WorkerPool
fn = Function.from_source("def on_request(r, s):\\n    pass\\n")
pools = [WorkerPool(fn) for _ in range(2)]
for pool in pools:
    assert pool.call(Request(b"{}")).invocation.outcome == "ok"
print(" ".join(str(w.process.pid) for pool in pools for w in pool._idle))
sys.modules["segfn_kit.runtime"].left_open = pools  # dropped only as the interpreter ends
"""


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_workers_of_pools_never_closed_are_stopped_as_the_interpreter_ends(start: str) -> None:
    """A pool nobody closed stops its workers at exit: none is left running (a kill at
    shutdown must not depend on an import, which fails once modules are torn down)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGFN_", "PYTHON"))}
    env["PYTHONPATH"] = str(ROOT)
    if start == "spawn":
        env["SEGFN_WORKER_START"] = "spawn"
    done = subprocess.run([sys.executable, "-W", "default", "-c", LEFT_OPEN], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "still running" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr[-3000:]
    assert len(done.stdout.split()) == 2
