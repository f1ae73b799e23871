"""The runtime's JSON fast path: derived messageIds pinned (they never change), with orjson
and with the standard library alone, and the re-run digest cache past 13,000 payloads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import segfn_kit
from segfn_kit.examples import example_path
from segfn_kit.runtime import Function, Request
from segfn_kit.runtime import _json as runtime_json

ROOT = Path(__file__).resolve().parents[1]
STRIPE = ROOT / "sample_payloads" / "stripe"
SIMPLE = (
    "from segfn_kit.runtime import Segment\n"
    "def on_request(request, settings):\n"
    "    Segment.track(user_id='u1', event='A')\n"
    "    Segment.identify(user_id='u1')\n"
)

# derived messageIds as computed before the runtime's JSON fast path: they must never change
PINNED_BODIES: list[tuple[bytes, list[str]]] = [
    (b'{"b": 1, "a": 2}', ['2ee2367c-1590-5918-9cb0-be765db3e427', '417663a4-1651-5ad7-a860-d236009c5824']),
    (b'{"a":2,"b":1}', ['2ee2367c-1590-5918-9cb0-be765db3e427', '417663a4-1651-5ad7-a860-d236009c5824']),
    (b'{\n  "name": "caf\\u00e9 \xe2\x98\x95",\n  "n": [1, 2.5, -0.0, 1e-07, 1e+16, 1.5e300, 123456789012345678901]\n}', ['de473b48-d3fe-55c3-86c1-617b33e466a5', '024ff956-8949-544b-a738-251342dd6e15']),
    (b'{"big": 12345678901234567890123, "neg": -9223372036854775809, "ok": 9223372036854775807}', ['d8497724-7651-5339-87aa-9b8182fa356c', 'ce8fe0b4-1c50-54cf-b936-edc6b429d6f9']),
    (b'{"x": NaN, "y": Infinity, "z": -Infinity}', ['5511df82-ac7d-5cfe-8d4b-494a2ebaaa20', '980cc0b0-3272-597e-8135-494614488d81']),
    (b'{"s": "\\ud800 lone", "ctl": "\\u0001\\n\\t\\"\\\\/", "emoji": "\\ud83d\\ude00"}', ['da53daad-d0ad-5d9d-b30c-1d65fdaab10c', '93ef4317-7585-50ad-adfd-a815180d6695']),
    (b'{"dup": 1, "dup": 2, "k": {"z": null, "a": [true, false]}}', ['174fe818-145e-5f01-b463-1860da83f40b', 'e0ea0ae9-8a41-529a-8e43-6e8276eacb6d']),
    (b'[1, "two", {"three": 3.0}]', ['71f031f9-2f8d-5f65-86f0-96aced51e134', '39668149-ab48-584c-a079-ebe14b5c6f9b']),
    (b'"just a string"', ['6b83a3db-62b8-56e2-91da-2e93dab76c45', 'ed01fe10-4719-593d-b8c2-13b90a449b42']),
    (b'42', ['cc4decc0-71ff-5b17-9689-88968574fa1a', 'be094a5f-2f70-53a3-9b7d-8b22e1832c3a']),
    (b'not json at all', ['173ea00a-500c-5a06-a21c-ee83df4bed05', '0909432f-a3eb-541d-af95-f0d175500773']),
    (b'From=%2B15550100&Body=hi', ['10c9ee37-1a33-5793-9ef0-073fbbd8ff3e', '04f1a37f-46a3-5027-8395-1be1870a8c6b']),
    (b'', ['47cbfec1-8d7f-5f63-ba1f-a07ca64bcb92', '44649245-54d0-518b-acaf-f29962085b4a']),
    (b'\xff\xfe invalid utf8', ['8d44c504-cfa3-5f37-b8da-ea506f0f2c25', 'b383b51b-2a41-5a1b-8692-d5f722e1222c']),
    (b'{"float": 0.1, "f2": 100.0, "f3": 1e22, "f4": 5e-324, "f5": 0.0001, "f6": 123456789.123}', ['4cf0ccd8-a180-53aa-a72d-ce7ea294940f', '4c5563c8-2ccf-5664-87a8-bbe9188d5765']),
    (b'\xef\xbb\xbf{"bom": true}', ['8b8c67a4-fa6a-5628-b0d9-3f9a5e83f1ce', '7a282627-9236-55aa-bb82-cfcffff2cf9b']),
    (b'{"deep"' + b': ' + b'[' * 300 + b']' * 300 + b'}', ['31aef590-b29b-5208-a46c-8e24ebdd1703', '4ba7361a-8a8f-5821-adf9-df83801eda30']),
]
PINNED_STRIPE: dict[str, list[str]] = {
    'charge.succeeded.guest.json': [],
    'charge.succeeded.json': ['ef753202-36a9-547a-b793-5364fa596306'],
    'checkout.session.completed.json': ['4c425c4b-c25d-5606-a3bb-c0b6c639b45e', '77825e72-7d9c-5c27-8839-f32f02c29a24'],
    'customer.created.json': ['f5ce1379-1dd6-552f-8761-bf40ba673c33', '01c7252f-482e-5735-ba6a-9f30644f40ca'],
    'customer.subscription.created.json': ['cdc1d147-f459-569f-bb16-fe6f589388fc'],
    'customer.subscription.deleted.json': ['76bbacf8-6dbc-536f-a8a0-3fcb6a05443c'],
    'customer.subscription.trial_will_end.json': ['6549184b-7abf-5000-a87d-dd5ac87f27d0'],
    'customer.subscription.updated.json': ['3bffe6de-e4e3-5517-9369-0bab7559f5b6'],
    'customer.updated.json': ['7673f39c-ef59-54a9-8a01-57d0ed8a57be', '8ebf3da8-eedd-5b44-aed9-619e0e782bef'],
    'invoice.paid.json': ['1da34638-5bc4-52ca-b0ce-f3ee325ddc8f'],
    'invoice.payment_failed.json': ['4e49006a-671a-5909-b227-911dbe6feddb'],
    'invoice.voided.json': [],
    'payment_intent.succeeded.json': [],
}
PINNED_RUN: dict[str, list[str]] = {
    'stripe/charge.succeeded.guest.json': [],
    'stripe/charge.succeeded.json': ['ef753202-36a9-547a-b793-5364fa596306'],
    'stripe/checkout.session.completed.json': ['4c425c4b-c25d-5606-a3bb-c0b6c639b45e', '77825e72-7d9c-5c27-8839-f32f02c29a24'],
    'stripe/customer.created.json': ['f5ce1379-1dd6-552f-8761-bf40ba673c33', '01c7252f-482e-5735-ba6a-9f30644f40ca'],
    'stripe/customer.subscription.created.json': ['cdc1d147-f459-569f-bb16-fe6f589388fc'],
    'stripe/customer.subscription.deleted.json': ['76bbacf8-6dbc-536f-a8a0-3fcb6a05443c'],
    'stripe/customer.subscription.trial_will_end.json': ['6549184b-7abf-5000-a87d-dd5ac87f27d0'],
    'stripe/customer.subscription.updated.json': ['3bffe6de-e4e3-5517-9369-0bab7559f5b6'],
    'stripe/customer.updated.json': ['7673f39c-ef59-54a9-8a01-57d0ed8a57be', '8ebf3da8-eedd-5b44-aed9-619e0e782bef'],
    'stripe/invoice.paid.json': ['1da34638-5bc4-52ca-b0ce-f3ee325ddc8f'],
    'stripe/invoice.payment_failed.json': ['4e49006a-671a-5909-b227-911dbe6feddb'],
    'stripe/invoice.voided.json': [],
    'stripe/payment_intent.succeeded.json': [],
}


def _stripe_request(path: Path) -> Request:
    envelope = json.loads(path.read_text(encoding="utf-8"))
    body = envelope["body"]
    text = body if isinstance(body, str) else json.dumps(body, indent=2)
    return Request(text.encode(), envelope.get("headers"), method="POST")


@pytest.fixture(params=["orjson", "stdlib"])
def json_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each test with the runtime's fast JSON path and with the standard library alone."""
    if request.param == "stdlib":
        monkeypatch.setattr(runtime_json, "orjson", None)
    else:
        assert runtime_json.orjson is not None, "orjson is a dependency of the workbench"
    return str(request.param)


