"""Fuzzing the loaders: whatever a file holds, loading it gives rows, never an exception.

Arbitrary bytes, JSON-ish documents (with NaN, ``1e400``, repeated keys, deep nesting), HAR-like
archives whose fields have any type, and gzip members (whole or cut short) are written to
temporary files under every name the loaders know; ``iter_payloads`` and ``load_payloads`` must
give one or more rows for each (a payload or an error row) or report a skip, and every row must
turn into a request and an envelope.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segfn_kit import iter_payloads, load_payloads
from segfn_kit._payloads import Payload, Skip, request_from_row

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
NAMES = ["p.json", "p.jsonl", "p.ndjson", "p.har", "p.json.gz", "p.jsonl.gz", "p.har.gz", "p.txt"]
CAP = 64 * 1024  # a small size cap, so oversize inputs are exercised too

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
anything = st.one_of(json_values, st.just({}), st.just([]))
header_shapes = st.one_of(
    anything,
    st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
    st.lists(st.fixed_dictionaries({"name": st.text(max_size=10), "value": anything}), max_size=3),
)
post_data = st.one_of(
    anything,
    st.fixed_dictionaries(
        {},
        optional={
            "text": st.one_of(st.text(max_size=40), anything),
            "mimeType": st.one_of(st.sampled_from(["application/json", "text/plain"]), anything),
            "encoding": st.one_of(st.just("base64"), anything),
            "params": st.one_of(st.lists(anything, max_size=3), anything),
        },
    ),
)
har_requests = st.fixed_dictionaries(
    {"method": st.one_of(st.just("POST"), st.just("post"), anything)},
    optional={
        "url": st.one_of(st.text(max_size=30), anything),
        "headers": header_shapes,
        "postData": post_data,
        "queryString": anything,
    },
)
har_entries = st.one_of(
    anything,
    st.fixed_dictionaries(
        {"request": st.one_of(har_requests, anything)},
        optional={"startedDateTime": anything},
    ),
)
har_documents = st.one_of(
    st.fixed_dictionaries(
        {"log": st.fixed_dictionaries({"entries": st.lists(har_entries, max_size=5)})}
    ),
    st.fixed_dictionaries({"log": anything}),
)
envelopes = st.fixed_dictionaries(
    {"headers": header_shapes},
    optional={
        "body": anything,
        "body_base64": st.one_of(st.text(max_size=20), anything),
        "method": anything,
        "url": anything,
        "path": anything,
        "query": anything,
        "received_at": anything,
    },
)
wrappers = st.one_of(
    st.fixed_dictionaries(
        {
            "payload": st.fixed_dictionaries(
                {"body": anything}, optional={"headers": header_shapes, "queryParameters": anything}
            )
        }
    ),
    st.fixed_dictionaries({"topic": anything, "headers": header_shapes, "body": anything}),
)
documents = st.one_of(anything, envelopes, wrappers, har_documents)


def twist(text: str, how: int) -> str:
    """The JSON text with a hostile change: NaN, an overflowing number, a repeated key, nesting."""
    if how == 1:
        return text.replace("0", "NaN", 1)
    if how == 2:
        return text.replace("1", "1e400", 1)
    if how == 3 and text.startswith("{") and len(text) > 2:
        return '{"k": 1, "k": 2, ' + text[1:]
    if how == 4:
        return "[" * 3000 + text + "]" * 3000
    if how == 5:
        return text[: len(text) // 2]
    if how == 6:
        return "\ufeff" + text
    return text


def encode(text: str | bytes, name: str, cut: int) -> bytes:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if name.endswith(".gz"):
        data = gzip.compress(data)
        if cut:  # a truncated archive member
            data = data[: max(0, len(data) - cut)]
    return data


def check_load(files: dict[str, bytes], **options: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name, data in files.items():
            (root / name).write_bytes(data)
        skips: list[Skip] = []
        rows = list(iter_payloads(root, on_skip=skips.append, max_bytes=CAP, **options))
        assert all(isinstance(r, Payload) for r in rows)
        sources = {Path(r.source).name for r in rows} | {Path(s.source).name for s in skips}
        assert sources == set(files), (sources, set(files))
        for row in rows:
            assert row.error is None or isinstance(row.error, str)
            assert isinstance(row.raw, str)
            request_from_row(row)
            row.to_envelope()
        frame = load_payloads(root, max_bytes=CAP, **options)
        assert len(frame) == len(rows)
        assert frame.index.is_unique


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(NAMES), st.integers(0, 8))
def test_arbitrary_bytes(data: bytes, name: str, cut: int) -> None:
    check_load({name: encode(data, name, cut)})


@FUZZ
@given(
    st.lists(st.tuples(documents, st.integers(0, 6)), min_size=1, max_size=4),
    st.sampled_from(NAMES),
    st.integers(0, 8),
    st.booleans(),
)
def test_json_documents_and_lines(
    docs: list[tuple[Any, int]], name: str, cut: int, split_arrays: bool
) -> None:
    texts = [twist(json.dumps(doc, allow_nan=False), how) for doc, how in docs]
    body = "\n".join(texts) if ".jsonl" in name or ".ndjson" in name else texts[0]
    check_load({name: encode(body, name, cut)}, split_arrays=split_arrays)


@FUZZ
@given(
    har_documents, st.sampled_from(["a.har", "a.har.gz", "a.json", "a.jsonl"]), st.integers(0, 3)
)
def test_har_like_archives(doc: Any, name: str, cut: int) -> None:
    text = json.dumps(doc, allow_nan=False)
    if name.endswith(".jsonl"):
        text = text.replace("\n", " ")
    check_load({name: encode(text, name, cut)})


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.one_of(st.binary(max_size=200), documents.map(json.dumps)), st.integers(0, 20)
        ),
        min_size=1,
        max_size=3,
    )
)
def test_gzip_members_whole_cut_or_huge(members: list[tuple[bytes | str, int]]) -> None:
    files: dict[str, bytes] = {}
    for index, (content, cut) in enumerate(members):
        data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
        if cut == 20:  # a bomb: far over the cap once expanded
            data = b'{"a": "' + b" " * (CAP * 8) + b'"}'
        files[f"m{index}.json.gz"] = encode(data, ".gz", cut % 20)
        files[f"m{index}.jsonl.gz"] = encode(data + b"\n" + data, ".gz", cut % 20)
    check_load(files)


python_values = st.recursive(
    st.one_of(
        scalars, st.binary(max_size=5), st.sets(st.integers(), max_size=3), st.just(object())
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.one_of(st.text(max_size=5), st.integers(), st.none()), inner, max_size=3
        ),
    ),
    max_leaves=10,
)


@FUZZ
@given(
    st.one_of(
        python_values,
        st.fixed_dictionaries({"headers": python_values, "body": python_values}),
        st.lists(
            st.fixed_dictionaries({"headers": python_values, "body": python_values}), max_size=3
        ),
    )
)
def test_python_values_given_directly(value: Any) -> None:
    if not isinstance(value, dict | list):
        value = {"headers": {}, "body": value}
    rows = list(iter_payloads(value))
    assert len(rows) == (len(value) if isinstance(value, list) else 1)
    for row in rows:
        request_from_row(row)
        row.to_envelope()


def test_a_deep_document_in_every_format() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    check_load({name: encode(deep, name, 0) for name in NAMES})
