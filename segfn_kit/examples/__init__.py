"""Bundled example functions: plain function files, read with ``example_path(name)``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["example_path"]


def example_path(name: str) -> Path:
    """The path of a bundled example function file.

    Example:
        >>> example_path("stripe_source").name
        'stripe_source.py'
        >>> example_path("github_source.mapping").name
        'github_source.mapping.json'
    """
    if name.endswith((".mapping", ".mapping.json")):  # a mapping function file
        path = Path(__file__).with_name(f"{name.removesuffix('.json').removesuffix('.mapping')}.mapping.json")
    else:
        path = Path(__file__).with_name(f"{name.removesuffix('.py')}.py")
    if not path.exists():
        available = sorted(p.stem for p in Path(__file__).parent.glob("*.py") if p.stem != "__init__")
        raise FileNotFoundError(f"no bundled example {name!r}; available: {', '.join(available)}")
    return path
