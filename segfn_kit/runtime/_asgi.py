"""The ASGI application of a deployed function (``uvicorn handler:app``).

POST only; the body is read up to the configured limit (413 past it, without reading the
rest); a source function's call in its worker process is awaited on the event loop (no
thread per request; ``Engine.aprepare``), a function run in this process runs in a thread,
so other requests keep flowing; delivery is awaited on the loop, the events of requests in
flight sharing batches (``TrackingClient.asend``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ._config import Config, ConfigError
from ._request import Headers

if TYPE_CHECKING:
    from ._engine import Answer, Engine

__all__ = ["App", "asgi_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(engine: Engine, scope: Scope, receive: Receive, config: Config) -> tuple[Answer, bytes, str]:
    from ._engine import refuse
    from ._rules import body_too_large

    method = str(scope.get("method", "")).upper()
    raw = scope.get("headers", [])
    named = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw}
    # one value per name (the common case) reads as a dict; repeated names are joined as HTTP does
    headers = Headers(named if len(named) == len(raw) else [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw])
    query_string = scope.get("query_string", b"").decode("latin-1")
    url = str(scope.get("path", "/")) + ("?" + query_string if query_string else "")
    if method != "POST":
        return engine.check(method, headers, b"", config) or refuse(405, "method_not_allowed", ""), b"", method
    declared = headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > config.max_body:  # not "²"
        return refuse(*body_too_large(declared, config.max_body)), b"", method
    body = await _read_body(receive, config.max_body)
    if body is None:
        return refuse(*body_too_large(None, config.max_body)), b"", method
    # the function runs in a worker process awaited on the loop, or (in this process) in a
    # thread, so other requests keep flowing either way
    result, outbox = await engine.aprepare(method, headers, body, url, config)
    if outbox:
        result = await engine.adeliver(result, outbox, config)
    return result, body, method


def asgi_app(engine: Engine) -> App:
    """The ASGI application that answers requests with ``engine``."""
    from ._engine import Answer

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        start = time.perf_counter()
        body = b""
        method = str(scope.get("method", "?"))
        config: Config | None = None
        try:
            config = engine.config()
            result, body, method = await _answer(engine, scope, receive, config)
        except ConnectionError:
            return
        except ConfigError as exc:
            result = Answer(500, "configuration_error", error=str(exc))
        except Exception as exc:  # the handler's last line of defence: answer, log, keep serving
            result = engine.crashed(exc, config)
        engine.log(result, method=method, body=body, via="asgi", start=start, config=config)
        payload = result.body()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in result.headers.items()]
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app
