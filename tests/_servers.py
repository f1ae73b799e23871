"""Real servers on loopback for tests and benchmarks: a free port, and ``python -m uvicorn`` started in a
package directory and waited on until it accepts connections.

Example:
    >>> with serving(package, env) as (url, proc):  # doctest: +SKIP
    ...     httpx.post(url, json={"id": 1})
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Example:
        >>> 0 < free_port() < 65536
        True
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without ``SEGMENT_*``, ``SEGFN_*`` and ``PYTHONPATH``, plus ``values``:
    what an exported package is started with, so it reads only what the test sets.

    Example:
        >>> clean_env(SEGFN_TIMEOUT="1")["SEGFN_TIMEOUT"]
        '1'
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGMENT_", "SEGFN_", "PYTHONPATH"))}
    env.update(values)
    return env


def start_uvicorn(cwd: Path, env: dict[str, str], *, target: str = "handler:app", log: IO[bytes] | None = None,
                  log_path: Path | None = None, args: Sequence[str] = (),
                  timeout: float = 20.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m uvicorn target`` in ``cwd`` on a free loopback port; return it once it accepts.

    Output goes to ``log`` (or nowhere). If the server exits or does not answer within ``timeout``
    seconds it is killed and a RuntimeError carries the text of ``log_path`` (when given).

    Example:
        >>> proc, url = start_uvicorn(package, env, target="proxy:app")  # doctest: +SKIP
    """
    port = free_port()
    sink: IO[bytes] | int = log if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
         *args],
        cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=10)
                if log is not None:
                    log.flush()
                text = log_path.read_text() if log_path is not None and log_path.is_file() else ""
                raise RuntimeError(f"{target} in {cwd} did not start\n{text}") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server started by :func:`start_uvicorn` and wait for it (bounded)."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextmanager
def serving(cwd: Path, env: dict[str, str], *, log_path: Path, target: str = "handler:app",
            args: Sequence[str] = (), timeout: float = 20.0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`start_uvicorn` as a context: yields ``(url, process)``, output kept in ``log_path``.

    Example:
        >>> with serving(package, env, log_path=tmp / "server.log") as (url, proc):  # doctest: +SKIP
        ...     httpx.post(url, json={})
    """
    with log_path.open("wb") as log:
        proc, url = start_uvicorn(cwd, env, target=target, log=log, log_path=log_path, args=args, timeout=timeout)
        try:
            yield url, proc
        finally:
            stop(proc)
