"""Bundled example functions: plain function files, read with ``example_path(name)``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["example_path"]


def example_path(name: str) -> Path:
    """The path of a bundled example function file.

    Example:
        >>> example_path("stripe_source").name
        'stripe_source.py'
    """
    path = Path(__file__).with_name(f"{name.removesuffix('.py')}.py")
    if not path.exists():
        available = sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem != "__init__")
        raise FileNotFoundError(f"no bundled example {name!r}; available: {', '.join(available)}")
    return path
