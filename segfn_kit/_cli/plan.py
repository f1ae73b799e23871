"""``segfn plan``: write a tracking plan from a run, compare two plans, check a plan file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HELP = """\
Tracking plans (Segment Protocols rules, typewriter plan.json, rudder-cli YAML).

  segfn plan infer FUNCTION PAYLOADS... --out FILE
      run the function over the payloads and write Segment Public API rules
      ({"rules": [...]}) with one rule per event type and name seen: a draft-07 schema of
      the fields (types, date-time formats, required when present in every event). The
      same run passes it: `segfn run FUNCTION PAYLOADS... --plan FILE --strict`.
  segfn plan diff OLD NEW
      list rules and fields added, removed or changed (exit 1 when they differ)
  segfn plan check PLAN
      read a plan and report its rules, or what is wrong with it (exit 2)
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "plan", help="write a tracking plan from a run, compare plans, check a plan file",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(title="plan commands", metavar="PLAN_COMMAND")
    infer = sub.add_parser(
        "infer", help="write Public API rules from what a function emits",
        description="Run FUNCTION over PAYLOADS and write a tracking plan (Segment Public API "
        "rules, {\"rules\": [...]}) that every emitted event passes.\n\nexample:\n"
        "  segfn plan infer stripe_source.py sample_payloads/stripe/ --out stripe_plan.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    infer.add_argument("function", metavar="FUNCTION", help="the function file (.py, or a .mapping.json mapping function)")
    infer.add_argument("payloads", metavar="PAYLOADS", nargs="+", help="payload files, folders or globs")
    infer.add_argument("--out", metavar="FILE", required=True, help="where to write the plan (JSON)")
    infer.add_argument("--settings", metavar="FILE", help="a flat JSON object of settings")
    infer.add_argument("--name", help="the plan's name")
    infer.set_defaults(handler=infer_command)
    diff = sub.add_parser(
        "diff", help="rules and fields added, removed or changed between two plans",
        description="Compare two tracking plans (any format load_plan reads). Exit 0 when they "
        "hold the same rules and fields, 1 when they differ, 2 when one cannot be read.\n\n"
        "example:\n  segfn plan diff team_plan.json inferred_plan.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff.add_argument("old", metavar="OLD")
    diff.add_argument("new", metavar="NEW")
    diff.add_argument("--json", action="store_true", help="one JSON object per change")
    diff.set_defaults(handler=diff_command)
    check = sub.add_parser(
        "check", help="read a plan and list its rules (or what is wrong with it)",
        description="Read a tracking plan and list its rules; exit 2 with the reason when it "
        "cannot be used (not a plan, a schema that is not JSON Schema, a $ref that does not "
        "resolve, two rules for one key and version).\n\nexample:\n  segfn plan check plan.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("plan", metavar="PLAN")
    check.set_defaults(handler=check_command)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def _error(message: str) -> int:
    print(f"segfn plan: {message}", file=sys.stderr)
    return 2


def infer_command(args: argparse.Namespace) -> int:
    from segfn_kit._plan import infer_plan
    from segfn_kit._run import SettingsFileError, read_settings, run

    if not Path(args.function).is_file():
        return _error(f"function file {args.function} does not exist")
    try:
        settings = read_settings(args.settings) if args.settings else None
    except SettingsFileError as exc:
        return _error(str(exc))
    try:
        results = run(args.function, list(args.payloads), settings, progress=False)
    except FileNotFoundError as exc:
        return _error(f"{exc.filename}: no such file or folder")
    if len(results) == 0:
        return _error(f"no payloads in {' '.join(args.payloads)}")
    plan = infer_plan(results, name=args.name)
    if not plan["rules"]:
        return _error("the function emitted no events to write rules for")
    Path(args.out).write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    n_events = sum(len(e) for e in results["events"])
    failed = int((results["outcome"] == "error").sum())
    print(f"wrote {args.out}: {len(plan['rules'])} rules from {n_events} events of {len(results)} payloads"
          + (f" ({failed} payloads errored and gave no events)" if failed else ""))
    for rule in plan["rules"]:
        key = f" {rule['key']!r}" if "key" in rule else ""
        print(f"  {rule['type']}{key} v{rule['version']}: {rule['jsonSchema']['description']}")
    return 0


def diff_command(args: argparse.Namespace) -> int:
    from segfn_kit._plan import PlanError, diff_plans

    try:
        changes = diff_plans(args.old, args.new)
    except PlanError as exc:
        return _error(str(exc))
    for c in changes:
        if args.json:
            print(json.dumps(c, ensure_ascii=False))
        elif not c["field"]:
            print(f"{c['change']:<8} rule {c['rule']}")
        else:
            what = {"added": c["new"], "removed": c["old"], "changed": f"{c['old']} -> {c['new']}"}[c["change"]]
            print(f"{c['change']:<8} {c['rule']}: {c['field']}: {what}")
    if not changes and not args.json:
        print("the plans hold the same rules and fields")
    return 1 if changes else 0


def check_command(args: argparse.Namespace) -> int:
    from segfn_kit._plan import PlanError, load_plan

    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        return _error(str(exc))
    name = f" {plan.name!r}" if plan.name else ""
    print(f"{args.plan}: plan{name}, {len(plan)} rule{'s' if len(plan) != 1 else ''}")
    for rule in plan.rules:
        print(f"  {rule.label}")
    return 0
