"""A local recording endpoint: every request it receives is saved as a capture envelope.

Point Stripe's CLI (``stripe listen --forward-to 127.0.0.1:8787/stripe``), a tunnel, or any
webhook sender at it; each request becomes one ``.json`` file that ``load_payloads`` reads.

- A Starlette app served by uvicorn; binds 127.0.0.1 unless told otherwise.
- The body is saved exactly as received: as a string when it is UTF-8, else as
  ``body_base64``, so signatures can be checked again later.
- Files are written to a temporary name and renamed (``os.replace``), so a crash never
  leaves a half-written sample; the answer (200) is sent after the file is in place.
- Bodies over ``max_body`` bytes are refused with 413 and not saved.
- With a signature scheme and secret, each request's signature is checked and the result
  (``{"scheme", "valid", "reason"}``) saved with it; the secret never is.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from segfn_kit.runtime import SCHEMES, verify_signature

__all__ = ["DEFAULT_MAX_BODY", "create_app", "envelope_filename", "serve", "serving"]

DEFAULT_MAX_BODY = 5 * 1024 * 1024  # bytes; Segment itself takes at most 512 KiB
METHODS = ["POST", "PUT", "PATCH", "DELETE", "GET"]


class BodyTooLarge(Exception):
    pass


def envelope_filename(received_at: datetime, sequence: int, path: str) -> str:
    """A sortable, unique file name for one capture.

    Example:
        >>> envelope_filename(datetime(2026, 11, 26, 13, 40, tzinfo=UTC), 7, "/stripe/hook")
        '20261126T134000000Z-000007-stripe-hook.json'
    """
    slug = re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-")[:40] or "root"
    stamp = received_at.strftime("%Y%m%dT%H%M%S") + f"{received_at.microsecond // 1000:03d}Z"
    return f"{stamp}-{sequence:06d}-{slug}.json"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    out: str | os.PathLike[str],
    *,
    max_body: int = DEFAULT_MAX_BODY,
    signature: str | None = None,
    secret: str | None = None,
    on_saved: Callable[[Path, dict[str, Any]], None] | None = None,
) -> Starlette:
    """The recording app: saves each request under ``out`` as a capture envelope.

    Args:
        out: the folder the envelopes are written to (created if missing).
        max_body: the largest body accepted, in bytes; larger ones get 413.
        signature: a scheme of ``runtime.verify_signature`` (``stripe``, ``github``,
            ``shopify``, ``zendesk``, ``hmac-sha256``) to check each request with.
        secret: the signing secret for ``signature``.
        on_saved: called with the file written and its envelope (for logging).

    Example:
        >>> import tempfile
        >>> app = create_app(tempfile.mkdtemp())
        >>> [r.path for r in app.routes]
        ['/{path:path}']
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    if signature is not None:
        if signature not in SCHEMES:
            raise ValueError(
                f"unknown signature scheme {signature!r}; use one of {', '.join(SCHEMES)}"
            )
        if not secret:
            raise ValueError(f"signature scheme {signature!r} needs a secret")
    counter = itertools.count(1)
    lock = threading.Lock()

    async def record(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, max_body)
        except BodyTooLarge:
            return JSONResponse(
                {"error": f"body larger than {max_body} bytes; not saved"}, status_code=413
            )
        except ClientDisconnect:
            return JSONResponse({"error": "client disconnected"}, status_code=400)
        now = datetime.now(UTC)
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        query: dict[str, Any] = {}
        for name, value in request.query_params.multi_items():
            if name in query:
                previous = query[name]
                query[name] = (
                    [*previous, value] if isinstance(previous, list) else [previous, value]
                )
            else:
                query[name] = value
        envelope: dict[str, Any] = {
            "method": request.method,
            "url": str(request.url),
            "path": request.url.path,
            "query": query,
            "headers": headers,
        }
        try:
            envelope["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            envelope["body_base64"] = base64.b64encode(body).decode("ascii")
        envelope["received_at"] = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if signature is not None and secret is not None:
            check = verify_signature(signature, secret, headers, body)
            envelope["signature"] = {
                "scheme": check.scheme,
                "valid": check.valid,
                "reason": check.reason,
            }
        with lock:
            sequence = next(counter)
        name = envelope_filename(now, sequence, request.url.path)
        target = folder / name
        data = json.dumps(envelope, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
        write_atomic(target, data)
        if on_saved is not None:
            on_saved(target, envelope)
        return JSONResponse({"saved": name})

    return Starlette(routes=[Route("/{path:path}", record, methods=METHODS)])


def serve(
    out: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    max_body: int = DEFAULT_MAX_BODY,
    signature: str | None = None,
    secret: str | None = None,
    on_saved: Callable[[Path, dict[str, Any]], None] | None = None,
) -> None:
    """Run the recording endpoint in the foreground until interrupted (``segfn capture``)."""
    import uvicorn

    app = create_app(out, max_body=max_body, signature=signature, secret=secret, on_saved=on_saved)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@contextlib.contextmanager
def serving(
    out: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_body: int = DEFAULT_MAX_BODY,
    signature: str | None = None,
    secret: str | None = None,
) -> Iterator[str]:
    """Run the recording endpoint in a background thread; yields its base URL.

    Port 0 picks a free port. The server stops when the block ends.

    Example:
        >>> import tempfile, httpx
        >>> with serving(tempfile.mkdtemp()) as url:
        ...     httpx.post(f"{url}/hook", json={"type": "ping"}).status_code
        200
    """
    import uvicorn

    app = create_app(out, max_body=max_body, signature=signature, secret=secret)
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="segfn-capture", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the capture server did not start on {host}:{port}")
        time.sleep(0.01)
    sock = server.servers[0].sockets[0]
    bound_host, bound_port = sock.getsockname()[:2]
    try:
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
