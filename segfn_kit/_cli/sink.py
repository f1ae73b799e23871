"""``segfn sink``: a local Tracking-API-compatible server that stores what it accepts."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

HELP = """\
Run a local server compatible with the Segment Tracking API (/v1/batch, /v1/track,
/v1/identify, /v1/page, /v1/screen, /v1/group, /v1/alias, /v1/import). It checks the write
key, answers Segment's limits as Segment does (400 over 32 KB per event or 500 KB per batch;
200 but dropped past 2,500 events) and stores accepted events in SQLite: read them with
segfn_kit.read_sink(FILE). Events Segment drops (an unknown type, no userId or anonymousId,
a track without event) are answered 200 and kept apart with the reason: read them with
segfn_kit.read_sink(FILE, rejected=True). Every request is recorded with its status:
read_sink(FILE, requests=True). Error answers carry success, code and message, the fields
SDKs read. It can fail on purpose: --fail-rate 0.3 answers 30% of requests
with a mix of 500, 429 + Retry-After and dropped connections; change faults while it runs
with POST /__faults, see counters at GET /__stats. It also answers the Objects API's
/v1/set (Segment.set objects): read them with segfn_kit.read_sink(FILE, objects=True).

Point an exported handler or 'segfn replay' at it with SEGMENT_API_HOST=http://127.0.0.1:PORT
and, for Segment.set objects, SEGMENT_OBJECTS_HOST set to the same URL.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sink", help="run a local Tracking API sink (stores events, injects faults)",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8788, help="port (default 8788; 0 picks a free one)")
    p.add_argument("--store", default="sink.sqlite3", help="SQLite file to store events in (default sink.sqlite3)")
    p.add_argument("--write-key-env", default="SEGMENT_WRITE_KEY", metavar="VAR",
                   help="environment variable holding the write key to accept (default SEGMENT_WRITE_KEY)")
    p.add_argument("--any-key", action="store_true", help="accept any non-empty write key")
    p.add_argument("--segment-auth", action="store_true",
                   help="answer a missing or wrong write key with 200, as Segment does (the request is "
                        "recorded as rejected, its events in the rejected table), instead of 401")
    p.add_argument("--fail-rate", type=float, default=0.0, metavar="SHARE",
                   help="share of requests that get a fault, 0 to 1 (default 0)")
    p.add_argument("--fail-mix", default="500=1,429=1,drop=1", metavar="KIND=W,...",
                   help="fault kinds and weights among 500, 429, drop, slow, lost (default 500=1,429=1,drop=1)")
    p.add_argument("--retry-after", type=float, default=1.0, metavar="SECONDS",
                   help="Retry-After sent with injected 429s (default 1)")
    p.add_argument("--slow", type=float, default=2.0, metavar="SECONDS",
                   help="delay of 'slow' faults (default 2)")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault choice, for repeatable runs")
    p.add_argument("--faults-json", default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from segfn_kit._sink import Faults, Sink, serve

    write_key: str | None = None
    if not args.any_key:
        write_key = os.environ.get(args.write_key_env) or None
        if write_key is None:
            print(f"segfn sink: ${args.write_key_env} is not set: accepting any non-empty write key "
                  f"(set it, or pass --any-key to silence this)", file=sys.stderr)
    try:
        if args.faults_json:
            faults = Faults(**json.loads(args.faults_json))
        else:
            faults = Faults(fail_rate=args.fail_rate, mix=Faults.parse_mix(args.fail_mix),
                            retry_after=args.retry_after, delay=args.slow, seed=args.seed)
    except (ValueError, TypeError) as exc:
        print(f"segfn sink: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"segfn sink: serving on {args.host}, reachable from other machines", file=sys.stderr)
    sink = Sink(args.store, write_key, faults, segment_auth=args.segment_auth)

    def ready(url: str) -> None:
        print(f"segfn sink listening on {url} (store {args.store}); Ctrl-C stops it", flush=True)

    try:
        serve(sink, args.host, args.port, ready=ready)
    except OSError as exc:
        print(f"segfn sink: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0
