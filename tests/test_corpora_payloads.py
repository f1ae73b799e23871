"""Every file of the shared real-payload corpora loads, one row each, nothing changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
import pytest

from segfn_kit import drift, load_payloads, profile, redact
from segfn_kit._payloads import request_from_row

pytestmark = pytest.mark.corpora


@pytest.fixture(scope="module")
def corpus_frame(corpora_dir: Path) -> pd.DataFrame:
    return load_payloads(corpora_dir)


def payload_files(corpora_dir: Path) -> list[Path]:
    return sorted(p for p in corpora_dir.rglob("*") if p.is_file() and p.suffix == ".json")


def test_every_file_loads_one_row_each(corpora_dir: Path, corpus_frame: pd.DataFrame) -> None:
    files = payload_files(corpora_dir)
    assert len(files) > 600
    assert len(corpus_frame) == len(files)
    assert corpus_frame.index.is_unique
    assert sorted(Path(s) for s in corpus_frame["source"]) == files
    assert corpus_frame["error"].isna().all(), corpus_frame["error"].dropna().head().to_dict()
    others = {Path(s["source"]).name for s in corpus_frame.attrs["skipped"]}
    assert others == {"README.md", "LICENSE", "LICENSE.txt"}


def test_formats_of_each_corpus(corpus_frame: pd.DataFrame) -> None:
    by_corpus = corpus_frame.groupby(corpus_frame.index.str.split("/").str[1])["format"].agg(set)
    assert by_corpus["hookdeck-webhook-samples"] >= {"topic"}
    assert by_corpus["segment-functions-library"] == {"functions-library"}
    assert by_corpus["stripe-ruby-mock"] == {"bare"}


def _body_in_file(doc: dict[str, Any], fmt: str) -> Any:
    if fmt == "functions-library":
        return doc["payload"]["body"]
    if fmt in ("topic", "envelope"):
        return doc["body"]
    return doc


def test_no_value_is_silently_changed(corpus_frame: pd.DataFrame) -> None:
    for pid, row in corpus_frame.iterrows():
        text = Path(row["source"]).read_text(encoding="utf-8")
        if row["format"] == "bare":
            assert row["raw"] == text, pid
            assert row["body"] == json.loads(text), pid
            continue
        original = _body_in_file(json.loads(text), row["format"])
        request = request_from_row(row)
        if "urlencoded" in (row["content_type"] or ""):
            decoded = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(request.text(), keep_blank_values=True).items()}
            assert decoded == original, pid
        elif isinstance(original, str):
            assert row["raw"] == original, pid
        else:
            assert request.json() == original, pid
        assert row["body"] == original, pid


def test_big_integers_are_exact(corpus_frame: pd.DataFrame) -> None:
    big = [
        value
        for column in corpus_frame.columns
        if column.startswith("body.")
        for value in corpus_frame[column].tolist()
        if type(value) is int and abs(value) > 2**53
    ]
    assert len(big) > 10  # Shopify ids beyond 2^53 are in the set, as exact ints
    assert not [c for c in corpus_frame.columns if corpus_frame[c].dtype == "float64"]


def test_event_types_found(corpus_frame: pd.DataFrame) -> None:
    hookdeck = corpus_frame[corpus_frame["format"] == "topic"]
    assert hookdeck["event_type"].notna().all()
    stripe = corpus_frame[corpus_frame.index.str.contains("/stripe-ruby-mock/")]
    names = {Path(s).stem for s in stripe["source"]}
    assert set(stripe["event_type"].dropna()) <= names | {"customer.subscription.trial_will_end"}
    assert stripe["event_type"].notna().sum() >= len(stripe) - 1


def test_profile_and_drift_on_the_corpora(corpora_dir: Path) -> None:
    old = load_payloads(corpora_dir / "hookdeck-webhook-samples" / "shopify" / "2023-01")
    new = load_payloads(corpora_dir / "hookdeck-webhook-samples" / "shopify" / "2024-10")
    p = profile(new, by="event_type")
    assert (p["present"] <= 1).all() and (p["present"] > 0).all()
    d = drift(old, new, by="event_type")
    assert {"added", "removed"} <= set(d["change"])
    stripe = profile(load_payloads(corpora_dir / "stripe-ruby-mock"))
    assert "data.object.created" in stripe.attrs["timestamp_formats"]["unix"]
    assert stripe.at["created", "timestamp"] == "unix"


def test_redact_the_corpora(corpora_dir: Path, tmp_path: Path) -> None:
    source = corpora_dir / "hookdeck-webhook-samples" / "shopify" / "2024-10"
    report = redact(source, out=tmp_path)
    frame = load_payloads(tmp_path)
    original = load_payloads(source)
    assert len(frame) == len(original)
    assert "email" in set(report["kind"])
    emails = frame["body.email"].dropna() if "body.email" in frame.columns else pd.Series([], dtype=object)
    assert all(e.endswith("@example.com") for e in emails)
