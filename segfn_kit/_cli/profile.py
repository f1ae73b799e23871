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
        "--split-arrays",
        action="store_true",
        help="read a top-level JSON array as one payload per item",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from segfn_kit._payloads import load_payloads
    from segfn_kit._profile import drift, profile

    try:
        frame = load_payloads(
            *args.payloads, split_arrays=args.split_arrays, progress=sys.stderr.isatty()
        )
        if args.drift:
            new = load_payloads(*args.drift, split_arrays=args.split_arrays)
            result = drift(frame, new, by=args.by)
        else:
            result = profile(frame, by=args.by)
    except (FileNotFoundError, KeyError) as exc:
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
    print(f"\n{len(frame)} payloads, {len(result)} {'changes' if args.drift else 'fields'}")
    return 0
