"""``segfn run``: run a function file over payloads and print what it would send."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

HELP = """\
Run a function file over captured payloads (files, folders or glob patterns: capture
envelopes, bare JSON bodies, JSON Lines, HAR, ...) and show, for every payload, the Segment
events the function would send, each checked against the Segment spec.

Without --jsonl it prints a table and a summary. With --jsonl it prints one JSON object
per payload: {"payload_id", "outcome", "events", "objects", "error", "issues"}.

outcome is "ok", the Segment error the function raised (EventNotSupported,
InvalidEventPayload, ValidationError, RetryError, DropEvent), or "error" for anything else:
an exception, a timeout, a function that does not load, a payload that cannot be read,
required settings that are missing.

exit status:
  0  every payload ran (EventNotSupported, InvalidEventPayload, ValidationError, RetryError
     and DropEvent are the function's own verdicts and do not fail the run)
  1  a payload's outcome is "error" (with --strict also: InvalidEventPayload,
     ValidationError, RetryError, or any spec or plan issue in an event)
  2  the command line is wrong: a missing file, no payloads at all, an unreadable
     settings file, a tracking plan that cannot be used

With --plan FILE every event is also held against a tracking plan (Segment Public API
rules JSON, typewriter plan.json, rudder-cli YAML): issues "plan_violation" (naming the
rule, the field, the JSON Schema keyword and the value) and "unplanned_event", and a
summary per rule (events checked, failing, unplanned).

examples:
  segfn run stripe_source.py sample_payloads/stripe/
  segfn run stripe_source.py 'captures/**/*.json' --settings settings.json --jsonl > out.jsonl
  segfn run stripe_source.py sample_payloads/stripe/ --plan stripe_plan.json --strict
"""

# outcomes that fail the run by default, and the ones --strict adds
FAILING = frozenset({"error"})
STRICT_FAILING = FAILING | {"InvalidEventPayload", "ValidationError", "RetryError"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a function over payloads and show the events it would send",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("function", metavar="FUNCTION", help="the function file (.py, or a .mapping.json mapping function)")
    p.add_argument(
        "payloads", metavar="PAYLOADS", nargs="+",
        help="payload files, folders (read recursively) or glob patterns",
    )
    p.add_argument(
        "--settings", metavar="FILE",
        help='a flat JSON object of setting names to values, e.g. {"apiKey": "..."}; '
        "values of secret settings never appear in the output",
    )
    p.add_argument("--jsonl", action="store_true", help="print one JSON object per payload (contract 3)")
    p.add_argument(
        "--allow-errors", action="store_true",
        help="exit 0 even when payloads errored (the output still shows them)",
    )
    p.add_argument(
        "--strict", action="store_true",
        help="also fail on InvalidEventPayload, ValidationError, RetryError and on spec issues "
        "(destinations: and on requests that no rule of --responses answers)",
    )
    p.add_argument(
        "--plan", metavar="FILE",
        help="a tracking plan to hold every event against (Public API rules JSON, typewriter "
        "plan.json, rudder-cli YAML file or folder); --strict then fails on plan issues too",
    )
    p.add_argument(
        "--timeout", type=float, default=5.0, metavar="S",
        help="seconds each invocation may take (default 5, Segment's limit; 0 for none)",
    )
    p.add_argument(
        "--no-progress", action="store_true",
        help="no progress bar (one appears on stderr from 1,000 payloads on)",
    )
    p.add_argument(
        "--isolation", choices=("process", "none"), default="process",
        help="process (default): the function (source or destination) runs in a worker process "
        "that is killed and replaced past the time limit or the 512 MiB memory limit, so every "
        "payload or event gets its row; none: in this process, for a debugger (no hard limits)",
    )
    _add_destination_arguments(p)
    p.set_defaults(handler=run_command)


def _add_destination_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that only destination functions use (scripted responses, live requests)."""
    group = parser.add_argument_group(
        "destination functions",
        "PAYLOADS are then Segment events (JSON or JSON Lines). No request leaves the machine: "
        "every httpx request is answered from --responses (200 {} when nothing is scripted) and "
        "--jsonl rows carry a \"requests\" list (method, url, headers with secrets masked, body). "
        "With --strict, a request that no rule of the script answers is an error.",
    )
    group.add_argument(
        "--responses", metavar="FILE",
        help='a JSON response script: a status, a list of answers (a sequence), or {"strict": '
        'bool, "default": ..., "rules": [{"method", "url" (* matches anything), "respond"}]}; '
        'an answer is a status, "timeout", "connect_error" or {"status", "json", "headers", '
        '"retry_after"}',
    )
    group.add_argument(
        "--live", action="store_true",
        help="send the requests for real (to the real APIs, with the real settings); announced on stderr",
    )
    group.add_argument("--batch", action="store_true",
                       help="send events to on_batch, 20 at a time (the default whenever the function "
                            "defines on_batch, as the exported handler does)")


