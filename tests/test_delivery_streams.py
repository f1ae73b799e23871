"""``asend`` and ``send`` speak HTTP/1.1 themselves, on asyncio streams (``TrackingClient._apost``)
and on a socket (``_post``), reading answers with one parser, against a raw server on loopback
that answers as scripted: sized, chunked and unsized bodies, kept-alive connections reused or
not, answers that are not HTTP, no answer at all, a timeout, and TLS. Each test runs both ways."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from segfn_kit.runtime import DeliveryError, DeliveryReport, TrackingClient, _delivery

KEY = "wk_streams_41d07c"
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"success":true}'
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"6\r\n{\"succ\r\na;ext=1\r\ness\":true}\r\n0\r\nX-Trailer: 1\r\n\r\n")
HANG = b"hang"  # read the request, never answer
DROP = b"drop"  # read the request, close without an answer
QUIT = b"quit"  # answer OK, then close the connection without saying so
CUT = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}"  # a body cut short: the connection closes


@dataclass
class Received:
    connection: int
    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RawApi:
    answers: list[bytes]
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.writers.append(writer)
        try:
            while True:
                lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
                body = await reader.readexactly(int(headers["content-length"]))
                self.received.append(Received(number, lines[0], headers, body))
                answer = self.answers.pop(0) if self.answers else OK
                if answer == HANG:
                    await self.stop.wait()
                    return
                if answer == DROP:
                    return
                writer.write(OK if answer == QUIT else answer)
                await writer.drain()
                if answer in (QUIT, CUT) or b"connection: close" in answer.lower() or b"HTTP/1.0" in answer[:8]:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def track(n: int) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "Paid", "messageId": f"m-{n}"}


def run(answers: list[bytes], calls: Callable[[TrackingClient], Awaitable[Any]], *,
        tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None, **options: Any) -> tuple[RawApi, Any]:
    """Serve ``answers`` on loopback and run ``calls(client)`` against it, in one event loop."""

    async def main() -> tuple[RawApi, Any]:
        api = RawApi(list(answers))
        server = await asyncio.start_server(api.serve, "127.0.0.1", 0, ssl=tls[0] if tls else None)
        port = server.sockets[0].getsockname()[1]
        scheme = "https" if tls else "http"
        client = TrackingClient(KEY, host=f"{scheme}://127.0.0.1:{port}", budget=5, backoff=0.01, **options)
        try:
            result = await calls(client)
        finally:
            api.stop.set()
            await client.aclose()
            client.close()
            server.close()
            for writer in api.writers:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            await server.wait_closed()
        return api, result

    return asyncio.run(main())


Deliver = Callable[..., Awaitable[DeliveryReport]]


@pytest.fixture(params=["asend", "send"])
def deliver(request: pytest.FixtureRequest) -> Deliver:
    """``client.asend``, or ``client.send`` in a thread (the server runs in the event loop)."""

    async def call(client: TrackingClient, events: list[dict[str, Any]], **options: Any) -> DeliveryReport:
        if request.param == "asend":
            return await client.asend(events, **options)
        return await asyncio.to_thread(client.send, events, **options)

    return call


def two_sends(deliver: Deliver) -> Callable[[TrackingClient], Awaitable[list[DeliveryReport]]]:
    async def calls(client: TrackingClient) -> list[DeliveryReport]:
        first = await deliver(client, [track(1)])
        await asyncio.sleep(0.05)  # whatever the server does after answering, it has done it
        return [first, await deliver(client, [track(2)])]

    return calls


def sends(deliver: Deliver, n: int) -> Callable[[TrackingClient], Awaitable[list[DeliveryReport]]]:
    async def calls(client: TrackingClient) -> list[DeliveryReport]:
        return [await deliver(client, [track(i)]) for i in range(n)]

    return calls


def test_requests_are_http_1_1_posts_with_the_key_and_the_batch(deliver: Deliver) -> None:
    api, reports = run([OK, OK], two_sends(deliver))
    assert all(r.ok and r.retries == 0 for r in reports)
    first = api.received[0]
    assert first.line == "POST /v1/batch HTTP/1.1"
    assert first.headers["host"] == f"127.0.0.1:{api.writers[0].get_extra_info('sockname')[1]}"
    assert first.headers["authorization"] == "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert first.headers["content-type"] == "application/json"
    assert int(first.headers["content-length"]) == len(first.body)
    assert [e["messageId"] for e in json.loads(first.body)["batch"]] == ["m-1"]
    assert api.connections == 1  # the second request went on the kept-alive connection


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(deliver: Deliver) -> None:
    api, reports = run([CHUNKED, OK], two_sends(deliver))
    assert all(r.ok and r.retries == 0 for r in reports)
    assert api.connections == 1


def test_connection_close_and_unsized_answers_end_the_connection(deliver: Deliver) -> None:
    close = OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
    unsized = b'HTTP/1.0 200 OK\r\n\r\n{"success":true}'
    api, reports = run([close, unsized, OK], sends(deliver, 3))
    assert all(r.ok and r.retries == 0 for r in reports)
    assert [r.connection for r in api.received] == [1, 2, 3]


def test_a_connection_the_server_closed_while_idle_is_not_reused(deliver: Deliver) -> None:
    api, reports = run([QUIT, OK], two_sends(deliver))
    assert all(r.ok and r.retries == 0 for r in reports)  # no request was sent into the closed one
    assert [r.connection for r in api.received] == [1, 2]


@pytest.mark.parametrize("answer", [b"HELLO\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n", DROP, CUT,
                                    b"HTTP/1.1 200 OK\r\nX: " + b"x" * 70_000 + b"\r\n\r\n"])
def test_an_answer_that_is_not_http_or_none_at_all_is_retried(answer: bytes, deliver: Deliver) -> None:
    api, reports = run([answer], sends(deliver, 1))
    assert reports[0].ok and reports[0].retries == 1 and reports[0].statuses == {"connection": 1, "200": 1}
    sent = [[e["messageId"] for e in json.loads(r.body)["batch"]] for r in api.received]
    assert sent == [["m-0"], ["m-0"]]  # the same batch again


def test_retry_after_of_a_429_is_read(deliver: Deliver) -> None:
    limited = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 2\r\n\r\n{}"
    _, reports = run([limited], sends(deliver, 1))
    assert reports[0].ok and reports[0].statuses == {"429": 1, "200": 1}


def test_an_interim_answer_is_skipped(deliver: Deliver) -> None:
    _, reports = run([b"HTTP/1.1 100 Continue\r\n\r\n" + OK], sends(deliver, 1))
    assert reports[0].ok and reports[0].retries == 0


def test_a_server_that_never_answers_is_a_timeout_within_the_budget(deliver: Deliver) -> None:
    async def send(client: TrackingClient) -> BaseException:
        with pytest.raises(DeliveryError) as info:
            await deliver(client, [track(1)], budget=0.6)
        return info.value

    _, error = run([HANG, HANG, HANG, HANG, HANG, HANG], send, timeout=0.2)
    assert isinstance(error, DeliveryError) and error.report.dead_letter_ids == ["m-1"]
    assert set(error.report.statuses) == {"timeout"} and "timeout" in str(error)


def test_https_hosts_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deliver: Deliver) -> None:
    server, trusted = tls_contexts(tmp_path)
    monkeypatch.setattr(_delivery, "_TLS", trusted)  # the CA bundle: one that holds this certificate
    api, reports = run([OK, OK], two_sends(deliver), tls=(server, trusted))
    assert all(r.ok and r.retries == 0 for r in reports) and api.connections == 1
    monkeypatch.setattr(_delivery, "_TLS", ssl.create_default_context())  # one that does not

    async def refused(client: TrackingClient) -> DeliveryError:
        with pytest.raises(DeliveryError) as info:
            await deliver(client, [track(3)], budget=0.3)
        return info.value

    _, error = run([], refused, tls=(server, trusted))
    assert set(error.report.statuses) == {"connection"}


def tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for 127.0.0.1, and a client context trusting it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "segfn test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFF\r\n{}",
    b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * ((8 << 20) + 10),
])
def test_an_answer_claiming_a_huge_body_is_refused_unread_and_retried(answer: bytes, deliver: Deliver) -> None:
    """A broken or hostile server cannot make the sender allocate what its head claims."""
    api, reports = run([answer], sends(deliver, 1))
    assert reports[0].ok and reports[0].retries == 1 and reports[0].statuses == {"connection": 1, "200": 1}
    assert len(api.received) == 2 and api.connections == 2
