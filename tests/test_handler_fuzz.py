"""Fuzzing the exported handler's request parsing: every request gets one answer, none raises.

The bundled Stripe source is exported (as ``segfn export`` writes it) and its ``handler.py``
imported; its events are delivered to a real sink on 127.0.0.1. The function runs in this
process (``SEGFN_ISOLATION=none``) so that a few hundred requests take seconds, not a worker
round trip each; the request parsing fuzzed here is the same in both isolation modes.

- ``lambda_handler``: arbitrary JSON-ish events and near-valid API Gateway (REST 1.0, HTTP
  API 2.0), Function URL and load balancer events with hostile fields (headers as a list, a
  string or ``None``, odd ``multiValueHeaders``, bodies that are no string, bodies flagged
  base64 that are not, huge or badly percent-encoded query strings, lone surrogates, no
  ``requestContext``) must give a dict with a known ``statusCode`` and a JSON ``body``;
- ``app`` (ASGI), driven through the ASGI protocol itself: any method, header bytes (non-ASCII
  too), content types, bodies in several ``http.request`` messages, bodies over the limit,
  ``content-length`` headers that lie: exactly one ``http.response.start`` with a known
  status, then a JSON body of the announced length;
- a destination's handler (exported from a small function), by both entry points: a body of
  one event, a list or ``{"batch": [...]}`` of valid and invalid events, or no JSON at all, is
  either refused with a reason or answered with exactly one result per event.

Neither may answer the handler's own crash (outcome ``error``): that is a bug in the runtime.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, currently_in_test_context, example, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from segfn_kit._payloads import iter_payloads
from segfn_kit._sink import read_sink, running_sink
from segfn_kit.runtime import sign
from tests.golden import regen
from tests.test_export import load_handler

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
STATUSES = {200, 400, 401, 405, 413, 415, 422, 500, 502, 503, 504}
WRITE_KEY = "wk-fuzz-7d21e0"
SIGNING_SECRET = "whsec_fuzz_a81c"
MAX_BODY = 8192  # small, so that bodies over the limit are exercised too
SAMPLES = regen.CASES["stripe_source"][1][0]


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """The handler's configuration (``SEGMENT_*`` and ``SEGFN_*`` only) for a ``with`` block."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(("SEGMENT_", "SEGFN_"))}
    for name in saved:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        for name in [k for k in os.environ if k.startswith(("SEGMENT_", "SEGFN_"))]:
            del os.environ[name]
        os.environ.update(saved)


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    store = tmp_path_factory.mktemp("sink") / "sink.sqlite3"
    with running_sink(write_key=WRITE_KEY, store=store) as url:
        yield url, store


@pytest.fixture(scope="module")
def env(sink: tuple[str, Path]) -> dict[str, str]:
    return {
        "SEGMENT_WRITE_KEY": WRITE_KEY,
        "SEGMENT_API_HOST": sink[0],
        "SEGMENT_OBJECTS_HOST": sink[0],
        "SEGFN_ISOLATION": "none",
        "SEGFN_MAX_BODY": str(MAX_BODY),
        "SEGFN_DELIVERY_BUDGET": "2",
        "SEGFN_TIMEOUT": "2",
    }