def test_pinned_ids_of_bodies(json_path: str) -> None:
    fn = Function.from_source(SIMPLE)
    for body, ids in PINNED_BODIES:
        inv = fn.on_request(Request(body))
        assert inv.outcome == "ok", inv.error
        assert [e["messageId"] for e in inv.events] == ids, body[:80]


def test_a_body_too_deep_to_parse_is_refused_before_the_function_runs(json_path: str) -> None:
    # its digest was its raw bytes' sha256; the body rule now answers it InvalidEventPayload
    fn = Function.from_source(SIMPLE)
    inv = fn.on_request(Request(b'{"deeper": ' + b"[" * 2000 + b"]" * 2000 + b"}"))
    assert inv.outcome == "InvalidEventPayload" and inv.events == []


def test_pinned_ids_after_the_function_read_the_body(json_path: str) -> None:
    # the function parses (and changes) the body before it emits: the ids still come from
    # the body as received
    fn = Function.from_source(
        "from segfn_kit.runtime import Segment\n"
        "def on_request(request, settings):\n"
        "    try:\n"
        "        body = request.json()\n"
        "    except Exception:\n"
        "        body = None\n"
        "    if isinstance(body, dict):\n"
        "        body.clear()\n"
        "        body['changed'] = True\n"
        "    Segment.track(user_id='u1', event='A')\n"
        "    Segment.identify(user_id='u1')\n"
    )
    for body, ids in PINNED_BODIES:
        inv = fn.on_request(Request(body))
        assert inv.outcome == "ok", inv.error
        assert [e["messageId"] for e in inv.events] == ids, body[:80]


