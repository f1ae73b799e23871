"""Regenerate the golden exports: ``make regen`` (``python -m tests.golden.regen``).

The golden files are the exports of the bundled Stripe source over ``sample_payloads/stripe``
and of the bundled Zendesk destination over ``sample_payloads/segment_events``.
``tests/test_export.py`` exports them again and compares byte for byte. The runtime copy
(``segfn_kit/runtime/``) is left out of the golden files: the test checks it against the
package's runtime directly, so a runtime change does not need a regeneration.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
EXCLUDED = "segfn_kit/runtime/"

# name -> (function file, payloads, settings); the apiToken is a made-up secret that the
# tests look for in every exported file
CASES = {
    "stripe_source": (
        ROOT / "segfn_kit" / "examples" / "stripe_source.py",
        [ROOT / "sample_payloads" / "stripe"],
        {},
    ),
    "zendesk_destination": (
        ROOT / "segfn_kit" / "examples" / "zendesk_destination.py",
        [ROOT / "sample_payloads" / "segment_events"],
        {"subdomain": "acme", "email": "agent@example.com", "apiToken": "zd-golden-secret-4f1c9a"},
    ),
}


def export_case(name: str, out: Path) -> Path:
    """Export one golden case into ``out``."""
    from segfn_kit._export import export

    function, payloads, settings = CASES[name]
    return export(function, out, payloads=payloads, settings=settings, approved=None)


def golden_files(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of an export, the runtime copy left out."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and not p.relative_to(root).as_posix().startswith(EXCLUDED)
        and "__pycache__" not in p.parts
        and ".pytest_cache" not in p.parts
    }


def main() -> int:
    for name in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            package = export_case(name, Path(tmp) / name)
            target = GOLDEN / name
            if target.exists():
                shutil.rmtree(target)
            for rel, content in golden_files(package).items():
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        print(f"regenerated tests/golden/{name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
