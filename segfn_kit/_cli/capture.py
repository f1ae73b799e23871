"""``segfn capture``: a local endpoint that saves every request as a capture envelope."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from typing import Any

HELP = """\
Listen on HOST:PORT (127.0.0.1:8787 by default) and save every request, whatever its path,
as a capture envelope under --out (one .json file each, written atomically), then answer
200. Bodies over --max-body bytes get 413 and are not saved. With --signature and
--secret-env, each request's signature is checked and the result saved with it (the secret
never is; it is read from the environment variable, never from the command line).

Examples:
  segfn capture --out captures/
  stripe listen --forward-to 127.0.0.1:8787/stripe      # in another terminal
  STRIPE_WEBHOOK_SECRET=whsec_... segfn capture --out captures/ --signature stripe \\
      --secret-env STRIPE_WEBHOOK_SECRET

Then: segfn profile captures/   or   load_payloads("captures/") in a notebook.
"""


def register(subparsers: Any) -> None:
    from segfn_kit._capture import DEFAULT_MAX_BODY
    from segfn_kit.runtime import SCHEMES

    p = subparsers.add_parser(
        "capture",
        help="record incoming webhooks as capture envelopes (local endpoint)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to save the envelopes in")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)"
    )
    p.add_argument("--port", type=int, default=8787, help="port to listen on (default 8787)")
    p.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        metavar="BYTES",
        help=f"largest body accepted, in bytes (default {DEFAULT_MAX_BODY})",
    )
    p.add_argument(
        "--signature",
        choices=SCHEMES,
        default=None,
        help="check each request's signature with this scheme",
    )
    p.add_argument(
        "--secret-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the signing secret (with --signature)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from segfn_kit._capture import serve

    secret = None
    if args.signature:
        if not args.secret_env:
            print(
                "segfn capture: --signature needs --secret-env VAR (the secret is read from "
                "the environment, never the command line)",
                file=sys.stderr,
            )
            return 2
        secret = os.environ.get(args.secret_env)
        if not secret:
            print(
                f"segfn capture: environment variable {args.secret_env} is not set", file=sys.stderr
            )
            return 2
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(
            f"warning: listening on {args.host}, reachable from other machines; captured "
            "requests may carry personal data",
            file=sys.stderr,
        )

    def saved(path: Path, envelope: dict[str, Any]) -> None:
        size = len(envelope.get("body") or envelope.get("body_base64") or "")
        check = envelope.get("signature")
        verdict = ""
        if check is not None:
            verdict = (
                "  signature ok" if check["valid"] else f"  signature INVALID ({check['reason']})"
            )
        print(
            f"{envelope['method']} {envelope['path']}  {size} bytes -> {path.name}{verdict}",
            flush=True,
        )

    print(
        f"capturing on http://{args.host}:{args.port}/ into {args.out} (Ctrl-C to stop)", flush=True
    )
    serve(
        args.out,
        host=args.host,
        port=args.port,
        max_body=args.max_body,
        signature=args.signature,
        secret=secret,
        on_saved=saved,
    )
    return 0