def test_pinned_ids_of_the_stripe_function(json_path: str) -> None:
    fn = Function.from_file(example_path("stripe_source"))
    for path in sorted(STRIPE.glob("*.json")):
        inv = fn.on_request(_stripe_request(path), {"signatureTolerance": "0"})
        assert [e["messageId"] for e in inv.events] == PINNED_STRIPE[path.name], path.name


def test_pinned_ids_through_run(json_path: str) -> None:
    fn = Function.from_file(example_path("stripe_source"))
    for _ in range(2):  # the second run takes the digests from the re-run cache
        results = segfn_kit.run(fn, STRIPE, {"signatureTolerance": "0"}, progress=False)
        got = {str(pid): [e["messageId"] for e in evs] for pid, evs in results["events"].items()}
        assert got == PINNED_RUN


def test_runtime_runs_without_orjson_installed() -> None:
    # an exported package may ship without orjson: the runtime imports and gives the same ids
    code = (
        "import sys; sys.modules['orjson'] = None\n"
        "from segfn_kit.runtime import Function, Request\n"
        "from segfn_kit.runtime import _json\n"
        "assert _json.orjson is None\n"
        f"fn = Function.from_source({SIMPLE!r})\n"
        f"inv = fn.on_request(Request({PINNED_BODIES[2][0]!r}))\n"
        "print(' '.join(e['messageId'] for e in inv.events))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, check=True
    )
    assert out.stdout.split() == PINNED_BODIES[2][1]


def _stdlib_digest(content: bytes) -> str:
    """``body_digest`` as the runtime computes it without orjson."""
    saved = runtime_json.orjson
    runtime_json.orjson = None
    try:
        return runtime_json.body_digest(content)
    finally:
        runtime_json.orjson = saved


def test_fast_and_stdlib_digests_agree_on_real_payloads(corpora_dir: Path) -> None:
    files = sorted(p for p in corpora_dir.rglob("*.json") if p.stat().st_size < 2_000_000)[:400]
    assert files, "no JSON files in the corpora"
    for path in files:
        content = path.read_bytes()
        assert runtime_json.body_digest(content) == _stdlib_digest(content), path


