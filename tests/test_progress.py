"""The one progress helper (``segfn_kit._progress``): when a bar shows, where it goes, and that the
loaders and the redactor draw theirs through it without changing what they return."""

from __future__ import annotations

from pathlib import Path

import pytest

from segfn_kit import load_payloads, redact
from segfn_kit._progress import PROGRESS_FROM, progress

SAMPLES = Path(__file__).resolve().parents[1] / "sample_payloads" / "stripe"


def test_bar_shows_from_the_threshold_on_or_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    assert list(progress(range(3), total=3)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    assert len(list(progress(list(range(PROGRESS_FROM)), desc="many"))) == PROGRESS_FROM
    assert "many" in capsys.readouterr().err
    bar = progress(total=5, show=True, desc="by hand", unit="rows")
    bar.update(5)
    bar.close()
    err = capsys.readouterr().err
    assert "by hand" in err and "5/5" in err and "rows" in err


def test_load_payloads_bar_goes_to_stderr_and_leaves_the_frame_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    plain = load_payloads(SAMPLES)
    assert capsys.readouterr().err == ""
    shown = load_payloads(SAMPLES, progress=True)
    err = capsys.readouterr().err
    assert "loading payloads" in err and f"{len(plain)} payloads" in err
    assert shown.equals(plain) and list(shown.index) == list(plain.index)


def test_redact_bar_counts_files_and_writes_the_same_files(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    redact(SAMPLES, out=tmp_path / "plain", key="k")
    assert capsys.readouterr().err == ""
    redact(SAMPLES, out=tmp_path / "shown", key="k", progress=True)
    files = sorted(p.name for p in SAMPLES.iterdir() if p.is_file())
    err = capsys.readouterr().err
    assert "redacting" in err and f"{len(files)}/{len(files)}" in err
    written = sorted(str(p.relative_to(tmp_path / "shown")) for p in (tmp_path / "shown").rglob("*") if p.is_file())
    assert len(written) == len(files)
    assert written == sorted(str(p.relative_to(tmp_path / "plain")) for p in (tmp_path / "plain").rglob("*")
                             if p.is_file())
    for name in written:
        assert (tmp_path / "shown" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()


def test_replay_bar_counts_payloads_and_changes_no_summary(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from segfn_kit import replay

    function = Path(__file__).resolve().parents[1] / "segfn_kit" / "examples" / "stripe_source.py"
    plain = replay(function, SAMPLES, dry_run=True, isolation="none")
    assert "replay" not in capsys.readouterr().err
    shown = replay(function, SAMPLES, dry_run=True, isolation="none", progress=True)
    err = capsys.readouterr().err
    assert "replay" in err and f"{plain.payloads} payloads" in err
    assert (shown.payloads, shown.events, shown.outcomes) == (plain.payloads, plain.events, plain.outcomes)


def test_only_the_progress_helper_imports_tqdm() -> None:
    package = Path(__file__).resolve().parents[1] / "segfn_kit"
    importing = sorted(str(p.relative_to(package)) for p in package.rglob("*.py")
                       if "import tqdm" in p.read_text() or "from tqdm" in p.read_text())
    assert importing == ["_progress.py"]
