"""Cluster replay and profile on a real Dask cluster on loopback (a scheduler and two worker
processes started here), delivering to the sink with faults, one worker SIGKILLed mid-run."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("distributed")

from segfn_kit._cli import main as cli
from segfn_kit._cluster import Partition, partition_payloads, plan_partitions
from segfn_kit._payloads import iter_payloads
from segfn_kit._replay import ClusterError, replay
from segfn_kit._sink import read_sink, running_sink
from tests._servers import free_port

pytestmark = pytest.mark.cluster

KEY = "wk-cluster-secret-7f3a"
SECRET = "sk-setting-secret-91c2"
RATE = 25.0

FUNCTION = '''\
from segfn_kit.runtime import Segment

SETTINGS = {"api_token": {"type": "string", "required": True, "secret": True}}

def on_request(request, settings):
    body = request.json()
    Segment.track(user_id=body["user"], event="Paid", properties={"n": body["n"]})
    if body["n"] % 5 == 0:
        Segment.identify(user_id=body["user"], traits={"plan": "pro"})
'''


def _start_worker(address: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
             "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0"],
            stdout=subprocess.DEVNULL, stderr=err,
        )


def _wait_workers(address: str, count: int, timeout: float = 90.0) -> None:
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(count, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    logs = tmp_path_factory.mktemp("cluster-logs")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="3")
    with open(logs / "scheduler.log", "ab") as err:
        scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
             "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=err, env=env,
        )
    workers = [_start_worker(address, logs / f"worker{i}.log") for i in range(2)]
    try:
        _wait_workers(address, 2)
        yield {"address": address, "workers": workers, "logs": logs}
    finally:
        for proc in [*workers, scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*workers, scheduler]:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def archive(tmp_path: Path) -> dict[str, Path]:
    fn = tmp_path / "billing.py"
    fn.write_text(FUNCTION)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"api_token": SECRET}))
    data = tmp_path / "archive" / "2025.jsonl"
    data.parent.mkdir()
    with open(data, "w") as fh:
        for n in range(1600):
            fh.write(json.dumps({"user": f"u{n % 97}", "n": n, "pad": "x" * (n % 13)}) + "\n")
            if n % 100 == 0:
                fh.write("\n")
    return {"fn": fn, "settings": settings, "data": data, "dir": tmp_path}


def _expected_ids(archive: dict[str, Path]) -> set[str]:
    out = archive["dir"] / "expected.jsonl"
    summary = replay(archive["fn"], archive["data"], out=out, settings=archive["settings"])
    assert summary.events == 1600 + 320
    return {json.loads(line)["messageId"] for line in out.read_text().splitlines()}


def _max_per_second(stamps: list[str]) -> int:
    times = sorted(dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() for s in stamps)
    best, left = 0, 0
    for right, t in enumerate(times):
        while t - times[left] >= 1.0:
            left += 1
        best = max(best, right - left + 1)
    return best


def test_kill_a_worker_mid_run_loses_nothing_and_a_rerun_sends_nothing(
    cluster: dict[str, Any], archive: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = _expected_ids(archive)
    store = archive["dir"] / "sink.sqlite3"
    checkpoint = archive["dir"] / "ckpt"
    monkeypatch.setenv("SEGMENT_WRITE_KEY", KEY)
    with running_sink(write_key=KEY, store=store) as url:
        httpx.post(url + "/__faults", json={"fail_rate": 0.3, "retry_after": 0.2, "seed": 14}).raise_for_status()
        args = ["replay", str(archive["fn"]), str(archive["data"]), "--to", url, "--scheduler", cluster["address"],
                "--partitions", "8", "--rate", str(RATE), "--checkpoint", str(checkpoint),
                "--settings", str(archive["settings"]), "--batch-events", "25", "--no-progress"]

        import threading

        killed: list[int] = []

        def killer() -> None:
            # SIGKILL the second worker once the replay is well under way
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                stats = httpx.get(url + "/__stats").json()
                if stats.get("requests", 0) >= 25:
                    victim = cluster["workers"][1]
                    victim.send_signal(signal.SIGKILL)
                    victim.wait(timeout=10)
                    killed.append(victim.pid)
                    return
                time.sleep(0.05)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        code = cli(args)
        thread.join(timeout=5)
        first = capsys.readouterr()
        assert killed, "the worker was not killed during the run"
        assert code == 0, first.out + first.err
        assert "partitions    8 on 2 worker(s)" in first.out
        assert "dashboard:" in first.err

        events = read_sink(store)
        delivered = set(events["message_id"])
        requests = read_sink(store, requests=True)
        duplicates = len(events) - len(delivered)
        max_rate = _max_per_second(requests["received_at"].tolist())
        with capsys.disabled():
            print(f"\nkill-a-worker run: expected {len(expected)}, delivered {len(delivered)} distinct, "
                  f"{duplicates} duplicates (same messageIds), {len(requests)} requests, "
                  f"max {max_rate} requests in one second (cap {RATE:g}/s)", file=sys.stderr)
        assert delivered == expected  # all of them, none extra
        assert max_rate <= RATE + 3
        assert (requests["fault"].notna()).any()  # the faults happened

        # an identical rerun: every partition is in the checkpoint, nothing is sent
        before = len(requests)
        code = cli(args)
        second = capsys.readouterr()
        assert code == 0, second.out + second.err
        assert "8 skipped (recorded in the checkpoint)" in second.out
        assert len(read_sink(store, requests=True)) == before

    # the secrets reached the workers without appearing in their logs or the scheduler's
    for log in cluster["logs"].iterdir():
        text = log.read_text(errors="replace")
        assert KEY not in text and SECRET not in text, log.name

    # the tests after this one run on the worker left


def test_file_url_glob_gives_the_one_process_events(
    cluster: dict[str, Any], archive: dict[str, Path]
) -> None:
    expected = _expected_ids(archive)
    out_dir = archive["data"].parent
    (out_dir / "2026.jsonl.gz").write_bytes(__import__("gzip").compress(b'{"user": "g1", "n": 1}\n'))
    summary = replay(archive["fn"], f"file://{out_dir}/*.jsonl*", scheduler=cluster["address"], partitions=5,
                     dry_run=True, settings=archive["settings"])
    assert summary.events == 1600 + 320 + 1
    assert summary.partitions == 6  # 5 ranges of the big file, the .gz file whole
    assert summary.outcomes == {"ok": 1601}
    assert len(expected) == 1920


def test_profile_on_the_cluster_is_the_one_process_profile(cluster: dict[str, Any], tmp_path: Path) -> None:
    import pandas as pd

    from segfn_kit._payloads import load_payloads
    from segfn_kit._profile import profile

    repo = Path(__file__).resolve().parent.parent
    mixed = tmp_path / "mixed.jsonl"
    with open(mixed, "w") as fh:
        for n in range(900):
            body: dict[str, Any] = {"id": n if n % 7 else str(n), "type": ["a", "b", "c"][n % 3],
                                    "created": 1_700_000_000 + n, "tags": [n % 4, "x" * (n % 5)]}
            if n % 11 == 0:
                body["extra"] = None
            if n > 600:
                body["late"] = {"k": n % 9, "at": "2025-01-02T03:04:05Z"}
            fh.write(json.dumps(body) + "\n")
    paths = [str(repo / "sample_payloads" / "stripe"), str(mixed)]
    corpus = repo.parent / "shared" / "corpora" / "hookdeck-webhook-samples"
    if corpus.is_dir():  # real captures of many providers, when the corpora are there
        paths.append(str(corpus))
    for by in (None, "event_type"):
        want = profile(load_payloads(*paths), by=by)
        got = profile(paths, by=by, scheduler=cluster["address"], partitions=6)
        pd.testing.assert_frame_equal(got, want)
        assert got.attrs == want.attrs
    assert cli(["profile", str(mixed), "--scheduler", cluster["address"], "--partitions", "3"]) == 0


def test_memory_url_partitions_read_like_one_process(tmp_path: Path) -> None:
    import fsspec

    lines = b"".join(b'{"user": "u%d", "n": %d}\n' % (i, i) + (b"\n" if i % 9 == 0 else b"") for i in range(500))
    fs = fsspec.filesystem("memory")
    fs.pipe("/segfn-test/a.jsonl", lines)
    (tmp_path / "a.jsonl").write_bytes(lines)
    parts = plan_partitions(["memory://segfn-test/*.jsonl"], 4)
    assert len(parts) == 4
    # newline counts as the client fills them in from the workers' counts
    from segfn_kit._cluster import _count_newlines

    before, filled = 0, []
    for part in parts:
        piece = part.pieces[0]
        assert piece.end is not None
        filled.append(Partition(part.index, (type(piece)(**{**piece.__dict__, "newlines_before": before}),)))
        before += _count_newlines(piece.url, piece.start, piece.end)
    got = [(p.payload_id.split("/")[-1], p.raw) for part in filled for p in partition_payloads(part)]
    want = [(p.payload_id, p.raw) for p in iter_payloads(tmp_path / "a.jsonl")]
    assert got == want


def test_a_partition_that_kills_its_workers_is_exit_1_not_a_hang(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dask
    from distributed import LocalCluster

    from segfn_kit._cli import build_parser
    from segfn_kit._cli.replay import _run_cluster

    fn = tmp_path / "deadly.py"
    # the function runs in a child of the Dask worker: it kills its parent, the Dask worker
    fn.write_text("import os, signal\nfrom segfn_kit.runtime import Segment\n"
                  "def on_request(request, settings):\n"
                  "    os.kill(os.getppid(), signal.SIGKILL)\n")
    data = tmp_path / "a.jsonl"
    data.write_text('{"n": 1}\n')
    # one death is enough here (the default is three): the test stays short
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
        silence_logs=50,
    ) as lc:
        args = build_parser().parse_args(["replay", str(fn), str(data), "--scheduler", lc.scheduler_address,
                                          "--dry-run", "--no-progress"])
        assert _run_cluster(args) == 1
    err = capsys.readouterr().err
    assert "KilledWorker" in err and "a.jsonl" in err and "died 1 time(s)" in err


HOSTILE = '''\
import os, time
from segfn_kit.runtime import Segment

def on_request(request, settings):
    body = request.json()
    if body["n"] == 3:  # a bare except in a loop swallows the timeout signal
        while True:
            try:
                time.sleep(0.01)
            except:
                pass
    if body["n"] == 5:
        os._exit(1)
    if body["n"] == 7:
        blob = bytearray(6 * 2**30)
    Segment.track(user_id=f"u{body['n']}", event="Seen", properties={"pid": os.getpid()})
'''


def test_a_runaway_call_in_a_partition_is_its_payloads_error_and_the_dask_worker_lives_on(
    tmp_path: Path,
) -> None:
    from distributed import Client, LocalCluster

    from segfn_kit._cluster import replay_on_cluster

    fn = tmp_path / "hostile.py"
    fn.write_text(HOSTILE)
    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(10)))
    store = tmp_path / "sink.sqlite3"
    with running_sink(write_key=KEY, store=store) as url, LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=50,
    ) as lc, Client(lc.scheduler_address) as client:
        before = set(client.scheduler_info()["workers"])
        summary = replay_on_cluster(fn, data, scheduler=lc.scheduler_address, to=url, write_key=KEY,
                                    budget=30.0)
        after = set(client.scheduler_info()["workers"])
        dask_pids = set(client.run(os.getpid).values())
    assert before == after  # the same Dask worker: nothing killed it
    assert summary.payloads == 10 and summary.events == 7
    errors = sorted(summary.errors)
    assert len(errors) == 3
    assert "a.jsonl#4: FunctionTimeout: the function ran past its 5 s limit and did not stop" in errors[0]
    assert "a.jsonl#6: WorkerExit: the function ended its worker process (exit code 1)" in errors[1]
    assert "a.jsonl#8: MemoryLimitExceeded" in errors[2]
    events = read_sink(store)
    assert sorted(events["user_id"]) == sorted(f"u{n}" for n in range(10) if n not in (3, 5, 7))
    # the calls ran in children of the Dask worker, not in it
    pids = {json.loads(p)["properties"]["pid"] if isinstance(p, str) else p["properties"]["pid"]
            for p in events["payload"]}
    assert pids and not pids & dask_pids


PIDS = """\
import os
from segfn_kit.runtime import Segment

