"""``segfn profile``: every field of a set of payloads, with types, presence and examples."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = """\
Load PAYLOADS (files, folders, globs: capture envelopes, bare JSON bodies, JSON Lines, HAR,
functions-library and Hookdeck captures) and print one line per field path of the bodies:
the JSON types seen, the share of payloads that have it, the share of its values that are
null, how many distinct values, examples, and flags for mixed types and timestamps
(Unix seconds, Unix milliseconds or ISO 8601).

Examples:
  segfn profile sample_payloads/stripe
  segfn profile captures/ --by event_type
  segfn profile old/ --drift new/          # fields added, removed or changed type
  segfn profile captures/ --csv > fields.csv
  segfn profile 's3://backups/stripe/*.jsonl.gz' --scheduler tcp://10.0.0.5:8786

With --scheduler (tcp://HOST:PORT or local:N; pip install 'segfn_kit[dask]') each partition is
profiled on the Dask worker that reads it and the partial profiles are merged: the same
profile, without the archive in one process's memory.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "profile",
        help="fields of a set of payloads: types, presence, nulls, examples, drift",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "payloads", nargs="+", metavar="PAYLOADS", help="payload files, folders or globs"
    )
    p.add_argument(
        "--by",
        default=None,
        metavar="COLUMN",
        help="profile within groups of this column, e.g. event_type",
    )
    p.add_argument(
        "--drift",
        nargs="+",
        default=None,
        metavar="NEW",
        help="compare PAYLOADS (old) with these (new): fields added, removed or changed type",
    )
    p.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="profile on a Dask cluster: tcp://HOST:PORT of a running scheduler, or local:N",
    )
    p.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="with --scheduler: partitions (default 4 per worker)",
    )
    p.add_argument(
        "--split-arrays",
        action="store_true",
        help="read a top-level JSON array as one payload per item",
    )
    p.add_argument(
        "--max-bytes",
        default=None,
        metavar="SIZE",
        help="size cap of one file after decompression, or of one JSON Lines line (e.g. 1G; "
        "default $SEGFN_MAX_BYTES, else 256M); input over it is an error row",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:

    from segfn_kit._payloads import load_payloads, parse_size
    from segfn_kit._profile import drift, profile

    if args.scheduler is not None:
        return _run_cluster(args)
    try:
        max_bytes = None if args.max_bytes is None else parse_size(args.max_bytes)
        frame = load_payloads(
            *args.payloads,
            split_arrays=args.split_arrays,
            progress=sys.stderr.isatty(),
            max_bytes=max_bytes,
        )
        if args.drift:
            new = load_payloads(*args.drift, split_arrays=args.split_arrays, max_bytes=max_bytes)
            result = drift(frame, new, by=args.by)
        else:
            result = profile(frame, by=args.by)
    except (FileNotFoundError, KeyError, ValueError) as exc:  # ValueError: a size that is not one
        print(f"segfn profile: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    for skip in frame.attrs.get("skipped", []):
        print(f"skipped {skip['source']}: {skip['reason']}", file=sys.stderr)
    errors = frame["error"].notna().sum() if "error" in frame.columns else 0
    if errors:
        print(
            f"{errors} of {len(frame)} payloads could not be read (see the error column of "
            "load_payloads)",
            file=sys.stderr,
        )
    return _show(args, result, len(frame))


def _run_cluster(args: argparse.Namespace) -> int:
    if args.drift or args.split_arrays:
        print(
            "segfn profile: --drift and --split-arrays run on one machine: drop --scheduler",
            file=sys.stderr,
        )
        return 2
    try:
        from segfn_kit._cluster import profile_on_cluster
        from segfn_kit._replay import ClusterError, ReplayError
    except ImportError as exc:
        print(
            f"segfn profile: --scheduler needs Dask ({exc}): pip install 'segfn_kit[dask]'",
            file=sys.stderr,
        )
        return 2
    try:
        result, count = profile_on_cluster(
            args.payloads, scheduler=args.scheduler, by=args.by, partitions=args.partitions
        )
    except ClusterError as exc:
        print(f"segfn profile: {exc}", file=sys.stderr)
        return 1
    except (ReplayError, FileNotFoundError) as exc:
        print(f"segfn profile: {exc}", file=sys.stderr)
        return 2
    return _show(args, result, count)


def _show(args: argparse.Namespace, result: Any, count: int) -> int:
    import pandas as pd

    if args.csv:
        result.to_csv(sys.stdout)
        return 0
    if result.empty:
        print("no changes" if args.drift else "no fields: the payloads have no JSON object bodies")
        return 0
    shown = result.copy()
    if "timestamp" in shown.columns:
        shown["timestamp"] = shown["timestamp"].fillna("")
    if "examples" in shown.columns:
        shown["examples"] = shown["examples"].map(lambda xs: ", ".join(repr(x) for x in xs)[:60])
    with pd.option_context(
        "display.max_rows", None, "display.width", 200, "display.max_colwidth", 60
    ):
        print(shown.to_string())
    print(f"\n{count} payloads, {len(result)} {'changes' if args.drift else 'fields'}")
    return 0
