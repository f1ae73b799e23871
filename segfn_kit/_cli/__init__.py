"""The ``segfn`` command: one subcommand per module of this package.

Each subcommand module defines ``register(subparsers)``, which adds its parser and sets
``handler=<function(args) -> int>`` as the parser's default.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    except BrokenPipeError:
        if not _stdout_gone():
            # a pipe of the command's own (a worker's, a socket) broke: an error to show,
            # never a silent exit 0 with the summary unprinted
            raise
        # `segfn run ... | head`: the reader has what it wanted; the output left unwritten
        # goes nowhere (no second error when Python flushes stdout on exit)
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 0


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (``segfn run ... | head``).

    Example:
        >>> _stdout_gone()
        False
    """
    try:
        import select

        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is not a file
        return False


if __name__ == "__main__":
    raise SystemExit(main())
