"""segfn_kit: a Python and Jupyter workbench for Segment-style functions."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