@pytest.fixture(scope="module")
def handler(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Iterator[types.ModuleType]:
    package = regen.export_case("stripe_source", tmp_path_factory.mktemp("fuzz") / "stripe_source")
    with environment(env):  # SEGFN_ISOLATION=none at import: no spare worker is started
        module = load_handler(package)
    yield module
    for client in module.ENGINE._clients.values():
        client.close()


@pytest.fixture(scope="module")
def loop(handler: types.ModuleType) -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every ASGI request, as under a server (its connection pool lives on it)."""
    loop = asyncio.new_event_loop()
    yield loop
    for client in handler.ENGINE._clients.values():
        loop.run_until_complete(client.aclose())
    loop.close()


def configured(env: dict[str, str], signed: bool) -> contextlib.AbstractContextManager[None]:
    extra = {"SEGFN_SIGNATURE": "stripe", "SEGFN_SIGNING_SECRET": SIGNING_SECRET} if signed else {}
    return environment({**env, **extra})


# -- values --------------------------------------------------------------------------------

# text as JSON can carry it: any code point, lone surrogates included ("\ud83d")
any_text = st.text(st.characters(blacklist_categories=()), max_size=20)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)),
    max_leaves=15,
)
SAMPLE_BODIES = [p.raw for p in iter_payloads(str(SAMPLES)) if p.error is None]
sample_bodies = st.sampled_from(SAMPLE_BODIES)
json_bodies = json_values.map(lambda v: json.dumps(v, ensure_ascii=False))
bodies = st.one_of(
    sample_bodies,
    json_bodies,
    any_text,
    st.just(""),
    st.just("[" * 5000 + "]" * 5000),  # nested too deeply to parse
    st.just('{"a": "' + "x" * (MAX_BODY + 10) + '"}'),  # over the limit
    st.sampled_from(['{"id": 1e400}', '{"k": 1, "k": 2}', "{oops", "a=1&b=%zz", '{"t": NaN}']),
)
content_types = st.one_of(
    st.sampled_from([
        "application/json", "application/json; charset=utf-8", "application/vnd.api+json", "text/plain",
        "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=x", "",
        ";;;", "APPLICATION/JSON", "text/", "application/json\u00e9",
    ]),
    any_text,
)
methods = st.one_of(  # mostly POST, so that most requests get past the 405
    st.just("POST"), st.just("POST"), st.just("POST"),
    st.sampled_from(["post", "GET", "PUT", "OPTIONS", "", "P\u00d6ST"]), any_text,
)
header_names = st.one_of(
    st.sampled_from(["content-type", "Content-Type", "stripe-signature", "content-length", "user-agent"]),
    any_text,
)
header_values = st.one_of(content_types, any_text, st.just("t=1,v1=00"), json_values)
header_maps = st.dictionaries(header_names, header_values, max_size=5)
headers = st.one_of(
    header_maps,
    st.fixed_dictionaries({"content-type": content_types}, optional={"Content-Type": json_values}),
    st.lists(st.tuples(any_text, any_text), max_size=3),  # a list, not an object
    any_text,
    st.none(),
    json_values,
)
multi_headers = st.one_of(
    st.dictionaries(header_names, st.one_of(st.lists(header_values, max_size=3), header_values), max_size=5),
    st.fixed_dictionaries({"content-type": st.lists(content_types, max_size=3)}),
    json_values,
)
query_text = st.one_of(
    any_text,
    st.just("a=%zz&b=%&c=%%%&%ff%fe=%c3%28"),
    st.just("&".join(f"k{i}=%F0%9F%98%80{i}" for i in range(2000))),  # huge, percent-encoded
    st.just("email=a%40b.com&email=c%40d.com&plus=a+b&empty=&=novalue&novalue"),
    st.lists(st.tuples(any_text, any_text), max_size=4).map(
        lambda pairs: "&".join(f"{quote(k, errors='surrogatepass')}={quote(v, errors='surrogatepass')}"
                               for k, v in pairs)
    ),
)
query_maps = st.one_of(
    st.dictionaries(any_text, st.one_of(any_text, st.none(), st.lists(st.one_of(any_text, st.none()), max_size=3)),
                    max_size=4),
    st.just({f"k{i}": "%E2%82%AC%zz" * 20 for i in range(500)}),
    json_values,
)


@st.composite
def event_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """``body`` and ``isBase64Encoded``: text, base64 (valid or not), or no string at all."""
    text = draw(bodies)
    how = draw(st.sampled_from(["plain", "base64", "bad_base64", "not_a_string", "absent"]))
    flag = draw(st.one_of(st.booleans(), st.sampled_from([1, 0, "true", "false", None, []])))
    if how == "plain":
        return {"body": text, "isBase64Encoded": flag}
    if how == "base64":
        encoded = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()
        return {"body": encoded, "isBase64Encoded": True}
    if how == "bad_base64":
        return {"body": draw(st.sampled_from(["not base64!", "abc", "====", "YQ", "\u00e9\u00e9=="])),
                "isBase64Encoded": True}
    if how == "not_a_string":
        return {"body": draw(json_values.filter(lambda v: not isinstance(v, str) and v is not None)),
                "isBase64Encoded": flag}
    return {}


def maybe(draw: st.DrawFn, event: dict[str, Any], name: str, values: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        event[name] = draw(values)


@st.composite
def v2_events(draw: st.DrawFn) -> dict[str, Any]:
    """API Gateway HTTP API (payload 2.0) and Function URL events, near valid."""
    http = {"method": draw(methods), "path": draw(st.one_of(st.just("/hook"), any_text, json_values))}
    context: Any = draw(st.one_of(
        st.just({"http": http}),
        st.just({"http": http, "domainName": "abc.lambda-url.us-east-1.on.aws", "requestId": "r1"}),
        st.fixed_dictionaries({"http": json_values}),
        json_values,
    ))
    event: dict[str, Any] = {"version": "2.0", "routeKey": "$default", "requestContext": context}
    if draw(st.booleans()):
        del event["requestContext"]
    maybe(draw, event, "rawPath", st.one_of(st.just("/webhooks/stripe"), any_text, json_values))
    maybe(draw, event, "rawQueryString", st.one_of(query_text, json_values))
    maybe(draw, event, "headers", headers)
    maybe(draw, event, "cookies", json_values)
    event.update(draw(event_bodies()))
    return event


@st.composite
def v1_events(draw: st.DrawFn) -> dict[str, Any]:
    """API Gateway REST API (payload 1.0) and load balancer events (single and multi-value)."""
    event: dict[str, Any] = {"httpMethod": draw(methods)}
    context = draw(st.one_of(
        st.just({"resourcePath": "/hook", "stage": "prod"}),
        st.just({"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/t/1"}}),
        st.fixed_dictionaries({"elb": json_values}),
        json_values,
    ))
    if draw(st.booleans()):
        event["requestContext"] = context
    maybe(draw, event, "path", st.one_of(st.just("/hook"), any_text, json_values))
    maybe(draw, event, "headers", headers)
    maybe(draw, event, "multiValueHeaders", multi_headers)
    maybe(draw, event, "queryStringParameters", query_maps)
    maybe(draw, event, "multiValueQueryStringParameters", query_maps)
    event.update(draw(event_bodies()))
    return event


lambda_events = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(["httpMethod", "requestContext", "body", "headers", "rawPath"]), json_values),
    v2_events(),
    v2_events(),
    v1_events(),
    v1_events(),
)


# -- checks ----------------------------------------------------------------------------------


def check_answer(status: Any, body: bytes | str) -> dict[str, Any]:
    assert type(status) is int and status in STATUSES, status
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    assert isinstance(text, str)
    doc = json.loads(text)
    assert isinstance(doc, dict) and isinstance(doc.get("outcome"), str), doc
    assert doc["outcome"] != "error", f"the handler itself failed: {doc.get('error')}"
    assert doc["ok"] is (status < 300)
    if currently_in_test_context():
        label(f"{status} {doc['outcome']}")  # shown by --hypothesis-show-statistics
    return doc


class Context:
    aws_request_id = "fuzz-request"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


# -- Lambda ----------------------------------------------------------------------------------


@FUZZ
@given(lambda_events, st.booleans(), st.booleans())
@example({"httpMethod": "\ud83d", "body": "{}"}, False, False)  # a lone surrogate in the method
@example({"requestContext": {"http": {"method": "POST"}}, "body": "YQ", "isBase64Encoded": True}, False, True)
@example({"httpMethod": "POST", "headers": ["content-type", "application/json"], "body": {"a": 1}}, True, False)
def test_lambda_events_always_get_an_answer(
    handler: types.ModuleType, env: dict[str, str], event: Any, signed: bool, with_context: bool
) -> None:
    with configured(env, signed):
        response = handler.lambda_handler(event, Context() if with_context else None)
    assert isinstance(response, dict)
    check_answer(response["statusCode"], response["body"])
    assert response["isBase64Encoded"] is False
    shown = response.get("headers", response.get("multiValueHeaders"))
    assert isinstance(shown, dict) and shown, response


def stripe_event(body: str, content_type: str = "application/json") -> dict[str, Any]:
    return {
        "version": "2.0", "rawPath": "/webhooks/stripe", "rawQueryString": "",
        "headers": {"content-type": content_type},
        "requestContext": {"http": {"method": "POST", "path": "/webhooks/stripe"}},
        "body": body, "isBase64Encoded": False,
    }


def test_valid_events_still_land_in_the_sink(
    handler: types.ModuleType, env: dict[str, str], sink: tuple[str, Path]
) -> None:
    """The fuzz's handler is a working one: a valid webhook's events reach the sink."""
    before = len(read_sink(sink[1]))
    with configured(env, False):
        created = next(b for b in SAMPLE_BODIES if json.loads(b)["type"] == "customer.created")
        response = handler.lambda_handler(stripe_event(created), Context())
    doc = check_answer(response["statusCode"], response["body"])
    assert response["statusCode"] == 200 and doc["events"] >= 1, doc
    assert len(read_sink(sink[1])) == before + doc["events"]


# -- ASGI ----------------------------------------------------------------------------------


async def drive(app: Any, scope: dict[str, Any], chunks: list[bytes]) -> list[dict[str, Any]]:
    """Run one HTTP request through an ASGI app; what it sent."""
    incoming = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ] or [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=30)
    return sent


byte_text = st.one_of(
    st.binary(max_size=20),
    any_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    content_types.map(lambda t: t.encode("utf-8", "surrogatepass")),
)
asgi_headers = st.lists(
    st.one_of(
        st.tuples(st.just(b"content-type"), byte_text),
        st.tuples(st.just(b"content-length"), st.one_of(
            st.integers(0, 10**7).map(lambda n: str(n).encode()), st.sampled_from([b"-1", b"x", b"", b"\xb2"]))),
        st.tuples(st.sampled_from([b"stripe-signature", b"user-agent", b"x-forwarded-for"]), byte_text),
        st.tuples(byte_text, byte_text),
    ),
    max_size=6,
)
asgi_bodies = st.one_of(
    sample_bodies.map(str.encode),
    json_bodies.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.just(b"x" * (MAX_BODY + 1)),
    st.just(b'{"a": "' + b"y" * (3 * MAX_BODY) + b'"}'),
)


@FUZZ
@given(
    methods,
    asgi_headers,
    asgi_bodies,
    st.lists(st.integers(0, 4000), max_size=4),
    st.one_of(st.binary(max_size=40), st.just(b"a=%zz&b=%ff"), st.just(b"k=v&" * 3000)),
    st.booleans(),
)
@example("POST", [(b"content-type", b"application/json")], b'{"id": "\\ud83d"}', [], b"", False)
@example("GET", [(b"content-type", b"\xff\xfe")], b"", [], b"", True)
@example("POST", [(b"content-length", b"1")], b"x" * (MAX_BODY + 1), [10, 20], b"", False)
@example("POST", [(b"content-length", b"\xb2")], b"{}", [], b"", False)  # "²".isdigit() is true
def test_asgi_requests_always_get_one_answer(
    handler: types.ModuleType, env: dict[str, str], loop: asyncio.AbstractEventLoop,
    method: str, header_list: list[tuple[bytes, bytes]],
    body: bytes, cuts: list[int], query_string: bytes, signed: bool,
) -> None:
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    if signed and body:  # a valid signature now and then, so that signed requests get past 401
        header_list = [*header_list, (b"stripe-signature", sign("stripe", SIGNING_SECRET, body)
                                      ["Stripe-Signature"].encode())]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": "/webhooks/stripe", "raw_path": b"/webhooks/stripe",
        "query_string": query_string, "headers": header_list, "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    with configured(env, signed):
        sent = loop.run_until_complete(drive(handler.app, scope, chunks))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    assert sent[0] is starts[0]
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body", False)
    announced = dict(starts[0]["headers"])
    assert announced[b"content-type"] == b"application/json"
    assert int(announced[b"content-length"]) == len(payload)
    doc = check_answer(starts[0]["status"], payload)
    if len(body) > MAX_BODY and method.upper() == "POST":
        assert starts[0]["status"] == 413, doc


# -- a destination's requests ----------------------------------------------------------------

DESTINATION = """\
from segfn_kit.runtime import ValidationError


def on_track(event, settings):
    if not event.get("event"):
        raise ValidationError("a track needs an event name")


def on_identify(event, settings):
    return None
"""


@pytest.fixture(scope="module")
def destination(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> types.ModuleType:
    from segfn_kit._export import export

    folder = tmp_path_factory.mktemp("destination")
    (folder / "checks.py").write_text(DESTINATION)
    package = export(folder / "checks.py", folder / "checks", payloads=[regen.CASES["zendesk_destination"][1][0]],
                     settings={}, approved=None)
    with environment(env):
        return load_handler(package)


segment_events = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(["track", "identify"]),
                       st.sampled_from(["page", "group", "alias", "screen", "delete"]), json_values),
     "userId": st.one_of(st.just("u1"), st.just("u1"), json_values)},
    optional={
        "anonymousId": st.one_of(st.just("a1"), json_values),
        "event": st.one_of(st.just("Order Completed"), json_values),
        "messageId": st.one_of(st.just("m1"), json_values),
        "properties": json_values,
        "traits": json_values,
    },
)
event_lists = st.lists(st.one_of(segment_events, json_values), max_size=5)
destination_bodies = st.one_of(
    segment_events.map(lambda e: [e]),
    event_lists,
    event_lists.map(lambda events: {"batch": events}),
    json_values,
).map(lambda doc: json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def expected_results(body: bytes) -> int | None:
    """How many results the answer must hold: one per event the body carries."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and isinstance(doc.get("batch"), list):
        doc = doc["batch"]
    return len(doc) if isinstance(doc, list) else 1


@FUZZ
@given(
    st.one_of(destination_bodies, st.binary(max_size=100), st.sampled_from([b"[" * 3000 + b"]" * 3000,
                                                                           b"[" * 5000 + b"]" * 5000])),
    st.sampled_from(["application/json", "application/vnd.segment+json", "text/plain", ""]),
    st.booleans(),
)
@example(b'{"batch": [{"type": "track", "userId": "\\ud83d", "event": "\\udc00"}]}', "application/json", False)
@example(b'{"batch": "nope"}', "application/json", True)
def test_destination_requests_get_one_result_per_event(
    destination: types.ModuleType, env: dict[str, str], loop: asyncio.AbstractEventLoop,
    body: bytes, content_type: str, via_asgi: bool,
) -> None:
    with configured(env, False):
        if via_asgi:
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"",
                     "headers": [(b"content-type", content_type.encode())]}
            sent = loop.run_until_complete(drive(destination.app, scope, [body]))
            assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], sent
            status, payload = sent[0]["status"], sent[1]["body"]
        else:
            try:  # as API Gateway passes it: text as is, other bytes in base64
                event = stripe_event(body.decode("utf-8", "surrogatepass"), content_type)
            except UnicodeDecodeError:
                event = {**stripe_event(base64.b64encode(body).decode(), content_type), "isBase64Encoded": True}
            response = destination.lambda_handler(event, Context())
            status, payload = response["statusCode"], response["body"]
    doc = check_answer(status, payload)
    count = expected_results(body)
    if status in (413, 415) or (doc["outcome"] == "InvalidEventPayload" and "results" not in doc):
        assert doc["error"], doc  # refused before any event ran: the reason says why
        return
    assert count is not None, doc
    assert len(doc.get("results", [])) == count, (count, doc)
    for result in doc.get("results", []):
        assert result["outcome"] in ("ok", "ValidationError", "InvalidEventPayload", "EventNotSupported"), result
        assert result["status"] in (200, 400), result