def test_rerun_cache_keeps_working_past_13000_payloads() -> None:
    from segfn_kit._run import _DIGESTS

    fn = Function.from_source(SIMPLE)
    bodies = [{"n": i, "pad": "x" * 40} for i in range(13_500)]
    first = segfn_kit.run(fn, bodies, progress=False)
    hits = _DIGESTS.hits
    second = segfn_kit.run(fn, bodies, progress=False)
    assert _DIGESTS.hits - hits == len(bodies)  # every digest came from the cache
    assert first["events"].tolist() == second["events"].tolist()


def test_digest_cache_is_bounded_by_bytes() -> None:
    from segfn_kit._run import _DigestCache

    cache = _DigestCache(max_bytes=10_000)
    for i in range(1_000):
        cache.put(b"%05d" % i + b"x" * 95, "d")
    assert cache.size_bytes <= 10_000
    assert cache.get(b"%05d" % 999 + b"x" * 95) == "d"  # the newest stay
    assert cache.get(b"%05d" % 0 + b"x" * 95) is None  # the oldest went


@pytest.mark.parametrize(
    "content",
    [
        b'{"n": 18446744073709551616}',  # beyond 64 bits: orjson reads a float
        b'{"n": -9223372036854775809}',
        b'{"n": 18446744073709551615, "m": -9223372036854775808}',  # the edges it reads exactly
        b'{"f": 1e+20, "g": 1.5e300}',  # large floats: written with e+ by both
        b'{"email": "jane+test@example.com", "plus": "e+1", "x": "1e+5"}',  # e+ inside strings
        b'{"tiny": [1e-05, 2.5e-07, 0.00009999, 1e-10, 0.0001]}',
        b'{"id": "9f3c-4f1e-9a6b", "word": "one-time"}',
        b'[' * 300 + b']' * 300,  # deeper than orjson writes
        b'{"s": "caf\\u00e9", "n": [1, 2.5, -0.0]}',
        # past more dots and dashes than the one-byte search checks itself
        b'{"a": "a.b.c.d.e.f.g.h.i.j.k", "b": "one-two-three-four-five-six-seven-eight-nine", "z": 3e-05}',
        b'{"a": "a.b.c.d.e.f.g.h.i.j.k", "b": "one-two-three-four-five-six-seven-eight-nine", "z": 2.5e-07}',
        b'{"a": "x-1e-7-e-8-0.00001-.0000-e-", "z": [1e-9, "0.0000", -4e-06]}',
    ],
)
def test_loads_with_digest_is_exactly_the_standard_library(content: bytes) -> None:
    expected_value = json.loads(content)
    expected_digest = _stdlib_digest(content)
    both = runtime_json.loads_with_digest(content)
    if both is None:  # the caller parses with the standard library: exact by construction
        return
    value, digest = both
    assert repr(value) == repr(expected_value)
    assert digest == expected_digest


def test_float_text_check_finds_every_float_python_writes_otherwise() -> None:
    """Every float whose orjson text is not its repr is found, wherever it sits."""
    import random

    orjson = pytest.importorskip("orjson")
    rng = random.Random(7)
    filler = ["a.b", "one-two", "e-", "0.0", "-", ".", "x1e-"]
    for _ in range(3_000):
        value = rng.uniform(-1, 1) * 10 ** rng.randint(-12, 3)
        text = [rng.choice(filler) for _ in range(rng.randint(0, 24))]
        canonical = orjson.dumps({"a": text, "b": [1, value], "c": text[::-1]}, option=orjson.OPT_SORT_KEYS)
        if orjson.dumps(value) != repr(value).encode():
            assert runtime_json._float_text_may_differ(canonical), canonical


def test_loads_with_digest_leaves_long_integers_to_the_standard_library() -> None:
    assert runtime_json.loads_with_digest(b'{"n": 18446744073709551616}') is None
    assert runtime_json.loads_with_digest(b'{"n": -9223372036854775809}') is None
    # an e+ inside a string is not a number: orjson's answer stands
    assert runtime_json.loads_with_digest(b'{"email": "jane+test@example.com"}') is not None
