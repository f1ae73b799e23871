"""Files, folders and globs: which files an argument names, with their base payload ids."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._formats import _Reader

# file extensions read when walking a folder; any other file there is reported as skipped
PAYLOAD_SUFFIXES = (".json", ".jsonl", ".ndjson", ".har")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


def _is_glob(text: str) -> bool:
    return glob.has_magic(text)


def _files_of(arg: str | os.PathLike[str], reader: _Reader) -> Iterator[tuple[Path, str]]:
    """Each (file, base id) an argument names, in a stable order."""
    text = os.fspath(arg)
    if _is_glob(text):
        # ids are relative to the folder before the first wildcard, so they stay unique
        parts = Path(text).parts
        fixed = [p for p in _take_fixed(parts)]
        root = Path(*fixed) if fixed else Path(".")
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            reader.skip(text, "the pattern matches no file")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                yield from _walk(
                    path, f"{root.name or '.'}/{path.relative_to(root).as_posix()}", reader
                )
            elif path.is_file():
                rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
                yield path, f"{root.resolve().name}/{rel}"
        return
    path = Path(text)
    if path.is_dir():
        yield from _walk(path, path.resolve().name, reader)
    elif path.is_file() or path.exists():
        yield path, path.name
    else:
        raise FileNotFoundError(
            f"no such file or folder: {text!r}; check the path (globs like 'captures/*.json' work too)"
        )


def _take_fixed(parts: tuple[str, ...]) -> Iterator[str]:
    for part in parts:
        if glob.has_magic(part):
            return
        yield part


def _walk(folder: Path, base: str, reader: _Reader) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(folder).as_posix()
            lowered = name.lower().removesuffix(".gz")
            if name.startswith("."):
                reader.skip(str(path), "a hidden file")
            elif not lowered.endswith(PAYLOAD_SUFFIXES):
                suffix = Path(lowered).suffix or "no extension"
                reader.skip(
                    str(path),
                    f"not a payload file ({suffix}); payload files end in "
                    + ", ".join(PAYLOAD_SUFFIXES),
                )
            else:
                yield path, f"{base}/{rel}"
