"""The ``%%segfn`` cell magic: the cell's text is the function, previewed under the cell.

Usage::

    %load_ext segfn_kit

    %%segfn source stripe_source --payloads payloads [--settings settings] [--plan plan] [--dir DIR]
    from segfn_kit.runtime import Segment, EventNotSupported
    def on_request(request, settings):
        ...

Running the cell loads its text as a function named ``stripe_source``, runs it over the
payload frame held in the variable ``payloads`` (or the files a path names), and shows the
preview. Running it again refreshes the same preview, keeping the previous run for the
diff. The workbench is bound to the name in the notebook (``stripe_source.results``,
``stripe_source.approve()``), and the cell's text, exactly as written, is kept in
``FUNCTIONS`` for the export and written to ``<name>.py`` on approve.

A cell that does not load (a syntax error, an error at import) shows the error with its
line above the last good preview; the kernel carries on.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.display import display

from ._workbench import Workbench

__all__ = ["FUNCTIONS", "WORKBENCHES", "CellFunction", "SegfnMagics", "load_ipython_extension", "parser"]


@dataclass(frozen=True)
class CellFunction:
    """A function written in a notebook cell: its name, kind, and text exactly as written."""

    name: str
    kind: str
    source: str


# name -> the last text of that name that loaded (what the export should take)
FUNCTIONS: dict[str, CellFunction] = {}
# name -> its workbench, so re-running a cell refreshes the same preview
WORKBENCHES: dict[str, Workbench] = {}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the kernel
        raise UsageError(f"%%segfn: {message}\n\n{self.format_help()}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise UsageError(self.format_help() if not message else f"{message}\n{self.format_help()}")


def parser() -> argparse.ArgumentParser:
    """The ``%%segfn`` line's argument parser (its help is the magic's usage text)."""
    p = _Parser(
        prog="%%segfn",
        description=(
            "Preview the function written in this cell over a payload frame. "
            "Run the cell again after an edit: the same preview refreshes and shows what changed."
        ),
        epilog=(
            "example: %%segfn source stripe_source --payloads payloads --settings settings   "
            "(then stripe_source.summary, stripe_source.approve())"
        ),
        add_help=True,
    )
    p.add_argument("kind", choices=["source", "destination"], help="what the cell defines")
    p.add_argument("name", help="a name for the function: the notebook variable and the file stem on approve")
    p.add_argument(
        "--payloads", "-p", required=True,
        help="a notebook variable holding a payload frame (or events, for destinations), or a path to load",
    )
    p.add_argument("--settings", "-s", help="a notebook variable holding a dict of settings, or a JSON file")
    p.add_argument(
        "--plan", default=None,
        help="a tracking plan to hold every event against: a notebook variable (a dict of rules, "
        "a Plan) or a plan file (Public API rules JSON, typewriter plan.json, rudder-cli YAML)",
    )
    p.add_argument("--dir", default=None, help="where approve writes <name>.py and <name>.approved.jsonl (default: here)")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per invocation (default 5)")
    return p


def _lookup(shell: Any, value: str, what: str) -> Any:
    namespace = shell.user_ns
    if value in namespace:
        return namespace[value]
    if value.isidentifier():
        raise UsageError(
            f"%%segfn: --{what} {value}: no notebook variable named {value!r}; "
            f"define it first (for example {value} = segfn_kit.load_payloads('../sample_payloads/stripe'))"
            if what == "payloads" else
            f"%%segfn: --{what} {value}: no notebook variable named {value!r}; define it first"
        )
    return value  # a path


def _settings(shell: Any, value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    found = _lookup(shell, value, "settings")
    if isinstance(found, str | Path):
        path = Path(found)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"%%segfn: --settings {value}: cannot read a JSON object of settings ({exc})") from None
        found = data
    if not hasattr(found, "keys"):
        raise UsageError(f"%%segfn: --settings {value}: expected a dict of setting names to values")
    return dict(found)


@magics_class
class SegfnMagics(Magics):
    """The ``%%segfn`` cell magic."""

    @cell_magic
    def segfn(self, line: str, cell: str) -> None:
        """Preview the function in this cell. Usage: ``%%segfn source NAME --payloads VAR``."""
        try:
            args = parser().parse_args(shlex.split(line))
        except ValueError as exc:  # unbalanced quotes
            raise UsageError(f"%%segfn: {exc}\n\n{parser().format_help()}") from None
        shell = self.shell
        assert shell is not None  # a registered magic always has its shell
        payloads = _lookup(shell, args.payloads, "payloads")
        settings = _settings(shell, args.settings)
        plan = None
        if args.plan is not None:
            from segfn_kit._plan import PlanError, load_plan

            found = shell.user_ns[args.plan] if args.plan in shell.user_ns else args.plan
            try:
                plan = load_plan(found)
            except PlanError as exc:
                raise UsageError(f"%%segfn {args.name}: --plan {args.plan}: {exc}") from None
        workbench = WORKBENCHES.get(args.name)
        try:
            if workbench is None:
                options: dict[str, Any] = {"plan": plan} if plan is not None else {}
                workbench = Workbench(
                    cell, payloads, settings, name=args.name,
                    directory=Path(args.dir) if args.dir else Path.cwd(),
                    timeout=args.timeout, line_offset=1, **options,
                )
                WORKBENCHES[args.name] = workbench
            else:
                # one preview per name: new text, settings or payloads refresh it, and the
                # run before stays for the diff
                workbench.use_payloads(payloads)
                workbench.settings_values = dict(settings or {})
                workbench.timeout = args.timeout
                workbench.directory = Path(args.dir) if args.dir else Path.cwd()
                if plan is not None:
                    workbench.run_options["plan"] = plan
                else:
                    workbench.run_options.pop("plan", None)
                workbench.update(cell)
        except Exception as exc:  # bad payloads and the like: say so, keep the kernel
            raise UsageError(f"%%segfn {args.name}: {type(exc).__name__}: {exc}") from None
        if workbench.load_error is None:
            if workbench.kind != args.kind:
                workbench._show_load_error(
                    f"this cell defines a {workbench.kind} function, but the magic says {args.kind}: "
                    f"write %%segfn {workbench.kind} {args.name} ...",
                    None, None, title="kind mismatch",
                )
            else:
                FUNCTIONS[args.name] = CellFunction(args.name, args.kind, cell)
        if args.name.isidentifier():
            shell.user_ns[args.name] = workbench
        display(workbench)  # type: ignore[no-untyped-call]


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%segfn`` (``%load_ext segfn_kit``)."""
    ipython.register_magics(SegfnMagics)
