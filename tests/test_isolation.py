"""Hostile functions in worker processes: every bad call is its own error row, the rest run.

Time limits here are short (a fraction of a second) to keep the suite fast; the rules are
the same at Segment's 5 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from segfn_kit.runtime import Function, FunctionLoadError, FunctionTimeout, Request
from segfn_kit.runtime._function import call_with_timeout
from segfn_kit.runtime._isolation import DEFAULT_MEMORY_LIMIT, WorkerPool
from tests._servers import clean_env, serving

HOSTILE = '''
import os, sys, time
from segfn_kit.runtime import Segment

SETTINGS = {"apiToken": {"type": "string", "secret": True}}

class Boom(BaseException):
    pass

def on_request(request, settings):
    k = request.json()["k"]
    print("start", k, settings["apiToken"])
    if k == "loop":
        while True:
            pass
    if k == "swallow":  # a bare except in a loop swallows the timeout signal
        while True:
            try:
                time.sleep(0.01)
            except:
                pass
    if k == "c_call":
        sum(range(10**11))
    if k == "memory":
        blob = bytearray(6 * 2**30)
    if k == "exit":
        os._exit(3)
    if k == "keyboard":
        raise KeyboardInterrupt
    if k == "sys_exit":
        sys.exit(2)
    if k == "base":
        raise Boom("custom base exception")
    if k == "close":
        sys.stdout.close()
        print("still captured")
    if k == "secret":
        raise ValueError("token " + settings["apiToken"])
    Segment.track(user_id="u1", event="Seen", properties={"k": k})
'''

SETTINGS = {"apiToken": "s3cr3t-value"}

EXPECTED = {
    "loop": "FunctionTimeout: the function ran past its 0.5 s limit",
    "swallow": "FunctionTimeout: the function ran past its 0.5 s limit and did not stop",
    "c_call": "FunctionTimeout: the function ran past its 0.5 s limit and did not stop",
    "memory": f"MemoryLimitExceeded: the function used more than its {DEFAULT_MEMORY_LIMIT // 2**20:g} MiB",
    "exit": "WorkerExit: the function ended its worker process (exit code 3)",
    "keyboard": "KeyboardInterrupt: the function raised KeyboardInterrupt",
    "sys_exit": "SystemExit: the function called sys.exit(2)",
    "base": "Boom: custom base exception",
    "secret": "ValueError: token ••••••",
}


@pytest.fixture(scope="module")
def hostile() -> Function:
    return Function.from_source(HOSTILE, filename="<hostile cell>")


def _requests(keys: list[str]) -> list[Request]:
    return [Request({"k": k}) for k in keys]


def test_every_hostile_call_is_its_own_row_and_the_next_payload_runs(hostile: Function) -> None:
    keys = []
    for bad in EXPECTED:
        keys += [bad, f"ok-after-{bad}"]
    keys.append("close")
    with WorkerPool(hostile, SETTINGS, timeout=0.5, grace=0.5, chunk_size=64) as pool:
        results = list(pool.map(_requests(keys)))
        replaced = pool.replaced
    assert len(results) == len(keys)
    for key, result in zip(keys, results, strict=True):
        inv = result.invocation
        if key in EXPECTED:
            assert inv.outcome == "error", key
            assert inv.error is not None and inv.error.startswith(EXPECTED[key]), (key, inv.error)
            assert "s3cr3t-value" not in inv.error
            assert inv.events == []
        elif key == "close":
            assert inv.outcome == "ok"
            assert result.logs == "start close ••••••\nstill captured\n"
        else:
            assert inv.outcome == "ok", (key, inv.error)
            assert inv.events[0]["properties"] == {"k": key}
            assert result.logs == f"start {key} ••••••\n"
    timeouts = [results[keys.index(k)].invocation for k in ("loop", "swallow", "c_call")]
    assert all(inv.timed_out for inv in timeouts)
    # killed after the time limit (swallow, c_call), ended itself (exit), memory limit
    assert replaced == 4


def test_results_of_a_chunk_before_a_kill_are_kept(hostile: Function) -> None:
    keys = ["a", "b", "c_call", "d", "e"]
    with WorkerPool(hostile, SETTINGS, timeout=0.5, grace=0.2, chunk_size=100) as pool:
        outcomes = [r.invocation.outcome for r in pool.map(_requests(keys))]
    assert outcomes == ["ok", "ok", "error", "ok", "ok"]


def test_raw_calls_are_read_by_the_hook_and_reply_without_their_events(hostile: Function) -> None:
    # lines of an archive read in the worker: the hook's reply comes back, the events stay there
    lines = [b'{"k": "a"}', b'{"k": ', b'{"k": "loop"}', b'{"k": "exit"}', b'{"k": "b"}', b"[1, 2"]
    calls = [("raw", (n, line)) for n, line in enumerate(lines, 1)]
    with WorkerPool(hostile, SETTINGS, timeout=0.5, grace=0.2, raw="segfn_kit._replaylines:keep") as pool:
        results = list(pool.map(calls))  # type: ignore[arg-type]
    outcomes = [r.invocation.outcome for r in results]
    assert outcomes == ["ok", "error", "error", "error", "ok", "error"]
    assert all(r.invocation.events == [] for r in results)
    events, objects, (kept, _) = results[0].reply
    assert (events, objects, kept[0]["properties"]) == (1, 0, {"k": "a"})
    assert results[1].reply.startswith("line 2: ") and results[5].reply.startswith("line 6: ")
    assert results[2].invocation.timed_out and results[2].reply is None
    assert results[3].invocation.error.startswith("WorkerExit") and results[3].reply is None
    assert results[4].reply[2][0][0]["properties"] == {"k": "b"}
    assert results[0].logs == "start a ••••••\n"


def test_a_raw_call_to_a_pool_without_the_hook_is_an_error(hostile: Function) -> None:
    with WorkerPool(hostile, SETTINGS) as pool:
        (result,) = pool.map([("raw", (1, b'{"k": "a"}'))])
    assert result.invocation.outcome == "error" and "raw hook" in (result.invocation.error or "")


def test_parallel_workers_keep_input_order(hostile: Function) -> None:
    keys = [str(n) for n in range(300)]
    keys[17] = "exit"
    keys[200] = "loop"
    with WorkerPool(hostile, SETTINGS, timeout=0.5, workers=2, chunk_size=16) as pool:
        results = list(pool.map(_requests(keys)))
    for key, result in zip(keys, results, strict=True):
        if key in ("exit", "loop"):
            assert result.invocation.outcome == "error"
        else:
            assert result.invocation.events[0]["properties"]["k"] == key


def test_calls_from_many_threads_survive_a_stuck_one(hostile: Function) -> None:
    before = threading.active_count()
    with WorkerPool(hostile, SETTINGS, timeout=0.5, grace=0.2, workers=2) as pool:
        answers: dict[int, str] = {}

        def one(n: int, key: str) -> None:
            answers[n] = pool.call(Request({"k": key})).invocation.outcome

        threads = [threading.Thread(target=one, args=(n, "c_call" if n % 4 == 0 else f"k{n}")) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert [answers[n] for n in range(12)] == ["error" if n % 4 == 0 else "ok" for n in range(12)]
        assert pool.replaced == 3
    assert threading.active_count() == before


def test_a_function_from_a_notebook_cell_runs_in_the_worker() -> None:
    cell = "from segfn_kit.runtime import Segment\ndef on_request(r, s):\n    Segment.track(user_id='u', event=r.json()['e'])\n"
    fn = Function.from_source(cell)
    with WorkerPool(fn) as pool:
        inv = pool.call(Request({"e": "Cell Event"})).invocation
    assert inv.events[0]["event"] == "Cell Event"


def test_a_destination_runs_in_the_worker() -> None:
    fn = Function.from_source(
        "def on_track(event, settings):\n    event['properties']['seen'] = True\n    return event\n"
        "def on_batch(events, settings):\n    return [200] * len(events)\n"
    )
    event = {"type": "track", "event": "E", "userId": "u", "properties": {}}
    with WorkerPool(fn) as pool:
        one = pool.call(("event", event)).invocation
        batch = pool.call(("batch", [event, event])).invocation
    assert one.returned["properties"] == {"seen": True}
    assert batch.returned == [200, 200]


def test_a_function_that_does_not_load_in_the_worker_is_a_load_error() -> None:
    fn = Function.from_source(
        "import sys\nif sys.argv[0] == '-c':  # only in the worker process\n"
        "    raise ImportError('no module named x')\ndef on_request(r, s):\n    pass\n",
        filename="fn.py",
    )
    with WorkerPool(fn) as pool, pytest.raises(FunctionLoadError, match=r"fn\.py, line 3: the module raised ImportError"):
        pool.call(Request(b"{}"))


def test_call_with_timeout_never_reports_a_finished_call_as_a_timeout() -> None:
    # the timer signal arrives as the call returns: the call finished, so no timeout
    assert call_with_timeout(signal.raise_signal, (signal.SIGALRM,), 5.0) is None
    with pytest.raises(FunctionTimeout):
        call_with_timeout(_spin, (), 0.1)


def _spin() -> None:
    while True:
        pass


# -- through run() and `segfn run` --------------------------------------------------------

RUN_KEYS = ["a", "loop", "b", "c_call", "memory", "exit", "keyboard", "sys_exit", "base", "close", "secret", "z"]


def _check_rows(outcomes: list[str], errors: list[str | None]) -> None:
    for key, outcome, error in zip(RUN_KEYS, outcomes, errors, strict=True):
        if key in EXPECTED:
            assert outcome == "error", key
            assert error is not None and error.startswith(EXPECTED[key]), (key, error)
            assert "s3cr3t-value" not in error
        else:
            assert outcome == "ok", (key, error)


def test_run_gives_every_hostile_payload_its_row() -> None:
    from segfn_kit import run

    results = run(HOSTILE, [{"k": k} for k in RUN_KEYS], SETTINGS, timeout=0.5)
    _check_rows(results["outcome"].tolist(), results["error"].tolist())
    assert results.loc["input1", "logs"] == "start a ••••••\n"
    assert results.loc["input10", "logs"] == "start close ••••••\nstill captured\n"
    assert results.loc["input12", "events"][0]["properties"] == {"k": "z"}


@pytest.mark.parametrize("isolation", ["process", "none"])
def test_other_threads_output_stays_out_of_a_payloads_logs(isolation: str, capsys: pytest.CaptureFixture[str]) -> None:
    from segfn_kit import run

    fn = "def on_request(request, settings):\n    print('from the function')\n"
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            print("from another thread")
            stop.wait(0.001)

    thread = threading.Thread(target=chatter)
    thread.start()
    try:
        results = run(fn, [{"n": n} for n in range(300)], isolation=isolation)
    finally:
        stop.set()
        thread.join()
    assert set(results["logs"]) == {"from the function\n"}
    assert "from another thread" in capsys.readouterr().out


def test_segfn_run_gives_every_hostile_payload_its_line(tmp_path: Path) -> None:
    function = tmp_path / "hostile.py"
    function.write_text(HOSTILE, encoding="utf-8")
    (tmp_path / "settings.json").write_text(json.dumps(SETTINGS), encoding="utf-8")
    payloads = tmp_path / "payloads.jsonl"
    payloads.write_text("".join(json.dumps({"k": k}) + "\n" for k in RUN_KEYS), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "segfn_kit", "run", str(function), str(payloads), "--jsonl",
         "--settings", str(tmp_path / "settings.json"), "--timeout", "0.5", "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stderr  # payloads errored
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == len(RUN_KEYS)
    _check_rows([line["outcome"] for line in lines], [line["error"] for line in lines])
    assert "s3cr3t-value" not in done.stdout + done.stderr


# -- the exported handler under uvicorn ---------------------------------------------------

WRITE_KEY = "wk-isolation-7f1c"


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    from segfn_kit._export import export
    from segfn_kit._sink import running_sink

    tmp = tmp_path_factory.mktemp("hostile_export")
    (tmp / "hostile.py").write_text(HOSTILE, encoding="utf-8")
    (tmp / "payload.json").write_text(json.dumps({"k": "fine"}), encoding="utf-8")
    package = export(tmp / "hostile.py", tmp / "package", payloads=[tmp / "payload.json"], settings=SETTINGS)
    store = tmp / "sink.sqlite3"
    with running_sink(write_key=WRITE_KEY, store=store) as sink_url:
        env = clean_env()
        env.update({
            "SEGMENT_WRITE_KEY": WRITE_KEY,
            "SEGMENT_API_HOST": sink_url,
            "SEGFN_SETTINGS": json.dumps(SETTINGS),
            "SEGFN_TIMEOUT": "0.5",
            "SEGFN_WORKERS": "2",
            "SEGFN_DELIVERY_BUDGET": "3",
        })
        with serving(package, env, log_path=tmp / "server.log", timeout=30) as (url, proc):
            yield url, proc.pid, tmp / "server.log"


def test_exported_handler_stays_healthy_under_runaway_functions(hostile_server: tuple[str, int, Path]) -> None:
    url, pid, log = hostile_server
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/", json={"k": "warm-up"}).status_code == 200
        threads_before = _threads(pid)
        answers = {}
        for key in ("loop", "swallow", "c_call", "memory", "exit", "keyboard", "base", "c_call", "swallow"):
            response = client.post("/", json={"k": key})
            answers.setdefault(key, []).append((response.status_code, response.json()))
        for key in ("loop", "swallow", "c_call"):
            for status, body in answers[key]:
                assert status == 504 and body["outcome"] == "timeout", (key, body)
        for key in ("memory", "exit", "keyboard", "base"):
            status, body = answers[key][0]
            assert status == 500 and body["outcome"] == "error", (key, body)
            assert body["error"].startswith(EXPECTED[key]), body
        assert "s3cr3t-value" not in json.dumps(answers)
        # good requests after the runaways: all delivered
        good = [client.post("/", json={"k": f"good{n}"}) for n in range(20)]
        assert [r.status_code for r in good] == [200] * 20
        assert all(r.json()["events"] == 1 for r in good)
    # no thread left behind per timed-out call, no runaway process left spinning
    assert _threads(pid) <= threads_before + 1
    workers = _children(pid)
    assert len(workers) <= 3  # SEGFN_WORKERS=2 and one spare
    idle = _cpu_seconds([pid, *workers])
    time.sleep(1.0)
    assert _cpu_seconds([pid, *workers]) - idle < 0.5
    assert "s3cr3t-value" not in log.read_text()


def test_exported_command_line_gives_every_hostile_payload_its_line(hostile_server: tuple[str, int, Path]) -> None:
    package = hostile_server[2].parent / "package"
    files = []
    for key in ("fine", "c_call", "exit", "fine2"):
        path = package.parent / f"{key}.json"
        path.write_text(json.dumps({"k": key}), encoding="utf-8")
        files.append(str(path))
    env = clean_env()
    env.update({"SEGFN_SETTINGS": json.dumps(SETTINGS), "SEGFN_TIMEOUT": "0.5"})
    done = subprocess.run([sys.executable, "-m", "handler", *files], cwd=package, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["outcome"], line["status"]) for line in lines] == [
        ("ok", 200), ("timeout", 504), ("error", 500), ("ok", 200)
    ], done.stderr
    assert lines[1]["error"].startswith(EXPECTED["c_call"])
    assert lines[2]["error"].startswith(EXPECTED["exit"])
    assert "start fine ••••••" in done.stderr  # the function's prints: on stderr, masked