def _is_destination(path: str) -> bool:
    """Whether a function file defines destination handlers (read, not run)."""
    import ast

    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return False  # run() reports the file's problem on every row
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    return "on_request" not in names and bool(names & {
        "on_identify", "on_track", "on_page", "on_screen", "on_group", "on_alias", "on_delete", "on_batch"})


def _destination_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options for ``run()`` that the destination arguments ask for."""
    asked = [flag for flag, on in (("--responses", args.responses), ("--live", args.live),
                                   ("--batch", args.batch)) if on]
    if not _is_destination(args.function):
        if asked:
            raise ValueError(f"{', '.join(asked)}: only for destination functions, and "
                             f"{args.function} is not one")
        return {}
    from segfn_kit._http import Responses, ScriptError

    options: dict[str, Any] = {"live": args.live, "batch": args.batch or None, "strict": args.strict or None}
    if args.responses:
        try:
            options["responses"] = Responses.load(args.responses)
        except ScriptError as exc:
            raise ValueError(str(exc)) from None
    return options


def _requests_summary(row: Any) -> str:
    """``POST https://... -> 201`` for each request a destination row made."""
    parts = []
    for r in row.get("requests") or []:
        answer = (r.get("response") or {}).get("status") or (r.get("error") or "").split(":")[0]
        parts.append(f"{r['method']} {r['url']} -> {answer}")
    return "; ".join(parts)


def _error(message: str) -> int:
    print(f"segfn run: {message}", file=sys.stderr)
    return 2


def run_command(args: argparse.Namespace) -> int:
    from segfn_kit._run import SettingsFileError, read_settings, run, to_jsonl

    function = Path(args.function)
    if not function.is_file():
        return _error(f"function file {function} " + ("is not a file" if function.exists() else "does not exist"))
    settings: dict[str, Any] | None = None
    if args.settings:
        try:
            settings = read_settings(args.settings)
        except SettingsFileError as exc:
            return _error(str(exc))
    try:
        options = _destination_options(args)
    except ValueError as exc:
        return _error(str(exc))
    plan = None
    if args.plan:
        from segfn_kit._plan import PlanError, load_plan

        try:
            plan = load_plan(args.plan)
        except PlanError as exc:
            return _error(f"--plan: {exc}")
    try:
        results = run(
            str(function),
            list(args.payloads),
            settings,
            timeout=args.timeout or None,
            progress=False if args.no_progress else None,
            plan=plan,
            isolation=args.isolation,
            **options,
        )
    except FileNotFoundError as exc:
        return _error(f"{exc.filename}: no such file or folder" if exc.filename else str(exc))
    if len(results) == 0:
        skipped = "; ".join(f"{s.get('source')}: {s.get('reason')}" for s in results.attrs.get("skipped") or [])
        return _error(f"no payloads in {' '.join(args.payloads)}" + (f" ({skipped})" if skipped else ""))
    if args.jsonl:
        to_jsonl(results, sys.stdout)
        sys.stdout.flush()
    else:
        print_table(results)
    return exit_status(results, strict=args.strict, allow_errors=args.allow_errors)


