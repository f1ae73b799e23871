"""A broken pipe of the command's own is an error; only a closed stdout is a quiet exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "segfn_kit" / "examples" / "stripe_source.py"

# the worker pool's pipe breaking mid-replay (as a worker's pipe once did after os._exit)
BREAK_THE_POOL = """\
import sys
from segfn_kit.runtime._isolation import WorkerPool

real_map = WorkerPool.map

def map_then_break(self, calls, *args, **kwargs):
    for n, result in enumerate(real_map(self, calls, *args, **kwargs)):
        if n == 5:
            raise BrokenPipeError(32, "Broken pipe")
        yield result

WorkerPool.map = map_then_break
from segfn_kit._cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def _archive(path: Path, n: int) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"type": "customer.created", "id": f"evt_{i}",
                                 "data": {"object": {"id": f"cus_{i}", "email": f"u{i}@example.com"}}}) + "\n")
    return path


def test_a_broken_internal_pipe_is_an_error_not_a_silent_success(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "a.jsonl", 40)
    out = subprocess.run([sys.executable, "-c", BREAK_THE_POOL, "replay", str(STRIPE), str(archive), "--dry-run"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode != 0, (out.stdout, out.stderr)
    assert "BrokenPipeError" in out.stderr


def test_a_closed_stdout_ends_the_command_quietly(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "a.jsonl", 3000)  # far more lines than a pipe holds
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head`) is gone before the first line
    try:
        out = subprocess.run([sys.executable, "-m", "segfn_kit", "run", str(STRIPE), str(archive), "--jsonl",
                              "--no-progress"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path, timeout=120)
    finally:
        os.close(write_end)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr, out.stderr
