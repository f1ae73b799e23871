"""Cluster replay (``--scheduler local:N``) against the one-process replay, dry run, same archive.

One uncompressed JSON Lines archive of 200,000 generated Stripe webhooks (so it is cut into
byte ranges), the bundled Stripe function, ``--dry-run``. The clusters are started before
the timing (a backfill's cluster is already running), and each timing includes everything
a cluster replay does: planning, the newline counts of the ranges, scheduling, each worker
reading its range, and merging the summaries.

- throughput of ``local:1`` and ``local:2`` against ``replay(dry_run=True)`` in this process
  (on a 2-core machine shared with the client and the scheduler, expect no gain from 2), and
  of ``local:1`` with ``isolation="none"`` (a trusted function in the Dask worker's process,
  no worker process under it);
- the per-partition overhead on ``local:1``: the run's wall time minus the time the partitions'
  replays took on the worker (read, function, summary), per partition, as a share of one
  partition's work. It holds everything a partition costs beyond its work: planning, the
  newline counts, scheduling, shipping the task and its result, the task's setup, merging.
  The target is under 5%.

Medians of 3 runs. The one-process runs come first, with no cluster alive in this process (a
scheduler's threads would take the GIL from it), then each cluster's. Set
``SEGFN_BENCH_CLUSTER_PAYLOADS`` for another size.
"""

from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._util import median_time, report
from segfn_kit._cluster import replay_on_cluster
from segfn_kit._replay import replay
from tests._archives import write_archive

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"
PAYLOADS = int(os.environ.get("SEGFN_BENCH_CLUSTER_PAYLOADS", "200000"))
PARTITIONS = 8


def main() -> None:
    from distributed import LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        archive = write_archive(Path(tmp) / "archive.jsonl", PAYLOADS)
        size = archive.stat().st_size

        def single() -> None:
            summary = replay(STRIPE, archive, dry_run=True)
            assert summary.payloads == PAYLOADS, summary

        base = median_time(single, repeats=3)
        times: dict[int, float] = {}
        overheads: list[float] = []
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                              dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR) as cluster:
                runs = []
                for _ in range(3):
                    start = time.perf_counter()
                    summary = replay_on_cluster(STRIPE, archive, scheduler=cluster.scheduler_address,
                                                partitions=PARTITIONS, dry_run=True)
                    wall = time.perf_counter() - start
                    assert summary.payloads == PAYLOADS and summary.partitions == PARTITIONS, summary
                    runs.append(wall)
                    if workers == 1:
                        work = sum(summary.partition_seconds)
                        overheads.append((wall - work) / PARTITIONS / (work / PARTITIONS))
                times[workers] = statistics.median(runs)
                if workers == 1:
                    def trusted() -> None:
                        summary = replay_on_cluster(STRIPE, archive, scheduler=cluster.scheduler_address,
                                                    partitions=PARTITIONS, dry_run=True, isolation="none")
                        assert summary.payloads == PAYLOADS, summary

                    t_none = median_time(trusted, repeats=3)
    t1, t2 = times[1], times[2]
    overhead = statistics.median(overheads)
    print(f"  {PAYLOADS:,} Stripe webhooks, {size / 1e6:.0f} MB of JSON Lines, {PARTITIONS} partitions, dry run")
    report("one process: replay --dry-run", PAYLOADS / base, "payloads/s")
    report("local:1 (one worker process)", PAYLOADS / t1, "payloads/s")
    report("local:2 (two worker processes)", PAYLOADS / t2, "payloads/s")
    report("local:1 --isolation none (in the Dask worker)", PAYLOADS / t_none, "payloads/s")
    report("ratio: local:1 / one process (throughput)", base / t1, "x")
    report("ratio: local:2 / one process (throughput)", base / t2, "x", "no gain on 2 cores")
    report("ratio: local:1 --isolation none / one process (throughput)", base / t_none, "x")
    report("ratio: per-partition overhead / partition's work (local:1)", 100 * overhead, "%", "< 5%")


if __name__ == "__main__":
    main()
