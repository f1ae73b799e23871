"""``segfn replay``: run a source function over archived payloads and deliver the events."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = """\
Stream archived webhooks (JSON Lines, JSON files, folders, HAR, .gz) through a source
function and deliver the events to the Segment Tracking API (and Segment.set objects to the
Objects API), in constant memory.

The write key comes from $SEGMENT_WRITE_KEY, the host from --to or $SEGMENT_API_HOST
(default https://api.segment.io; EU workspaces: https://events.eu1.segmentapis.com).
Events keep messageIds derived from each payload, so Segment deduplicates a replay of the
same archive. With --checkpoint FILE an interrupted replay resumes where it stopped: run the
same command again (Ctrl-C stops after the events already handed over are delivered).
The checkpoint keys each archive file by its path and content: a file rewritten at the same
path is replayed from its start (and named in the summary), never skipped. Payloads whose
events were not accepted, those whose function raised RetryError or timed out, and those that
could not be loaded are tried again on the next run; unloadable payloads are listed and make
the exit status 1. Events that cannot be delivered go to a dead-letter
file (JSON Lines); an event over 32 KB is reported with its payload id, never dropped quietly.
Exit status: 0 all delivered, 1 something was not (or a payload could not be loaded),
2 bad arguments or an unusable checkpoint, 130 interrupted.

On a Dask cluster (pip install 'segfn_kit[dask]'): --scheduler tcp://HOST:PORT (a running
scheduler) or --scheduler local:N (N worker processes here). Workers read the archives
themselves: local paths they can reach, or fsspec URLs (s3://, gs://, file://, globs) with
the credentials fsspec finds. Large JSON Lines files are cut into byte ranges; --partitions N
sets how many partitions (default 4 per worker). --rate R caps the requests per second of
all workers together (a 429 with Retry-After pauses them all). --checkpoint DIR is then a
folder (or URL) with one record per finished partition, keyed by content: run the same
command again and finished partitions send nothing. The dashboard's address is printed.
Exit 1 if a partition killed its workers three times (KilledWorker) or no worker is left.

With --plan FILE (a tracking plan: Public API rules JSON, typewriter plan.json, rudder-cli
YAML) every event is held against the plan before it is sent. --plan-mode report (default)
sends every event and reports the issues in the summary; --plan-mode block holds back the
events with a plan issue (violations and unplanned events), as Protocols' blocking does:
they are counted, not sent. A plan that cannot be used is exit 2, before anything is read.

examples:
  segfn replay stripe.py archive/2025-*.jsonl.gz --checkpoint stripe.ckpt
  SEGMENT_API_HOST=http://127.0.0.1:8788 SEGMENT_OBJECTS_HOST=http://127.0.0.1:8788 \
    segfn replay stripe.py archive/
  segfn replay stripe.py archive/ --dry-run
  segfn replay stripe.py archive/ --out events.jsonl
  segfn replay stripe.py 's3://backups/stripe/2025-*.jsonl.gz' --to https://api.segment.io \
    --scheduler tcp://10.0.0.5:8786 --rate 500 --checkpoint s3://backups/replay-ckpt/
  segfn replay stripe.py archive/ --scheduler local:4 --dry-run
  segfn replay stripe.py archive/ --plan stripe_plan.json --plan-mode block
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "replay", help="replay archived payloads through a source function to the Tracking API",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("function", metavar="FUNCTION", help="the source function file (.py, or a .mapping.json mapping function)")
    p.add_argument("payloads", metavar="PAYLOADS", nargs="+", help="archive files, folders or globs")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--to", metavar="URL", help="Tracking API host (default $SEGMENT_API_HOST)")
    p.add_argument("--objects-to", metavar="URL",
                   help="Objects API host for Segment.set objects (default $SEGMENT_OBJECTS_HOST, else "
                        "https://objects.segment.com); the same URL as --to for a local sink")
    where.add_argument("--dry-run", action="store_true", help="run the function and count; send nothing")
    where.add_argument("--out", metavar="FILE", help="write the events as JSON Lines to FILE instead of sending")
    p.add_argument("--settings", metavar="FILE", help="the function's settings, a JSON object")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="record what was accepted here (a file, or an existing folder); resume from it; "
                        "with --scheduler, a folder or URL of finished partitions")
    p.add_argument("--dead-letter", metavar="FILE",
                   help="JSON Lines file for undelivered events (default <checkpoint>.dead.jsonl "
                        "or segfn-replay.dead.jsonl)")
    p.add_argument("--budget", type=float, default=120.0, metavar="SECONDS",
                   help="time each chunk of events may take to be accepted, retries included (default 120)")
    p.add_argument("--batch-events", type=int, metavar="N",
                   help="events per /v1/batch request (default and most: 2500)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plan", metavar="FILE", help="a tracking plan to hold every event against")
    p.add_argument("--plan-mode", choices=["report", "block"], default="report",
                   help="report plan issues and send everything (default), or block: hold back "
                        "events with a plan issue")
    p.add_argument(
        "--isolation", choices=("process", "none"), default="process",
        help="process (default): the function runs in worker processes, a chunk of payloads at a "
        "time; a call past the time limit or the 512 MiB memory limit, or one that ends its process, "
        "is killed and is that payload's error, and the replay goes on; none: in this process, for "
        "a debugger (no hard limits). With --scheduler: process runs each Dask worker's calls in a "
        "worker process of its own; none runs them in the Dask worker's process (faster, for a trusted function)",
    )
    p.add_argument("--workers", type=int, metavar="N",
                   help="with --isolation process: worker processes calling the function side by side "
                        "(default one per CPU, 1 to 4); the output keeps the archive's order")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a Dask cluster: tcp://HOST:PORT of a running scheduler, or local:N")
    p.add_argument("--partitions", type=int, metavar="N", help="with --scheduler: partitions (default 4 per worker)")
    p.add_argument("--rate", type=float, metavar="R",
                   help="with --scheduler: at most R requests per second, all workers together")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from segfn_kit._replay import ReplayError, replay
    from segfn_kit.runtime import FunctionLoadError, PlanError

    if args.scheduler is not None:
        if args.workers is not None:
            print("segfn replay: --workers is for a replay on this machine; with --scheduler the "
                  "cluster's workers run the calls (local:N starts N)", file=sys.stderr)
            return 2
        if args.plan is not None:
            print("segfn replay: --plan is checked in one-process replays only (run without --scheduler)",
                  file=sys.stderr)
            return 2
        return _run_cluster(args)
    if args.partitions is not None or args.rate is not None:
        print("segfn replay: --partitions and --rate need --scheduler (local:N runs a cluster here)", file=sys.stderr)
        return 2
    try:
        summary = replay(
            args.function, *args.payloads, to=args.to, objects_to=args.objects_to, dry_run=args.dry_run, out=args.out,
            settings=args.settings, checkpoint=args.checkpoint, dead_letter=args.dead_letter,
            budget=args.budget, progress=not args.no_progress and sys.stderr.isatty(),
            batch_events=args.batch_events, plan=args.plan, plan_mode=args.plan_mode,
            isolation=args.isolation, workers=args.workers,
        )
    except PlanError as exc:
        print(f"segfn replay: --plan: {exc}", file=sys.stderr)
        return 2
    except (ReplayError, FunctionLoadError, FileNotFoundError) as exc:
        print(f"segfn replay: {exc}", file=sys.stderr)
        return 2
    return _finish(summary)


