"""``segfn export``: write a deployable handler package from a function file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = """\
Write a folder that runs FUNCTION where segfn_kit is not installed: on AWS Lambda (API
Gateway or Function URL), under any ASGI server (uvicorn handler:app) or from a shell
(python -m handler). It holds the function file verbatim, the runtime it imports,
handler.py, requirements.txt, a README with deploy steps, build_zip.py, and tests/ built
from the payloads the function was previewed on: its approved outputs
(<stem>.approved.jsonl next to the function file, or --approved), or else what it does now
over --payloads. The package reads its configuration from the environment only
(SEGMENT_WRITE_KEY, SEGMENT_API_HOST, SEGFN_SETTINGS, SEGFN_SIGNATURE, ...); secret settings
are never written into it.

With --target segment, FUNCTION is a mapping function file (NAME.mapping.json) and the
folder holds a Segment source function instead: function.js (paste it into Segment's editor),
create_function.json (the Public API createFunction body), segment_function.tf (Terraform,
segmentio/segment) and a README; it sends the same events, with the same messageIds.

Examples:
  segfn export github_source.mapping.json --target segment --out build/github_segment
  segfn export stripe_source.py --out build/stripe_source --payloads sample_payloads/stripe
  segfn export zendesk_destination.py --out build/zendesk --payloads events/ --settings zendesk.json
  cd build/stripe_source && python -m pytest      # the package's own tests
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="write a deployable handler package (Lambda, ASGI, command line)",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("function", metavar="FUNCTION", help="the function file (.py or .mapping.json)")
    p.add_argument("--target", choices=("handler", "segment"), default="handler",
                   help="handler: a Python handler package (default); segment: a Segment source "
                        "function in JavaScript (mapping function files only)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write (replaced if it holds an earlier export; otherwise must be empty)")
    p.add_argument("--payloads", nargs="+", default=[], metavar="PATH",
                   help="payload files or folders (Segment event files for a destination) to build the tests from")
    p.add_argument("--approved", default=None, metavar="FILE",
                   help="approved outputs (default: <stem>.approved.jsonl next to FUNCTION, when present)")
    p.add_argument("--settings", default=None, metavar="FILE",
                   help="settings as a JSON object; secret ones become placeholders in the tests")
    p.add_argument("--test-secret", action="append", default=[], metavar="NAME=VALUE", dest="test_secrets",
                   help="a test value for a secret setting, to record the tests with and to write into "
                        "tests/settings.json (never the real secret), for payloads signed with it (repeatable)")
    p.add_argument("--requirement", action="append", default=[], metavar="SPEC", dest="requirements",
                   help="an extra requirement for an import beyond the standard library and httpx (repeatable)")
    p.add_argument("--plan", default=None, metavar="FILE",
                   help="ship a tracking plan (Public API rules JSON, typewriter plan.json, rudder-cli "
                        "YAML) as plan.json: the handler holds every event against it (SEGFN_PLAN_MODE "
                        "report or block) and jsonschema joins requirements.txt")
    p.add_argument("--zip", action="store_true", help="also build dist/lambda.zip with httpx vendored")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from segfn_kit._export import ExportError, export

    if args.target == "segment":
        from segfn_kit._export._segment import export_segment

        try:
            folder = export_segment(args.function, args.out)
        except ExportError as exc:
            print(f"segfn export: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {folder}: Segment source function (function.js, create_function.json, "
              "segment_function.tf, README.md)")
        return 0
    test_secrets: dict[str, str] = {}
    for item in args.test_secrets:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            print(f"segfn export: --test-secret {item.split('=')[0]!r}: write NAME=VALUE", file=sys.stderr)
            return 2
        test_secrets[name.strip()] = value
    try:
        package = export(
            args.function,
            args.out,
            payloads=args.payloads or None,
            approved=args.approved,
            settings=args.settings,
            requirements=args.requirements,
            lambda_zip=args.zip,
            progress=sys.stderr.isatty(),
            plan=args.plan,
            test_secrets=test_secrets or None,
        )
    except ExportError as exc:
        print(f"segfn export: {exc}", file=sys.stderr)
        return 1
    import json

    manifest = json.loads((package / "export.json").read_text(encoding="utf-8"))
    print(f"wrote {package}: {manifest['kind']} function {manifest['source']}, {manifest['cases']} test cases"
          + (f", tracking plan of {manifest['plan']['rules']} rules (plan.json)" if manifest.get("plan") else ""))
    for item in manifest.get("skipped", []):
        print(f"  not a test case: {item['input']}: {item['reason']}", file=sys.stderr)
    if args.zip:
        print(f"Lambda zip: {package / 'dist' / 'lambda.zip'} (handler: handler.lambda_handler)")
    print(f"test it: cd {package} && python -m pytest")
    return 0