def exit_status(results: Any, *, strict: bool = False, allow_errors: bool = False) -> int:
    """0 when the run passes, 1 when a payload failed (see ``segfn run --help``)."""
    if allow_errors:
        return 0
    failing = STRICT_FAILING if strict else FAILING
    if results["outcome"].isin(failing).any():
        return 1
    if strict and any(len(i) for i in results["issues"]):
        return 1
    return 0


def _events_summary(events: list[dict[str, Any]]) -> str:
    parts = []
    for e in events:
        kind = e.get("type", "?")
        label = e.get("event") if kind == "track" else e.get("name") if kind in ("page", "screen") else None
        parts.append(f"{kind} {json.dumps(label, ensure_ascii=False)}" if label else str(kind))
    return ", ".join(parts)


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def print_table(results: Any, file: Any = None) -> None:
    """A readable table of a result frame: one line per payload, then a summary."""
    out = file or sys.stdout
    width = shutil.get_terminal_size((120, 24)).columns
    rows = []
    for pid, row in results.iterrows():
        events = row["events"] if row["outcome"] == "ok" else []
        what = _events_summary(events) if events else (row["error"] or "")
        if row["outcome"] == "ok" and not events and not row["objects"]:
            what = _requests_summary(row) or "(no events)"
        if row["objects"]:
            what = f"{what}, {len(row['objects'])} object(s)" if what else f"{len(row['objects'])} object(s)"
        issues = len(row["issues"])
        rows.append((str(pid), str(row["outcome"]), str(issues) if issues else "", what))
    headers = ("payload", "outcome", "issues", "events / error")
    w_id = min(max([len(headers[0]), *(len(r[0]) for r in rows)]), 60)
    w_out = max([len(headers[1]), *(len(r[1]) for r in rows)])
    w_iss = len(headers[2])
    w_rest = max(width - w_id - w_out - w_iss - 6, 30)
    fmt = f"{{:<{w_id}}}  {{:<{w_out}}}  {{:>{w_iss}}}  {{}}"
    print(fmt.format(*headers), file=out)
    for pid, outcome, n_issues, what in rows:
        print(fmt.format(_cut(pid, w_id), outcome, n_issues, _cut(what, w_rest)), file=out)
    for pid, row in results.iterrows():
        for issue in row["issues"]:
            where = "" if issue.get("event_index") is None else f"events[{issue['event_index']}]."
            print(f"  {pid}: {where}{issue['field']}: {issue['message']}", file=out)
    counts = results["outcome"].value_counts()
    summary = ", ".join(f"{n} {name}" for name, n in counts.items())
    n_events = sum(len(e) for e in results["events"])
    total_issues = sum(len(i) for i in results["issues"])
    print(
        f"\n{len(results)} payload{'s' if len(results) != 1 else ''}: {summary or 'none'}; "
        f"{n_events} event{'s' if n_events != 1 else ''}, "
        f"{total_issues} issue{'s' if total_issues != 1 else ''}",
        file=out,
    )
    skipped = results.attrs.get("skipped") or []
    for item in skipped:
        print(f"skipped {item.get('source')}: {item.get('reason')}", file=out)
    if results.attrs.get("plan") is not None:
        print_plan_summary(results, file=out)


def print_plan_summary(results: Any, file: Any = None) -> None:
    """Per rule of the tracking plan: events checked, failing, unplanned."""
    from segfn_kit._plan import plan_summary

    out = file or sys.stdout
    plan = results.attrs["plan"]
    summary = plan_summary(results)
    name = f" {plan.name!r}" if plan.name else ""
    print(f"\ntracking plan{name} ({len(plan)} rule{'s' if len(plan) != 1 else ''}):", file=out)
    if summary.empty:
        print("  no event met a rule", file=out)
        return
    width = max(len("rule"), *(len(r) for r in summary["rule"]))
    print(f"  {'rule':<{width}}  checked  failing  unplanned", file=out)
    for r in summary.itertuples(index=False):
        print(f"  {r.rule:<{width}}  {r.checked:>7}  {r.failing:>7}  {r.unplanned:>9}", file=out)
