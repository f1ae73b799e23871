"""Record the HTTP requests a destination function makes, answering each with 200 and ``{}``.

No request leaves the machine: httpx's transports are patched for the duration of the
``with`` block, which covers module-level calls (``httpx.post``) and clients alike. The patch
holds in this process only, so the handler runs the function in this process too while the
block lasts (``SEGFN_ISOLATION=none``) instead of in its worker processes.
The same file computes the expectations at export time and checks them in the tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


def _describe(request: httpx.Request) -> dict[str, Any]:
    content = request.read()
    body: Any
    try:
        body = json.loads(content) if content else None
    except ValueError:
        body = content.decode("utf-8", "replace")
    # headers are left out on purpose: they carry credentials
    return {"method": request.method, "url": str(request.url), "body": body}


@contextmanager
def record_http() -> Iterator[list[dict[str, Any]]]:
    """Patch httpx so that every request is recorded and answered 200 ``{}``."""
    calls: list[dict[str, Any]] = []
    sync_original = httpx.HTTPTransport.handle_request
    async_original = httpx.AsyncHTTPTransport.handle_async_request

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        calls.append(_describe(request))
        return httpx.Response(200, json={}, request=request)

    async def handle_async(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        await request.aread()
        calls.append(_describe(request))
        return httpx.Response(200, json={}, request=request)

    isolation = os.environ.get("SEGFN_ISOLATION")
    os.environ["SEGFN_ISOLATION"] = "none"
    httpx.HTTPTransport.handle_request = handle  # type: ignore[method-assign]
    httpx.AsyncHTTPTransport.handle_async_request = handle_async  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        httpx.HTTPTransport.handle_request = sync_original  # type: ignore[method-assign]
        httpx.AsyncHTTPTransport.handle_async_request = async_original  # type: ignore[method-assign]
        if isolation is None:
            os.environ.pop("SEGFN_ISOLATION", None)
        else:
            os.environ["SEGFN_ISOLATION"] = isolation
