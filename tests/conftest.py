"""Shared fixtures: project paths and the shared real-payload corpora."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_payloads"
CORPORA = ROOT.parent / "shared" / "corpora"


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def corpora_dir() -> Path:
    """../shared/corpora; tests that use it skip cleanly when it is absent."""
    if not CORPORA.is_dir():
        pytest.skip("../shared/corpora is absent: real-payload conformance tests skipped")
    return CORPORA