def on_request(request, settings):
    n = request.json()["n"]
    while n == 4:  # past the time limit, either way it runs
        pass
    Segment.track(user_id=f"u{n}", event="Seen", properties={"pid": os.getpid()})
"""


def test_a_trusted_function_can_run_in_the_dask_workers_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distributed import Client, LocalCluster

    from segfn_kit._cli import build_parser
    from segfn_kit._cli.replay import _run_cluster
    from segfn_kit._replay import ReplayError

    fn = tmp_path / "pids.py"
    fn.write_text(PIDS)
    data = tmp_path / "a.jsonl"
    data.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(6)))
    isolated, trusted = tmp_path / "isolated.sqlite3", tmp_path / "trusted.sqlite3"
    monkeypatch.setenv("SEGMENT_WRITE_KEY", KEY)
    with LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=50,
    ) as lc, Client(lc.scheduler_address) as client:
        dask_pids = set(client.run(os.getpid).values())
        with running_sink(write_key=KEY, store=isolated) as url:  # the default: a worker process
            summary = replay(fn, data, scheduler=lc.scheduler_address, to=url, write_key=KEY, budget=30.0)
        assert summary.events == 5 and summary.outcomes == {"ok": 5, "timeout": 1}, summary
        with running_sink(write_key=KEY, store=trusted) as url:  # --isolation none: the Dask worker itself
            args = build_parser().parse_args(["replay", str(fn), str(data), "--scheduler", lc.scheduler_address,
                                              "--to", url, "--isolation", "none", "--no-progress"])
            assert _run_cluster(args) == 1  # the timed-out payload's events were not sent
        with pytest.raises(ReplayError, match='isolation must be "process" or "none"'):
            replay(fn, data, scheduler=lc.scheduler_address, dry_run=True, isolation="thread")

    def pids(store: Path) -> set[int]:
        events = read_sink(store)
        assert sorted(events["user_id"]) == [f"u{n}" for n in range(6) if n != 4]
        return {(json.loads(p) if isinstance(p, str) else p)["properties"]["pid"] for p in events["payload"]}

    assert pids(isolated) and not pids(isolated) & dask_pids
    assert pids(trusted) and pids(trusted) <= dask_pids


def test_no_worker_left_is_exit_1_not_a_hang(tmp_path: Path) -> None:
    from distributed import LocalCluster

    (tmp_path / "fn.py").write_text(FUNCTION.replace('"required": True', '"required": False'))
    (tmp_path / "a.jsonl").write_text('{"user": "u", "n": 1}\n')
    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as lc:
        with pytest.raises(ClusterError, match="no worker"):
            from segfn_kit._cluster import replay_on_cluster

            replay_on_cluster(tmp_path / "fn.py", tmp_path / "a.jsonl", scheduler=lc.scheduler_address,
                              dry_run=True, worker_wait=2.0)


def test_bad_arguments_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fn.py").write_text(FUNCTION)
    (tmp_path / "a.jsonl").write_text('{"user": "u", "n": 1}\n')
    base = ["replay", str(tmp_path / "fn.py"), str(tmp_path / "a.jsonl")]
    assert cli([*base, "--scheduler", "nowhere", "--dry-run"]) == 2
    assert "tcp://HOST:PORT" in capsys.readouterr().err
    assert cli([*base, "--rate", "5", "--dry-run"]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert cli([*base, "--scheduler", "local:1", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "without --scheduler" in capsys.readouterr().err


def test_secrets_are_hidden_in_task_arguments() -> None:
    from segfn_kit._cluster import _Secrets

    secrets = _Secrets(KEY, {"api_token": SECRET})
    assert KEY not in repr(secrets) and SECRET not in repr((secrets,))


def test_single_machine_paths_import_nothing_of_dask(tmp_path: Path) -> None:
    (tmp_path / "fn.py").write_text(FUNCTION.replace('"required": True', '"required": False'))
    (tmp_path / "a.jsonl").write_text('{"user": "u", "n": 1}\n')
    code = (
        "import sys, segfn_kit\n"
        "from segfn_kit._cli import main\n"
        f"s = segfn_kit.replay({str(tmp_path / 'fn.py')!r}, {str(tmp_path / 'a.jsonl')!r}, dry_run=True)\n"
        f"segfn_kit.profile({str(tmp_path / 'a.jsonl')!r})\n"
        f"main(['run', {str(tmp_path / 'fn.py')!r}, {str(tmp_path / 'a.jsonl')!r}])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'fsspec'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_time_limited_calls_off_the_main_thread_reuse_one_thread() -> None:
    # workers run partitions on executor threads: each call must not start a thread
    import threading

    from segfn_kit.runtime._errors import FunctionTimeout
    from segfn_kit.runtime._function import call_with_timeout

    box: dict[str, Any] = {}

    def body() -> None:
        before = threading.active_count()
        box["values"] = [call_with_timeout(lambda x: x * 2, (n,), 5.0) for n in range(200)]
        box["threads"] = threading.active_count() - before
        try:
            call_with_timeout(lambda: 1 / 0, (), 5.0)
        except ZeroDivisionError:
            box["error"] = True
        try:
            call_with_timeout(time.sleep, (2.0,), 0.05)
        except FunctionTimeout:
            box["timeout"] = True
        box["after"] = call_with_timeout(lambda: "next", (), 5.0)

    def in_place() -> None:
        # what a partition task does: calls on the task thread itself, a watchdog at the limit
        from segfn_kit.runtime._function import timeouts_in_place

        with timeouts_in_place():
            before = threading.active_count()
            box["place_values"] = [call_with_timeout(lambda x: x + 1, (n,), 5.0) for n in range(200)]
            box["place_threads"] = threading.active_count() - before
            try:
                call_with_timeout(_spin_forever, (), 0.1)
            except FunctionTimeout:
                box["place_timeout"] = True
            box["place_after"] = call_with_timeout(lambda: "next", (), 5.0)

    for target in (body, in_place):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join(timeout=30)
    assert box["values"] == [n * 2 for n in range(200)]
    assert box["threads"] <= 1 and box["error"] and box["timeout"] and box["after"] == "next"
    assert box["place_values"] == [n + 1 for n in range(200)]
    assert box["place_threads"] <= 1 and box["place_timeout"] and box["place_after"] == "next"


def _spin_forever() -> None:
    while True:
        pass


def test_the_pacer_spaces_slots_and_a_429_pauses_every_taker() -> None:
    from segfn_kit._cluster import PacePlugin

    now = [100.0]
    pacer = PacePlugin(clock=lambda: now[0])
    # slots 1/10 s apart, whoever asks (the scheduler answers every worker)
    assert [pacer.take("run", 10.0) for _ in range(4)] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    now[0] += 1.0  # later: the slots are free again, no burst saved up
    assert pacer.take("run", 10.0) == pytest.approx(0.0)
    pacer.pause("run", 3.0)  # a 429 with Retry-After: 3
    assert pacer.take("run", 10.0) == pytest.approx(3.0)
    assert pacer.take("run", 10.0) == pytest.approx(3.1)
    assert pacer.take("other-run", None) == 0.0  # another run, another bucket
    pacer.pause("other-run", 1.0)
    assert pacer.take("other-run", None) == pytest.approx(1.0)  # no rate: only the pause applies
