"""``segfn redact``: copies of payload files with personal data and secrets replaced."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

HELP = """\
Write redacted copies of PAYLOADS (files, folders, globs) under --out, same relative
paths; the originals are never changed. Emails, phone numbers, person names, card numbers
(Luhn-checked), tokens and secrets, and sensitive headers (Authorization, Cookie, API keys,
webhook signatures) become placeholders, the same placeholder for the same value in every
file (person1@example.com, Person 2, <secret-3>). Prints where each replacement was made and
its placeholder, never the original value.

Also IP addresses (X-Forwarded-For, ip fields, v4 and v6), IBANs, secret URL query
parameters (?api_key=), phone numbers without + or stored as integers, names beside
emails and HAR cookies. With --resign, Stripe, GitHub, Shopify and Zendesk signature
headers are made anew over the redacted body with the documented test secret
whsec_test_segfn_kit_documented_secret (timestamps kept), so signature-checking functions
still run on the redacted samples.

Placeholders are numbered in order of appearance. For placeholders that stay the same
across separate runs, put a key in an environment variable and name it with --key-env
(keyed HMACs of the originals).

Examples:
  segfn redact captures/ --out sample_payloads/stripe
  SEGFN_REDACT_KEY=... segfn redact captures/*.json --out samples/ --key-env SEGFN_REDACT_KEY
  segfn redact captures/stripe --out samples/stripe --resign
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "redact",
        help="copy payload files with personal data and secrets replaced by placeholders",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "payloads", nargs="+", metavar="PAYLOADS", help="payload files, folders or globs"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the redacted copies")
    p.add_argument(
        "--key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding a key for run-independent placeholders",
    )
    p.add_argument(
        "--resign",
        action="store_true",
        help="re-sign Stripe, GitHub, Shopify and Zendesk signature headers over the redacted "
        "body with the documented test secret whsec_test_segfn_kit_documented_secret",
    )
    p.add_argument(
        "--max-bytes",
        default=None,
        metavar="SIZE",
        help="size cap of one file after decompression (e.g. 1G; default $SEGFN_MAX_BYTES, "
        "else 256M); larger files are reported and not copied",
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from segfn_kit._redact import redact

    key = None
    if args.key_env:
        key = os.environ.get(args.key_env)
        if not key:
            print(f"segfn redact: environment variable {args.key_env} is not set", file=sys.stderr)
            return 2
    try:
        from segfn_kit._payloads import parse_size

        max_bytes = None if args.max_bytes is None else parse_size(args.max_bytes)
        report = redact(
            *args.payloads,
            max_bytes=max_bytes,
            out=args.out,
            key=key,
            progress=sys.stderr.isatty(),
            resign=args.resign,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"segfn redact: {exc}", file=sys.stderr)
        return 2
    files = report[report["kind"] == "file"]
    replaced = report[~report["kind"].isin(["file", "skipped", "signature"])]
    if not args.quiet:
        for row in replaced.itertuples(index=False):
            print(f"{row.source}  {row.location}  {row.kind} -> {row.placeholder}")
        for row in report[report["kind"] == "skipped"].itertuples(index=False):
            print(f"{row.source}  {row.location}  not redacted: {row.placeholder}")
        for row in report[report["kind"] == "signature"].itertuples(index=False):
            print(f"{row.source}  {row.location}  {row.placeholder}")
    counts = replaced["kind"].value_counts().to_dict()
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing"
    print(f"{len(files)} files written to {args.out}; replaced {summary}")
    return 0
