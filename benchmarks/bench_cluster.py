"""Cluster replay (``--scheduler local:N``) against the one-process replay, dry run, same archive.

One uncompressed JSON Lines archive of 200,000 generated Stripe webhooks (so it is cut into
byte ranges), the bundled Stripe function, ``--dry-run``. The clusters are started before
the timing (a backfill's cluster is already running), and each timing includes everything
a cluster replay does: planning, the newline counts of the ranges, scheduling, each worker
reading its range, and merging the summaries.

- throughput of ``local:1`` and ``local:2`` against ``replay(dry_run=True)`` in this process
  (on a 2-core machine shared with the client and the scheduler, expect no gain from 2);
- the per-partition overhead: ``(local:1 time - one-process time) / partitions``, as a share
  of one partition's work (one-process time / partitions); the target is under 5%.

Medians of 3 runs, timed in turns. Set ``SEGFN_BENCH_CLUSTER_PAYLOADS`` for another size.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from benchmarks._util import interleaved_medians, report
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
        with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                          silence_logs=logging.ERROR) as one, \
                LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                             silence_logs=logging.ERROR) as two:

            def single() -> None:
                summary = replay(STRIPE, archive, dry_run=True)
                assert summary.payloads == PAYLOADS, summary

            def on(cluster: LocalCluster) -> None:
                summary = replay_on_cluster(STRIPE, archive, scheduler=cluster.scheduler_address,
                                            partitions=PARTITIONS, dry_run=True)
                assert summary.payloads == PAYLOADS and summary.partitions == PARTITIONS, summary

            times = interleaved_medians(
                {"single": single, "local1": lambda: on(one), "local2": lambda: on(two)}, repeats=3
            )
    base, t1, t2 = times["single"], times["local1"], times["local2"]
    per_partition = (t1 - base) / PARTITIONS
    print(f"  {PAYLOADS:,} Stripe webhooks, {size / 1e6:.0f} MB of JSON Lines, {PARTITIONS} partitions, dry run")
    report("one process: replay --dry-run", PAYLOADS / base, "payloads/s")
    report("local:1 (one worker process)", PAYLOADS / t1, "payloads/s")
    report("local:2 (two worker processes)", PAYLOADS / t2, "payloads/s")
    report("ratio: local:2 / one process (throughput)", base / t2, "x", "no gain on 2 cores")
    report("per-partition overhead (local:1 - one process) / partitions", 1000 * per_partition, "ms")
    report("ratio: per-partition overhead / partition's work", 100 * per_partition / (base / PARTITIONS), "%",
           "< 5%")


if __name__ == "__main__":
    main()
