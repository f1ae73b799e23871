"""The ``segfn`` command: one subcommand per module of this package.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``handler=<function(args) -> int>`` as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from segfn_kit import __version__

# subcommand modules under segfn_kit._cli, in the order `segfn --help` lists them
COMMANDS: list[str] = ["run", "sink", "replay", "export", "profile", "redact", "capture", "plan"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segfn",
        description="Workbench for Segment-style source and destination functions.",
        epilog="Run 'segfn COMMAND --help' for each command's options.",
    )
    parser.add_argument("--version", action="version", version=f"segfn_kit {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"segfn_kit._cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segfn`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `segfn run ... | head`
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
