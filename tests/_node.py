"""The pinned reference Mapping Kit (``@segment/actions-core``), installed outside the project tree.

``tests/node/package.json`` and ``package-lock.json`` pin it; :func:`actions_core` runs ``npm ci``
into ``${XDG_CACHE_HOME:-~/.cache}/segfn_kit/node/actions-core-<version>`` when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
VERSION = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["@segment/actions-core"]


def node() -> str:
    """The ``node`` executable; skips the test when Node.js is absent (``make node`` installs it)."""
    found = shutil.which("node")
    if found is None:
        pytest.skip("node is not installed: run `make node` (make test does)")
    return found


def actions_core() -> Path:
    """The ``node_modules`` folder holding the pinned actions-core, installed on first use."""
    node()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    target = cache / "segfn_kit" / "node" / f"actions-core-{VERSION}"
    marker = target / "node_modules" / "@segment" / "actions-core" / "package.json"
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    if marker.is_file() and (target / "package-lock.json").read_bytes() == lock:
        return target / "node_modules"
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: run `make node` (make test does)")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(NODE_DIR / name, target / name)
    done = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(target)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    if done.returncode != 0 or not marker.is_file():
        raise RuntimeError(f"npm ci of @segment/actions-core {VERSION} failed:\n{done.stderr[-2000:]}")
    return target / "node_modules"