def _run_cluster(args: argparse.Namespace) -> int:
    from segfn_kit._replay import ClusterError, ReplayError
    from segfn_kit.runtime import FunctionLoadError

    if args.out is not None:
        print("segfn replay: --out writes one file on this machine: run it without --scheduler "
              "(the messageIds are the same)", file=sys.stderr)
        return 2
    try:
        from segfn_kit._cluster import replay_on_cluster
    except ImportError as exc:
        print(f"segfn replay: --scheduler needs Dask ({exc}): pip install 'segfn_kit[dask]'", file=sys.stderr)
        return 2

    def dashboard(link: str | None) -> None:
        print(f"dashboard: {link}" if link else "dashboard: not served by this scheduler (it needs bokeh)", file=sys.stderr)

    try:
        summary = replay_on_cluster(
            args.function, *args.payloads, scheduler=args.scheduler, partitions=args.partitions, rate=args.rate,
            to=args.to, objects_to=args.objects_to, dry_run=args.dry_run, settings=args.settings,
            checkpoint=args.checkpoint, dead_letter=args.dead_letter, budget=args.budget,
            progress=not args.no_progress and sys.stderr.isatty(), on_dashboard=dashboard,
            batch_events=args.batch_events, isolation=args.isolation,
        )
    except ClusterError as exc:
        print(f"segfn replay: {exc}", file=sys.stderr)
        return 1
    except (ReplayError, FunctionLoadError, FileNotFoundError) as exc:
        print(f"segfn replay: {exc}", file=sys.stderr)
        return 2
    return _finish(summary)


def _finish(summary: Any) -> int:
    """Print a replay's summary; exit 130 when interrupted, 0 when every payload went through, else 1."""
    print(summary)
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1
